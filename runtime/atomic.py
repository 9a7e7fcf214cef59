"""Temp-then-rename: the one way a file (or folder) becomes visible under its name.

Used on the volume (manifests, archives, artifacts, saved voices), in the local
output store and in the job's scratch directory, by the worker and by runner
processes alike (stdlib only). A reader never sees a half-written file under the
final name: the bytes go to a temp name beside it, and ``os.replace`` (atomic
within one file system) moves them in. On any error the temp is removed.

One temp-name style everywhere::

    <dir>/.tmp-<base>-<host>-<pid>-<rand><rest>     for the final name <base><rest>

``<rest>`` starts at the name's first dot, so ``restored.mp4`` keeps its ``.mp4``
(FFmpeg picks a muxer by it). The host and pid say whose temp it is: ``bootstrap``
collects a dead builder's temps on a shared volume by them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


def temp_name(name: str) -> str:
    """The temp name for ``name``, unique to this process and call."""
    base, dot, rest = name.partition(".")
    host = socket.gethostname().replace("-", "_")[:32]
    return f"{TEMP_PREFIX}{base}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}{dot}{rest}"


def temp_beside(final: Path) -> Path:
    """A temp path in ``final``'s folder (the same file system, so the rename is atomic)."""
    return final.with_name(temp_name(final.name))


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temp path beside ``final``; when the block ends without error, rename
    it to ``final``. The temp is removed whatever happens.

    Raises:
        OSError: writing or renaming failed; nothing new is under ``final``.
    """
    tmp = temp_beside(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_bytes(final: Path, data: bytes | memoryview, *, durable: bool = False) -> None:
    """Write ``data`` to ``final`` atomically; ``durable``: fsync before the rename
    (what a crash must not lose: a manifest on the volume)."""
    with atomic_path(final) as tmp, open(tmp, "wb") as out:
        out.write(data)
        if durable:
            out.flush()
            os.fsync(out.fileno())


def write_json(final: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``final`` atomically and durably."""
    write_bytes(final, json.dumps(data, indent=1, sort_keys=True).encode(), durable=True)


def copy(source: Path, final: Path) -> None:
    """Copy ``source`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
