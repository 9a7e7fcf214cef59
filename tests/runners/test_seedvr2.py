"""``seedvr2`` jobs through ``handler.handler`` with upstream's own code, on the CPU.

The seedvr2 profile is built once per session exactly as pinned (torch 2.13.0 and
torchvision 0.28.0, PyPI's builds: CUDA builds that run on a CPU, and torchvision
loads only beside the torch of its own family), its source archive served from
loopback: upstream's tree at the pinned commit with the DiT and VAE configs narrowed
(``tests/fixtures/seedvr2.py``). The weights are upstream's own modules built from
those configs, their random ``state_dict`` saved under the published file names and
served by the local hub. Nothing of upstream is stubbed: a job decodes, runs
upstream's encode / DiT / decode, corrects colours and encodes H.264.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import tarfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

import bootstrap
import config
import handler
from bootstrap import Profile, _ensure
from bootstrap._artifacts import tree_digest
from errors import BootstrapFailed
from models import profiles
from tests.fixtures import seedvr2 as fx
from tests.fixtures.clips import make_clip, make_image, read_back
from tests.fixtures.files import serve_directory

pytestmark = pytest.mark.slow

REPO = "tests/tiny-seedvr2"


def _archive(tree: Path, dest: Path) -> Path:
    """``tree`` packed as GitHub packs a commit: one top-level directory."""
    top = f"ComfyUI-SeedVR2_VideoUpscaler-{profiles.SEEDVR2_COMMIT}"
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(tree, arcname=top)
    return dest


@pytest.fixture(scope="session")
def seedvr2_world(tmp_path_factory, hub_server, uv_cache):
    """The seedvr2 environment built once, the tiny weights on the hub."""
    source = fx.find_source()
    if source is None:
        pytest.skip(fx.missing_source_reason())
    work = tmp_path_factory.mktemp("seedvr2")
    tree = fx.tiny_tree(source, work / "tree")
    served = work / "served"
    served.mkdir()
    archive = _archive(tree, served / profiles.SEEDVR2_SOURCE.filename)
    env = {
        "MEDIA_WORKER_HOME": str(work / "home"),
        "MEDIA_WORKER_ENVS_DIR": str(work / "local-envs"),
        "MEDIA_WORKER_EXTRA_INDEX_URLS": "https://pypi.org/simple",
        "UV_CACHE_DIR": str(uv_cache),
        "HF_ENDPOINT": hub_server.endpoint,
        "MEDIA_WORKER_SEEDVR2_REPO": REPO,
    }
    mp = pytest.MonkeyPatch()
    try:
        with serve_directory(served) as srv:
            digest = tree_digest(tree)  # the source is pinned by its unpacked tree
            env["MEDIA_WORKER_ARTIFACT_OVERRIDES"] = (
                f"{archive.name}={srv.url}/{archive.name}#sha256={digest}"
            )
            for name, value in env.items():
                mp.setenv(name, value)
            # A commit only to make the profile; the weights are not part of the build.
            mp.setenv("MEDIA_WORKER_SEEDVR2_REVISION", "0" * 40)
            import dataclasses

            built = bootstrap.ensure(
                dataclasses.replace(profiles.seedvr2_profile(), weights=()), in_place=False
            )
        weights = work / "weights"
        counts = fx.make_weights(built.python, tree, weights, "3b", "vae")
    finally:
        mp.undo()
    files = {p.name: p.read_bytes() for p in weights.iterdir()}
    env["MEDIA_WORKER_SEEDVR2_REVISION"] = hub_server.add_repo(REPO, files)
    yield {**env, "counts": counts, "tree": tree, "weights": str(weights),
           "built_python": str(built.python)}  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)  # gigabytes of CUDA libraries


@pytest.fixture
def worker(seedvr2_world, monkeypatch, tmp_path, handler_worker) -> Path:
    """The world's settings for a test whose jobs run in the module's worker; yields
    where outputs are published."""
    for name, value in seedvr2_world.items():
        if name.isupper():
            monkeypatch.setenv(name, value)
    out = tmp_path / "store"
    monkeypatch.setenv("MEDIA_WORKER_OUTPUT_DIR", str(out))
    return out


def _job(job_id: str, path: Path, mime: str, **fields) -> dict:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return {
        "id": job_id,
        "input": {
            "task": "restore",
            "model": "seedvr2-3b",
            "video": f"data:{mime};base64,{encoded}",
            **fields,
        },
    }


def _local(output: dict) -> Path:
    return Path(urllib.request.url2pathname(urlparse(output["url"]).path))


@pytest.fixture
def upstream_tree() -> Path:
    """Upstream's tree exactly as pinned (not the tiny one the world builds from)."""
    source = fx.find_source()
    if source is None:
        pytest.skip(fx.missing_source_reason())
    return source


def _build_with_source(archive: Path, pin: str, tmp_path: Path, monkeypatch, uv_cache: Path):
    """A small profile carrying the SeedVR2 source artifact, built by the bootstrapper
    with ``archive`` served as an operator's mirror (MEDIA_WORKER_ARTIFACT_OVERRIDES)
    under ``pin``. The torch stack is left out: this is about the artifact."""
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    paths = config.Paths(
        home=tmp_path / "vol", envs=tmp_path / "envs", outputs=tmp_path / "o", on_volume=True
    )
    profile = Profile("seedvr2src", ("soxr==1.1.0",), artifacts=(profiles.SEEDVR2_SOURCE,))
    with serve_directory(archive.parent) as srv:
        monkeypatch.setenv(
            "MEDIA_WORKER_ARTIFACT_OVERRIDES",
            f"{archive.name}={srv.url}/{archive.name}#sha256={pin}",
        )
        return paths, _ensure.ensure(profile, paths=paths)


def test_upstreams_tree_packed_as_github_packs_it_installs_under_the_profiles_pin(
    upstream_tree, tmp_path, monkeypatch, uv_cache
):
    pin = profiles.SEEDVR2_SOURCE.sha256
    (tmp_path / "served").mkdir()
    archive = _archive(upstream_tree, tmp_path / "served" / profiles.SEEDVR2_SOURCE.filename)
    paths, env = _build_with_source(archive, pin, tmp_path, monkeypatch, uv_cache)
    assert env.source == "built"
    installed = env.python.parents[1] / "src" / "seedvr2"
    assert (installed / "src" / "core" / "generation_phases.py").is_file()
    assert tree_digest(installed) == pin
    (manifest,) = (paths.home / "envs").glob("seedvr2src-*.json")
    (recorded,) = json.loads(manifest.read_text())["artifacts"]
    assert (recorded["file"], recorded["sha256"], recorded["kind"]) == (
        profiles.SEEDVR2_SOURCE.filename,
        pin,
        "source",
    )


def test_a_tree_with_one_changed_byte_is_refused_naming_both_digests(
    upstream_tree, tmp_path, monkeypatch, uv_cache
):
    tree = tmp_path / "changed"
    shutil.copytree(upstream_tree, tree)
    target = tree / "src" / "core" / "generation_phases.py"
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    changed = tree_digest(tree)
    pin = profiles.SEEDVR2_SOURCE.sha256
    (tmp_path / "served").mkdir()
    archive = _archive(tree, tmp_path / "served" / profiles.SEEDVR2_SOURCE.filename)
    with pytest.raises(BootstrapFailed) as failed:
        _build_with_source(archive, pin, tmp_path, monkeypatch, uv_cache)
    message = str(failed.value)
    assert f"served {changed}" in message and f"pins {pin}" in message
    assert "refusing to install it" in message
    assert not list((tmp_path / "vol").rglob("seedvr2src-*.json"))  # nothing published


def test_weights_are_upstreams_modules_state(seedvr2_world):
    # the tiny DiT (2 blocks) and VAE, as many tensors as upstream's modules declare
    assert seedvr2_world["counts"]["3b"] > 20 and seedvr2_world["counts"]["vae"] > 50


def test_a_clip_is_restored_by_upstream_with_its_audio(worker, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=5, width=32, height=24)
    result = handler.handler(_job("sv-clip", src, "video/mp4", batch_size=5))
    assert "error" not in result, result
    (output,) = result["outputs"]
    got = read_back(_local(output))
    assert (got.width, got.height) == (128, 96)  # no resolution: the source x4
    assert got.frames == 5 and got.audio_codec == "aac"
    assert result["media"]["frames"] == 5
    assert result["plan"] == "fp16, batch 5, on the CPU"  # what the memory plan chose


def test_a_still_image_comes_back_as_png(worker, tmp_path):
    src = make_image(tmp_path / "in.png", width=32, height=24)
    result = handler.handler(_job("sv-image", src, "image/png"))
    assert "error" not in result, result
    (output,) = result["outputs"]
    assert output["content_type"] == "image/png"
    got = read_back(_local(output))
    assert (got.width, got.height, got.frames) == (128, 96, 1)


def _frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_the_seed_decides_the_output(worker, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=5, width=32, height=24, audio=None)
    runs = {
        name: handler.handler(_job(f"sv-seed-{name}", src, "video/mp4", seed=seed))
        for name, seed in (("a", 7), ("b", 7), ("c", 8))
    }
    frames = {}
    for name, result in runs.items():
        assert "error" not in result, result
        frames[name] = _frames(_local(result["outputs"][0]))
    assert np.array_equal(frames["a"], frames["b"])
    assert not np.array_equal(frames["a"], frames["c"])


def test_a_batch_boundary_with_overlap_blends_and_keeps_every_frame(worker, tmp_path):
    """9 frames in batches of 5 sharing 2 (frames 0-4, then 3-7 and 6-8 with context):
    upstream runs three times; the shared frames differ from a run without overlap
    (they are cross-faded with the next batch's restoration), the others do not."""
    src = make_clip(tmp_path / "in.mp4", frames=9, width=32, height=24, audio=None)
    frames = {}
    for overlap in (0, 2):
        fields = {"batch_size": 5, "temporal_overlap": overlap, "crf": 0}
        result = handler.handler(_job(f"sv-seam-{overlap}", src, "video/mp4", **fields))
        assert "error" not in result, result
        frames[overlap] = _frames(_local(result["outputs"][0]))
    assert len(frames[0]) == len(frames[2]) == 9
    same = [np.array_equal(a, b) for a, b in zip(frames[0], frames[2], strict=True)]
    assert same[:3] == [True, True, True]  # batch 1 alone made these, in both runs
    assert same[3:5] == [False, False]  # shared by batches 1 and 2: blended


@pytest.mark.parametrize(
    ("fields", "env", "field", "fragment"),
    [
        ({"resolution": 144}, {}, "resolution", "at most x4"),
        ({"batch_size": 5, "temporal_overlap": 5}, {}, "temporal_overlap", "4n+1"),
        # The batch is capped to the 5-frame clip: a runner_crashed before (issue 33).
        ({"batch_size": 17, "temporal_overlap": 8}, {}, "temporal_overlap",
         "the clip has 5 frames"),
        ({}, {"MEDIA_WORKER_RESTORE_MAX_FRAMES": "4"}, "video", "MEDIA_WORKER_RESTORE_MAX_FRAMES"),
        ({}, {"MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE": "16"}, "video",
         "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE"),
        ({}, {"MEDIA_WORKER_RESTORE_MAX_DURATION_S": "0.1"}, "video",
         "MEDIA_WORKER_RESTORE_MAX_DURATION_S"),
        ({}, {"MEDIA_WORKER_RESTORE_MAX_INPUT_BYTES": "100"}, "video",
         "MEDIA_WORKER_RESTORE_MAX_INPUT_BYTES"),
        ({}, {"MEDIA_WORKER_RESTORE_MAX_TARGET_SIDE": "64"}, "resolution",
         "MEDIA_WORKER_RESTORE_MAX_TARGET_SIDE"),
    ],
)  # fmt: skip
def test_each_cap_is_refused_by_name(worker, tmp_path, monkeypatch, fields, env, field, fragment):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    src = make_clip(tmp_path / "in.mp4", frames=5, width=32, height=24)
    # Runners read their settings when they start: a job under settings of its own
    # runs in a worker of its own, whose runner stops before the next test.
    with handler.Worker().installed() if env else contextlib.nullcontext():
        result = handler.handler(_job("sv-cap", src, "video/mp4", **fields))
    assert result["error_code"] == "invalid_input", result
    assert result["details"][0]["field"] == field
    assert fragment in result["error"]
    assert not worker.exists() or not any(worker.rglob("*.mp4"))


def test_the_cli_prepares_lists_verifies_and_collects_seedvr2(seedvr2_world, worker):
    """The env the session built is found by the CLI's own lookup; prepare fetches the
    weights from the hub; verify re-hashes them; gc keeps the current archive."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "models", *args], cwd=root,
                              env=dict(os.environ), capture_output=True, text=True,
                              timeout=600)  # fmt: skip

    prepared = cli("prepare", "seedvr2")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert re.search(r"^seedvr2: ready \((local|volume)\) spec=[0-9a-f]{16}", prepared.stdout, re.M)
    status = cli("status")
    assert re.search(r"^seedvr2 +env=(local|volume) ", status.stdout, re.M), status.stdout
    assert f"weights {REPO}: present" in status.stdout
    verified = cli("verify")
    assert verified.returncode == 0, verified.stdout
    lines = verified.stdout.splitlines()
    assert lines[-1].startswith("verify: ok: 2 archives of 1 profile"), lines  # env + torch layer
    assert any(line.startswith(f"verified weights {REPO}@") for line in lines), lines
    collected = cli("gc")
    assert collected.returncode == 0, collected.stderr
    home = Path(seedvr2_world["MEDIA_WORKER_HOME"])
    assert list((home / "envs").glob("seedvr2-*.json")) and list((home / "envs").glob("*.tar.zst"))


def test_a_longer_clip_after_a_shorter_one_in_the_same_runner(worker, tmp_path):
    """The runner keeps upstream's models between jobs but not a job's state: upstream
    keeps what a context already holds (the frame count, the target size), so a
    context not pruned between calls sizes the next job by the last one."""
    short = make_clip(tmp_path / "short.mp4", frames=5, width=32, height=24, audio=None)
    long = make_clip(tmp_path / "long.mp4", frames=9, width=40, height=24, audio=None)
    first = handler.handler(_job("sv-short", short, "video/mp4", batch_size=5))
    second = handler.handler(_job("sv-long", long, "video/mp4", batch_size=9))
    assert "error" not in first and "error" not in second, (first, second)
    got = read_back(_local(second["outputs"][0]))
    assert (got.frames, got.width, got.height) == (9, 160, 96)


def test_seedvr2_bench_runs_both_paths_small(seedvr2_world, tmp_path):
    """bench/seedvr2.py (what ``bench/gpu.py --only seedvr2`` runs per path) on the tiny
    tree with the profile's interpreter: upstream's own call and the worker's runner,
    cold then warm, same output size."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    clip = make_clip(tmp_path / "in.mp4", frames=5, width=32, height=24, audio=None)
    runs = []
    for path in ("upstream", "worker"):
        done = subprocess.run(
            [seedvr2_world["built_python"], "bench/seedvr2.py", path,
             "--source", str(seedvr2_world["tree"]), "--weights", seedvr2_world["weights"],
             "--clip", str(clip), "--resolution", "96", "--batch", "5"],
            cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
            text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        runs += [json.loads(line[7:]) for line in done.stdout.splitlines()
                 if line.startswith("RESULT ")]  # fmt: skip
    assert [(r["path"], r["phase"]) for r in runs] == [
        ("upstream", "cold"), ("upstream", "warm"), ("worker", "cold"), ("worker", "warm")
    ]  # fmt: skip
    assert {(r["frames"], r["out"]) for r in runs} == {(5, "128x96")}


_BETWEEN_BATCHES = """
import json, sys
import numpy as np
from runners import _seedvr2_plan as plan, seedvr2

runner = seedvr2.SeedVR2Runner3B()
runner.setup({seedvr2.REPO.get(): sys.argv[1]})
memory = plan.plan_memory("3b", free_vram_gb=None, width=128, height=96, batch=5, fp8_ok=False)
args = plan.upstream_arguments(memory, resolution=96, overlap=0, seed=1, device="cpu")
frames = np.random.default_rng(0).integers(0, 255, (5, 24, 32, 3), dtype=np.uint8)
out = runner._restore(frames, (128, 96), args)
print(json.dumps({"shape": list(out.shape), "kept": sorted(runner.cache["ctx"])}))
"""


def test_the_runner_keeps_only_upstreams_device_context_between_batches(seedvr2_world):
    """After a batch the runner holds upstream's models and device settings, not the
    batch's latents and frames (upstream's CLI keeps the same keys between clips)."""
    import json
    import os
    import subprocess

    from runners import seedvr2

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [seedvr2_world["built_python"], "-c", _BETWEEN_BATCHES, seedvr2_world["weights"]],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["shape"] == [5, 96, 128, 3]
    assert set(got["kept"]) <= seedvr2._KEEP and "compute_dtype" in got["kept"]
