"""Slow tier: weights through the real huggingface_hub client and the local hub."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import config
from bootstrap import Weights, _ensure, _weights
from errors import BootstrapFailed
from models.profiles import PIPER
from tests.fixtures.hub import tiny_safetensors

pytestmark = pytest.mark.slow


def _paths(root: Path) -> config.Paths:
    return config.Paths(home=root / "vol", envs=root / "envs", outputs=root / "o", on_volume=True)


@pytest.fixture
def repo(hf_hub):
    files = {
        "config.json": b'{"hidden_size": 4}',
        "model.safetensors": tiny_safetensors(),
        "README.md": b"# tiny\n",
    }
    commit = hf_hub.add_repo("tests/tiny-model", files)
    return Weights("tests/tiny-model", commit, ("*.json", "*.safetensors")), files


def test_weights_download_verify_and_go_offline(repo, hf_hub, tmp_path, monkeypatch, caplog):
    weights, files = repo
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    profile = dataclasses.replace(PIPER, weights=(weights,))
    caplog.set_level(logging.DEBUG)
    env = _ensure.ensure(profile, paths=_paths(tmp_path), cached_models=tmp_path / "none")
    snap = env.weights["tests/tiny-model"]
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert (snap / "config.json").exists() and not (snap / "README.md").exists()
    assert "hf_secret_token_value" not in caplog.text
    hf_hub.requests.clear()
    again = _ensure.ensure(profile, paths=_paths(tmp_path), cached_models=tmp_path / "none")
    assert again.weights == env.weights
    assert hf_hub.requests == []  # the warm path checks sizes against the record, offline


def test_wrong_size_weights_file_is_detected_and_repaired(repo, hf_hub, tmp_path):
    weights, files = repo
    profile = dataclasses.replace(PIPER, weights=(weights,))
    paths = _paths(tmp_path)
    snap = _ensure.ensure(profile, paths=paths, cached_models=tmp_path / "none").weights[
        weights.repo_id
    ]
    blob = (snap / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-3])
    assert (
        _weights.weights_state(weights, hf_home=paths.home / "hf", cached_models=tmp_path)
        == "partial"
    )
    from models.cli import main

    paths.envs.mkdir(parents=True, exist_ok=True)
    verify = ["--volume", str(paths.home), "--cached-models", str(tmp_path / "none"), "verify"]
    assert main(verify) == 1  # every downloaded snapshot is checked, whoever uses it
    env = _ensure.ensure(profile, paths=paths, cached_models=tmp_path / "none")
    fixed = env.weights[weights.repo_id] / "model.safetensors"
    assert fixed.read_bytes() == files["model.safetensors"]


def test_runpod_cached_models_are_used_without_download(repo, hf_hub, tmp_path):
    weights, files = repo
    cached = tmp_path / "huggingface-cache" / "hub"
    snap = _weights.snapshot_dir(cached, weights)
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snap / name).write_bytes(files[name])
    profile = dataclasses.replace(PIPER, weights=(weights,))
    env = _ensure.ensure(profile, paths=_paths(tmp_path), cached_models=cached)
    assert env.weights[weights.repo_id] == snap
    assert hf_hub.requests == []


def test_weights_baked_into_the_image_are_found_first_with_a_volume(
    repo, hf_hub, tmp_path, monkeypatch
):
    # As the Dockerfile's BAKE_PROFILES step does: prepare into a throw-away home,
    # then move its HF cache to the image's weights dir.
    weights, files = repo
    profile = dataclasses.replace(PIPER, weights=(weights,))
    bake = _paths(tmp_path / "bake")
    _ensure.ensure(profile, paths=bake, cached_models=tmp_path / "none")
    image_hf = tmp_path / "opt" / "media-worker" / "hf"
    image_hf.parent.mkdir(parents=True)
    shutil.move(bake.home / "hf", image_hf)
    shutil.rmtree(tmp_path / "bake")

    # A worker of that image with a volume mounted, and no way to reach the hub.
    monkeypatch.setenv("MEDIA_WORKER_IMAGE_WEIGHTS_DIR", str(image_hf))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    hf_hub.requests.clear()
    volume = _paths(tmp_path / "worker")
    env = _ensure.ensure(profile, paths=volume, cached_models=tmp_path / "none")
    snap = env.weights[weights.repo_id]
    assert snap.is_relative_to(image_hf)
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert hf_hub.requests == []
    assert not (volume.home / "hf" / "hub").exists(), "weights were downloaded to the volume"


def test_damaged_baked_weights_fall_back_to_the_volume(repo, hf_hub, tmp_path, monkeypatch):
    weights, files = repo
    profile = dataclasses.replace(PIPER, weights=(weights,))
    bake = _paths(tmp_path / "bake")
    baked = _ensure.ensure(profile, paths=bake, cached_models=tmp_path / "none")
    blob = (baked.weights[weights.repo_id] / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-3])  # the image's copy is read only: not repaired
    monkeypatch.setenv("MEDIA_WORKER_IMAGE_WEIGHTS_DIR", str(bake.home / "hf"))
    volume = _paths(tmp_path / "worker")
    env = _ensure.ensure(profile, paths=volume, cached_models=tmp_path / "none")
    snap = env.weights[weights.repo_id]
    assert snap.is_relative_to(volume.home / "hf")
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_unknown_revision_is_a_bootstrap_error(hf_hub, tmp_path):
    from errors import BootstrapFailed

    profile = dataclasses.replace(PIPER, weights=(Weights("tests/missing", "b" * 40),))
    with pytest.raises(BootstrapFailed, match="tests/missing@bbbbbbbb"):
        _ensure.ensure(profile, paths=_paths(tmp_path), cached_models=tmp_path / "none")


def test_a_stale_shared_incomplete_file_never_reaches_the_blob(repo, hf_hub, tmp_path):
    """What the huggingface_hub floor (>=1.18) carries: each download goes to its own
    temp file. Up to 1.17 the client resumed from the shared ``<etag>.incomplete``, so
    bytes another worker left there (or is still writing, where locks are not honoured)
    became part of the blob."""
    weights, files = repo
    data = files["model.safetensors"]
    paths = _paths(tmp_path)
    blobs = paths.home / "hf" / "hub" / "models--tests--tiny-model" / "blobs"
    blobs.mkdir(parents=True)
    etag = hashlib.sha256(data).hexdigest()
    (blobs / f"{etag}.incomplete").write_bytes(b"\xff" * (len(data) // 2))
    profile = dataclasses.replace(PIPER, weights=(weights,))
    env = _ensure.ensure(profile, paths=paths, cached_models=tmp_path / "none")
    assert (env.weights[weights.repo_id] / "model.safetensors").read_bytes() == data


# --- a hub that cannot serve: bootstrap_failed naming the repo and the endpoint -------


@contextlib.contextmanager
def _answering(status: int) -> Iterator[str]:
    """A hub endpoint on loopback that answers every request with ``status``."""

    class Refusing(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = b'{"error": "refused by the test hub"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_hub_fails_the_job_as_bootstrap_failed_naming_repo_and_endpoint(
    tmp_path, monkeypatch, caplog
):
    """What every user without hub access got as ``internal``: the client's transport
    error (ConnectError) is neither an HfHubHTTPError nor an OSError. Through the
    handler, with Piper served in place and a weights pin added to its profile."""
    import handler
    from models import profiles

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("MEDIA_WORKER_CACHED_MODELS_DIR", str(tmp_path / "none"))
    pin = Weights("tests/unreachable-model", "c" * 40, ("*.safetensors",))
    monkeypatch.setitem(profiles.PROFILES, "piper", dataclasses.replace(PIPER, weights=(pin,)))
    with handler.Worker().installed():  # whose environments know nothing ready yet
        result = handler.handler(
            {"id": "hub-down", "input": {"task": "tts", "model": "piper", "text": "Hi."}}
        )
    assert result["error_code"] == "bootstrap_failed", result
    assert "tests/unreachable-model@cccccccc" in result["error"]
    assert f"the hub at {endpoint} could not be reached" in result["error"]
    assert "ConnectError" in result["error"]
    # At once, not after the hub client's five retries (bench/hub_unreachable.py times
    # both); what to do, in one line.
    assert "Retrying" not in caplog.text
    assert "\n" not in result["error"] and "python -m models prepare piper" in result["error"]
    hf = Path(os.environ["MEDIA_WORKER_HOME"]) / "hf"
    assert not [p for p in hf.rglob("*") if p.is_file()]  # nothing was kept


def test_a_hub_that_does_not_answer_fails_within_the_setting(tmp_path, monkeypatch):
    """A hub that accepts the connection and says nothing (a black-holed proxy): the
    download gives up after MEDIA_WORKER_HUB_TIMEOUT_S, on its one connection (the
    hub client would have retried five times; bench/hub_unreachable.py times both)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections wait in the backlog, never answered
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("MEDIA_WORKER_HUB_TIMEOUT_S", "1")
        pin = Weights("tests/silent-model", "d" * 40, ("*.safetensors",))
        with pytest.raises(BootstrapFailed) as failed:
            _weights.ensure_weights(
                [pin],
                hf_home=tmp_path / "hf",
                cached_models=tmp_path / "none",
                on_progress=lambda _m: None,
                profile="kokoro",
            )
        silent.setblocking(False)
        connections = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                silent.accept()[0].close()
                connections += 1
    assert connections == 1
    assert "could not be reached (ReadTimeout" in failed.value.message
    assert "python -m models prepare kokoro" in failed.value.message


@pytest.mark.parametrize(
    ("status", "token", "hint"),
    [
        (401, "", "for a gated or private repo set HF_TOKEN"),
        (401, "hf_not_the_right_token", "the token in HF_TOKEN lacks access"),
        (404, "", "check the repo id and revision"),
    ],
)
def test_a_hub_answering_401_or_404_is_bootstrap_failed_naming_repo_and_endpoint(
    status, token, hint, tmp_path, monkeypatch
):
    from errors import BootstrapFailed

    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    pin = Weights("tests/gated-model", "d" * 40, ("*.safetensors",))
    with _answering(status) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        with pytest.raises(BootstrapFailed) as failed:
            _weights.ensure_weights(
                [pin],
                hf_home=tmp_path / "hf",
                cached_models=tmp_path / "none",
                on_progress=lambda _m: None,
            )
    message = str(failed.value)
    assert f"weights tests/gated-model@dddddddd: the hub at {endpoint} answered {status}" in message
    assert f"hint: {hint}" in message
    assert not token or token not in message


def test_a_download_cut_short_keeps_only_whole_files_and_the_next_one_resumes(
    hf_hub, tmp_path, monkeypatch
):
    """The hub serves the listing and one file, then refuses the other: the whole file
    stays (the next attempt skips it), no temp file or record is left, and a later
    download against a working hub fetches only what is missing."""
    from errors import BootstrapFailed
    from tests.fixtures.hub import _handler

    big = tiny_safetensors([float(i) for i in range(4096)])
    files = {"a.safetensors": tiny_safetensors(), "b.safetensors": big}
    commit = hf_hub.add_repo("tests/cut-short", files)
    pin = Weights("tests/cut-short", commit, ("*.safetensors",))

    class CutShort(_handler(hf_hub)):
        def _serve(self, *, body: bool) -> None:
            if body and self.path.endswith("/b.safetensors"):
                return self._json({"error": "gone"}, status=403)
            return super()._serve(body=body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hf_home = tmp_path / "hf"
    args = {"hf_home": hf_home, "cached_models": tmp_path / "none", "on_progress": print}
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(BootstrapFailed, match="answered 403"):
            _weights.ensure_weights([pin], **args)
    finally:
        server.shutdown()
        server.server_close()
    # Besides the client's bookkeeping (empty .lock files, CACHEDIR.TAG, the cached
    # tree listing), the cache holds the whole first file and no temp file.
    assert not list(hf_home.rglob("*.incomplete"))
    blobs = {p.name: p.read_bytes() for p in hf_home.rglob("blobs/*")}
    assert blobs == {hashlib.sha256(files["a.safetensors"]).hexdigest(): files["a.safetensors"]}
    assert not _weights.record_path(hf_home, pin).exists()
    assert _weights.weights_state(pin, hf_home=hf_home, cached_models=tmp_path / "none") == (
        "partial"
    )

    monkeypatch.setenv("HF_ENDPOINT", hf_hub.endpoint)
    hf_hub.requests.clear()
    snap = _weights.ensure_weights([pin], **args)[pin.repo_id]
    assert {(snap / n).read_bytes() for n in files} == set(files.values())
    fetched = [path for method, path in hf_hub.requests if method == "GET" and "/resolve/" in path]
    assert [p.rsplit("/", 1)[1] for p in fetched] == ["b.safetensors"], hf_hub.requests


def test_weights_pinned_by_sha256_follow_main_once_and_record_the_commit(hf_hub, tmp_path):
    """No commit pinned: main's files are accepted only with the pinned digests, the
    commit fetched is recorded, and the next worker uses it without the network."""
    files = {"a.safetensors": tiny_safetensors([1.0]), "b.safetensors": tiny_safetensors([2.0])}
    first = hf_hub.add_repo("tests/by-content", files)
    pins = tuple((name, hashlib.sha256(data).hexdigest()) for name, data in files.items())
    weights = Weights("tests/by-content", None, sha256=pins)
    assert set(weights.patterns) == set(files)
    home = tmp_path / "hf"
    state = _weights.weights_state(weights, hf_home=home, cached_models=tmp_path / "none")
    assert state == "missing"
    got = _weights.ensure_weights(
        [weights], hf_home=home, cached_models=tmp_path / "none", on_progress=print
    )
    snap = got[weights.repo_id]
    assert snap.name == first and (snap / "b.safetensors").read_bytes() == files["b.safetensors"]
    assert _weights.resolved(weights, home) == dataclasses.replace(weights, revision=first)
    state = _weights.weights_state(weights, hf_home=home, cached_models=tmp_path / "none")
    assert state == "present"

    hf_hub.add_repo("tests/by-content", {**files, "a.safetensors": tiny_safetensors([9.0])})
    hf_hub.requests.clear()
    again = _weights.ensure_weights(
        [weights], hf_home=home, cached_models=tmp_path / "none", on_progress=print
    )
    assert again == got and hf_hub.requests == []  # the recorded commit, offline

    # a fresh volume sees main's new commit, whose a.safetensors is not the pinned one
    fresh = tmp_path / "fresh"
    with pytest.raises(BootstrapFailed) as refused:
        _weights.ensure_weights(
            [weights], hf_home=fresh, cached_models=tmp_path / "none", on_progress=print
        )
    changed = hashlib.sha256(tiny_safetensors([9.0])).hexdigest()
    assert f"a.safetensors: sha256 {changed}, pinned {pins[0][1]}" in refused.value.message
    assert "b.safetensors" not in refused.value.message
    assert not [p for p in fresh.rglob("*") if p.is_file()]  # refused before any download


# The files of Systran's faster-whisper conversions on the hub: tiny to large-v2 came
# from CTranslate2 < 3.16 (vocabulary.txt, no preprocessor_config.json); large-v3 was
# converted with --copy_files tokenizer.json preprocessor_config.json (vocabulary.json).
_SYSTRAN_FILES = ("config.json", "model.bin", "tokenizer.json", "README.md", ".gitattributes")
_SYSTRAN_LAYOUTS = {
    model: (*_SYSTRAN_FILES, "vocabulary.txt")
    for model in ("tiny", "base", "small", "medium", "large-v2")
} | {"large-v3": (*_SYSTRAN_FILES, "vocabulary.json", "preprocessor_config.json")}


@pytest.mark.parametrize("model", sorted(_SYSTRAN_LAYOUTS))
def test_whisper_models_in_runpod_cached_models_are_served_with_zero_hub_requests(
    model, hf_hub, tmp_path
):
    """A RunPod cached model laid out as its Systran repository is used as it is,
    whether or not the conversion has the optional preprocessor_config.json."""
    from models.profiles import whisper_profile
    from runtime.machine import Machine

    (weights,) = whisper_profile(model, Machine()).weights
    cached = tmp_path / "huggingface-cache" / "hub"
    snap = _weights.snapshot_dir(cached, weights)
    snap.mkdir(parents=True)
    for name in _SYSTRAN_LAYOUTS[model]:
        (snap / name).write_bytes(b"{}")
    got = _weights.ensure_weights(
        [weights], hf_home=tmp_path / "hf", cached_models=cached, on_progress=print
    )
    assert got == {weights.repo_id: snap}
    assert hf_hub.requests == []
    assert _weights.weights_state(weights, hf_home=tmp_path / "hf", cached_models=cached) == (
        "present"
    )


def test_a_cached_model_without_a_required_file_is_not_used(hf_hub, tmp_path):
    """tokenizer.json is required (without it faster-whisper fetches a tokenizer from
    the hub at load time): a cached copy that lacks it is passed over for the hub."""
    files = {"config.json": b"{}", "model.bin": b"\0" * 8, "tokenizer.json": b"{}"}
    commit = hf_hub.add_repo("tests/whisper-like", files)
    weights = Weights(
        "tests/whisper-like",
        commit,
        patterns=("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"),
        required=("model.bin", "config.json", "tokenizer.json"),
    )
    cached = tmp_path / "huggingface-cache" / "hub"
    snap = _weights.snapshot_dir(cached, weights)
    snap.mkdir(parents=True)
    for name in ("config.json", "model.bin", "preprocessor_config.json"):
        (snap / name).write_bytes(files.get(name, b"{}"))
    hf_home = tmp_path / "hf"
    got = _weights.ensure_weights(
        [weights], hf_home=hf_home, cached_models=cached, on_progress=print
    )
    assert got[weights.repo_id].is_relative_to(hf_home)
    assert (got[weights.repo_id] / "tokenizer.json").read_bytes() == b"{}"
    assert any("/resolve/" in path for _, path in hf_hub.requests)


def test_required_files_must_be_among_the_patterns():
    with pytest.raises(ValueError, match="required must be a tuple of some of its patterns"):
        Weights("o/n", "a" * 40, patterns=("*.json",), required=("model.bin",))
    assert Weights("o/n", "a" * 40, patterns=("*.json", "*.bin")).required == ("*.json", "*.bin")
