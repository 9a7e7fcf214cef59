"""The image smoke test, without a Docker engine.

Replays what the Dockerfile does, from the same inputs:

1. its dependency install step: ``docker/install.sh`` (the script the build stage
   runs) into a fresh venv from ``requirements.lock``, with the build stage's uv
   settings;
2. its project COPYs: the files the final stage copies, after .dockerignore,
   into a temporary WORKDIR;
3. its CMD's handler in the SDK's local mode with one Piper job, on an empty
   volume: the image carries no Piper, so the bootstrapper must build the Piper
   profile with uv from PyPI, as it would on a fresh RunPod volume;
4. its ``BAKE_PROFILES`` RUN step with ``piper``, then a job on another empty
   volume, which must use the baked environment and build nothing.

It differs from the image in the interpreter (a local 3.11 instead of the
uv-managed patch release, which uv cannot download here) and in the paths
(/opt/... become temporary directories). The image workflow runs the same job in
the real image after each build.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.image._replay import Replay

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
# Image paths the replay maps to temporary directories.
_IMAGE_DIR = "/opt/media-worker"
_BAKE_HOME = "/tmp/media-worker-bake"


def _audio(volume: Path) -> list[Path]:
    return [p for p in volume.rglob("*") if p.suffix in AUDIO_SUFFIXES and p.stat().st_size > 1000]


def _log(result: subprocess.CompletedProcess[str]) -> str:
    return f"stdout:\n{result.stdout[-6000:]}\nstderr:\n{result.stderr[-6000:]}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_image_completes_a_piper_job_on_a_fresh_volume(replay: Replay, tmp_path: Path):
    # 3. The CMD, in the SDK's local mode, with the final stage's ENV.
    volume = tmp_path / "runpod-volume" / "media-worker"
    env = replay.env(
        home=tmp_path / "home",
        envs_dir=tmp_path / "opt" / "media-worker" / "envs",
        MEDIA_WORKER_HOME=str(volume),
    )
    started = time.monotonic()
    result = replay.run_cmd(env)
    job_s = time.monotonic() - started
    assert result.returncode == 0, f"handler exited {result.returncode}\n{_log(result)}"
    audio = _audio(volume)
    assert audio, f"no audio output under {volume}\n{_log(result)}"
    assert list((volume / "envs").glob("piper-*.tar.zst")), "the Piper profile was not published"
    print(
        f"image smoke: install s={replay.installed_s:.1f} cold job s={job_s:.1f} "
        f"output={audio[0].relative_to(volume)} python={sys.version.split()[0]}"
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_baked_profile_serves_a_job_without_building(replay: Replay, tmp_path: Path):
    # 4. The BAKE_PROFILES step, as the Dockerfile writes it, with image paths mapped.
    final = replay.dockerfile.final
    bake = next(i.args for i in final.of("RUN") if "BAKE_PROFILES" in i.args)
    image_dir = tmp_path / "opt" / "media-worker"
    baked_envs = image_dir / "envs"
    build_home = tmp_path / "build-home"
    bake_home = tmp_path / "bake-home"
    env = replay.env(home=build_home, envs_dir=baked_envs, BAKE_PROFILES="piper")
    script = bake.replace(_IMAGE_DIR, str(image_dir)).replace(_BAKE_HOME, str(bake_home))
    result = subprocess.run(
        ["sh", "-c", script],
        cwd=replay.app,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, f"BAKE_PROFILES step failed\n{_log(result)}"
    assert [p for p in baked_envs.iterdir() if p.name.startswith("piper-")], "nothing baked"
    assert not bake_home.exists(), "the bake home (its packed archives) was kept"
    assert not (build_home / ".cache" / "media-worker").exists(), "prepare used the build home"

    # The baked image on an endpoint with an empty volume: nothing may be built.
    volume = tmp_path / "runpod-volume" / "media-worker"
    env = replay.env(
        home=build_home,
        envs_dir=baked_envs,
        MEDIA_WORKER_HOME=str(volume),
        MEDIA_WORKER_IMAGE_WEIGHTS_DIR=str(image_dir / "hf"),
    )
    result = replay.run_cmd(env)
    assert result.returncode == 0, f"handler exited {result.returncode}\n{_log(result)}"
    assert _audio(volume), f"no audio output under {volume}\n{_log(result)}"
    assert not list(volume.glob("envs/*.tar.zst")), "the baked environment was rebuilt"
