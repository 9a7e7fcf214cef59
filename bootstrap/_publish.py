"""Build: a profile's environment built with uv, torch carved into a shared layer,
packed, and published on the volume by rename (see ``_layout`` for the commit order).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootstrap import _build, _disk, _layers, _pack
from bootstrap._layout import Layout, published_manifest, remove, tmp_name
from bootstrap._lease import Lease
from bootstrap._manifest import (
    MANIFEST_IN_ENV,
    read_manifest,
    redact_url,
    tree_listing,
    write_json_atomic,
)
from bootstrap._profile import Profile
from bootstrap._restore import LAYER_ATTENTION, ensure_layer, install_dir, install_local
from bootstrap._spec import FORMAT, Target

logger = logging.getLogger(__name__)

ARCHIVE_RATIO = 0.7  # archive bytes / unpacked bytes, for the free-space check before a build


def _checkpoint(phase: str) -> None:
    """Called at ``install``, ``pack`` (half way) and ``publish`` (before the renames).

    A no-op. Crash tests replace it in a child process to stop the builder at that
    phase and SIGKILL it; production code never changes it.
    """


def _split_off_layer(
    profile: Profile,
    layout: Layout,
    target: Target,
    tmp_env: Path,
    lease: Lease,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Move torch and what it needs out of the freshly built ``tmp_env`` into the shared
    layer; returns the ``layers`` field of the profile's manifest (empty: no torch).

    The layer the volume's layer manifest names is reused (restored here first
    when this machine has not unpacked it) for every distribution identical to
    it; without one, or when it is unusable, this build's own torch closure
    becomes the layer and is published before the profile (its manifest names it).
    """
    key = _layers.layer_key(profile, target)
    if key is None:
        return []
    llayout = layout.for_key(key)
    site = _layers.site_packages(tmp_env, target)
    dists = _layers.read_dists(site)
    published = published_manifest(llayout, key.rsplit("-", 1)[1])
    if published is not None and isinstance(published.get("dists"), dict):
        ref = _layers.ref_of(key, published)
        same = _layers.identical(dists, published["dists"])
        if any(d.name == "torch" for d in same):
            try:
                where = ensure_layer(profile, llayout, ref, progress)
            except _pack.CorruptArchive as exc:
                logger.warning(
                    "profile %s layer %s unusable, making a new one: %s", profile.name, key, exc
                )
            else:
                with contextlib.suppress(OSError):  # fresh for gc's grace until we publish
                    os.utime(llayout.volume_envs / ref["archive"])
                moved = _layers.move_dists(same, site, tmp_env / ".layer-moved")
                remove(tmp_env / ".layer-moved")
                _layers.write_pth(site, [where])
                logger.info(
                    "profile %s shares layer %s (%d of %d distributions, %.0f MB)",
                    profile.name,
                    where.name,
                    len(same),
                    len(published["dists"]),
                    moved / _disk.MB,
                )
                return [ref]
    return [_publish_layer(profile, llayout, site, dists, lease, progress)]


def _publish_layer(
    profile: Profile,
    layout: Layout,
    site: Path,
    dists: dict[str, _layers.Dist],
    lease: Lease,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Carve torch's closure out of ``site`` into a new layer, publish it, unpack it here."""
    progress(f"{profile.name}: packing torch into a shared layer on the volume")
    names = _layers.closure(dists)
    tmp_layer = layout.local_envs / tmp_name(layout)
    tmp_archive = layout.volume_envs / tmp_name(layout, ".tar.zst")
    tmp_manifest = layout.volume_envs / tmp_name(layout, ".json")
    lease.keep_fresh(tmp_archive, tmp_manifest)
    try:
        tmp_layer.mkdir()
        _layers.move_dists([dists[n] for n in names], site, tmp_layer)
        recorded = {n: {"version": dists[n].version, "record": dists[n].record} for n in names}
        tree = tree_listing(tmp_layer)
        write_json_atomic(
            tmp_layer / _layers.CONTENTS_FILE, {"key": layout.key, "tree": tree, "dists": recorded}
        )
        packed = _pack.pack(tmp_layer, tmp_archive)
        archive = layout.archive_for(packed.archive_sha256)
        manifest = {
            "format": FORMAT,
            "profile": _layers.LAYER_NAME,
            "spec_hash": layout.key.rsplit("-", 1)[1],
            "archive": archive.name,
            "archive_bytes": packed.archive_bytes,
            "archive_sha256": packed.archive_sha256,
            "unpacked_bytes": packed.unpacked_bytes,
            "files": packed.files,
            "attention": "none",
            "attention_reason": LAYER_ATTENTION,
            "dists": recorded,
            "carved_from": profile.name,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "builder": f"{socket.gethostname()} pid {os.getpid()}",
        }
        write_json_atomic(tmp_manifest, manifest)
        # The archive under its content name, then the manifest: the same commit
        # order as a profile's. Two builders carving at once each publish a whole
        # pair; the profiles each name theirs, so neither is left without its layer.
        os.replace(tmp_archive, archive)
        os.replace(tmp_manifest, layout.manifest)
        ref = _layers.ref_of(layout.key, manifest)
        local = {**manifest, "tree": tree}
        write_json_atomic(tmp_layer / MANIFEST_IN_ENV, local)
        final = _layers.local_dir(layout.local_envs, ref)
        install_dir(tmp_layer, final, layout, local)
        _layers.write_pth(site, [final])
    finally:
        for leftover in (tmp_layer, tmp_archive, tmp_manifest):
            remove(leftover)
    logger.info(
        "profile %s published layer %s (%d distributions) archive_mb=%.0f",
        profile.name,
        final.name,
        len(names),
        packed.archive_bytes / _disk.MB,
    )
    return ref


def build_and_publish(
    profile: Profile,
    layout: Layout,
    target: Target,
    progress: Callable[[str], None],
    lease: Lease,
    *,
    replaces: Sequence[Path] = (),
) -> dict[str, Any]:
    """Build, pack and publish; ``lease``'s heartbeat keeps the volume temps fresh.

    ``replaces``: archives that were on the volume before this build, removed once
    ours is published, only while ``lease`` is still ours, and never the one the
    manifest names at that moment (an overlapping builder's publish stays whole;
    a reader part way through a removed archive retries with the new manifest).
    """
    size = profile.size_mb * _disk.MB
    _disk.require_free(layout.local_envs, 2 * size, what=f"building the {profile.name} environment")
    _disk.require_free(
        layout.volume_envs,
        int(size * ARCHIVE_RATIO),
        what=f"the {profile.name} environment archive on the volume",
    )
    tmp_env = layout.local_envs / tmp_name(layout)
    tmp_archive = layout.volume_envs / tmp_name(layout, ".tar.zst")
    tmp_manifest = layout.volume_envs / tmp_name(layout, ".json")
    lease.keep_fresh(tmp_archive, tmp_manifest)
    started = time.perf_counter()
    try:
        progress(f"{profile.name}: building the environment with uv")
        logger.info("profile %s build start spec=%s", profile.name, layout.key)
        attention, reason = _build.build(
            profile,
            tmp_env,
            target=target,
            checkpoint=_checkpoint,
            artifact_store=layout.artifacts,
        )
        layers = _split_off_layer(profile, layout, target, tmp_env, lease, progress)
        if layers:  # prove the split environment imports what the whole one did
            _build.smoke(profile, tmp_env / "bin" / "python")
            if profile.cuda:
                _build.check_cuda(profile, tmp_env / "bin" / "python")
        progress(f"{profile.name}: packing the environment onto the volume")
        half = [False]

        def on_member(done: int, total: int) -> None:
            if not half[0] and done * 2 >= total:
                half[0] = True
                _checkpoint("pack")

        tree = tree_listing(tmp_env)
        packed = _pack.pack(tmp_env, tmp_archive, on_member=on_member)
        archive = layout.archive_for(packed.archive_sha256)
        manifest = {
            "format": FORMAT,
            "profile": profile.name,
            "spec_hash": layout.key.rsplit("-", 1)[1],
            "requirements": sorted(profile.requirements),
            "index_url": redact_url(profile.index_url) if profile.index_url else None,
            "extra_index_urls": [redact_url(url) for url in profile.extra_index_urls],
            "artifacts": [
                {
                    "file": a.filename,
                    "url": redact_url(a.url),
                    "fetched_from": redact_url(a.fetch_from or a.url),
                    "sha256": a.sha256,
                    "kind": a.kind,
                    "name": a.name,
                }
                for a in profile.artifacts
            ],
            "python": ".".join(map(str, sys.version_info[:3])),
            "abi": target.abi,
            "platform": target.platform,
            "libc": target.libc,
            "archive": archive.name,
            "archive_bytes": packed.archive_bytes,
            "archive_sha256": packed.archive_sha256,
            "unpacked_bytes": packed.unpacked_bytes,
            "files": packed.files,
            "tree": tree,
            "layers": layers,
            "attention": attention,
            "attention_reason": reason,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_s": round(time.perf_counter() - started, 2),
            "builder": f"{socket.gethostname()} pid {os.getpid()}",
            "uv": _build.uv_version(),
            "installed": _installed_names(profile),
        }
        write_json_atomic(tmp_env / MANIFEST_IN_ENV, manifest)
        write_json_atomic(tmp_manifest, manifest)
        _checkpoint("publish")
        # Publish: the archive under its content name (an old manifest never names
        # it), then the manifest over the old one, the commit point readers look for.
        os.replace(tmp_archive, archive)
        os.replace(tmp_manifest, layout.manifest)
        if lease.held and not lease.lost:
            named = layout.archive_of(read_manifest(layout.manifest) or {})
            for old in replaces:
                if old not in (archive, named):
                    logger.info("removing replaced archive %s", old.name)
                    old.unlink(missing_ok=True)
        install_local(tmp_env, layout, manifest)
    except OSError as exc:
        if _disk.is_disk_full(exc):
            where = Path(exc.filename) if exc.filename else layout.volume_envs
            _disk.raise_disk_full(
                where.parent if where.name.startswith(".tmp-") else where,
                need=None,
                free=None,
                what=f"the {profile.name} environment",
            )
        raise
    finally:
        for leftover in (tmp_env, tmp_archive, tmp_manifest):
            remove(leftover)
    logger.info(
        "profile %s built and published archive_mb=%.0f attention=%s s=%.1f",
        profile.name,
        packed.archive_bytes / _disk.MB,
        attention,
        time.perf_counter() - started,
    )
    return manifest


def _installed_names(profile: Profile) -> list[str]:
    return sorted(profile.pins)  # requirements and wheel artifacts, by normalised name
