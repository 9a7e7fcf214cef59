"""Pack an environment into one tar+zstd archive, and restore it with verification.

Why an archive: a network volume serves one big sequential read at hundreds of
MB/s but thousands of small files badly, and importing a library from a venv on
the volume touches every one of them. One archive restored to local disk is also
independent of the mount path.

``tarfile`` and ``zstandard`` do the format work; the code here only streams
between them and hashes the compressed bytes as they pass, so the archive is
read once: extract and verify in one pass, into a temp directory the caller
renames into place only when the digest matched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

ZSTD_LEVEL = 3  # level 3 packs ~2-3x at hundreds of MB/s; higher levels cost minutes on torch
_READ_CHUNK = 1024 * 1024
# The venv's interpreter links (bin/python, python3, python3.11) end at the image's
# Python by absolute path. At restore they are re-pointed at the restoring
# interpreter, which the spec hash guarantees is the same version, so an archive
# works wherever that Python lives. Every other member goes through tarfile's
# "data" filter, which refuses absolute names, special files and links out of the
# destination, resolving links already extracted (a name-only check cannot see
# that ``lib/up2 -> up/..`` leaves the tree once ``lib/up -> ..`` exists).
_PYTHON_LINK = re.compile(r"bin/python[0-9.]*")


class CorruptArchive(Exception):
    """The archive does not match its manifest (digest, size or tar structure)."""


@dataclass(frozen=True)
class Packed:
    archive_bytes: int
    archive_sha256: str
    files: int
    unpacked_bytes: int


class _HashingWriter:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.count += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class _Inflater:
    """Decompress (and hash) in a background thread; read forward-only in this one.

    Two things ``tarfile`` + ``zstandard`` do not give us out of the box:

    * pipelining: ``tar -I zstd`` runs zstd and tar as two processes; here a
      thread reads, hashes and decompresses (both release the GIL) while the
      caller's thread writes files;
    * a cheap forward ``seek``: ``tarfile``'s stream mode (``r|``) re-slices its
      whole read buffer on every small read, which cost more than decompressing;
      its normal mode needs only ``seek``/``tell``, and extracting in order it
      only ever seeks forward.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.sha = hashlib.sha256()
        self.count = 0
        self.pos = 0
        self._raw = raw
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=32)
        self._buf = memoryview(b"")
        self._eof = False
        self._stop = False
        self._thread = threading.Thread(target=self._produce, name="inflate", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            dobj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
            while not self._stop:
                data = self._raw.read(_READ_CHUNK)
                if not data:
                    break
                self.sha.update(data)
                self.count += len(data)
                out = dobj.decompress(data)
                if out:
                    self._chunks.put(out)
            self._chunks.put(None)
        except BaseException as exc:  # handed to the reading thread
            self._chunks.put(exc)

    def close(self) -> None:
        """Stop the producer (e.g. after an extraction error) and wait for it."""
        self._stop = True
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._chunks.get(timeout=0.05)
        self._thread.join()

    def drain(self) -> None:
        """Read to the end so every compressed byte has been hashed."""
        while self.read(_READ_CHUNK):
            pass
        self._thread.join()

    def _fill(self) -> bool:
        if self._eof:
            return False
        item = self._chunks.get()
        if item is None:
            self._eof = True
            return False
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        self._buf = memoryview(item)
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 62
        parts: list[bytes] = []
        want = size
        while want > 0:
            if not self._buf and not self._fill():
                break
            take = self._buf[:want]
            self._buf = self._buf[len(take) :]
            parts.append(bytes(take))
            want -= len(take)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self.pos + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self.pos:
            raise OSError(f"cannot seek back in a compressed stream ({self.pos} -> {target})")
        while self.pos < target:
            if not self.read(min(target - self.pos, _READ_CHUNK)):
                break
        return self.pos

    def seekable(self) -> bool:
        return True


def _members(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        found.extend(base / d for d in dirnames)
        found.extend(base / f for f in sorted(filenames))
    return found


def pack(
    src: Path,
    dest: Path,
    *,
    on_member: Callable[[int, int], None] | None = None,
    threads: int = -1,
) -> Packed:
    """Write ``src`` as a tar+zstd archive to ``dest`` (multithreaded compression).

    ``on_member(done, total)`` is called after each member. The caller owns
    ``dest``: it should be a temp path that is renamed only after the manifest.
    """
    paths = _members(src)
    unpacked = 0
    with open(dest, "wb") as raw:
        hashing = _HashingWriter(raw)
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=threads)
        with (
            cctx.stream_writer(hashing, closefd=False) as zst,
            tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for i, path in enumerate(paths, 1):
                info = tar.gettarinfo(str(path), arcname=path.relative_to(src).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    unpacked += info.size
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
                if on_member is not None:
                    on_member(i, len(paths))
        raw.flush()
        os.fsync(raw.fileno())
    return Packed(hashing.count, hashing.sha.hexdigest(), len(paths), unpacked)


def restore(
    archive: Path,
    dest: Path,
    *,
    sha256: str,
    size: int,
    python: Path,
) -> None:
    """Extract ``archive`` into the new directory ``dest``, verifying it on the way.

    The digest covers every compressed byte, so it is checked after the tar end
    marker too. ``python`` becomes the target of the venv's ``bin/python`` link.

    Raises:
        CorruptArchive: wrong size or digest, a damaged tar/zstd stream, or a member
            the ``data`` filter refuses (e.g. a link out of ``dest``); ``dest`` may
            hold partial content the caller must remove.
    """
    actual_size = archive.stat().st_size
    if actual_size != size:
        raise CorruptArchive(f"{archive} is {actual_size} bytes, its manifest says {size}")
    dest.mkdir(parents=True)
    dest_str = str(dest)

    def relocate(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        if member.issym() and _PYTHON_LINK.fullmatch(member.name):
            return member.replace(linkname=str(python), deep=False)
        return tarfile.data_filter(member, path)

    with open(archive, "rb") as raw:
        inflater = _Inflater(raw)
        try:
            with tarfile.open(fileobj=inflater, mode="r:") as tar:  # type: ignore[call-overload]
                tar.copybufsize = _READ_CHUNK
                tar.extractall(dest_str, filter=relocate)
            inflater.drain()
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            raise CorruptArchive(f"{archive} is damaged: {exc}") from exc
        finally:
            inflater.close()
    hashing = inflater
    digest = hashing.sha.hexdigest()
    if digest != sha256:
        raise CorruptArchive(
            f"{archive} has sha256 {digest[:12]}…, its manifest says {sha256[:12]}…"
        )
    _point_venv_at(dest, python)


def _point_venv_at(venv: Path, python: Path) -> None:
    """Rewrite ``pyvenv.cfg``'s ``home`` for the restoring interpreter."""
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        return
    lines = cfg.read_text().splitlines()
    out = [
        f"home = {python.parent}" if line.split("=", 1)[0].strip() == "home" else line
        for line in lines
    ]
    cfg.write_text("\n".join(out) + "\n")
