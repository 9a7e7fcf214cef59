"""The handler end to end: real contract, real Piper runner process, real stores.

In-process tests call ``handler.handler(job)``; subprocess tests drive the runpod
SDK itself (``python handler.py`` with test_input.json, ``--test_input``, and the
``--rp_serve_api`` server's ``/runsync``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
import soundfile

import handler
from models import contract, jobs, registry
from tests.fixtures.tiers import small_tmpfs

ROOT = Path(__file__).resolve().parents[1]
# Jobs run in runners of the module's own worker, stopped when it ends.
pytestmark = pytest.mark.usefixtures("handler_worker")


def _job(job_id: str = "t1", **fields) -> dict:
    return {"id": job_id, "input": {"task": "tts", "text": "Hello there.", **fields}}


def _local_file(output: dict) -> Path:
    url = urlparse(output["url"])
    assert url.scheme == "file"
    return Path(urllib.request.url2pathname(url.path))


# --- Errors before any work: fast --------------------------------------------------


@pytest.mark.parametrize(
    ("job", "code", "field", "fragment"),
    [
        ({"id": "e1"}, "invalid_input", "input", "must be a JSON object"),
        (_job(text=""), "invalid_input", "text", "at least 1 character"),
        (_job(speed=5), "invalid_input", "speed", "less than or equal to 4"),
        (_job(format="m4a"), "invalid_input", "format", "'wav'"),
        (_job(model="nope"), "invalid_input", "model", "unknown model 'nope'"),
        (_job(voice="../../etc/passwd"), "invalid_input", "voice", "not a valid voice name"),
        (_job(voice="amy"), "invalid_input", "voice", "unknown Piper voice 'amy'"),
        (
            _job(model="kokoro", voice="af_nobody"),
            "invalid_input",
            "voice",
            "unknown Kokoro voice 'af_nobody' (available: af_alloy, af_aoede",
        ),
        (
            {
                "id": "e2",
                "input": {
                    "task": "clone",
                    "model": "f5tts",
                    "text": "x",
                    "reference_audio": "s3://bucket/k.wav",
                    "reference_text": "y",
                },
            },
            "model_unavailable",
            "model",
            "licensed CC-BY-NC-4.0",
        ),
        (_job(output={"prefix": "../escape"}), "invalid_input", "output.prefix", ".."),
        (_job(output={"prefix": "/abs"}), "invalid_input", "output.prefix", "is absolute"),
        (
            _job(output={"prefix": "team/" + "a" * 256}),
            "invalid_input",
            "output.prefix",
            "at most 255",
        ),
        (_job(text="Hello\x00there"), "invalid_input", "text", "NUL character"),
        (
            {
                **_job(),
                "s3Config": {
                    "accessId": "a",
                    "accessSecret": "zz-secret",
                    "endpointUrl": "https://x",
                },
            },
            "invalid_input",
            "s3Config.bucketName",
            "required",
        ),
    ],
)
def test_bad_jobs_get_the_contract_error_envelope(job, code, field, fragment):
    result = handler.handler(job)
    envelope = contract.ErrorEnvelope.model_validate(result)
    assert envelope.error_code == code
    assert envelope.error.startswith(f"{code}: ")
    assert "\n" not in envelope.error and "Traceback" not in envelope.error
    assert fragment and fragment in envelope.error
    assert [d.field for d in envelope.details] == [field]
    assert envelope.error.startswith(f"{code}: {field}: ") or code == "model_unavailable"
    assert "zz-secret" not in json.dumps(result)


def test_a_failure_with_a_tools_output_is_one_line_and_the_output_is_its_cause(monkeypatch, caplog):
    from errors import BootstrapFailed

    def fail(job):
        raise BootstrapFailed(
            "profile kokoro: installing the requirements (uv pip install) failed (exit 2):\n"
            "error: Request failed after 3 retries\n  cause: Connection refused\n\n"
            "hint: set MEDIA_WORKER_EXTRA_INDEX_URLS=https://pypi.org/simple"
        )

    monkeypatch.setattr(handler.registry, "resolve", fail)
    caplog.set_level("INFO")
    result = handler.handler(_job("uv-1"))
    envelope = contract.ErrorEnvelope.model_validate(result)
    assert envelope.error == (
        "bootstrap_failed: profile kokoro: installing the requirements (uv pip install) "
        "failed (exit 2); set MEDIA_WORKER_EXTRA_INDEX_URLS=https://pypi.org/simple"
    )
    (cause,) = [d for d in result["details"] if d.get("cause")]
    assert cause["message"] == "error: Request failed after 3 retries\ncause: Connection refused"
    lines = [r.getMessage() for r in caplog.records if "job=uv-1" in r.getMessage()]
    assert all("\n" not in line for line in lines) and len(lines) == 2  # failure, cause


def test_unexpected_exception_is_internal_without_traceback(monkeypatch, caplog):
    def explode(job):
        raise RuntimeError("registry exploded at /secret/path")

    monkeypatch.setattr(handler.registry, "resolve", explode)
    result = handler.handler(_job("boom-1"))
    assert result["error_code"] == "internal"
    assert "job=boom-1" in result["error"]
    assert "exploded" not in json.dumps(result)
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "job=boom-1 internal error" in logged


# --- Real synthesis ------------------------------------------------------------------


def _synthesize(tmp_path, job_id: str, **fields) -> tuple[dict, np.ndarray, int]:
    result = handler.handler(_job(job_id, **fields))
    assert "error" not in result, result
    jobs.job_result(result)
    audio, rate = soundfile.read(_local_file(result["outputs"][0]), dtype="float32")
    return result, audio, rate


@pytest.mark.slow
def test_tts_job_publishes_real_speech_to_the_local_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_WORKER_OUTPUT_DIR", str(tmp_path / "out"))
    result, audio, rate = _synthesize(tmp_path, "speech-1")
    (output,) = result["outputs"]
    path = _local_file(output)
    assert path.is_relative_to(tmp_path / "out")
    assert output["key"] == "jobs/speech-1/speech.wav" and output["content_type"] == "audio/wav"
    assert output["bytes"] == path.stat().st_size
    assert output["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert output["duration_s"] == pytest.approx(len(audio) / rate, abs=0.01)
    assert float(np.sqrt(np.mean(audio**2))) > 0.02, "speech is not silence"
    assert result["model"] == "piper" and result["task"] == "tts"
    # only a tts job's fields: no other task's nulls (segments, media...), no words
    # without timestamps, no restore stage timings
    assert set(result) == {"task", "model", "outputs", "timings", "cold"}, result
    assert "decode_s" not in result["timings"]
    timings = result["timings"]
    assert timings["infer_s"] > 0 and timings["total_s"] >= timings["infer_s"]


@pytest.mark.slow
def test_runner_is_warm_for_the_second_job(tmp_path):
    _synthesize(tmp_path, "warm-1")
    second, _, _ = _synthesize(tmp_path, "warm-2")
    assert second["cold"] is False
    assert second["timings"]["load_s"] == 0.0 and second["timings"]["bootstrap_s"] == 0.0


@pytest.mark.slow
def test_duration_grows_with_text_and_shrinks_with_speed(tmp_path):
    short, _, _ = _synthesize(tmp_path, "len-1", text="Hello.")
    long, _, _ = _synthesize(
        tmp_path, "len-2", text="Hello. This is a much longer sentence, said at an even pace."
    )
    fast, _, _ = _synthesize(
        tmp_path,
        "len-3",
        text="Hello. This is a much longer sentence, said at an even pace.",
        speed=2.0,
    )
    d = [r["outputs"][0]["duration_s"] for r in (short, long, fast)]
    assert d[1] > 2 * d[0]
    assert d[2] < 0.75 * d[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "content_type", "sf_format"),
    [
        ("wav", "audio/wav", "WAV"),
        ("flac", "audio/flac", "FLAC"),
        ("ogg", "audio/ogg", "OGG"),
        ("mp3", "audio/mpeg", "MP3"),
    ],
)
def test_every_audio_format_decodes(tmp_path, fmt, content_type, sf_format):
    result, audio, _ = _synthesize(tmp_path, f"fmt-{fmt}", format=fmt)
    output = result["outputs"][0]
    assert output["content_type"] == content_type and output["key"].endswith(f"speech.{fmt}")
    assert soundfile.info(_local_file(output)).format == sf_format
    assert float(np.sqrt(np.mean(audio**2))) > 0.02


def _spectrum(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    return np.fft.rfftfreq(len(audio), 1 / rate), power / power.sum()


def _centroid_hz(audio: np.ndarray, rate: int) -> float:
    freqs, power = _spectrum(audio, rate)
    return float((freqs * power).sum())


def _energy_above(audio: np.ndarray, rate: int, hz: float) -> float:
    freqs, power = _spectrum(audio, rate)
    return float(power[freqs > hz].sum())


def test_spectrum_helpers_see_a_known_tone():
    rate = 16_000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    assert _centroid_hz(tone, rate) == pytest.approx(440, abs=2)
    assert _energy_above(tone, rate, 500) < 1e-6 and _energy_above(tone, rate, 400) > 0.99


@pytest.mark.slow
def test_sample_rate_resamples_the_audio_not_only_the_header(tmp_path):
    # Piper samples its durations, so two runs of one text differ by a few percent;
    # relabelling the samples with the new rate would be off by the rate ratio
    # (x0.73 or x2.18), and a sample-and-hold upsampler leaves images above the
    # source's Nyquist frequency.
    text = "Hello there, this is a sentence about resampling."
    _, native, native_rate = _synthesize(tmp_path, "sr-native", text=text)
    for target in (16_000, 48_000):
        result, audio, rate = _synthesize(tmp_path, f"sr-{target}", text=text, sample_rate=target)
        assert rate == target
        assert result["outputs"][0]["duration_s"] == pytest.approx(len(audio) / rate, abs=0.01)
        assert len(audio) / rate == pytest.approx(len(native) / native_rate, rel=0.08)
        assert _centroid_hz(audio, rate) == pytest.approx(
            _centroid_hz(native, native_rate), rel=0.12
        )
        if target > native_rate:
            assert _energy_above(audio, rate, native_rate / 2) < 1e-5


class _Sink(BaseHTTPRequestHandler):
    """Answers 200 to anything and records what reached it."""

    protocol_version = "HTTP/1.1"
    seen: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def _any(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any


@pytest.fixture
def loopback_sink():
    """A real HTTP server on 127.0.0.1 standing for an internal service."""
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("S", (_Sink,), {"seen": seen}))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _sink_job(job_id: str, endpoint: str) -> dict:
    job = _job(job_id)
    job["s3Config"] = {
        "accessId": "AKIDSINK",
        "accessSecret": "zz-secret",
        "bucketName": "b",
        "endpointUrl": endpoint,
    }
    return job


def test_request_s3_endpoint_on_loopback_is_refused_and_gets_nothing(loopback_sink, monkeypatch):
    endpoint, seen = loopback_sink
    monkeypatch.delenv("MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS", raising=False)
    result = handler.handler(_sink_job("sink-1", endpoint))
    envelope = contract.ErrorEnvelope.model_validate(result)
    assert envelope.error_code == "invalid_input"
    assert "s3Config.endpointUrl" in envelope.error and "127.0.0.1" in envelope.error
    assert any(d.field == "s3Config.endpointUrl" for d in envelope.details)
    assert "zz-secret" not in json.dumps(result)
    assert seen == []


@pytest.mark.slow
def test_full_scratch_disk_says_no_space_left_and_where(tmp_path, monkeypatch):
    # Before: "runner_crashed: ... LibsndfileError: System error." and no place named.
    text = "This sentence is long enough to need some room on the disk. " * 2  # ~250 kB WAV
    with small_tmpfs(tmp_path / "scratch", "64k") as scratch:
        monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(scratch))
        result = handler.handler(_job("full-1", text=text))
        assert result["error_code"] == "storage_failed", result
        assert result["error"].startswith("storage_failed: no space left on device: ")
        assert f"into the job's scratch directory {scratch}/mw-full-1-" in result["error"]
        assert "MEDIA_WORKER_SCRATCH_DIR" in result["error"]
        assert list(scratch.iterdir()) == [], "the job's scratch dir was not removed"
    # The runner reported a failure, it did not crash: the next job reuses it.
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(tmp_path / "roomy"))
    again, _, _ = _synthesize(tmp_path, "full-2", text=text)
    assert again["cold"] is False


@pytest.mark.slow
def test_full_scratch_disk_during_a_fetch_names_the_field_and_the_setting(tmp_path, monkeypatch):
    # issue 20: the same full disk while an input was fetched answered `internal`.
    audio = base64.b64encode(b"\0" * 200_000).decode()
    job = {
        "id": "full-in",
        "input": {"task": "transcribe", "audio": f"data:audio/wav;base64,{audio}"},
    }
    with small_tmpfs(tmp_path / "scratch", "64k") as scratch:
        monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(scratch))
        result = handler.handler(job)
        assert result["error_code"] == "storage_failed", result
        assert result["error"].startswith("storage_failed: audio: no space left on device")
        assert "MEDIA_WORKER_SCRATCH_DIR" in result["error"]
        assert result["details"][0]["field"] == "audio"
        assert list(scratch.iterdir()) == [], "the job's scratch dir was not removed"


@pytest.mark.slow
def test_jobs_whose_ids_once_shared_a_key_keep_both_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_WORKER_OUTPUT_DIR", str(tmp_path / "out"))
    first, _, _ = _synthesize(tmp_path, "a/b", text="The first job.")
    second, _, _ = _synthesize(tmp_path, "a_b", text="The second job says something else.")
    paths = [_local_file(r["outputs"][0]) for r in (first, second)]
    assert paths[0] != paths[1]
    for result, path in zip((first, second), paths, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == result["outputs"][0]["sha256"]


@pytest.mark.slow
def test_request_s3_endpoint_on_loopback_is_used_when_allowed(loopback_sink, monkeypatch):
    # The same job reaches the sink once the operator allows private endpoints: the
    # refusal above is the policy, not an unreachable address.
    endpoint, seen = loopback_sink
    monkeypatch.setenv("MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS", "1")
    handler.handler(_sink_job("sink-2", endpoint))
    assert any(line.startswith("PUT /b/") and "sink-2" in line for line in seen), seen


@pytest.mark.slow
def test_per_request_s3_config_publishes_a_presigned_url(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS", "1")  # SeaweedFS: loopback
    bucket = "handler-" + os.urandom(4).hex()
    s3_server.client().create_bucket(Bucket=bucket)
    job = _job("s3-1", output={"prefix": "tenant-a", "presign_seconds": 120})
    job["s3Config"] = {
        "accessId": s3_server.access_key,
        "accessSecret": s3_server.secret_key,
        "bucketName": bucket,
        "endpointUrl": s3_server.endpoint_url,
    }
    result = handler.handler(job)
    assert "error" not in result, result
    (output,) = result["outputs"]
    assert output["key"] == "tenant-a/jobs/s3-1/speech.wav"
    body = requests.get(output["url"], timeout=10)
    assert body.status_code == 200
    assert hashlib.sha256(body.content).hexdigest() == output["sha256"]
    stored = s3_server.client().get_object(Bucket=bucket, Key=output["key"])
    assert stored["ContentType"] == "audio/wav"
    assert s3_server.secret_key not in json.dumps(result)


# --- The runpod SDK's local modes, as subprocesses ----------------------------------


def _worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_WEBHOOK", "BUCKET_"))}
    env.update(MEDIA_WORKER_OUTPUT_DIR=str(tmp_path / "outputs"), **extra)
    return env


@pytest.mark.slow
def test_python_handler_py_runs_test_input_json_and_a_second_run_keeps_the_first(tmp_path):
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "handler.py"],
            cwd=ROOT,
            env=_worker_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Job local_test completed successfully." in proc.stdout + proc.stderr
    # Both runs are job "local_test"; each gets its own key, so neither output is lost.
    first, second = sorted((tmp_path / "outputs" / "jobs").glob("local_test-*/speech.wav"))
    assert soundfile.info(first).duration > 2.0 and soundfile.info(second).duration > 2.0


@pytest.mark.slow
def test_test_input_flag_reports_a_bad_job_and_exits_1(tmp_path):
    job = {"input": {"task": "tts", "text": "hi", "speed": 9}}
    proc = subprocess.run(
        [sys.executable, "handler.py", "--test_input", json.dumps(job)],
        cwd=ROOT,
        env=_worker_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "invalid_input: speed: Input should be less than or equal to 4" in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_a_local_run_reads_the_job_from_a_file_and_media_from_the_disk(tmp_path):
    """--test_input @job.json (no argument-length limit), a local path as the media,
    refused at once for what it is (no environment is built for it), and the whole
    result, error_code and details included, in outputs/last-result.json."""
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting notes, not a recording.\n" * 20)
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"input": {"task": "transcribe", "audio": str(notes)}}))
    env = _worker_env(tmp_path, MEDIA_WORKER_HOME=str(tmp_path / "home"))

    def run_job_file() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "handler.py", "--test_input", f"@{job_file}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = run_job_file()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"unsupported_media: audio: {notes} is text, not media" in out
    assert "building" not in out and not (tmp_path / "home" / "envs").exists()
    recorded = json.loads((tmp_path / "outputs" / "last-result.json").read_text())
    assert recorded["error_code"] == "unsupported_media"
    assert recorded["details"] == [
        {"field": "audio", "message": recorded["error"].removeprefix("unsupported_media: ")}
    ]

    job_file.write_text(json.dumps({"input": {"task": "tts", "text": "Hello there."}}))
    proc = run_job_file()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = json.loads((tmp_path / "outputs" / "last-result.json").read_text())
    assert recorded["task"] == "tts" and recorded["outputs"][0]["key"].endswith("speech.wav")


def test_a_job_file_is_read_in_place_of_the_inline_job(tmp_path):
    job = tmp_path / "job.json"
    job.write_text('{"input": {"task": "tts", "text": "Hi."}}')
    argv = ["handler.py", "--test_input", f"@{job}", "--rp_log_level", "INFO"]
    assert handler.expand_test_input(argv)[2] == job.read_text()
    assert handler.expand_test_input([f"--test_input=@{job}"]) == [
        "--test_input=" + job.read_text()
    ]
    assert handler.expand_test_input(["--test_input", '{"input": {}}']) == [
        "--test_input",
        '{"input": {}}',
    ]
    with pytest.raises(SystemExit, match="cannot read the job file"):
        handler.expand_test_input(["--test_input", f"@{tmp_path / 'missing.json'}"])


def test_a_deployed_endpoint_never_reads_a_local_path(tmp_path):
    local = tmp_path / "speech.wav"
    local.write_bytes(b"RIFF" + bytes(60))
    result = handler.handler({"id": "path-1", "input": {"task": "transcribe", "audio": str(local)}})
    assert result["error_code"] == "invalid_input"
    assert "only in a local run" in result["error"] and result["details"][0]["field"] == "audio"


def _serve_api(
    env: dict[str, str],
    port: int,
    log: Path,
    *,
    ready_timeout_s: float = 120.0,
    program: tuple[str, ...] = ("handler.py",),
) -> subprocess.Popen:
    """``python handler.py --rp_serve_api`` on loopback, its output in ``log``; returns
    once the API answers (the process is killed if it dies or never answers).
    ``program`` replaces ``handler.py`` (``-c`` and a script that ends in ``handler.main()``)."""
    with log.open("w") as sink:
        server = subprocess.Popen(
            [
                sys.executable,
                *program,
                "--rp_serve_api",
                "--rp_api_host",
                "127.0.0.1",
                "--rp_api_port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + ready_timeout_s
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/docs", timeout=2)
            return server
        except requests.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                server.wait(timeout=30)
                pytest.fail(f"the local API did not start:\n{log.read_text()}")
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_rp_serve_api_runsync_with_s3_from_env(tmp_path, s3_server):
    bucket = "api-" + os.urandom(4).hex()
    s3_server.client().create_bucket(Bucket=bucket)
    port = _free_port()
    log = tmp_path / "server.log"
    env = _worker_env(
        tmp_path,
        BUCKET_ENDPOINT_URL=s3_server.endpoint_url,
        BUCKET_ACCESS_KEY_ID=s3_server.access_key,
        BUCKET_SECRET_ACCESS_KEY=s3_server.secret_key,
        BUCKET_NAME=bucket,
    )
    server = _serve_api(env, port, log)
    try:
        base = f"http://127.0.0.1:{port}"

        ok = requests.post(
            f"{base}/runsync", json={"input": {"task": "tts", "text": "From the API."}}, timeout=120
        ).json()
        assert ok["status"] == "COMPLETED", ok
        (output,) = ok["output"]["outputs"]
        body = requests.get(output["url"], timeout=10).content
        assert hashlib.sha256(body).hexdigest() == output["sha256"]
        assert urlparse(output["url"]).path.startswith(f"/{bucket}/jobs/")

        bad = requests.post(
            f"{base}/runsync", json={"input": {"task": "tts", "text": ""}}, timeout=30
        ).json()
        assert bad["status"] == "FAILED"
        assert bad["error"].startswith("invalid_input: text: ")
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text
    assert s3_server.secret_key not in text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        # the known list is the lookup's, not empty
        ("MEDIA_WORKER_PREPARE", "piper,nope", "no profile 'nope'; known: chatterbox, f5tts, "),
        ("MEDIA_WORKER_JOB_TIMEOUT_S", "soon", "could not convert string to float"),
        ("MEDIA_WORKER_LOG_LEVEL", "VERBOSE", "expected one of DEBUG, INFO, WARNING"),
        ("BUCKET_ADDRESSING_STYLE", "bogus", "expected one of path, virtual, auto"),
        ("MEDIA_WORKER_PRESIGN_SECONDS", "10", "must be in 60..604800"),
        ("MEDIA_WORKER_DEFAULT_TTS_MODEL", "nosuch", "no tts model 'nosuch' in this worker"),
        ("BUCKET_ENDPOINT_URL", "localhost:9000", "expected a https:// or http:// URL"),
        # issue 20: each was accepted at start and failed (or switched a cap off) later
        ("MEDIA_WORKER_JOB_TIMEOUT_S", "nan", "must be a finite number of seconds"),
        ("MEDIA_WORKER_MAX_AUDIO_S", "1e400", "must be a finite number of seconds"),
        ("MEDIA_WORKER_RESTORE_CRF", "-1", "must be in 0..51"),
        ("MEDIA_WORKER_RESTORE_ENCODER", "abc", "expected one of libx264, h264_nvenc"),
        ("MEDIA_WORKER_UPSCALE_REVISION", "main", "must be a full commit hash"),
        ("MEDIA_WORKER_UPSCALE_TILE", "-1", "must be in 0..4096"),
        ("MEDIA_WORKER_SCRATCH_DIR", "/etc/passwd", "/etc/passwd is a file, not a directory"),
        ("MEDIA_WORKER_ENVS_DIR", "envs", "must be an absolute path"),
    ],
)
def test_bad_configuration_stops_the_worker_at_start_with_words(tmp_path, name, value, reason):
    proc = subprocess.run(
        [sys.executable, "handler.py", "--test_input", json.dumps(_job("cfg-1"))],
        cwd=ROOT,
        env=_worker_env(tmp_path, **{name: value}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"ERROR handler configuration: {name}={value!r} is invalid: {reason}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Started" not in proc.stdout, "the worker served a job with a bad setting"


_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ "
)


def _run_one_job(tmp_path: Path, job_id: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "handler.py", "--test_input", json.dumps(_job(job_id))],
        cwd=ROOT,
        env=_worker_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_log_level_setting_reaches_the_handler_and_every_line_has_a_level(tmp_path):
    # Before: importing runpod configured the root logger, basicConfig was ignored,
    # and the worker logged at the SDK's level and format whatever the setting said.
    quiet = _run_one_job(tmp_path, "log-w", MEDIA_WORKER_LOG_LEVEL="WARNING")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "job=log-w" not in quiet.stderr  # its INFO lines were filtered

    verbose = _run_one_job(tmp_path, "log-d", MEDIA_WORKER_LOG_LEVEL="debug")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert " DEBUG handler job=log-d fields task,text" in verbose.stderr
    assert " INFO handler job=log-d accepted task=tts model=piper" in verbose.stderr
    lines = [line for line in verbose.stderr.splitlines() if line.strip()]
    assert lines and all(_LOG_LINE.match(line) for line in lines), verbose.stderr


# --- Input media: fetched into scratch before the runner sees the job ---------------


@pytest.fixture
def clone_runner(monkeypatch):
    """Registers a stand-in clone runner, as a clone model's module will."""
    spec = registry.RunnerSpec(
        "clone", "echo-clone", "tests.models.fixture_runners:InputEchoRunner", "piper"
    )
    monkeypatch.setattr(registry, "RUNNERS", (*registry.RUNNERS, spec))
    return spec


def _clone_job(job_id: str, reference: str) -> dict:
    return {
        "id": job_id,
        "input": {
            "task": "clone",
            "model": "echo-clone",
            "text": "x",
            "reference_audio": reference,
        },
    }


@pytest.mark.slow
def test_reference_audio_from_a_data_uri_reaches_the_runner(tmp_path, clone_runner):
    wav = tmp_path / "ref.wav"
    soundfile.write(wav, np.sin(np.arange(8000) / 5).astype("float32"), 8000)
    encoded = base64.b64encode(wav.read_bytes()).decode()
    result = handler.handler(_clone_job("clone-1", f"data:audio/wav;base64,{encoded}"))
    assert "error" not in result, result
    assert _local_file(result["outputs"][0]).read_bytes() == wav.read_bytes()


@pytest.mark.parametrize(
    ("reference", "code", "fragment"),
    [
        ("data:audio/wav;base64,@@not-base64@@", "invalid_input", "reference_audio"),
        ("https://169.254.169.254/latest/meta-data/", "fetch_failed", "reference_audio"),
        ("https://127.0.0.1/voice.wav", "fetch_failed", "reference_audio"),
    ],
)
def test_bad_reference_audio_fails_before_the_runner(clone_runner, reference, code, fragment):
    result = handler.handler(_clone_job("clone-bad", reference))
    assert result["error_code"] == code, result
    assert fragment in result["error"]


@pytest.mark.slow
def test_profiles_named_in_prepare_are_ensured_in_the_background_after_start(tmp_path):
    log = tmp_path / "worker.log"
    env = _worker_env(tmp_path, MEDIA_WORKER_PREPARE="piper")
    worker = _serve_api(env, _free_port(), log)
    try:
        deadline = time.monotonic() + 60
        while "prepared profile piper in the background" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("opt_in", [False, True], ids=["capped", "opt-in"])
def test_no_storage_credential_in_the_log_at_debug(tmp_path, s3_server, opt_in):
    # issue 20: at DEBUG, botocore's request lines carried the access key id (its
    # Authorization header's Credential=); the secret itself never appeared.
    bucket = "dbg-" + os.urandom(4).hex()
    s3_server.client().create_bucket(Bucket=bucket)
    extra = {"MEDIA_WORKER_LOG_STORAGE_DEBUG": "1"} if opt_in else {}
    proc = _run_one_job(
        tmp_path,
        "dbg-1",
        MEDIA_WORKER_LOG_LEVEL="DEBUG",
        BUCKET_ENDPOINT_URL=s3_server.endpoint_url,
        BUCKET_ACCESS_KEY_ID=s3_server.access_key,
        BUCKET_SECRET_ACCESS_KEY=s3_server.secret_key,
        BUCKET_NAME=bucket,
        **extra,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/jobs/dbg-1/speech.wav" in proc.stdout  # it published to the bucket
    # The presigned URL in the printed result names the key id by design (SigV4's
    # X-Amz-Credential): it is the job's output, not a log line.
    log = re.sub(r"http://\S+/speech\.wav\?[^'\"\s]+", "<url>", proc.stdout) + proc.stderr
    assert " DEBUG handler job=dbg-1 fields" in log  # DEBUG was on
    assert s3_server.access_key not in log and s3_server.secret_key not in log
    # capped: botocore's DEBUG request lines are gone; opt-in: there, with the
    # credential redacted
    assert (" DEBUG botocore" in log) == opt_in, log[-3000:]
    if opt_in:
        assert "Credential=<redacted>" in log


def test_log_records_naming_a_credential_are_redacted():
    redact = handler._RedactCredentials(
        handler._secret_values({"BUCKET_ACCESS_KEY_ID": "AKIDEXAMPLE", "HF_TOKEN": "hf_abcdef"})
    )
    record = logging.LogRecord(
        "botocore.endpoint", logging.DEBUG, __file__, 1,
        "headers %s url %s token %s",
        ("Authorization: AWS4-HMAC-SHA256 Credential=OTHERKEY/20261204/us-east-1/s3",
         "https://b.s3/k?X-Amz-Credential=PERREQUEST%2F2026", "hf_abcdef"),
        None,
    )  # fmt: skip
    assert redact.filter(record)
    message = record.getMessage()
    assert "OTHERKEY" not in message and "PERREQUEST" not in message
    assert "hf_abcdef" not in message
    assert message.count("<redacted>") == 3
