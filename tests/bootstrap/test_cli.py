"""``python -m bootstrap`` through itself (a subprocess) on a real, damaged volume.

The weights come from the local hub at the f5tts profile's pinned revision of
``charactr/vocos-mel-24khz`` (tiny stand-in files: the cache layer never parses them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap import _weights
from bootstrap._ensure import Layout
from bootstrap._spec import current_target, spec_hash
from models.profiles import PROFILES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VOCOS = next(w for w in PROFILES["f5tts"].weights if w.repo_id == "charactr/vocos-mel-24khz")
FILES = {"config.yaml": b"sample_rate: 24000\n", "pytorch_model.bin": os.urandom(4096)}


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        MEDIA_WORKER_ENVS_DIR=str(tmp_path / "envs"),
        MEDIA_WORKER_CACHED_MODELS_DIR=str(tmp_path / "none"),
    )
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def vocos(hf_hub, tmp_path):
    """VOCOS downloaded onto the volume by the worker's own downloader."""
    hf_hub.repos[VOCOS.repo_id] = {VOCOS.revision: dict(FILES)}
    vol = tmp_path / "vol"

    def download() -> Path:
        got = _weights.ensure_weights(
            [VOCOS], hf_home=vol / "hf", cached_models=tmp_path / "none", on_progress=print
        )
        return got[VOCOS.repo_id]

    return vol, download


def test_verify_rehashes_weights_and_names_a_same_size_corruption(vocos, tmp_path):
    vol, download = vocos
    snap = download()
    assert _cli(tmp_path, "verify", "--volume", str(vol)).returncode == 0
    blob = (snap / "pytorch_model.bin").resolve()
    data = blob.read_bytes()
    blob.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # same size: only a re-hash sees it

    found = _cli(tmp_path, "verify", "--volume", str(vol))
    assert found.returncode == 1, found.stdout
    assert f"{snap / 'pytorch_model.bin'}: git blob id differs from the hub's" in found.stdout
    assert f"fix: python -m bootstrap --volume {vol} verify --repair" in found.stdout

    repaired = _cli(tmp_path, "--volume", str(vol), "verify", "--repair")
    assert f"removed; python -m bootstrap --volume {vol} prepare f5tts" in repaired.stdout
    assert not (snap / "pytorch_model.bin").exists()
    assert (download() / "pytorch_model.bin").read_bytes() == FILES["pytorch_model.bin"]
    assert _cli(tmp_path, "verify", "--volume", str(vol)).stdout.endswith("verify: ok\n")


def _age(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_status_doctor_gc_and_verify_on_a_broken_volume(vocos, tmp_path):
    vol, download = vocos
    cli = f"python -m bootstrap --volume {vol}"
    prepared = _cli(tmp_path, "prepare", "piper", "--volume", str(vol))
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    download()
    paths = type("P", (), {"home": vol, "envs": tmp_path / "envs"})
    target = current_target()

    def layout(name: str) -> Layout:
        return Layout.of(name, spec_hash(PROFILES[name], target), paths)  # type: ignore[arg-type]

    piper = layout("piper")
    manifest = json.loads(piper.manifest.read_text())
    archive = piper.archive_of(manifest)
    with open(archive, "r+b") as f:  # a copy to the volume that stopped half-way
        f.truncate(manifest["archive_bytes"] // 2)
    layout("chatterbox").manifest.write_text(piper.manifest.read_text())  # another spec's
    temp = vol / "envs" / f".tmp-{piper.key}-deadhost-999999-ab.tar.zst"
    temp.write_bytes(b"half an archive")
    _age(temp)
    lease = vol / "leases" / f"{layout('f5tts').key}.lock"
    lease.parent.mkdir(exist_ok=True)
    lease.write_text("deadhost 999999")
    _age(lease)
    (download() / "config.yaml").unlink()

    status = _cli(tmp_path, "status", "--volume", str(vol))
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert (
        f"archive {archive} is truncated ({manifest['archive_bytes'] // 2} of "
        f"{manifest['archive_bytes']} bytes)  fix: {cli} prepare piper --force" in out
    )
    assert f"{layout('chatterbox').manifest} is not a valid manifest for spec" in out
    assert f"weights {VOCOS.repo_id}: partial  fix: {cli} prepare f5tts" in out
    assert f"leftover {temp}  fix: {cli} gc" in out
    assert f"leftover {lease}  fix: {cli} gc" in out

    doctor = _cli(tmp_path, "doctor", "--volume", str(vol))
    assert doctor.returncode == 1, doctor.stdout
    assert f"FAIL profile piper: archive {archive} is truncated" in doctor.stdout
    assert f"fix: {cli} prepare piper --force" in doctor.stdout
    assert f"FAIL profile chatterbox: {layout('chatterbox').manifest}" in doctor.stdout
    assert f"WARN leftover {temp}" in doctor.stdout and f"fix: {cli} gc" in doctor.stdout
    assert f"WARN profile f5tts: weights {VOCOS.repo_id} partial" in doctor.stdout

    verify = _cli(tmp_path, "verify", "--volume", str(vol))
    assert verify.returncode == 1
    assert f"piper: {archive}" in verify.stdout
    assert "config.yaml: missing" in verify.stdout

    gc = _cli(tmp_path, "gc", "--volume", str(vol))
    assert gc.returncode == 0, gc.stderr
    assert not temp.exists() and not lease.exists() and archive.exists()
    assert "leftover" not in _cli(tmp_path, "status", "--volume", str(vol)).stdout
