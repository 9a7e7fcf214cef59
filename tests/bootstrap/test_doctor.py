"""The doctor asks the servers a job would need, and says in one line what is wrong.

``head`` runs against real HTTP servers on loopback (one that answers, one that
refuses credentials, one that never answers, a port nobody listens on); ``endpoints``
and ``diagnose`` are pure and get their facts by hand.
"""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bootstrap import _doctor
from bootstrap._profile import Artifact, Profile, Weights
from models import cli
from models.profiles import EN_CORE_WEB_SM, SEEDVR2_SOURCE
from runtime import machine
from runtime.machine import Machine

SECRET = "doctor-pa55"


class _Index(BaseHTTPRequestHandler):
    """/simple/ answers; /private/ wants credentials; /gone/ is 404; /post-only/ is 405."""

    def do_HEAD(self) -> None:
        if self.path.startswith("/private"):
            want = "Basic " + base64.b64encode(f"builder:{SECRET}".encode()).decode()
            self.send_response(200 if self.headers.get("Authorization") == want else 401)
        elif self.path.startswith("/gone"):
            self.send_response(404)
        elif self.path.startswith("/post-only"):
            self.send_response(405)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that accepts connections and never answers (a firewall that drops)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_head_says_whether_a_server_answers_and_why_not(index, silent, tmp_path):
    assert _doctor.head(f"{index}/simple") is None
    assert _doctor.head(f"{index}/post-only") is None  # there, HEAD not allowed
    assert _doctor.head(f"{index}/gone/") == "HTTP 404"
    assert _doctor.head(f"{index}/private/") == "HTTP 401 (credentials?)"
    assert _doctor.head(_closed_port() + "/simple") == "connection refused"
    assert _doctor.head(f"{silent}/simple", timeout=0.3) == "no answer in 0.3 s"
    assert _doctor.head((tmp_path / "simple").as_uri()) == f"{tmp_path / 'simple'} does not exist"
    (tmp_path / "simple").mkdir()
    assert _doctor.head((tmp_path / "simple").as_uri()) is None


def test_head_sends_an_index_urls_credentials_and_never_says_them(index):
    private = index.replace("http://", f"http://builder:{SECRET}@") + "/private/"
    assert _doctor.head(private) is None
    wrong = index.replace("http://", "http://builder:nope@") + "/private/"
    assert SECRET not in (_doctor.head(wrong) or "") and "nope" not in _doctor.head(wrong)


TORCHY = Profile(
    "torchy",
    ("torch==2.13.0",),
    extra_index_urls=("https://download.pytorch.org/whl/cu126",),
    artifacts=(EN_CORE_WEB_SM,),
    weights=(Weights("o/m", "a" * 40),),
)
PLAIN = Profile("plain", ("numpy==2.4.6",), weights=(Weights("o/n", "b" * 40),))


def test_endpoints_are_what_the_next_job_would_ask():
    missing = {"env": "missing", "weights": {"o/m": "missing"}}
    ready = {"env": "volume", "weights": {"o/n": "present"}}
    got = _doctor.endpoints({"torchy": TORCHY, "plain": PLAIN}, {"torchy": missing, "plain": ready})
    assert [(e.kind, e.url, e.profiles, e.setting) for e in got] == [
        ("index", _doctor.PYPI, ("torchy",), "MEDIA_WORKER_INDEX_URL"),
        (
            "index",
            "https://download.pytorch.org/whl/cu126",
            ("torchy",),
            "MEDIA_WORKER_EXTRA_INDEX_URLS",
        ),
        ("artifact", "https://github.com", ("torchy",), "MEDIA_WORKER_ARTIFACT_OVERRIDES"),
        ("hub", "https://huggingface.co", ("torchy",), "HF_ENDPOINT"),
    ]
    # Built (or served in place) with weights present: nothing to ask anyone.
    assert _doctor.endpoints({"plain": PLAIN}, {"plain": ready}) == []
    in_place = {"env": "in-place", "weights": {"o/n": "partial"}}
    (hub,) = _doctor.endpoints({"plain": PLAIN}, {"plain": in_place}, hub="http://mirror")
    assert (hub.kind, hub.url) == ("hub", "http://mirror")
    # A mirror of an artifact is asked instead of GitHub; a local file is not asked.
    mirrored = Profile(
        "m",
        ("numpy==2.4.6",),
        artifacts=(
            Artifact(SEEDVR2_SOURCE.url, SEEDVR2_SOURCE.sha256, "source", "seedvr2",
                     fetch_from="http://mirror.lan:8080/x.tar.gz", digest="tree"),
            Artifact(EN_CORE_WEB_SM.url, EN_CORE_WEB_SM.sha256, fetch_from="file:///w/x.whl"),
        ),
        index_url="https://pypi.lan/simple",
    )  # fmt: skip
    assert [e.url for e in _doctor.endpoints({"m": mirrored}, {"m": {"env": "damaged"}})] == [
        "https://pypi.lan/simple",
        "http://mirror.lan:8080",
    ]


def _facts(tmp_path: Path, **changes) -> _doctor.Facts:
    facts = _doctor.Facts(
        home=tmp_path,
        envs=tmp_path,
        on_volume=True,
        home_writable=True,
        home_free=10**12,
        envs_free=10**12,
        python="3.11.7",
        platform="linux",
        uv="/usr/bin/uv",
        machine=Machine(),
    )
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def test_an_unreachable_server_is_a_problem_with_its_fix_and_the_summary_names_it(tmp_path):
    cu = _doctor.Endpoint(
        "index",
        f"https://builder:{SECRET}@download.pytorch.org/whl/cu126",
        ("chatterbox", "kokoro"),
        "MEDIA_WORKER_EXTRA_INDEX_URLS",
    )
    hub = _doctor.Endpoint("hub", "https://huggingface.co", ("kokoro",), "HF_ENDPOINT")
    github = _doctor.Endpoint(
        "artifact", "https://github.com", ("kokoro",), "MEDIA_WORKER_ARTIFACT_OVERRIDES"
    )
    pypi = _doctor.Endpoint("index", _doctor.PYPI, ("kokoro",), "MEDIA_WORKER_INDEX_URL")
    facts = _facts(
        tmp_path,
        reach=[
            _doctor.Reach(pypi, None),
            _doctor.Reach(cu, "the name does not resolve"),
            _doctor.Reach(hub, "no answer in 3 s"),
            _doctor.Reach(github, "connection refused"),
        ],
    )
    findings = _doctor.diagnose(facts, cli="python -m models --volume /v")
    text = _doctor.render(findings)
    assert f"ok   package index {_doctor.PYPI} answers (needed by profile kokoro)" in text
    assert (
        "FAIL package index https://download.pytorch.org/whl/cu126 does not answer from here "
        "(the name does not resolve): profiles chatterbox, kokoro cannot build an environment\n"
        "     fix: let this machine reach download.pytorch.org, or set "
        "MEDIA_WORKER_EXTRA_INDEX_URLS to an index it can reach, or run "
        "python -m models --volume /v prepare chatterbox kokoro where it is reachable"
    ) in text
    assert (
        "FAIL the hub https://huggingface.co does not answer from here (no answer in 3 s)" in text
    )
    assert "set HF_ENDPOINT to a mirror it can reach" in text
    assert "FAIL GitHub https://github.com does not answer from here (connection refused)" in text
    assert "MEDIA_WORKER_ARTIFACT_OVERRIDES" in text
    assert SECRET not in text
    assert text.splitlines()[-1] == (
        "doctor: 3 problems: package index download.pytorch.org unreachable; "
        "hub huggingface.co unreachable; GitHub github.com unreachable (1 warning)"
    )


def test_per_profile_warnings_are_one_line_each(tmp_path):
    """A fresh volume: one line for every profile without an environment, one for every
    profile without its weights, not one per profile each."""
    names = [f"whisper_{n}" for n in ("base", "small", "tiny")] + ["f5tts"]
    profiles = {n: {"env": "missing", "weights": {f"o/{n}": "missing"}} for n in names}
    profiles["f5tts"]["weights"]["charactr/vocos"] = "partial"
    profiles["piper"] = {"env": "local", "weights": {}}
    profiles["kokoro"] = {"env": "local", "weights": {}}
    findings = _doctor.diagnose(_facts(tmp_path, profiles=profiles), cli="mw")
    warns = [f for f in findings if f.level == "warn"]
    assert [(f.message, f.fix) for f in warns] == [
        (
            "no NVIDIA GPU visible (no NVML, nvidia-smi or /proc/driver/nvidia): runners use "
            "the CPU, and per-machine profiles are built for the CPU",
            "",
        ),
        (
            "no environment yet for profiles f5tts, whisper_base, whisper_small, whisper_tiny "
            "(the first job of each builds it)",
            "mw prepare f5tts whisper_base whisper_small whisper_tiny",
        ),
        (
            "weights missing for profiles f5tts, whisper_base, whisper_small, whisper_tiny "
            "(the first job of each downloads them)",
            "mw prepare f5tts whisper_base whisper_small whisper_tiny",
        ),
        (
            "weights partial for profile f5tts: charactr/vocos (the first job of each "
            "downloads them)",
            "mw prepare f5tts",
        ),
    ]
    assert "ok   profiles kokoro, piper: environment local" in _doctor.render(findings)
    assert _doctor.render(findings).endswith("\ndoctor: no problems (4 warnings)")


def test_the_summary_counts_problems_in_one_line():
    ok = _doctor.Finding("ok", "fine")
    assert _doctor.summary([ok]) == "doctor: no problems"
    uv = _doctor.Finding("fail", "uv not found: environments cannot be built", "pip install uv")
    root = _doctor.Finding("fail", "state root /v is not writable", "", "state root not writable")
    warn = _doctor.Finding("warn", "w")
    assert _doctor.summary([ok, uv, warn]) == (
        "doctor: 1 problem: uv not found: environments cannot be built (1 warning)"
    )
    assert _doctor.summary([root, uv]) == (
        "doctor: 2 problems: state root not writable; uv not found: environments cannot be built"
    )


def test_the_doctor_asks_the_servers_this_machine_would_and_exits_1(
    index, tmp_path, monkeypatch, capsys
):
    """End to end, through the real probe: the main index and the hub answer (loopback),
    the extra index does not; the artifacts come from a mirror on loopback too."""
    unreachable = _closed_port() + "/whl/cpu"
    for name, value in {
        "MEDIA_WORKER_INDEX_URL": f"{index}/simple",
        "MEDIA_WORKER_EXTRA_INDEX_URLS": unreachable,
        "HF_ENDPOINT": f"{index}/hub",
        "MEDIA_WORKER_ARTIFACT_OVERRIDES": ",".join(
            f"{a.filename}={index}/mirror/{a.filename}#sha256={a.sha256}"
            for a in (EN_CORE_WEB_SM, SEEDVR2_SOURCE)
        ),
        "CUDA_VISIBLE_DEVICES": "",  # the same CPU profiles on any test machine
    }.items():
        monkeypatch.setenv(name, value)
    machine.probe.cache_clear()
    try:
        rc = cli.main(["--volume", str(tmp_path / "vol"), "doctor"])
    finally:
        machine.probe.cache_clear()
    out = capsys.readouterr().out
    assert rc == 1, out
    assert f"ok   package index {index}/simple answers (needed by profiles chatterbox" in out
    assert f"ok   the hub {index}/hub answers" in out
    assert f"ok   artifact host {index} answers (needed by profiles kokoro, seedvr2)" in out
    assert f"FAIL package index {unreachable} does not answer from here (connection refused)" in out
    assert "github.com" not in out and "huggingface.co" not in out
    assert out.splitlines()[-1].startswith("doctor: 1 problem: package index 127.0.0.1 unreachable")
