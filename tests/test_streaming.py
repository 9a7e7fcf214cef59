"""Streaming endpoints: the generator handler in-process, the local API, the platform.

The runpod SDK makes a handler streaming by its type, so the worker picks one
shape at start (``MEDIA_WORKER_STREAMING``). These tests run the real Piper
runner process; Kokoro's streaming is covered in tests/runners/test_kokoro.py.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile
from pydantic import TypeAdapter

import handler
from models import contract, jobs, registry
from tests.test_handler import _free_port, _job, _local_file, _serve_api, _worker_env
from tests.test_platform import FakePlatform, _stop
from tests.test_platform import _worker_env as _platform_env

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The first sentence is here. A second one follows it! And is there a third?"
# Jobs run in runners of the module's own worker, stopped when it ends.
pytestmark = pytest.mark.usefixtures("handler_worker")


def _decode(item: dict) -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(io.BytesIO(base64.b64decode(item["audio_base64"])), dtype="int16")
    return audio, rate


def test_stream_on_a_plain_endpoint_is_invalid_input_naming_the_field():
    result = handler.handler(_job("plain-stream", stream=True))
    assert result["error_code"] == "invalid_input"
    assert result["details"][0]["field"] == "stream"
    assert "MEDIA_WORKER_STREAMING=1" in result["error"]


@pytest.mark.slow
def test_stream_yields_sentence_chunks_that_add_up_to_the_published_audio(tmp_path):
    started = time.perf_counter()
    items = list(handler.stream_handler(_job("stream-1", text=TEXT, stream=True)))
    wall_s = time.perf_counter() - started
    *chunks, final = items
    assert final["type"] == "result" and "error" not in final, final
    TypeAdapter(jobs.StreamFinal).validate_python(final)
    assert len(chunks) >= 3  # one per sentence at least
    for n, item in enumerate(chunks):
        contract.StreamChunk.model_validate(item)
        assert item["index"] == n and item["type"] == "chunk"
        assert len(item["audio_base64"]) < 1_000_000
        assert (item["format"], item["sample_rate"]) == ("wav", 22050)
    offsets = [c["offset_s"] for c in chunks]
    assert offsets == sorted(offsets)
    elapsed = [c["elapsed_s"] for c in chunks]
    # elapsed_s counts from the stream handler's start, total_s from the job's (a
    # little later): bound both by this test's own clock, started before either.
    assert elapsed == sorted(elapsed) and elapsed[-1] <= wall_s
    assert final["timings"]["total_s"] <= wall_s
    full, rate = soundfile.read(_local_file(final["outputs"][0]), dtype="int16")
    assert np.array_equal(np.concatenate([_decode(c)[0] for c in chunks]), full)
    position = 0
    for c in chunks:  # offset_s is where the chunk's samples sit in the full output
        assert abs(c["offset_s"] * rate - position) <= 1
        position += len(_decode(c)[0])


@pytest.mark.slow
def test_non_stream_job_on_a_streaming_endpoint_yields_only_its_result():
    items = list(handler.stream_handler(_job("stream-plain", text="Just one.")))
    assert len(items) == 1 and items[0]["type"] == "result"
    assert items[0]["outputs"][0]["content_type"] == "audio/wav"


@pytest.fixture
def chunk_then_fail(monkeypatch):
    spec = registry.RunnerSpec(
        "tts", "chunk-fail", "tests.models.fixture_runners:ChunkThenFail", "piper"
    )
    monkeypatch.setattr(registry, "RUNNERS", (*registry.RUNNERS, spec))


@pytest.mark.slow
def test_error_mid_stream_is_the_last_item_as_a_contract_error(chunk_then_fail):
    items = list(handler.stream_handler(_job("stream-err", model="chunk-fail", stream=True)))
    first, last = items
    assert first["index"] == 0 and first["type"] == "chunk"
    assert last["error_code"] == "invalid_input"
    assert last["error"].startswith("invalid_input: text: the second sentence")


@pytest.mark.slow
def test_rp_serve_api_stream_endpoint_returns_the_chunks_and_the_result(tmp_path):
    port = _free_port()
    log = tmp_path / "server.log"
    server = _serve_api(_worker_env(tmp_path, MEDIA_WORKER_STREAMING="1"), port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        job = _job("api-stream", text=TEXT, stream=True)
        run = requests.post(f"{base}/run", json={"input": job["input"]}, timeout=30).json()
        stream = requests.post(f"{base}/stream/{run['id']}", timeout=300).json()
        bad = requests.post(
            f"{base}/run", json={"input": {"task": "tts", "text": "x", "speed": 9}}, timeout=30
        ).json()
        bad_stream = requests.post(f"{base}/stream/{bad['id']}", timeout=60).json()
        # issue 20: /runsync on a streaming endpoint, as the SDK's local API answers it
        bad_sync = requests.post(f"{base}/runsync", json={"input": {"task": "tts", "text": ""}},
                                 timeout=60).json()  # fmt: skip
        good_sync = requests.post(
            f"{base}/runsync", json={"input": {"task": "tts", "text": "Just one."}}, timeout=120
        ).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert stream["status"] == "COMPLETED", stream
    outputs = [item["output"] for item in stream["stream"]]
    *chunks, final = outputs
    assert len(chunks) >= 3 and [c["index"] for c in chunks] == list(range(len(chunks)))
    assert final["type"] == "result" and final["outputs"][0]["duration_s"] > 2
    (only,) = [item["output"] for item in bad_stream["stream"]]
    assert only["error_code"] == "invalid_input" and "speed" in only["error"]
    # The SDK's local API (runpod 1.12 rp_fastapi) does not apply the platform's rule
    # that a yielded error fails the job: /runsync and /stream answer COMPLETED, the
    # error envelope the output's only item. The README says so; the platform's own
    # FAILED is test_platform_streams_chunks_then_posts_the_aggregate_and_fails_a_bad_job.
    assert bad_sync["status"] == "COMPLETED", bad_sync
    (envelope,) = bad_sync["output"]
    assert envelope["error_code"] == "invalid_input" and envelope["details"][0]["field"] == "text"
    assert good_sync["status"] == "COMPLETED", good_sync
    (result,) = good_sync["output"]
    assert result["type"] == "result" and result["task"] == "tts"
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_platform_streams_chunks_then_posts_the_aggregate_and_fails_a_bad_job(tmp_path):
    jobs = [
        {"id": "s-ok", "input": {"task": "tts", "text": TEXT, "stream": True}},
        {"id": "s-bad", "input": {"task": "tts", "text": "x", "voice": "nobody"}},
    ]
    fake = FakePlatform(jobs)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    env = _platform_env(fake, tmp_path / "out")
    env["MEDIA_WORKER_STREAMING"] = "1"
    env["RUNPOD_WEBHOOK_POST_STREAM"] = f"{fake.base}/v2/job-stream/$RUNPOD_POD_ID/$ID?gpu=test"
    log_path = tmp_path / "worker.log"
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "handler.py"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                fake.done.wait(120)
            finally:
                _stop(proc)
    finally:
        fake.server.shutdown()
        fake.server.server_close()
    worker_log = log_path.read_text(errors="replace")
    assert fake.done.is_set(), worker_log

    def final(job_id: str) -> dict:
        (post,) = [
            p
            for p in fake.posts_for(job_id)
            if p["route"] == "job-done" and p["body"].get("status") != "IN_PROGRESS"
        ]
        return post

    streamed = [p for p in fake.posts_for("s-ok") if p["route"] == "job-stream"]
    done = final("s-ok")
    chunks = [p["body"]["output"] for p in streamed]
    assert [c.get("index") for c in chunks[:-1]] == list(range(len(chunks) - 1))
    assert chunks[-1]["type"] == "result"
    assert done["body"]["output"] == chunks  # return_aggregate_stream
    assert "isStream=true" in done["query"]
    failed = final("s-bad")
    assert failed["body"]["error"].startswith("invalid_input: voice: unknown Piper voice")
    assert json.dumps(failed["body"]).count("Traceback") == 0


@pytest.mark.slow
def test_test_input_on_a_streaming_endpoint_runs_the_job_as_the_platform_would(tmp_path):
    # issue 20: the SDK's test-input mode never iterated the generator: it printed
    # "<generator object ...>" and "completed successfully" for any job, bad ones too.
    def run(job_input: dict) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "handler.py", "--test_input", json.dumps({"input": job_input})],
            cwd=ROOT,
            env=_worker_env(tmp_path, MEDIA_WORKER_STREAMING="1"),
            capture_output=True,
            text=True,
            timeout=300,
        )

    bad = run({"task": "tts", "text": ""})
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "failed with error: invalid_input: text: " in bad.stdout + bad.stderr
    good = run({"task": "tts", "text": TEXT, "stream": True})
    assert good.returncode == 0, good.stdout + good.stderr
    out = good.stdout + good.stderr
    assert "generator object" not in out
    # the SDK prints the result cut to its first and last 2 KB: the first chunk's
    # head, the final result's tail; the handler logs each chunk it sent
    assert "Job result: {'output': [{'type': 'chunk', 'index': 0," in out
    assert "job=local_test chunk 2 sent" in out and "'task': 'tts'" in out


@pytest.mark.slow
def test_a_local_run_streams_a_stream_job_on_a_plain_endpoint_too(tmp_path):
    """A local run has no endpoint setting to honour: its stream job runs drained."""
    job = {"input": {"task": "tts", "text": TEXT, "stream": True}}
    done = subprocess.run(
        [sys.executable, "handler.py", "--test_input", json.dumps(job)],
        cwd=ROOT,
        env=_worker_env(tmp_path),  # MEDIA_WORKER_STREAMING unset: a plain endpoint
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    items = json.loads((tmp_path / "outputs" / "last-result.json").read_text())
    *chunks, final = items
    assert chunks and all(c["type"] == "chunk" for c in chunks)
    assert final["type"] == "result" and final["task"] == "tts"
