"""Suite-wide fixtures.

Tiers (see docs/conventions.md): unmarked tests are fast and pure; tests marked
``slow`` start real parts (SeaweedFS, a local HF hub, runner subprocesses, uv builds).
Run the fast tier alone with ``pytest -m "not slow"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import config

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.hub",
    "tests.fixtures.files",
    "tests.fixtures.whisper",
    "tests.fixtures.cloning",
    "tests.fixtures.machine",
]

# Variables the worker, the runpod SDK or the HF client read. Each test starts
# without them, so a developer's shell or a CI secret never leaks into a result.
_SCRUBBED_PREFIXES = ("MEDIA_WORKER_", "BUCKET_", "RUNPOD_", "HF_", "AWS_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES) or name in {s.name for s in config.SETTINGS}:
            monkeypatch.delenv(name, raising=False)
    # Never let a test touch the developer's real cache or a real volume.
    home = tmp_path_factory.mktemp("mw-home")
    monkeypatch.setenv("MEDIA_WORKER_HOME", str(home))
    monkeypatch.setenv("MEDIA_WORKER_ENVS_DIR", str(home / "local-envs"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("RUNPOD_LOG_LEVEL", "INFO")


@pytest.fixture(scope="module")
def handler_worker():
    """A ``handler.Worker`` of the module's own, serving its jobs: runners stay warm
    from test to test and stop when the module ends."""
    import handler

    with handler.Worker().installed() as worker:
        yield worker


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uv cache for the session, so only the first Piper build downloads."""
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture(scope="session")
def piper_volume(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path) -> Path:
    """A volume where the real Piper profile was built by uv and published (prepare).

    Tests damage a copy (``shutil.copytree``), never this one; the unpacked
    environment of this build lies outside it, so a copy's first ``ensure`` restores.
    """
    from bootstrap import ensure
    from models.profiles import PIPER

    mp = pytest.MonkeyPatch()
    mp.setenv("UV_CACHE_DIR", str(uv_cache))
    try:
        root = tmp_path_factory.mktemp("piper-volume")
        paths = config.Paths(
            home=root / "home", envs=root / "envs", outputs=root / "out", on_volume=True
        )
        assert ensure(PIPER, paths=paths, in_place=False).source == "built"
    finally:
        mp.undo()
    return paths.home
