"""Restore refuses what tarfile's ``data`` filter refuses, on real crafted archives."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from bootstrap import _pack


def _archive(path: Path, members: list[tuple[str, str, str | bytes]]) -> tuple[int, str]:
    """Write ``(name, kind, link target or content)`` members as tar+zstd; (size, sha256)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(value)
                tar.addfile(info)
            else:
                data = value if isinstance(value, bytes) else value.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def _restore(archive: Path, dest: Path, size: int, sha: str) -> None:
    _pack.restore(archive, dest, sha256=sha, size=size, python=Path(sys.executable))


def test_symlink_chain_out_of_the_destination_is_refused(tmp_path: Path) -> None:
    # Each link on its own stays inside when judged by its name; together they
    # lead out: lib/up -> dest, lib/up2 -> lib/up/.. -> dest's parent.
    outside = tmp_path / "outside"
    dest = outside / "dest"
    outside.mkdir()
    archive = tmp_path / "evil.tar.zst"
    size, sha = _archive(
        archive,
        [
            ("lib", "dir", ""),
            ("lib/up", "sym", ".."),
            ("lib/up2", "sym", "up/.."),
            ("lib/up2/ESCAPED.txt", "file", "written outside the destination"),
        ],
    )
    with pytest.raises(_pack.CorruptArchive, match=r"evil\.tar\.zst"):
        _restore(archive, dest, size, sha)
    assert not (outside / "ESCAPED.txt").exists()
    assert not list(tmp_path.rglob("ESCAPED.txt"))


@pytest.mark.parametrize(
    "member",
    [
        ("../up.txt", "file", "x"),
        ("lib/etc", "sym", "/etc"),
        ("lib/out", "sym", "../../out"),
    ],
)
def test_members_leaving_the_destination_are_refused(tmp_path: Path, member) -> None:
    archive = tmp_path / "bad.tar.zst"
    size, sha = _archive(archive, [("lib", "dir", ""), member])
    with pytest.raises(_pack.CorruptArchive):
        _restore(archive, tmp_path / "a" / "dest", size, sha)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "bad.tar.zst"]


def test_an_absolute_name_lands_inside_the_destination(tmp_path: Path) -> None:
    archive = tmp_path / "abs.tar.zst"
    size, sha = _archive(archive, [("/abs.txt", "file", "x")])
    _restore(archive, tmp_path / "dest", size, sha)
    assert (tmp_path / "dest" / "abs.txt").read_text() == "x"


def test_a_venv_shaped_tree_round_trips_with_its_python_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "lib" / "site-packages").mkdir(parents=True)
    (src / "lib" / "site-packages" / "mod.py").write_text("X = 1\n")
    (src / "bin" / "python").symlink_to("/nonexistent/python3.11")
    (src / "bin" / "python3").symlink_to("python")
    (src / "lib64").symlink_to("lib")
    (src / "pyvenv.cfg").write_text("home = /nonexistent\n")
    packed = _pack.pack(src, tmp_path / "env.tar.zst")
    dest = tmp_path / "dest"
    _restore(tmp_path / "env.tar.zst", dest, packed.archive_bytes, packed.archive_sha256)
    python = Path(sys.executable)
    assert os.readlink(dest / "bin" / "python") == str(python)
    assert os.readlink(dest / "bin" / "python3") == str(python)
    assert (dest / "lib64" / "site-packages" / "mod.py").read_text() == "X = 1\n"
    assert f"home = {python.parent}" in (dest / "pyvenv.cfg").read_text()
