"""Readiness per profile, repair of a damaged environment, the worker's stated
concurrency, and knobs a model ignores, through ``handler.handler``.

The repair tests run the real Piper profile from an environment that uv built on a
temporary volume (``piper_volume``), not from the test interpreter, and damage it
under a warm worker: a file deleted, the whole environment removed, the runner
killed with SIGKILL while idle.

The slow profile here is a real one that cannot become ready for a while: torch
(the pin the torch profiles use) is not installed in the test interpreter, so
``bootstrap.ensure`` goes to the volume, finds another worker's build lease held
(by this test) and waits on it, as a worker does while a multi-GB profile builds.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import threading
import time

import pytest

import bootstrap
import config
import handler
from bootstrap._layout import Layout
from bootstrap._lease import Lease
from bootstrap._profile import with_index_overrides
from bootstrap._spec import current_target, spec_hash
from errors import BootstrapFailed
from models import contract, jobs, profiles, registry
from models.environments import Environments

# A profile that waits: its build is "in progress" elsewhere (the lease is held), and
# when the lease is released the build stops at the disk-space check (no download).
SLOW = bootstrap.Profile("slowtorch", ("torch==2.13.0",), size_mb=10**9)
SLOW_SPEC = registry.RunnerSpec(
    "tts", "slowtorch", "tests.models.fixture_runners:EchoRunner", "slowtorch"
)


@pytest.fixture
def held_build(monkeypatch):
    """The slow profile registered, and its build lease held as if another worker built it."""
    from bootstrap import _ensure

    monkeypatch.setattr(_ensure, "LEASE_POLL_S", 0.2)
    monkeypatch.setenv("MEDIA_WORKER_BUILD_WAIT_S", "90")  # bounds the wait if jobs queue
    monkeypatch.setitem(profiles.PROFILES, SLOW.name, SLOW)
    monkeypatch.setattr(registry, "RUNNERS", (*registry.RUNNERS, SLOW_SPEC))
    digest = spec_hash(with_index_overrides(SLOW), current_target())
    lease = Lease(Layout.of(SLOW.name, digest, config.resolve_paths()).lease)
    assert lease.try_acquire(5)
    try:
        with handler.Worker().installed():
            yield lease
    finally:
        lease.release()


def _wait_for(predicate, thread: threading.Thread, what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        assert thread.is_alive(), f"the thread ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within 60 s"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_ready_profile_is_served_while_another_profile_builds(held_build, caplog):
    caplog.set_level("INFO")
    results: dict = {}
    slow_job = {"id": "slow-1", "input": {"task": "tts", "model": "slowtorch", "text": "x"}}
    thread = threading.Thread(target=lambda: results.update(slow=handler.handler(slow_job)))
    thread.start()
    try:
        _wait_for(lambda: "slowtorch: waiting for" in caplog.text, thread, "wait")
        ready = handler.handler({"id": "ready-1", "input": {"task": "tts", "text": "Hello."}})
        assert "error" not in ready, ready
        jobs.job_result(ready)
        assert thread.is_alive()  # the slow profile is still waiting for its builder
    finally:
        held_build.release()
        thread.join(timeout=120)
    assert results["slow"]["error_code"] == "bootstrap_failed"
    assert "\n" not in results["slow"]["error"]  # the contract's one line


@pytest.mark.slow
def test_two_jobs_for_the_same_unready_profile_share_one_ensure(held_build, monkeypatch):
    calls: list[str] = []
    real_ensure = bootstrap.ensure

    def counting_ensure(profile, **kwargs):
        calls.append(profile.name)
        return real_ensure(profile, **kwargs)

    environments = Environments(ensure=counting_ensure)
    heard: list[list[str]] = [[], []]
    outcomes: list[object] = [None, None]

    def want(i: int) -> None:
        try:
            environments.get(SLOW.name, lambda message, fraction=None: heard[i].append(message))
        except BootstrapFailed as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=want, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for i, t in enumerate(threads):
            _wait_for(lambda i=i: any("waiting for" in m for m in heard[i]), t, "progress")
    finally:
        held_build.release()
        for t in threads:
            t.join(timeout=120)
    assert calls == [SLOW.name]  # one ensure, both jobs heard its progress
    assert outcomes[0] is outcomes[1] and isinstance(outcomes[0], BootstrapFailed)
    assert "free" in outcomes[0].message or "space" in outcomes[0].message


def test_seed_for_piper_is_rejected_before_any_model_loads():
    with handler.Worker().installed() as worker:
        result = handler.handler(
            {"id": "seed-1", "input": {"task": "tts", "text": "Hi.", "seed": 7}}
        )
        assert worker.host.live == {}  # no runner started for a rejected job
    envelope = contract.ErrorEnvelope.model_validate(result)
    assert envelope.error_code == "invalid_input"
    assert [d.field for d in envelope.details] == ["seed"]
    assert envelope.error.startswith("invalid_input: seed: model 'piper' does not use this option")


@pytest.fixture
def built_worker(piper_volume, tmp_path, monkeypatch):
    """The handler on a private copy of a volume where Piper was built by uv."""
    home = tmp_path / "home"
    shutil.copytree(piper_volume, home, symlinks=True)
    monkeypatch.setenv("MEDIA_WORKER_HOME", str(home))
    monkeypatch.setenv("MEDIA_WORKER_ENVS_DIR", str(tmp_path / "envs"))
    monkeypatch.setenv("MEDIA_WORKER_OUTPUT_DIR", str(tmp_path / "out"))
    environments = Environments(ensure=functools.partial(bootstrap.ensure, in_place=False))
    with handler.Worker(environments).installed():
        yield tmp_path / "envs"


def _speak(job_id: str) -> dict:
    result = handler.handler({"id": job_id, "input": {"task": "tts", "text": "Hello there."}})
    assert "error" not in result, result
    return jobs.job_result(result).model_dump()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["delete_file", "remove_env"])
def test_a_damaged_environment_under_a_warm_worker_is_repaired(built_worker, damage, caplog):
    caplog.set_level("INFO")
    _speak("before")
    (root,) = [p for p in built_worker.iterdir() if p.name.startswith("piper-")]
    assert (root / "bin" / "python").exists()  # restored from the volume by the first job
    voice = root / "lib/python{}.{}/site-packages/piper/voice.py".format(*sys.version_info[:2])
    if damage == "delete_file":
        voice.unlink()
    else:
        shutil.rmtree(root)
    # The runner dies too (the OOM killer), so the next job must start one from disk.
    pid = handler.current().host.live["piper"]
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)

    result = _speak("after")
    assert result["cold"]
    assert voice.is_file()
    assert "could not start" in caplog.text and "repairing its environment" in caplog.text
