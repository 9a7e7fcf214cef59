"""Free-space checks before a restore, build or download.

``disk_usage`` is a module attribute so a test can swap it for a fake when it
cannot mount a small file system.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from errors import BootstrapFailed

disk_usage = shutil.disk_usage

MB = 1024 * 1024


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return disk_usage(probe).free


def require_free(path: Path, need: int, *, what: str) -> None:
    """Raise unless ``need`` bytes are free where ``path`` lives.

    Raises:
        BootstrapFailed: not enough space; the message says how much is needed,
            where, and how much is free.
    """
    free = free_bytes(path)
    if free < need:
        raise_disk_full(path, need=need, free=free, what=what)


def raise_disk_full(path: Path, *, need: int | None, free: int | None, what: str) -> None:
    if free is None:
        try:
            free = free_bytes(path)
        except OSError:
            free = -1
    needed = f"about {need / MB:.0f} MB" if need else "more space"
    raise BootstrapFailed(
        f"not enough disk space for {what}: need {needed} in {path}, "
        f"{max(free, 0) / MB:.0f} MB free.\n\n"
        f"hint: free space there (python -m models gc), or give the volume or the "
        f"container disk more room"
    )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
