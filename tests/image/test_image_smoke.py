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

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from bootstrap._build import uv_binary
from tests.image import _dockerfile
from tests.image._context import image_files
from tests.image._dockerignore import DockerIgnore

ROOT = Path(__file__).resolve().parents[2]
JOB = {"input": {"task": "tts", "text": "Hello from the image."}}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
# Build-stage settings that only say where the image keeps its interpreter, or
# whether uv caches downloads: they do not change what gets installed.
_MACHINE_SPECIFIC = {"UV_PYTHON_INSTALL_DIR", "UV_PYTHON_PREFERENCE", "UV_PYTHON", "UV_NO_CACHE"}
# Variables a developer's shell or CI may set that would leak into the replay.
_LEAKY = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "UV_PROJECT_ENVIRONMENT")
_LEAKY_PREFIXES = ("MEDIA_WORKER_", "BUCKET_", "RUNPOD_", "HF_", "AWS_")
# Image paths the replay maps to temporary directories.
_IMAGE_ENVS_DIR = "/opt/media-worker/envs"


def _uv_dir() -> str:
    return str(Path(uv_binary()).parent)


def _missing_pieces() -> str | None:
    if not (ROOT / "handler.py").is_file():
        return "handler.py not present yet"
    if not (ROOT / "bootstrap" / "__main__.py").is_file():
        return "bootstrap/__main__.py not present yet (python -m bootstrap)"
    return None


def _base_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in _LEAKY and not k.startswith(_LEAKY_PREFIXES)
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)  # ~/.cache must not be the developer's
    return env


@dataclass
class Replay:
    """The image, replayed: its venv, its WORKDIR and its runtime environment."""

    root: Path
    venv: Path
    app: Path
    dockerfile: _dockerfile.Dockerfile
    installed_s: float

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, *, home: Path, envs_dir: Path, **extra: str) -> dict[str, str]:
        """The final stage's ENV, with image paths mapped to temporary ones."""
        env = _base_env(home)
        for key, value in self.dockerfile.final.env().items():
            if key not in {"PATH", "VIRTUAL_ENV", "UV_PYTHON_INSTALL_DIR", "MEDIA_WORKER_ENVS_DIR"}:
                env[key] = value
        envs_dir.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "PATH": f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "VIRTUAL_ENV": str(self.venv),
                "MEDIA_WORKER_ENVS_DIR": str(envs_dir),
                **extra,
            }
        )
        return env

    def run_cmd(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv = self.dockerfile.final.of("CMD")[0].exec_form()
        assert argv is not None
        command = [str(self.python) if argv[0] == "python" else argv[0], *argv[1:]]
        return subprocess.run(
            [*command, "--test_input", json.dumps(JOB)],
            cwd=self.app,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    if reason := _missing_pieces():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("image")
    dockerfile = _dockerfile.parse(ROOT / "Dockerfile")
    build = next(s for s in dockerfile.stages if s.name == "build")
    final = dockerfile.final
    python_version = _dockerfile.stage_args(build, dockerfile.global_args)["PYTHON_VERSION"]
    started = time.monotonic()

    # 1. The install step: the same script, the same lockfile, the same uv settings.
    venv = root / "opt" / "venv"
    env = _base_env(root / "build-home")
    env.update({k: v for k, v in build.env().items() if k not in _MACHINE_SPECIFIC})
    env["UV_PYTHON"] = ".".join(python_version.split(".")[:2])
    env["PATH"] = _uv_dir() + os.pathsep + env.get("PATH", "")
    # The image builds with UV_NO_CACHE; here the developer's uv cache saves a
    # download of every wheel on each run. A cache changes no installed byte.
    env["UV_CACHE_DIR"] = subprocess.run(
        [uv_binary(), "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    install = subprocess.run(
        ["sh", str(ROOT / "docker" / "install.sh"), str(venv), str(ROOT / "requirements.lock")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, f"install step failed:\n{install.stdout}\n{install.stderr}"
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u; print(bool(u.find_spec('piper')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "False", "Piper must come from its profile, not the image"
    installed_s = time.monotonic() - started

    # 2. The project COPYs, into a WORKDIR of our own.
    workdir = final.workdir()
    app = root / "app"
    files = image_files(final, DockerIgnore.from_file(ROOT / ".dockerignore"))
    for image_path, context_path in files.items():
        target = app / PurePosixPath(image_path).relative_to(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / context_path, target)
    assert (app / "handler.py").is_file()
    return Replay(root, venv, app, dockerfile, installed_s)


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
    baked_envs = tmp_path / "opt" / "media-worker" / "envs"
    build_home = tmp_path / "build-home"
    env = replay.env(home=build_home, envs_dir=baked_envs, BAKE_PROFILES="piper")
    result = subprocess.run(
        ["sh", "-c", bake.replace(_IMAGE_ENVS_DIR, str(baked_envs))],
        cwd=replay.app,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, f"BAKE_PROFILES step failed\n{_log(result)}"
    assert [p for p in baked_envs.iterdir() if p.name.startswith("piper-")], "nothing baked"
    assert not (build_home / ".cache" / "media-worker" / "envs").exists(), "archives kept"

    # The baked image on an endpoint with an empty volume: nothing may be built.
    volume = tmp_path / "runpod-volume" / "media-worker"
    env = replay.env(home=build_home, envs_dir=baked_envs, MEDIA_WORKER_HOME=str(volume))
    result = replay.run_cmd(env)
    assert result.returncode == 0, f"handler exited {result.returncode}\n{_log(result)}"
    assert _audio(volume), f"no audio output under {volume}\n{_log(result)}"
    assert not list(volume.glob("envs/*.tar.zst")), "the baked environment was rebuilt"
