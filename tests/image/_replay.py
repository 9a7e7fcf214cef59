"""The image, replayed without a Docker engine: its install step and its COPYs.

Shared by the image smoke test and the handler's cold-path tests (one install per
session): ``build_replay`` runs ``docker/install.sh`` into a fresh venv from
``requirements.lock`` with the build stage's uv settings, then copies the files the
final stage copies (after .dockerignore) into a temporary WORKDIR. The venv has the
handler's dependencies only, as the image does: no Piper, so a Piper job must get
its profile from the bootstrapper.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bootstrap._build import uv_binary
from tests.image import _dockerfile
from tests.image._context import image_files
from tests.image._dockerignore import DockerIgnore

ROOT = Path(__file__).resolve().parents[2]
JOB = {"input": {"task": "tts", "text": "Hello from the image."}}
# Build-stage settings that only say where the image keeps its interpreter, or
# whether uv caches downloads: they do not change what gets installed.
_MACHINE_SPECIFIC = {"UV_PYTHON_INSTALL_DIR", "UV_PYTHON_PREFERENCE", "UV_PYTHON", "UV_NO_CACHE"}
# Variables a developer's shell or CI may set that would leak into the replay.
_LEAKY = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "UV_PROJECT_ENVIRONMENT")
_LEAKY_PREFIXES = ("MEDIA_WORKER_", "BUCKET_", "RUNPOD_", "HF_", "AWS_")


def _uv_dir() -> str:
    return str(Path(uv_binary()).parent)


def uv_cache_dir() -> str:
    """The developer's uv cache: reused so replays download nothing twice."""
    return subprocess.run(
        [uv_binary(), "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()


def missing_pieces() -> str | None:
    if not (ROOT / "handler.py").is_file():
        return "handler.py not present yet"
    if not (ROOT / "models" / "cli.py").is_file():
        return "models/cli.py not present yet (python -m models)"
    return None


def base_env(home: Path) -> dict[str, str]:
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
        env = base_env(home)
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

    def command(self) -> list[str]:
        """The image's CMD, with the replay's interpreter."""
        argv = self.dockerfile.final.of("CMD")[0].exec_form()
        assert argv is not None
        return [str(self.python) if argv[0] == "python" else argv[0], *argv[1:]]

    def run_cmd(
        self, env: dict[str, str], job: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The CMD in the SDK's local mode with one job (default: ``JOB``)."""
        return subprocess.run(
            [*self.command(), "--test_input", json.dumps(job or JOB)],
            cwd=self.app,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )


def build_replay(root: Path) -> Replay:
    """Replay the image's install step and COPYs under ``root``."""
    dockerfile = _dockerfile.parse(ROOT / "Dockerfile")
    build = next(s for s in dockerfile.stages if s.name == "build")
    final = dockerfile.final
    python_version = _dockerfile.stage_args(build, dockerfile.global_args)["PYTHON_VERSION"]
    started = time.monotonic()

    # 1. The install step: the same script, the same lockfile, the same uv settings.
    venv = root / "opt" / "venv"
    env = base_env(root / "build-home")
    env.update({k: v for k, v in build.env().items() if k not in _MACHINE_SPECIFIC})
    env["UV_PYTHON"] = ".".join(python_version.split(".")[:2])
    env["PATH"] = _uv_dir() + os.pathsep + env.get("PATH", "")
    # The image builds with UV_NO_CACHE; here the developer's uv cache saves a
    # download of every wheel on each run. A cache changes no installed byte.
    env["UV_CACHE_DIR"] = uv_cache_dir()
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
