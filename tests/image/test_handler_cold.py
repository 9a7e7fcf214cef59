"""The handler's cold paths, through ``handler.py`` as the image runs it.

Every other handler test finds Piper installed in the test interpreter, so
``ensure`` answers "in place". Here the interpreter is the replayed image's venv
(the handler's dependencies only, no Piper extra), so a Piper job must reach the
bootstrapper's real paths: an empty volume builds and publishes the profile, a
second worker (a fresh process with its own local envs dir, the same volume)
restores it, and a worker started with ``MEDIA_WORKER_PREPARE`` restores it in the
background so that its first job prepares nothing. What each job did is read from
its result, its log and the volume's manifest, never from how long it took.
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.image._replay import Replay, uv_cache_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

JOB = {"input": {"task": "tts", "text": "A cold worker speaks."}}


def _env(replay: Replay, tmp_path: Path, worker: str, volume: Path, **extra: str) -> dict:
    """One worker: its own home and local envs dir; the shared volume; uv's cache."""
    return replay.env(
        home=tmp_path / worker / "home",
        envs_dir=tmp_path / worker / "envs",
        MEDIA_WORKER_HOME=str(volume),
        UV_CACHE_DIR=uv_cache_dir(),
        **extra,
    )


def _result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The job's output, as the SDK's local mode prints it ("Job result: {...}")."""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if "Job result: " in x)
    return ast.literal_eval(line.split("Job result: ", 1)[1])["output"]


@dataclass(frozen=True)
class Archive:
    manifest: dict[str, Any]
    mtime_ns: int


def _archive(volume: Path) -> Archive:
    (manifest,) = (volume / "envs").glob("piper-*.json")
    (archive,) = (volume / "envs").glob("piper-*.tar.zst")
    return Archive(json.loads(manifest.read_text()), archive.stat().st_mtime_ns)


@pytest.fixture(scope="module")
def built(replay: Replay, tmp_path_factory: pytest.TempPathFactory):
    """The first worker on an empty volume: (volume, its process, its result)."""
    root = tmp_path_factory.mktemp("cold")
    volume = root / "runpod-volume" / "media-worker"
    proc = replay.run_cmd(_env(replay, root, "worker-1", volume), JOB)
    return volume, proc, _result(proc)


def test_empty_volume_builds_publishes_and_serves(built):
    volume, proc, result = built
    assert "profile piper ready source=built" in proc.stderr
    assert "profile piper build start" in proc.stderr
    assert result["timings"]["bootstrap_s"] > 0, "the job did not report its bootstrap"
    assert result["outputs"][0]["content_type"] == "audio/wav"
    archive = _archive(volume)
    assert archive.manifest["archive_sha256"] and archive.manifest["unpacked_bytes"] > 0


def test_second_worker_restores_what_the_first_published(built, replay: Replay, tmp_path):
    volume, _, _ = built
    before = _archive(volume)
    proc = replay.run_cmd(_env(replay, tmp_path, "worker-2", volume), JOB)
    result = _result(proc)
    assert "profile piper ready source=restored" in proc.stderr
    assert "build start" not in proc.stderr
    assert result["timings"]["bootstrap_s"] > 0 and result["cold"] is True
    assert _archive(volume) == before, "the archive on the volume was rebuilt"
    assert [p.name for p in (tmp_path / "worker-2" / "envs").iterdir()] == [
        f"piper-{before.manifest['spec_hash']}"
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prepare_restores_in_the_background_and_the_next_job_prepares_nothing(
    built, replay: Replay, tmp_path
):
    volume, _, _ = built
    before = _archive(volume)
    port = _free_port()
    log = tmp_path / "worker-3.log"
    env = _env(replay, tmp_path, "worker-3", volume, MEDIA_WORKER_PREPARE="piper")
    command = [*replay.command(), "--rp_serve_api", "--rp_api_host", "127.0.0.1"]
    with log.open("w") as sink:
        worker = subprocess.Popen(
            [*command, "--rp_api_port", str(port)],
            cwd=replay.app,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 600  # a bound on waiting, not a claim about speed
        while "prepared profile piper in the background" not in log.read_text():
            assert worker.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.2)
        prepared = log.read_text()
        answer = requests.post(f"http://127.0.0.1:{port}/runsync", json=JOB, timeout=300).json()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert answer["status"] == "COMPLETED", answer
    assert "profile piper ready source=restored" in prepared
    job_log = log.read_text()[len(prepared) :]
    assert "job=" in job_log and "profile piper ready" not in job_log, job_log
    assert answer["output"]["timings"]["bootstrap_s"] == 0.0
    assert "build start" not in log.read_text()
    assert _archive(volume) == before
