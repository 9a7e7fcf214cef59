"""``python -m models`` through itself (a subprocess) on a real, damaged volume.

The weights come from the local hub at the f5tts profile's pinned revision of
``charactr/vocos-mel-24khz`` (tiny stand-in files: the cache layer never parses them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap import _weights
from bootstrap._layout import Layout
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
        [sys.executable, "-m", "models", *args],
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
    verified = _cli(tmp_path, "verify", "--volume", str(vol))
    assert verified.returncode == 0, verified.stdout
    assert f"verified weights {VOCOS.repo_id}@{VOCOS.revision[:12]}: 2 files" in verified.stdout
    assert verified.stdout.endswith("1 weights snapshot (2 files, 0.0 MB) re-hashed\n")
    blob = (snap / "pytorch_model.bin").resolve()
    data = blob.read_bytes()
    blob.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # same size: only a re-hash sees it

    found = _cli(tmp_path, "verify", "--volume", str(vol))
    assert found.returncode == 1, found.stdout
    assert f"{snap / 'pytorch_model.bin'}: git blob id differs from the hub's" in found.stdout
    assert f"fix: python -m models --volume {vol} verify --repair" in found.stdout

    repaired = _cli(tmp_path, "--volume", str(vol), "verify", "--repair")
    assert f"removed; python -m models --volume {vol} prepare f5tts" in repaired.stdout
    assert not (snap / "pytorch_model.bin").exists()
    assert (download() / "pytorch_model.bin").read_bytes() == FILES["pytorch_model.bin"]
    assert (
        _cli(tmp_path, "verify", "--volume", str(vol))
        .stdout.splitlines()[-1]
        .startswith("verify: ok: ")
    )


def _age(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_status_doctor_gc_and_verify_on_a_broken_volume(vocos, tmp_path):
    vol, download = vocos
    cli = f"python -m models --volume {vol}"
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
    # piper is served in place by this interpreter; the archive prepare wrote is shown too
    assert re.search(r"^piper +env=in-place .* archive=[0-9.]+MB ", out, re.M), out
    assert re.search(rf"^ +archive {re.escape(str(archive))}$", out, re.M), out
    assert f"weights {VOCOS.repo_id}: partial  fix: {cli} prepare f5tts" in out
    assert f"leftover {temp}  fix: {cli} gc" in out
    assert f"leftover {lease}  fix: {cli} gc" in out

    doctor = _cli(tmp_path, "doctor", "--volume", str(vol))
    assert doctor.returncode == 1, doctor.stdout
    assert f"FAIL profile piper: archive {archive} is truncated" in doctor.stdout
    assert f"fix: {cli} prepare piper --force" in doctor.stdout
    assert f"FAIL profile chatterbox: {layout('chatterbox').manifest}" in doctor.stdout
    assert re.search(
        f"^WARN leftovers \\(expired or abandoned\\): .*{re.escape(str(temp))}", doctor.stdout, re.M
    )
    assert f"fix: {cli} gc" in doctor.stdout
    assert f"WARN weights partial for profile f5tts: {VOCOS.repo_id}" in doctor.stdout
    # (how many problems depends on which servers this machine reaches)
    summary = doctor.stdout.splitlines()[-1]
    assert (
        summary.startswith("doctor: ")
        and "profile piper: archive on the volume unusable" in summary
    )

    verify = _cli(tmp_path, "verify", "--volume", str(vol))
    assert verify.returncode == 1
    assert f"piper: {archive}" in verify.stdout
    assert "config.yaml: missing" in verify.stdout

    gc = _cli(tmp_path, "gc", "--volume", str(vol))
    assert gc.returncode == 0, gc.stderr
    assert not temp.exists() and not lease.exists() and archive.exists()
    assert "leftover" not in _cli(tmp_path, "status", "--volume", str(vol)).stdout


def test_cli_prepares_lists_verifies_and_collects_the_factory_profiles(
    hub_server, tmp_path, monkeypatch
):
    """upscale and seedvr2 are made from settings, not listed in a table: the CLI
    (and so the Dockerfile's BAKE_PROFILES, which runs it) reads the handler's lookup.
    The upscale build takes torch from the local CPU wheel, as on any GPU-less machine.
    seedvr2 prepared for real: tests/runners/test_seedvr2.py."""
    vol = tmp_path / "vol"
    cli = f"python -m models --volume {vol}"
    upscale_file = {"RealESRGAN_x4plus.pth": os.urandom(2048)}
    for name, value in {
        "MEDIA_WORKER_UPSCALE_REPO": "tests/cli-upscale",
        "MEDIA_WORKER_UPSCALE_REVISION": hub_server.add_repo("tests/cli-upscale", upscale_file),
        "MEDIA_WORKER_EXTRA_INDEX_URLS": "file:///opt/pypi/simple",
        "UV_FIND_LINKS": "/opt/wheels",
        "HF_ENDPOINT": hub_server.endpoint,
        # a mirror with no commit pinned: seedvr2 cannot be made with these settings
        "MEDIA_WORKER_SEEDVR2_REPO": "tests/cli-mirror",
    }.items():
        monkeypatch.setenv(name, value)

    before = _cli(tmp_path, "status", "--volume", str(vol))
    assert before.returncode == 0, before.stderr
    assert re.search(r"^upscale +env=missing ", before.stdout, re.M), before.stdout
    assert "weights tests/cli-upscale: missing" in before.stdout
    assert re.search(r"^seedvr2 +unavailable: .*MEDIA_WORKER_SEEDVR2_REVISION", before.stdout, re.M)

    refused = _cli(tmp_path, "prepare", "seedvr2", "--volume", str(vol))
    assert refused.returncode == 2
    assert "seedvr2: cannot be prepared with these settings" in refused.stdout
    prepared = _cli(tmp_path, "prepare", "upscale", "--volume", str(vol))
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert re.search(r"^upscale: ready \(built\) spec=[0-9a-f]{16}", prepared.stdout, re.M)

    after = _cli(tmp_path, "status", "--volume", str(vol))
    assert re.search(r"^upscale +env=local ", after.stdout, re.M), after.stdout
    assert "weights tests/cli-upscale: present" in after.stdout
    verified = _cli(tmp_path, "verify", "--volume", str(vol))
    assert verified.returncode == 0, verified.stdout
    assert re.search(r"^verified upscale: archive .*upscale-[0-9a-f]{16}-", verified.stdout, re.M)
    assert verified.stdout.splitlines()[-1].startswith("verify: ok: ")

    # Archives of older upscale specs go (status names all but the newest, which gc
    # keeps by default); a seedvr2 one stays while its current spec is unknown.
    envs = vol / "envs"
    (current,) = envs.glob("upscale-*.json")
    olds = {}
    for age, key in enumerate(
        ("upscale-" + "2" * 16, "upscale-" + "0" * 16, "seedvr2-" + "1" * 16)
    ):
        manifest = envs / f"{key}.json"
        archive = envs / f"{key}-{'a' * 12}.tar.zst"
        archive.write_bytes(b"an old archive")
        manifest.write_text(json.dumps({"archive": archive.name}))
        for path in (manifest, archive):
            _age(path, 3600 * (age + 1))
        olds[key] = (manifest, archive)
    older, oldest, seedvr2 = olds.values()
    listed = _cli(tmp_path, "status", "--volume", str(vol)).stdout
    assert f"leftover {oldest[1]}  fix: {cli} gc" in listed
    assert str(older[1]) not in listed and str(seedvr2[1]) not in listed
    collected = _cli(tmp_path, "gc", "--keep", "0", "--volume", str(vol))
    assert collected.returncode == 0, collected.stderr
    assert not any(p.exists() for p in (*older, *oldest))
    assert all(p.exists() for p in (*seedvr2, current))
    assert _cli(tmp_path, "verify", "--volume", str(vol)).returncode == 0


def test_status_and_doctor_tell_served_in_place_from_missing(tmp_path, monkeypatch):
    """The suite's interpreter has the piper extra at the profile's pins: a job serves
    Piper with it and builds nothing, so status must not say "no environment yet"."""
    vol = tmp_path / "vol"
    status = _cli(tmp_path, "status", "--json", "--volume", str(vol))
    assert status.returncode == 0, status.stderr
    profiles = json.loads(status.stdout)["profiles"]
    assert profiles["piper"]["env"] == "in-place"
    assert profiles["piper"]["python"] == sys.executable
    assert profiles["kokoro"]["env"] == "missing" and profiles["kokoro"]["python"] is None

    text = _cli(tmp_path, "status", "--volume", str(vol)).stdout
    (piper,) = [line for line in text.splitlines() if line.startswith("piper ")]
    assert (
        "env=in-place" in piper
        and f"served in place by this interpreter ({sys.executable})" in piper
    )

    doctor = _cli(tmp_path, "doctor", "--volume", str(vol)).stdout
    assert f"ok   profile piper: served in place by this interpreter ({sys.executable})" in doctor
    assert "profile piper: no environment yet" not in doctor
    assert re.search(r"^WARN no environment yet for profiles .*\bkokoro\b", doctor, re.M)

    # MEDIA_WORKER_IN_PLACE: every profile runs in this interpreter, and status says so.
    monkeypatch.setenv("MEDIA_WORKER_IN_PLACE", "1")
    forced = json.loads(_cli(tmp_path, "status", "--json", "--volume", str(vol)).stdout)
    assert forced["profiles"]["kokoro"]["env"] == "in-place"


@pytest.mark.parametrize(
    "setting",
    [
        "MEDIA_WORKER_CUDA_BUILD=cu128",
        "MEDIA_WORKER_LOG_LEVEL=LOUD",
        "MEDIA_WORKER_ENVS_DIR=relative/envs",
        "MEDIA_WORKER_IN_PLACE=maybe",
    ],
)
def test_an_invalid_setting_is_one_line_and_exit_2_not_a_traceback(setting, tmp_path):
    name, value = setting.split("=")
    env = {**os.environ, "MEDIA_WORKER_HOME": str(tmp_path / "home"), name: value}
    done = subprocess.run(
        [sys.executable, "-m", "models", "status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"configuration: {name}={value!r} is invalid: "), line
