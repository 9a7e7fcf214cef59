"""The image smoke test, without a Docker engine.

Replays what the Dockerfile does, from the same inputs:

1. its dependency install step: ``docker/install.sh`` (the script the build stage
   runs) into a fresh venv from ``requirements.lock``, with the build stage's uv
   settings;
2. its project COPYs: the files the final stage copies, after .dockerignore,
   into a temporary WORKDIR;
3. its CMD's handler in the SDK's local mode with one Piper job, on an empty
   volume: the image carries no Piper, so the bootstrapper must build the Piper
   profile with uv from PyPI, as it would on a fresh RunPod volume.

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


def _uv_dir() -> str:
    return str(Path(uv_binary()).parent)


def _missing_pieces() -> str | None:
    if not (ROOT / "handler.py").is_file():
        return "handler.py not present yet"
    if not (ROOT / "bootstrap" / "__main__.py").is_file():
        return "bootstrap/__main__.py not present yet (python -m bootstrap)"
    return None


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env["HOME"] = str(tmp_path / "home")  # ~/.cache must not be the developer's
    (tmp_path / "home").mkdir()
    return env


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_image_completes_a_piper_job_on_a_fresh_volume(tmp_path: Path):
    if reason := _missing_pieces():
        pytest.skip(reason)
    dockerfile = _dockerfile.parse(ROOT / "Dockerfile")
    build = next(s for s in dockerfile.stages if s.name == "build")
    final = dockerfile.final
    python_version = _dockerfile.stage_args(build, dockerfile.global_args)["PYTHON_VERSION"]
    started = time.monotonic()

    # 1. The install step: the same script, the same lockfile, the same uv settings.
    venv = tmp_path / "opt" / "venv"
    base_env = _base_env(tmp_path)
    env = dict(base_env)
    env.update({k: v for k, v in build.env().items() if k not in _MACHINE_SPECIFIC})
    env["UV_PYTHON"] = ".".join(python_version.split(".")[:2])
    env["PATH"] = _uv_dir() + os.pathsep + env.get("PATH", "")
    # The image builds with UV_NO_CACHE; here the developer's uv cache saves a
    # download of every wheel on each run. A cache changes no installed byte.
    env["UV_CACHE_DIR"] = subprocess.run(
        [str(Path(_uv_dir()) / "uv"), "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    install = subprocess.run(
        ["sh", str(ROOT / "docker" / "install.sh"), str(venv), str(ROOT / "requirements.lock")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, f"install step failed:\n{install.stdout}\n{install.stderr}"
    python = venv / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(bool(u.find_spec('piper')))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "False", "Piper must come from its profile, not the image"
    installed_s = time.monotonic() - started

    # 2. The project COPYs, into a WORKDIR of our own.
    workdir = final.workdir()
    app = tmp_path / "app"
    files = image_files(final, DockerIgnore.from_file(ROOT / ".dockerignore"))
    for image_path, context_path in files.items():
        relative = PurePosixPath(image_path).relative_to(workdir)
        target = app / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / context_path, target)
    assert (app / "handler.py").is_file()

    # 3. The CMD, in the SDK's local mode, with the final stage's ENV.
    volume = tmp_path / "runpod-volume" / "media-worker"
    local_envs = tmp_path / "opt" / "media-worker" / "envs"
    local_envs.mkdir(parents=True)
    # The build stage's settings end with the build stage: start from the base env.
    run_env = dict(base_env)
    for key, value in final.env().items():
        if key in {"PATH", "VIRTUAL_ENV", "UV_PYTHON_INSTALL_DIR", "MEDIA_WORKER_ENVS_DIR"}:
            continue
        run_env[key] = value
    run_env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
            "MEDIA_WORKER_ENVS_DIR": str(local_envs),
            "MEDIA_WORKER_HOME": str(volume),
        }
    )
    argv = final.of("CMD")[0].exec_form()
    assert argv is not None
    command = [str(python) if argv[0] == "python" else argv[0], *argv[1:]]
    job_started = time.monotonic()
    result = subprocess.run(
        [*command, "--test_input", json.dumps(JOB)],
        cwd=app,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    job_s = time.monotonic() - job_started
    log = f"stdout:\n{result.stdout[-6000:]}\nstderr:\n{result.stderr[-6000:]}"
    assert result.returncode == 0, f"handler exited {result.returncode}\n{log}"

    audio = [p for p in volume.rglob("*") if p.suffix in AUDIO_SUFFIXES and p.stat().st_size > 1000]
    assert audio, f"no audio output under {volume}\n{log}"
    print(
        f"image smoke: install s={installed_s:.1f} cold job s={job_s:.1f} "
        f"output={audio[0].relative_to(volume)} python={sys.version.split()[0]}"
    )
