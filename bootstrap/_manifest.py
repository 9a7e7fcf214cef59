"""Manifests: the only thing a reader trusts.

An archive on the volume, or an unpacked environment on local disk, counts only
if its manifest parses and matches the spec hash the reader computed. A missing,
truncated or foreign manifest means "absent", never an error (HF
``read_download_metadata`` does the same): whatever it described is garbage that
the next builder or ``gc`` removes.

Manifest fields (JSON object)::

    format            int     layout version (``_spec.FORMAT``)
    profile           str     profile name
    spec_hash         str     16 hex characters
    requirements      list    the pins it was built from
    artifacts         list    {file, url, fetched_from, sha256, kind, name} per artifact
    python            str     "3.11.7"; abi, platform, libc as in ``_spec.Target``
    archive           str     the archive beside it, ``<key>-<sha256[:12]>.tar.zst`` (Layout)
    archive_bytes     int     its exact size
    archive_sha256    str     sha256 of the compressed bytes
    unpacked_bytes    int     size on local disk after restore
    files             int     members in the archive
    attention         str     "flash_attn", "sdpa" or "none"
    attention_reason  str     why (the chosen wheel, or why it fell back)
    built_at, build_s, builder, uv
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bootstrap._spec import FORMAT

MANIFEST_IN_ENV = "media-worker-manifest.json"

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": int,
    "profile": str,
    "spec_hash": str,
    "archive": str,
    "archive_bytes": int,
    "archive_sha256": str,
    "unpacked_bytes": int,
    "attention": str,
    "attention_reason": str,
}


def env_is_ready(manifest: Mapping[str, Any] | None, spec_hash: str) -> bool:
    """True when ``manifest`` is complete, of this format and for ``spec_hash``.

    Pure: the caller reads the file (unreadable counts as None).
    """
    if not isinstance(manifest, Mapping):
        return False
    for key, kind in _REQUIRED.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return False
    return (
        manifest["format"] == FORMAT
        and manifest["spec_hash"] == spec_hash
        and len(manifest["archive_sha256"]) == 64
        and manifest["archive_bytes"] > 0
        and manifest["attention"] in {"flash_attn", "sdpa", "none"}
    )


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to a process-unique temp file beside ``path``, then rename."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
