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
    layers            list    the shared layers it was split against (see ``_layers``):
                              {key, archive, archive_sha256, archive_bytes,
                              unpacked_bytes}; restored before it; optional (none)
    tree              object  relative path -> size of every regular file in the
                              unpacked environment (see ``tree_listing``); optional:
                              manifests written before it existed have none
    index_url, extra_index_urls   the indexes, with any user:password@ removed
    built_at, build_s, builder, uv
"""

from __future__ import annotations

import json
import os
import stat
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bootstrap import _layers
from bootstrap._spec import FORMAT
from runtime import atomic

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
        and _layers.refs_are_valid(manifest.get("layers", []))
        and manifest["spec_hash"] == spec_hash
        and len(manifest["archive_sha256"]) == 64
        and manifest["archive_bytes"] > 0
        and manifest["attention"] in {"flash_attn", "sdpa", "none"}
    )


# Left out of a tree listing: bytecode caches (Python rewrites or regenerates them
# freely), the venv's config (restore rewrites its ``home`` line) and the manifest.
_UNLISTED_DIRS = frozenset({"__pycache__"})
_UNLISTED_FILES = frozenset({"pyvenv.cfg", MANIFEST_IN_ENV})


def tree_listing(root: Path) -> dict[str, int]:
    """Every regular file under ``root``: relative POSIX path -> size in bytes.

    Recorded in the manifest at build time so that an unpacked environment can be
    checked with one ``stat`` per file (:func:`tree_problems`), no hashing.
    """
    listing: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _UNLISTED_DIRS]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if name in _UNLISTED_FILES and dirpath == str(root):
                continue
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                listing[os.path.relpath(path, root).replace(os.sep, "/")] = st.st_size
    return listing


def tree_problems(listing: Mapping[str, int] | None, root: Path, *, limit: int = 3) -> list[str]:
    """What is wrong with the tree at ``root`` compared with its recorded listing.

    Missing files and files of another size, at most ``limit`` of them (one is
    enough to distrust the tree). An empty list means intact, or no listing to
    compare with (a manifest older than the listing).
    """
    problems: list[str] = []
    base = str(root)
    for rel, size in (listing or {}).items():
        try:
            actual = os.lstat(os.path.join(base, rel)).st_size
        except OSError:
            problems.append(f"{rel} is missing")
        else:
            if actual != size:
                problems.append(f"{rel} is {actual} bytes, {size} when built")
        if len(problems) >= limit:
            break
    return problems


def redact_url(url: str) -> str:
    """``url`` without a ``user:password@`` part, so a manifest never stores credentials."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to a process-unique temp file beside ``path``, then rename."""
    atomic.write_json(path, data)
