"""Leases and temps under clock skew, dead holders and volume hiccups (real processes).

Skew: a child process runs with its clock shifted by minutes (``time.time`` and the
``datetime`` flufl.lock reads, shifted in that process only), as a worker on a host
whose clock is off would. Stale temps are simulated by setting their mtimes.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import config
from bootstrap import _lease
from bootstrap._layout import Layout, clean_stale
from bootstrap._lease import Lease

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LIFETIME_S = 4.0

# argv: skew seconds, lock path, lifetime, action ("try" or "hold")
_SKEWED = """
import datetime as dt, sys, time
sys.path.insert(0, {root!r})
skew, path, lifetime, action = float(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
real_time = time.time
time.time = lambda: real_time() + skew
import flufl.lock._lockfile as lockfile

class Skewed(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return dt.datetime.fromtimestamp(real_time() + skew, tz)

lockfile.datetime = Skewed
from pathlib import Path
from bootstrap._lease import Lease
lease = Lease(Path(path), lifetime_s=lifetime)
if action == "try":
    print(lease.try_acquire(3), flush=True)
else:
    assert lease.try_acquire(3)
    print("held", flush=True)
    sys.stdin.readline()
    lease.release()
"""


def _skewed(skew_s: float, path: Path, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _SKEWED.format(root=str(ROOT)), str(skew_s), str(path),
         str(LIFETIME_S), action],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_waiter_whose_clock_runs_ahead_does_not_break_a_live_lease(tmp_path):
    path = tmp_path / "leases" / "piper-0123456789abcdef.lock"
    holder = Lease(path, lifetime_s=LIFETIME_S)
    assert holder.try_acquire(1)
    try:
        claim = path.read_text()
        waiter = _skewed(+300, path, "try")
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err[-2000:]
        assert out.strip() == "False"
        assert path.read_text() == claim  # still the holder's
    finally:
        holder.release()


def test_holder_whose_clock_runs_behind_keeps_its_lease(tmp_path):
    path = tmp_path / "leases" / "piper-0123456789abcdef.lock"
    holder = _skewed(-300, path, "hold")
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()[-2000:]
        time.sleep(LIFETIME_S / 2)  # a heartbeat or two, stamped by the volume
        assert not Lease(path, lifetime_s=LIFETIME_S).try_acquire(3)
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0


def test_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    path = tmp_path / "leases" / "piper-0123456789abcdef.lock"
    dead = subprocess.run(
        [sys.executable, "-c",
         "import sys, os; sys.path.insert(0, sys.argv[1]);"
         "from bootstrap._lease import Lease; from pathlib import Path;"
         "assert Lease(Path(sys.argv[2]), lifetime_s=600).try_acquire(1); os._exit(0)",
         str(ROOT), str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert dead.returncode == 0, dead.stderr
    assert path.exists()  # a 10-minute lease, its holder gone
    lease = Lease(path)
    assert lease.try_acquire(1)  # not after 10 minutes
    lease.release()
    assert sorted(p.name for p in path.parent.iterdir()) == []


def test_lease_whose_heartbeat_stopped_expires(tmp_path):
    path = tmp_path / "leases" / "piper-0123456789abcdef.lock"
    stalled = Lease(path, lifetime_s=1)
    assert stalled.try_acquire(1)
    stalled._stop.set()  # a frozen builder: alive, no heartbeat
    stalled._beat.join()
    taker = Lease(path)
    try:
        assert taker.try_acquire(_lease.CLOCK_SLOP_S + 10)
    finally:
        taker.release()  # its heartbeat would outlive the test (and its tmp_path)


def test_heartbeat_retries_after_an_error(tmp_path, monkeypatch):
    path = tmp_path / "leases" / "piper-0123456789abcdef.lock"
    lease = Lease(path, lifetime_s=0.4)
    calls: list[str] = []
    real = lease._lock.refresh

    def flaky(*args, **kwargs):
        if len(calls) < 2:
            calls.append("error")
            raise OSError(errno.EIO, "Input/output error")  # a volume hiccup
        calls.append("ok")
        return real(*args, **kwargs)

    monkeypatch.setattr(lease._lock, "refresh", flaky)
    assert lease.try_acquire(1)
    try:
        deadline = time.monotonic() + 20
        while "ok" not in calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls[:3] == ["error", "error", "ok"]
        assert lease._lock.is_locked and not lease.lost
    finally:
        lease.release()


def test_heartbeat_is_quiet_about_temps_not_written_yet_and_keeps_the_others_fresh(
    tmp_path, caplog
):
    path = tmp_path / "leases" / "piper-0123456789abcdef.lock"
    lease = Lease(path, lifetime_s=0.4)
    written = tmp_path / ".tmp-written.json"
    written.write_text("{}")
    os.utime(written, (1, 1))
    lease.keep_fresh(written, tmp_path / ".tmp-not-yet.tar.zst")  # the archive comes later
    assert lease.try_acquire(1)
    try:
        deadline = time.monotonic() + 20
        while written.stat().st_mtime < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a few more beats with the missing temp
    finally:
        lease.release()
    assert written.stat().st_mtime > 2  # the written temp was kept fresh
    assert "could not touch" not in caplog.text


def _layout(tmp_path: Path) -> Layout:
    paths = config.Paths(
        home=tmp_path / "vol", envs=tmp_path / "envs", outputs=tmp_path, on_volume=True
    )
    layout = Layout.of("piper", "0123456789abcdef", paths)
    layout.volume_envs.mkdir(parents=True)
    layout.local_envs.mkdir(parents=True)
    return layout


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_temps_are_removed_only_when_their_builder_is_gone(tmp_path):
    layout = _layout(tmp_path)
    host = socket.gethostname().replace("-", "_")[:32]
    key = layout.key
    names = {
        "live elsewhere": f".tmp-{key}-otherhost-123-aaaa.tar.zst",
        "stale elsewhere": f".tmp-{key}-otherhost-124-bbbb.tar.zst",
        "dead here": f".tmp-{key}-{host}-{_dead_pid()}-cccc.json",
        "ours": f".tmp-{key}-{host}-{os.getpid()}-dddd.tar.zst",
        "kept fresh": f".tmp-{key}-otherhost-125-eeee.tar.zst",
    }
    for name in names.values():
        (layout.volume_envs / name).write_bytes(b"x")
    long_ago = time.time() - 3600
    for label in ("stale elsewhere", "kept fresh"):
        os.utime(layout.volume_envs / names[label], (long_ago, long_ago))
    # "kept fresh" belongs to a builder that lost its lease but still runs: its
    # heartbeat touches the temp, so it no longer looks abandoned.
    builder = Lease(tmp_path / "other.lock", lifetime_s=0.4)
    builder.keep_fresh(layout.volume_envs / names["kept fresh"])
    builder.start_heartbeat()
    try:
        deadline = time.monotonic() + 10
        while (layout.volume_envs / names["kept fresh"]).stat().st_mtime < long_ago + 60:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        clean_stale(layout, holding_lease=True)
    finally:
        builder.release()
    left = sorted(p.name for p in layout.volume_envs.iterdir())
    assert left == sorted(names[k] for k in ("live elsewhere", "ours", "kept fresh"))
