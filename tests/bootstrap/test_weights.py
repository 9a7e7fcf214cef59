"""Slow tier: weights through the real huggingface_hub client and the local hub."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
from pathlib import Path

import pytest

import config
from bootstrap import Weights, _ensure, _weights
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
    from bootstrap.__main__ import main

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
