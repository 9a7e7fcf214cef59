"""The local output store: a directory used when no S3 bucket is configured, and the
place outputs are kept when an S3 upload fails.

::

    <config.resolve_paths().outputs>/       MEDIA_WORKER_OUTPUT_DIR, or <home>/outputs
      [<prefix>/]jobs/<job id>/<file name>  complete files only
      [<prefix>/]jobs/<job id>/.<file name>.<pid>.<rand>.part   a copy in progress

A file under its final name is always complete: it is copied to a process-unique
temp name and renamed into place; a failed copy removes the temp file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import config
from runtime import atomic

logger = logging.getLogger(__name__)


def outputs_root() -> Path:
    """The local store's root, resolved now (tests patch the environment)."""
    return config.resolve_paths().outputs


def store_copy(source: Path, key: str, *, root: Path | None = None) -> Path:
    """Copy ``source`` to ``<root>/<key>`` atomically and return the final path.

    ``key`` must come from the publish module's key builder (validated prefix,
    sanitised job id, plain file name); the containment check below is a second guard.

    Raises:
        OSError: the copy failed; nothing is left under the final name.
    """
    root = (root or outputs_root()).resolve()
    final = (root / key).resolve()
    if not final.is_relative_to(root) or final == root:
        raise ValueError(f"output key {key!r} escapes the local store")
    final.parent.mkdir(parents=True, exist_ok=True)
    atomic.copy(source, final)
    return final
