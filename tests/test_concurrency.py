"""Several jobs at once in one worker: the runpod SDK's local API (``--rp_serve_api``)
and job scaler, the runner host's pools of real runner processes, and the decision
of how many jobs to take (``models.host.decide_concurrency``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from runpod.serverless.modules.rp_scale import JobScaler

import handler
from errors import RunnerCrashed
from models.host import HeldPool, RunnerHost, decide_concurrency, pool_cpu_threads
from tests.test_handler import ROOT, _free_port, _local_file, _serve_api, _worker_env

PY = Path(sys.executable)
REF = "tests.models.fixture_runners:"


@pytest.mark.parametrize(
    ("held", "limit", "free_mb", "expected"),
    [
        # the setting's default keeps one job at a time, whatever is loaded
        ([HeldPool(8, 1, 1000)], 1, 100_000, 1),
        # nothing loaded yet: the first job decides which model is loaded
        ([], 8, 100_000, 1),
        # a model that serves 8 at once, room for all of them
        ([HeldPool(8, 1, 1000)], 8, 100_000, 8),
        ([HeldPool(8, 1, 1000)], 4, 100_000, 4),  # the setting caps it
        # GPU memory for two more processes only
        ([HeldPool(8, 1, 1000)], 8, 2500, 3),
        # stable as the pool grows: a started process moved 1000 MB into the pool
        ([HeldPool(8, 2, 1000)], 8, 1500, 3),
        # a full card: only the processes that exist
        ([HeldPool(8, 3, 1000)], 8, 0, 3),
        # one job at a time per model that declares no more, on the CPU too
        ([HeldPool(1, 1, 0)], 8, None, 1),
        ([HeldPool(1, 1, 0), HeldPool(1, 1, 2000)], 8, 0, 2),
        # no GPU seen (a GPU model on the CPU): the declared number
        ([HeldPool(4, 1, 1000)], 8, None, 4),
        # models share the free memory, in the order given
        ([HeldPool(4, 1, 1000), HeldPool(4, 1, 1000)], 16, 3000, 5),
    ],
)
def test_decide_concurrency(held, limit, free_mb, expected):
    assert decide_concurrency(held, limit=limit, free_mb=free_mb) == expected


@pytest.mark.parametrize(
    ("cpus", "pool_size", "threads"),
    [(16, 1, None), (16, 8, 2), (16, 4, 4), (2, 4, 1), (16, 3, 5)],
)
def test_pool_cpu_threads_share_the_cores_out(cpus, pool_size, threads):
    assert pool_cpu_threads(cpus, pool_size) == threads


def test_the_sdk_job_scaler_takes_one_job_at_a_time_by_default():
    scaler = JobScaler(handler.sdk_config())
    scaler.current_concurrency = 4  # whatever the SDK starts from, the worker says 1
    asyncio.run(scaler.set_scale())
    assert scaler.current_concurrency == 1 and scaler.jobs_queue.maxsize == 1


def _gather_job(host, tmp_path, i, n, **kwargs):
    scratch = tmp_path / "scratch" / f"job-{i}"
    scratch.mkdir(parents=True, exist_ok=True)
    return host.run(
        name="gather",
        python=PY,
        runner_ref=REF + "GatherRunner",
        job_id=f"job-{i}",
        payload={"text": f"word{i} of {n}"},
        scratch=scratch,
        timeout_s=120,
        **kwargs,
    )


@pytest.mark.slow
def test_a_pool_serves_jobs_at_once_each_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_WORKER_MAX_CONCURRENCY", "3")
    host = RunnerHost()
    outcomes: dict[int, object] = {}

    def job(i: int) -> None:
        outcomes[i] = _gather_job(host, tmp_path, i, 3, max_jobs=4)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        seen = {i: json.loads(Path(o.outputs[0].path).read_text()) for i, o in outcomes.items()}
        assert sorted(seen) == [0, 1, 2]
        assert all(s["text"] == f"word{i} of 3" and s["met"] == 3 for i, s in seen.items())
        assert len({s["pid"] for s in seen.values()}) == 3  # a process per job
        threads = os.environ.get("OMP_NUM_THREADS") or str(pool_cpu_threads(os.cpu_count(), 3))
        assert {s["threads"] for s in seen.values()} == {threads}  # the cores shared out
        assert sorted(host.pids["gather"]) == sorted(s["pid"] for s in seen.values())
        assert host.capacity(3) == 3  # the worker now takes three at once
        # the pool stays warm: the next job reuses one of its processes
        again = _gather_job(host, tmp_path / "again", 3, 1, max_jobs=4)
        assert not again.cold
        assert json.loads(Path(again.outputs[0].path).read_text())["pid"] in host.pids["gather"]
    finally:
        host.shutdown()


@pytest.mark.slow
def test_the_setting_caps_a_pool_at_one_process_by_default(tmp_path):
    host = RunnerHost()
    try:
        outcome = _gather_job(host, tmp_path, 0, 1, max_jobs=8)
        assert json.loads(Path(outcome.outputs[0].path).read_text())["met"] == 1
        assert len(host.pids["gather"]) == 1 and host.capacity(1) == 1
    finally:
        host.shutdown()


@pytest.mark.slow
def test_a_pool_grows_only_into_free_gpu_memory(tmp_path, monkeypatch):
    """The memory reading is the one stand-in (no GPU here): it falls as processes
    start. The third job waits for a process of the pool instead of starting one."""
    monkeypatch.setenv("MEDIA_WORKER_MAX_CONCURRENCY", "4")
    hosts: list[RunnerHost] = []
    host = RunnerHost(free_memory=lambda: 2500 - 1000 * len(hosts[0].pids.get("block", [])))
    hosts.append(host)
    release = tmp_path / "release"
    results: dict[int, object] = {}

    def job(i: int) -> None:
        (tmp_path / f"s{i}").mkdir()
        results[i] = host.run(
            name="block",
            python=PY,
            runner_ref=REF + "BlockRunner",
            job_id=f"job-{i}",
            payload={"release": str(release)},
            scratch=tmp_path / f"s{i}",
            vram_mb=1000,
            max_jobs=4,
        )

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(host.pids.get("block", [])) < 2:
            assert time.monotonic() < deadline, host.pids
            time.sleep(0.05)
        time.sleep(1.0)  # the third job had time to start a process, had it been allowed
        assert len(host.pids["block"]) == 2
        assert host.capacity(4) == 2  # and the worker takes no more than the pool serves
        release.touch()
        for t in threads:
            t.join(timeout=120)
        assert sorted(results) == [0, 1, 2]
        assert sum(o.cold for o in results.values()) == 2  # the third reused one
    finally:
        release.touch()
        host.shutdown()


@pytest.mark.slow
def test_a_killed_runner_fails_only_its_own_job(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_WORKER_MAX_CONCURRENCY", "3")
    host = RunnerHost()
    release = tmp_path / "release"
    results: dict[int, object] = {}

    def job(i: int) -> None:
        (tmp_path / f"s{i}").mkdir()
        try:
            results[i] = host.run(
                name="block",
                python=PY,
                runner_ref=REF + "BlockRunner",
                job_id=f"job-{i}",
                payload={"release": str(release)},
                scratch=tmp_path / f"s{i}",
                max_jobs=3,
            )
        except RunnerCrashed as exc:
            results[i] = exc

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"s{i}" / "started").exists() for i in range(3)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim = int((tmp_path / "s1" / "started").read_text())
        os.kill(victim, signal.SIGKILL)
        threads[1].join(timeout=60)
        assert isinstance(results[1], RunnerCrashed)
        assert "was killed by SIGKILL" in results[1].message
        assert threads[0].is_alive() and threads[2].is_alive()  # still serving theirs
        release.touch()
        threads[0].join(timeout=60)
        threads[2].join(timeout=60)
        for i in (0, 2):
            assert Path(results[i].outputs[0].path).read_text() == "released"
        assert victim not in host.pids["block"] and len(host.pids["block"]) == 2
    finally:
        release.touch()
        host.shutdown()


# The worker as deployed (handler.main through the SDK's --rp_serve_api), with one
# model added: the GatherRunner, declared to serve four jobs at once.
_GATHER_WORKER = """
from models import registry
from runtime.runner import RunnerSpec

spec = RunnerSpec("tts", "gather", "tests.models.fixture_runners:GatherRunner", "piper", max_jobs=4)
registry.RUNNERS = (*registry.RUNNERS, spec)
import handler

handler.main()
"""


@pytest.mark.slow
def test_local_api_serves_jobs_at_once_each_getting_its_own_output(tmp_path):
    n = 4
    env = _worker_env(
        tmp_path,
        MEDIA_WORKER_MAX_CONCURRENCY=str(n),
        MEDIA_WORKER_SCRATCH_DIR=str(tmp_path / "scratch"),
        PYTHONPATH=str(ROOT),
    )
    (tmp_path / "scratch").mkdir()
    port = _free_port()
    log = tmp_path / "server.log"
    server = _serve_api(env, port, log, program=("-c", _GATHER_WORKER))
    answers: dict[int, dict] = {}
    spans: dict[int, tuple[float, float]] = {}

    def post(i: int) -> None:
        job = {"input": {"task": "tts", "model": "gather", "text": f"word{i} of {n}"}}
        sent = time.monotonic()
        answers[i] = requests.post(f"http://127.0.0.1:{port}/runsync", json=job, timeout=180).json()
        spans[i] = (sent, time.monotonic())

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=200)
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert sorted(answers) == list(range(n)), text
    seen = {}
    for i, answer in answers.items():
        assert answer["status"] == "COMPLETED", answer
        seen[i] = json.loads(_local_file(answer["output"]["outputs"][0]).read_text())
    assert all(s["text"] == f"word{i} of {n}" for i, s in seen.items())  # its own input
    assert all(s["met"] == n for s in seen.values())  # all n were inside runners at once
    assert len({s["pid"] for s in seen.values()}) == n  # each in a process of its own
    assert max(a for a, _ in spans.values()) < min(b for _, b in spans.values())  # overlap
    assert "Traceback" not in text
