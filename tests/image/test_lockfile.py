"""requirements.lock is the handler's dependency list from pyproject.toml, pinned with
hashes, and nothing heavier.

Regenerate it after changing [project] dependencies with the command in its header:

    uv pip compile pyproject.toml --python-version 3.11 \\
        --python-platform x86_64-manylinux_2_28 --generate-hashes -o requirements.lock
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bootstrap._build import uv_binary

ROOT = Path(__file__).resolve().parents[2]
LOCKFILE = ROOT / "requirements.lock"
COMPILE_ARGS = [
    "pip",
    "compile",
    "pyproject.toml",
    "--python-version",
    "3.11",
    "--python-platform",
    "x86_64-manylinux_2_28",
    "--generate-hashes",
]
# Model libraries belong to runner profiles; in the image they would cost gigabytes
# and break handler.py's start-in-a-second rule.
HEAVY = {
    "torch",
    "torchaudio",
    "torchvision",
    "flash-attn",
    "transformers",
    "onnxruntime",
    "onnxruntime-gpu",
    "piper-tts",
    "kokoro",
    "f5-tts",
    "chatterbox-tts",
    "tensorflow",
    "jax",
    "opencv-python",
}
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)", re.MULTILINE)


def _pins(text: str) -> dict[str, str]:
    return {canonicalize_name(m["name"]): m["version"] for m in _PIN.finditer(text)}


def _entries(text: str) -> dict[str, str]:
    """Each pinned package's block (pin line, hashes, '# via' comments)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    return {canonicalize_name(m["name"]): b for b in blocks if (m := _PIN.match(b))}


def _dependencies() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in pyproject["project"]["dependencies"]]


def test_every_dependency_is_pinned_within_its_specifier():
    pins = _pins(LOCKFILE.read_text())
    problems = []
    for requirement in _dependencies():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not in the lockfile")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement}: the lockfile pins {pins[name]}")
    assert not problems, "\n".join(problems) + "\nregenerate: see this module's docstring"


def test_top_level_packages_are_exactly_the_dependencies():
    # uv annotates each package with what pulled it in; the ones pulled in by
    # pyproject.toml itself must be today's [project] dependencies, no more, no less.
    entries = _entries(LOCKFILE.read_text())
    top_level = {
        name for name, block in entries.items() if "media-worker (pyproject.toml)" in block
    }
    expected = {canonicalize_name(r.name) for r in _dependencies()}
    assert top_level == expected, (
        f"lockfile is stale: only in lock {sorted(top_level - expected)}, "
        f"only in pyproject {sorted(expected - top_level)}"
    )


def test_every_pin_has_hashes_and_no_pin_is_heavy():
    entries = _entries(LOCKFILE.read_text())
    assert entries, "no pins found"
    unhashed = [name for name, block in entries.items() if "--hash=sha256:" not in block]
    assert not unhashed, f"pins without hashes: {unhashed}"
    assert not (HEAVY & entries.keys()), f"model libraries in the image: {HEAVY & entries.keys()}"
    assert "-e " not in LOCKFILE.read_text() and "file://" not in LOCKFILE.read_text()


def test_header_records_the_compile_command():
    header = LOCKFILE.read_text().split("\n", 3)[1]
    assert "uv " + " ".join(COMPILE_ARGS) in header


@pytest.mark.slow
def test_lockfile_is_what_uv_resolves_today(tmp_path: Path):
    """Re-resolve from PyPI, keeping current pins (uv's default, like --no-upgrade).

    Only name==version pins are compared: PyPI may add a wheel (a hash) to an
    existing release, which changes nothing about what gets installed here.
    """
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(LOCKFILE, tmp_path / "requirements.lock")
    result = subprocess.run(
        [uv_binary(), *COMPILE_ARGS, "-o", "requirements.lock", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    fresh = _pins((tmp_path / "requirements.lock").read_text())
    committed = _pins(LOCKFILE.read_text())
    changed = {
        name: (committed.get(name), fresh.get(name))
        for name in committed.keys() | fresh.keys()
        if committed.get(name) != fresh.get(name)
    }
    assert not changed, f"(committed, resolved) differ: {changed}; python={sys.version}"
