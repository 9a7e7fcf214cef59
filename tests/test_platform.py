"""The worker in the runpod SDK's platform mode, against a fake of the platform.

``python handler.py`` runs as a subprocess with the RunPod webhook environment
pointing at a small job server on 127.0.0.1. Nothing inside the worker is mocked:
the SDK's real worker loop takes jobs (``RUNPOD_WEBHOOK_GET_JOB``), sends progress
(``runpod.serverless.progress_update`` POSTs ``status: IN_PROGRESS`` to
``RUNPOD_WEBHOOK_POST_OUTPUT``), posts final results there and pings
``RUNPOD_WEBHOOK_PING``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER_ID = "plat-worker"
API_KEY = "plat-test-key"
JOBS = [
    {
        "id": "plat-ok",
        "input": {"task": "tts", "text": "Hello from the platform. A second sentence follows."},
    },
    {"id": "plat-bad", "input": {"task": "tts", "text": ""}},
]
DEADLINE_S = 45.0
# Final results (and progress) go to job-done; a streaming endpoint's items to job-stream.
_ROUTES = ("job-done", "job-stream")


class FakePlatform:
    """Hands out ``jobs`` in turn, then 204; records every POST and ping."""

    def __init__(self, jobs: list[dict]) -> None:
        self._jobs = list(jobs)
        self._lock = threading.Lock()
        self.posts: list[dict] = []  # {"job_id", "path", "body"} in arrival order
        self.pings: list[dict] = []  # {"path", "authorization"}
        self.done = threading.Event()
        self._expected = {job["id"] for job in jobs}
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet
                pass

            def _reply(self, status: int, body: bytes = b"", ctype: str = "") -> None:
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self):
                path = urlparse(self.path).path
                if path.startswith("/v2/job-take/"):
                    job = platform._take()
                    if job is None:
                        time.sleep(0.2)  # a short long-poll: the SDK retries at once
                        return self._reply(204)
                    return self._reply(200, json.dumps(job).encode(), "application/json")
                if path.startswith("/v2/job-stop/"):
                    time.sleep(0.2)
                    return self._reply(204)
                if path.startswith("/v2/ping/"):
                    with platform._lock:
                        platform.pings.append(
                            {"path": path, "authorization": self.headers.get("Authorization")}
                        )
                    return self._reply(200)
                return self._reply(404)

            def do_POST(self):
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = url.path.split("/")  # "", "v2", "job-done"|"job-stream", worker, job
                if parts[:2] != ["", "v2"] or parts[2] not in _ROUTES or len(parts) != 5:
                    return self._reply(404)
                platform._record(
                    {
                        "route": parts[2],
                        "worker": parts[3],
                        "job_id": parts[4],
                        "query": url.query,
                        "body": json.loads(body),
                    }
                )
                return self._reply(200)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _take(self) -> dict | None:
        with self._lock:
            return self._jobs.pop(0) if self._jobs else None

    def _record(self, post: dict) -> None:
        with self._lock:
            self.posts.append(post)
            finished = {
                p["job_id"]
                for p in self.posts
                if p["route"] == "job-done" and p["body"].get("status") != "IN_PROGRESS"
            }
            if self._expected <= finished:
                self.done.set()

    def posts_for(self, job_id: str) -> list[dict]:
        with self._lock:
            return [p for p in self.posts if p["job_id"] == job_id]


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    fake = FakePlatform(JOBS)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def _worker_env(platform: FakePlatform, out_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    query = "?gpu=test"
    posts = f"{platform.base}/v2/job-done/$RUNPOD_POD_ID/$ID{query}"
    env.update(
        {
            "MEDIA_WORKER_OUTPUT_DIR": str(out_dir),
            "RUNPOD_WEBHOOK_GET_JOB": f"{platform.base}/v2/job-take/$ID{query}",
            "RUNPOD_WEBHOOK_POST_OUTPUT": posts,
            "RUNPOD_WEBHOOK_PING": f"{platform.base}/v2/ping/$RUNPOD_POD_ID{query}",
            "RUNPOD_PING_INTERVAL": "1000",
            "RUNPOD_AI_API_KEY": API_KEY,
            "RUNPOD_POD_ID": WORKER_ID,
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _local_file(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(urllib.request.url2pathname(parsed.path))


@pytest.mark.slow
def test_platform_mode_takes_jobs_reports_progress_and_posts_results(platform, tmp_path):
    out_dir = tmp_path / "out"
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "handler.py"],
            cwd=ROOT,
            env=_worker_env(platform, out_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not platform.done.wait(0.2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
        finally:
            _stop(proc)
    worker_log = log_path.read_text(errors="replace")
    assert platform.done.is_set(), (
        f"no final result for every job within {DEADLINE_S}s (worker exit={proc.returncode});"
        f" posts={[(p['job_id'], p['body'].get('status')) for p in platform.posts]}\n"
        f"--- worker log ---\n{worker_log}"
    )

    # Platform mode for real: no local test run, pings with the worker's key.
    assert "local test" not in worker_log.lower(), worker_log
    assert platform.pings, f"no heartbeat ping\n{worker_log}"
    assert platform.pings[0]["authorization"] == API_KEY
    assert all(p["worker"] == WORKER_ID for p in platform.posts)
    assert all("isStream=false" in p["query"] for p in platform.posts)

    # plat-ok: progress before the final result, then the contract's result.
    ok_posts = platform.posts_for("plat-ok")
    finals = [i for i, p in enumerate(ok_posts) if p["body"].get("status") != "IN_PROGRESS"]
    assert len(finals) == 1, ok_posts
    progress = [
        p["body"] for p in ok_posts[: finals[0]] if p["body"].get("status") == "IN_PROGRESS"
    ]
    messages = [b["output"].get("message", "") for b in progress]
    assert any("synthesized part 1/" in m for m in messages), (
        f"no 'synthesized part 1/' progress before the final result: {messages}\n{worker_log}"
    )
    final = ok_posts[finals[0]]["body"]
    assert "error" not in final, final
    result = final["output"]
    assert result["task"] == "tts" and result["model"] == "piper"
    assert result["cold"] is True
    (output,) = result["outputs"]
    assert output["url"].startswith("file://")
    path = _local_file(output["url"])
    assert path.is_file() and path.is_relative_to(out_dir)
    assert output["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    # plat-bad: the SDK moves "error" out of the output and keeps the rest there.
    bad_posts = platform.posts_for("plat-bad")
    (bad,) = [p["body"] for p in bad_posts if p["body"].get("status") != "IN_PROGRESS"]
    assert bad["error"].startswith("invalid_input: text: "), bad
    assert bad["output"]["error_code"] == "invalid_input"
    assert any(d.get("field") == "text" for d in bad["output"]["details"]), bad
    assert "error" not in bad["output"]

    assert "Traceback" not in worker_log, worker_log
