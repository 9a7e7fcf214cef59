"""Restore: a published archive, and the shared layers its manifest names, unpacked
onto local disk and renamed into place (see ``_layout`` for the paths).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bootstrap import _disk, _layers, _pack
from bootstrap._layout import Layout, clean_stale, remove, tmp_name
from bootstrap._manifest import (
    MANIFEST_IN_ENV,
    env_is_ready,
    read_manifest,
    tree_problems,
    write_json_atomic,
)
from bootstrap._profile import Profile
from bootstrap._spec import FORMAT
from errors import BootstrapFailed

logger = logging.getLogger(__name__)


def _python_base() -> Path:
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))


def restore(
    profile: Profile, layout: Layout, manifest: dict[str, Any], progress: Callable[[str], None]
) -> dict[str, Any]:
    """Unpack the archive ``manifest`` names, and the layers it needs, to ``layout.local``;
    returns ``manifest``.

    Raises:
        _pack.CorruptArchive: an archive is missing or does not match its manifest
            (the caller rebuilds).
        BootstrapFailed: local disk is too full.
    """
    clean_stale(layout, holding_lease=False)
    need = int(manifest["unpacked_bytes"] * 1.05) + 16 * _disk.MB
    _disk.require_free(layout.local_envs, need, what=f"restoring the {profile.name} environment")
    tmp = layout.local_envs / tmp_name(layout)
    archive = layout.archive_of(manifest)
    assert archive is not None  # published_manifest checked the name
    mb = manifest["archive_bytes"] / _disk.MB
    progress(f"{profile.name}: restoring the environment from the volume ({mb:.0f} MB)")
    t = time.perf_counter()
    # The layers unpack in a thread while this one unpacks the profile's own archive
    # (both mostly wait on reads, decompression and file creation, which release the
    # GIL); the profile is renamed into place only once every layer is, so an
    # environment without its torch is never served.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layer")
    layers = [
        pool.submit(ensure_layer, profile, layout.for_key(ref["key"]), ref, progress)
        for ref in manifest.get("layers", ())
    ]
    try:
        _pack.restore(
            archive,
            tmp,
            sha256=manifest["archive_sha256"],
            size=manifest["archive_bytes"],
            python=_python_base(),
        )
        write_json_atomic(tmp / MANIFEST_IN_ENV, manifest)
        for layer in layers:
            layer.result()
        install_local(tmp, layout, manifest)
    except FileNotFoundError as exc:
        if not archive.exists():
            raise _pack.CorruptArchive(f"{archive} disappeared") from exc
        raise
    except OSError as exc:
        # tarfile's writes raise ENOSPC without a file name; the caller would then
        # blame the volume. What filled is the local envs directory.
        if _disk.is_disk_full(exc):
            _disk.raise_disk_full(
                layout.local_envs,
                need=need,
                free=None,
                what=f"restoring the {profile.name} environment",
            )
        raise
    finally:
        pool.shutdown(wait=True)  # a layer restore finishes (or fails) whole, never half
        remove(tmp)
    logger.info(
        "profile %s restored archive_mb=%.0f s=%.2f", profile.name, mb, time.perf_counter() - t
    )
    return manifest


def install_local(tmp: Path, layout: Layout, manifest: dict[str, Any]) -> None:
    """Rename ``tmp`` to the final local path, replacing only an invalid one."""
    install_dir(tmp, layout.local, layout, manifest)


def install_dir(tmp: Path, final: Path, layout: Layout, manifest: dict[str, Any]) -> None:
    """Rename ``tmp`` to ``final``; a valid one with the same content is kept instead
    (another process on this machine finished the same restore first)."""
    for _ in range(3):
        try:
            os.rename(tmp, final)
            return
        except OSError:
            existing = read_manifest(final / MANIFEST_IN_ENV)
            if (
                env_is_ready(existing, manifest["spec_hash"])
                and existing["archive_sha256"] == manifest["archive_sha256"]  # type: ignore[index]
            ):
                return
            aside = layout.local_envs / tmp_name(layout, ".old")
            with contextlib.suppress(FileNotFoundError):
                os.rename(final, aside)
            remove(aside)
    raise BootstrapFailed(f"could not move the environment into {final}")


# --- shared layers (see _layers) ---------------------------------------------------------


def layer_damage(local_envs: Path, ref: dict[str, Any]) -> list[str]:
    """Why the unpacked layer ``ref`` cannot be used; empty when it can."""
    where = _layers.local_dir(local_envs, ref)
    manifest = read_manifest(where / MANIFEST_IN_ENV)
    if not manifest or manifest.get("archive_sha256") != ref["archive_sha256"]:
        return [f"layer {where.name} is not unpacked"]
    return [f"layer {where.name}: {p}" for p in tree_problems(manifest.get("tree"), where)]


def ensure_layer(
    profile: Profile, layout: Layout, ref: dict[str, Any], progress: Callable[[str], None]
) -> Path:
    """The layer ``ref`` unpacked on this machine: kept when intact, else restored.

    Raises:
        _pack.CorruptArchive: its archive is missing or does not match ``ref``
            (the caller rebuilds the profile, which re-splits it).
    """
    final = _layers.local_dir(layout.local_envs, ref)
    if not layer_damage(layout.local_envs, ref):
        return final
    if final.exists():
        logger.warning("layer %s on local disk is damaged; restoring it", final.name)
        aside = layout.local_envs / tmp_name(layout, ".old")
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, aside)
        remove(aside)
    clean_stale(layout, holding_lease=False)
    need = int(ref["unpacked_bytes"] * 1.05) + 16 * _disk.MB
    _disk.require_free(layout.local_envs, need, what=f"restoring the {layout.key} layer")
    archive = layout.volume_envs / ref["archive"]
    mb = ref["archive_bytes"] / _disk.MB
    progress(f"{profile.name}: restoring the shared torch layer from the volume ({mb:.0f} MB)")
    tmp = layout.local_envs / tmp_name(layout)
    t = time.perf_counter()
    try:
        try:
            _pack.restore(
                archive,
                tmp,
                sha256=ref["archive_sha256"],
                size=ref["archive_bytes"],
                python=_python_base(),
            )
        except FileNotFoundError as exc:
            raise _pack.CorruptArchive(f"layer archive {archive} is missing") from exc
        contents = read_manifest(tmp / _layers.CONTENTS_FILE) or {}
        manifest = {
            **ref,
            "format": FORMAT,
            "profile": _layers.LAYER_NAME,
            "spec_hash": layout.key.rsplit("-", 1)[1],
            "attention": "none",
            "attention_reason": LAYER_ATTENTION,
            "tree": contents.get("tree", {}),
        }
        write_json_atomic(tmp / MANIFEST_IN_ENV, manifest)
        install_dir(tmp, final, layout, manifest)
    finally:
        remove(tmp)
    logger.info("layer %s restored archive_mb=%.0f s=%.2f", final.name, mb, time.perf_counter() - t)
    return final


LAYER_ATTENTION = "a shared layer; the profile's manifest says which attention it uses"
