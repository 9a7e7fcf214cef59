"""``ensure(profile)``: the cheapest way to a ready environment, then the weights.

The walk, cheapest first::

    in place   the current interpreter already has every pin     no I/O beyond metadata
    local      <envs>/<profile>-<hash>/ with a valid manifest    < 50 ms, no subprocess
    restored   <home>/envs/<profile>-<hash>.json + its archive   stream-extract, verify, rename
    built      under the lease: uv venv, install, smoke check, pack, publish by rename

Files (``<home>`` is on the volume, ``<envs>`` on local disk; :class:`Layout` names
them all)::

    <home>/envs/<key>-<sha12>.tar.zst    archive, named by its content's sha256
    <home>/envs/<key>.json               manifest naming the archive: the commit point
    <home>/envs/.tmp-<key>-<host>-<pid>-<rand>.*   a build in progress (or garbage)
    <home>/leases/<key>.lock             the build lease (see _lease)
    <envs>/<key>/                        unpacked venv; media-worker-manifest.json inside
    <envs>/.tmp-<key>-<host>-<pid>-<rand>/   a restore or build in progress (or garbage)
    <home>/envs/torch_layer-<hash>*, <envs>/torch_layer-<hash>-<sha12>/
                                         torch and what it needs, shared by the profiles
                                         that pin the same torch (see _layers); a
                                         manifest's ``layers`` names those it needs,
                                         restored (once per machine) before it

where ``<key>`` is ``<profile>-<spec hash>``. Publishing renames the archive to its
content name, then the manifest over the old one: two builders whose leases
overlapped (a lease broken under a slow builder, or a volume without hard links)
each publish a complete pair and the last manifest wins; neither ever removes the
other's manifest or archive. Readers follow the manifest's ``archive`` field.

Whatever a crash leaves behind is a temp name nobody trusts. A volume temp is
garbage only when its builder no longer holds the lease and its heartbeat stopped
(its mtime is older than a lease lifetime on the volume's clock), or its process is
gone on this host; the next builder under the lease, or ``gc``, removes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from packaging.version import InvalidVersion, Version

import config
from bootstrap import _build, _cuda, _disk, _layers, _pack, _weights
from bootstrap._lease import (
    Lease,
    LeasesUnsupported,
    is_stale,
    lease_owner,
    lease_path,
    pid_is_alive,
    volume_now,
)
from bootstrap._manifest import (
    MANIFEST_IN_ENV,
    env_is_ready,
    read_manifest,
    redact_url,
    tree_listing,
    tree_problems,
    write_json_atomic,
)
from bootstrap._profile import Profile, with_index_overrides
from bootstrap._spec import FORMAT, Target, current_target, spec_hash
from errors import BootstrapFailed
from runtime import atomic, machine

logger = logging.getLogger(__name__)

LEASE_POLL_S = 5.0  # how long one attempt to take a held lease blocks
PROGRESS_EVERY_S = 15.0
ARCHIVE_RATIO = 0.7  # archive bytes / unpacked bytes, for the free-space check before a build


@dataclass(frozen=True)
class Environment:
    """A ready profile environment.

    Attributes:
        python: the interpreter a runner process for this profile must use.
        source: how it became ready: ``in-place``, ``local``, ``restored`` or ``built``.
        spec_hash: the profile's spec hash on this interpreter and platform.
        attention: ``flash_attn``, ``sdpa`` or ``none``; ``attention_reason`` says why.
        weights: repo id -> local snapshot path (runners read them with HF_HUB_OFFLINE=1).
        seconds: how long ``ensure`` took.
    """

    python: Path
    source: Literal["in-place", "local", "restored", "built"]
    spec_hash: str
    attention: str
    weights: dict[str, Path]
    seconds: float
    attention_reason: str = ""
    root: Path | None = field(default=None, compare=False)


# What a published file on the volume is called: <key>.json or <key>-<sha12>.tar.zst.
_VOLUME_FILE = re.compile(
    r"(?P<key>[a-z0-9_]+-[0-9a-f]{16})(?:\.json|-(?P<sha>[0-9a-f]{12})\.tar\.zst)"
)


@dataclass(frozen=True)
class Layout:
    """Every path that belongs to one (profile, spec hash)."""

    key: str
    manifest: Path
    lease: Path
    local: Path
    volume_envs: Path
    local_envs: Path
    hf_home: Path
    artifacts: Path

    def archive_for(self, sha256: str) -> Path:
        """The archive with this content: ``<key>-<sha256[:12]>.tar.zst``."""
        return self.volume_envs / f"{self.key}-{sha256[:12]}.tar.zst"

    def archives(self) -> list[Path]:
        """Every archive of this key on the volume, whichever content it holds."""
        return sorted(self.volume_envs.glob(f"{self.key}-*.tar.zst"))

    def archive_of(self, manifest: dict[str, Any]) -> Path | None:
        """The archive ``manifest`` names, or None when the name is not the one its
        digest gives (a foreign or tampered manifest points nowhere)."""
        archive = self.archive_for(str(manifest.get("archive_sha256", "")))
        return archive if manifest.get("archive") == archive.name else None

    def for_key(self, key: str) -> Layout:
        """The layout of another key on the same volume and local disk (a shared layer)."""
        return dataclasses.replace(
            self,
            key=key,
            manifest=self.volume_envs / f"{key}.json",
            lease=lease_path(self.lease.parent, key),
            local=self.local_envs / key,
        )

    @staticmethod
    def parse_volume_name(name: str) -> tuple[str, str | None] | None:
        """``(key, sha12)`` of an archive, ``(key, None)`` of a manifest, else None."""
        m = _VOLUME_FILE.fullmatch(name)
        return (m["key"], m["sha"]) if m else None

    @classmethod
    def of(cls, name: str, digest: str, paths: config.Paths) -> Layout:
        key = f"{name}-{digest}"
        volume_envs = paths.home / "envs"
        return cls(
            key=key,
            manifest=volume_envs / f"{key}.json",
            lease=lease_path(paths.home / "leases", key),
            local=paths.envs / key,
            volume_envs=volume_envs,
            local_envs=paths.envs,
            hf_home=paths.home / "hf",
            artifacts=paths.home / "artifacts",
        )


def _checkpoint(phase: str) -> None:
    """Called at ``install``, ``pack`` (half way) and ``publish`` (before the renames).

    A no-op. Crash tests replace it in a child process to stop the builder at that
    phase and SIGKILL it; production code never changes it.
    """


def unmet_pins(
    pins: Mapping[str, str], installed: Callable[[str], str | None] | None = None
) -> list[str]:
    """The pins the installed versions (``installed(name)``) do not meet, in words.

    Equal means equal as PEP 440 versions (``1.8`` is ``1.8.0``); a local label
    differs (``2.13.0+cpu`` is not the CUDA index's ``2.13.0``).
    """
    lookup = installed or _installed_version

    def same(version: str, have: str | None) -> bool:
        try:
            return have is not None and Version(have) == Version(version)
        except InvalidVersion:
            return False

    return [
        f"{name}=={version} (installed: {have or 'none'})"
        for name, version in pins.items()
        if not same(version, have := lookup(name))
    ]


def is_satisfied_in_place(
    pins: Mapping[str, str], installed: Callable[[str], str | None] | None = None
) -> bool:
    """True when every pin equals the installed version (see :func:`unmet_pins`)."""
    return not unmet_pins(pins, installed)


def is_served_in_place(profile: Profile) -> bool:
    """True when ``ensure`` serves ``profile`` with this interpreter (no environment built).

    Always with ``MEDIA_WORKER_IN_PLACE``; otherwise every pin must be installed here
    at its version, and the profile must carry no source artifact: that lives only
    inside a built environment, never in this one.
    """
    if config.IN_PLACE.get():
        return True
    has_source = any(a.kind == "source" for a in profile.artifacts)
    return not has_source and is_satisfied_in_place(profile.pins)


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def for_this_machine(
    profile: Profile, facts: machine.Machine | None = None
) -> tuple[Profile, _cuda.CudaChoice | None]:
    """``profile`` as this machine builds it, and the CUDA build chosen (None without torch).

    The index settings (``MEDIA_WORKER_INDEX_URL`` ...) apply first, then the CUDA
    build for ``facts`` (default: this machine, probed once) or ``MEDIA_WORKER_CUDA_BUILD``.
    Every reader and writer of the volume on this kind of machine computes the spec
    hash of this result, so they agree on one archive. A refused choice leaves the
    profile as it was; the caller decides whether to stop.
    """
    forced = config.CUDA_BUILD.get()
    return _cuda.for_machine(
        with_index_overrides(profile),
        machine.probe() if facts is None else facts,
        forced=None if forced == "auto" else forced,
    )


def ensure(
    profile: Profile,
    *,
    on_progress: Callable[[str], None] | None = None,
    paths: config.Paths | None = None,
    in_place: bool = True,
    force: bool = False,
    verify: bool = False,
    max_wait_s: float | None = None,
    cached_models: Path | None = None,
) -> Environment:
    """Make ``profile``'s environment and weights ready; cheap when they already are.

    Args:
        profile: what the runner needs.
        on_progress: called with one human-readable line per step (and while waiting).
        paths: the volume and local-disk directories (default ``config.resolve_paths()``).
        in_place: use the current interpreter when it satisfies every pin.
            ``prepare`` passes False to build and publish an archive regardless.
        force: rebuild and republish even when a valid archive exists.
        verify: also run the smoke imports before trusting the unpacked
            environment (its file list is always checked); the handler asks for
            this after a runner could not start from it.
        max_wait_s: longest to wait for another worker's build (default
            ``MEDIA_WORKER_BUILD_WAIT_S``).
        cached_models: RunPod's cached-models directory (default
            ``/runpod-volume/huggingface-cache/hub``).

    Returns:
        The ready :class:`Environment`.

    Raises:
        BootstrapFailed: a build, restore, download or disk-space check failed,
            another worker's build did not finish in time, or no CUDA build of the
            profile's torch runs on this GPU with this driver. The message says what,
            where, why and what to do.
    """
    started = time.perf_counter()
    profile, cuda = for_this_machine(profile)
    if cuda is not None and cuda.refused:
        raise BootstrapFailed(f"profile {profile.name}: {cuda.reason}")
    paths = paths or config.resolve_paths()
    progress = on_progress or (lambda _message: None)
    target = current_target()
    digest = spec_hash(profile, target)
    if in_place and not force and is_served_in_place(profile):
        # With MEDIA_WORKER_IN_PLACE the interpreter is the operator's (a baked image, a
        # GPU machine's own torch), so a pin it misses is theirs to judge: logged only.
        _warn_unmet(profile)
        python, source, manifest, root = (
            Path(sys.executable),
            "in-place",
            _in_place_attention(profile),
            None,
        )
    else:
        layout = Layout.of(profile.name, digest, paths)
        try:
            source, manifest = _ensure_environment(
                profile,
                layout,
                target=target,
                force=force,
                verify=verify,
                progress=progress,
                max_wait_s=config.BUILD_WAIT_S.get() if max_wait_s is None else max_wait_s,
            )
        except OSError as exc:
            if _disk.is_disk_full(exc):
                _disk.raise_disk_full(
                    Path(exc.filename or paths.home),
                    need=None,
                    free=None,
                    what=f"the {profile.name} environment",
                )
            raise BootstrapFailed(
                f"profile {profile.name}: environment failed: {exc}\n\n"
                f"hint: python -m models doctor"
            ) from exc
        python, root = layout.local / "bin" / "python", layout.local
    weights = _weights.ensure_weights(
        profile.weights,
        hf_home=paths.home / "hf",
        cached_models=(
            Path(config.CACHED_MODELS_DIR.get()) if cached_models is None else cached_models
        ),
        on_progress=progress,
        image_weights=Path(config.IMAGE_WEIGHTS_DIR.get()),
    )
    seconds = time.perf_counter() - started
    logger.info(
        "profile %s ready source=%s spec=%s cuda=%s attention=%s s=%.3f",
        profile.name,
        source,
        digest,
        cuda.build if cuda else "none",
        manifest["attention"],
        seconds,
    )
    return Environment(
        python=python,
        source=source,  # type: ignore[arg-type]
        spec_hash=digest,
        attention=manifest["attention"],
        weights=weights,
        seconds=seconds,
        attention_reason=manifest["attention_reason"],
        root=root,
    )


def _warn_unmet(profile: Profile) -> None:
    unmet = unmet_pins(profile.pins)
    # wheel artifacts are among the pins; a source archive only ever lives in a built env
    unmet += [f"{a.filename} (a source artifact)" for a in profile.artifacts if a.kind == "source"]
    if unmet:
        logger.warning(
            "profile %s runs in this interpreter (%s) without: %s",
            profile.name,
            config.IN_PLACE.name,
            "; ".join(unmet),
        )


def _in_place_attention(profile: Profile) -> dict[str, str]:
    if "torch" not in profile.pins:
        return {
            "attention": "none",
            "attention_reason": "the profile has no torch; no attention backend applies",
        }
    if profile.flash_attn and _installed_version("flash-attn") == profile.flash_attn:
        return {"attention": "flash_attn", "attention_reason": "installed in this interpreter"}
    return {"attention": "sdpa", "attention_reason": "in place without flash-attn"}


def local_manifest(layout: Layout) -> dict[str, Any] | None:
    return read_manifest(layout.local / MANIFEST_IN_ENV)


def _ensure_environment(
    profile: Profile,
    layout: Layout,
    *,
    target: Target,
    force: bool,
    verify: bool,
    progress: Callable[[str], None],
    max_wait_s: float,
) -> tuple[str, dict[str, Any]]:
    digest = layout.key.rsplit("-", 1)[1]
    if not force:
        manifest = local_manifest(layout)
        if env_is_ready(manifest, digest):
            damage = _local_damage(profile, layout, manifest, verify=verify)  # type: ignore[arg-type]
            if not damage:
                return "local", manifest  # type: ignore[return-value]
            logger.warning(
                "profile %s unpacked environment %s is damaged (%s); restoring it",
                profile.name,
                layout.local,
                "; ".join(damage),
            )
            progress(f"{profile.name}: the unpacked environment is damaged; restoring it")
            _discard_local(layout)
    layout.volume_envs.mkdir(parents=True, exist_ok=True)
    layout.local_envs.mkdir(parents=True, exist_ok=True)
    bad_sha: str | None = None
    started = time.monotonic()
    last_note = 0.0
    while True:
        if not force:
            manifest = _published(layout, digest)
            if manifest is not None and manifest["archive_sha256"] != bad_sha:
                try:
                    return "restored", _restore(profile, layout, manifest, progress)
                except _pack.CorruptArchive as exc:
                    bad_sha = manifest["archive_sha256"]
                    logger.warning("profile %s archive corrupt, rebuilding: %s", profile.name, exc)
                    progress(f"{profile.name}: the archive on the volume is corrupt; rebuilding")
        lease = Lease(layout.lease)
        try:
            acquired = lease.try_acquire(LEASE_POLL_S)
        except LeasesUnsupported as exc:
            # Leases only save duplicate work; the publish is safe without them.
            logger.warning(
                "profile %s building without a lease (duplicate builds possible): "
                "the volume refuses hard links: %s",
                profile.name,
                exc,
            )
            progress(f"{profile.name}: building without a lease (the volume has no hard links)")
            lease.start_heartbeat()  # keeps this build's temps fresh
            try:
                return "built", _build_and_publish(profile, layout, target, progress, lease)
            finally:
                lease.release()
        if acquired:
            try:
                manifest = _published(layout, digest)
                if not force and manifest is not None and manifest["archive_sha256"] != bad_sha:
                    continue  # published while we waited: restore it (lease released below)
                _clean_stale(layout, holding_lease=True)
                # Under the lease, the archives we replace (the one found corrupt or
                # forced out, or left unnamed by a crash) go once ours is published.
                return "built", _build_and_publish(
                    profile, layout, target, progress, lease, replaces=layout.archives()
                )
            finally:
                lease.release()
        waited = time.monotonic() - started
        if waited > max_wait_s:
            raise BootstrapFailed(
                f"profile {profile.name}: waited {waited:.0f} s for {lease_owner(layout.lease)} "
                f"to build it (lease {layout.lease}), and it is still not published.\n\n"
                "hint: a dead builder's lease expires within a few minutes and is taken over; "
                "check `python -m models status`, or prepare it ahead with "
                f"`python -m models prepare {profile.name}`"
            )
        if waited - last_note >= PROGRESS_EVERY_S or last_note == 0.0:
            last_note = max(waited, 0.001)
            owner = lease_owner(layout.lease)
            logger.info(
                "profile %s waiting for build by %s elapsed_s=%.0f", profile.name, owner, waited
            )
            progress(f"{profile.name}: waiting for {owner} to build it ({waited:.0f} s)")


def _published(layout: Layout, digest: str) -> dict[str, Any] | None:
    """The volume's manifest when it is valid for ``digest`` and names its archive properly."""
    manifest = read_manifest(layout.manifest)
    if env_is_ready(manifest, digest) and layout.archive_of(manifest) is not None:  # type: ignore[arg-type]
        return manifest
    return None


def _local_damage(
    profile: Profile, layout: Layout, manifest: dict[str, Any], *, verify: bool
) -> list[str]:
    """Why the unpacked environment cannot be trusted; empty when it can.

    Always one ``stat`` per recorded file (a half-restored tree after a host crash,
    a deleted file); with ``verify`` also the profile's smoke imports.
    """
    python = layout.local / "bin" / "python"
    if not python.exists():
        return [f"{python} is missing"]
    damage = tree_problems(manifest.get("tree"), layout.local)
    for ref in manifest.get("layers", ()):
        damage += _layer_damage(layout.local_envs, ref)
    if not damage and verify:
        try:
            _build.smoke(profile, python)
        except BootstrapFailed as exc:
            damage = [exc.message.splitlines()[-1]]
    return damage


def _discard_local(layout: Layout) -> None:
    """Move the unpacked environment aside (so no reader finds it), then delete it."""
    aside = layout.local_envs / _tmp_name(layout, ".old")
    with contextlib.suppress(FileNotFoundError):
        os.rename(layout.local, aside)
    _remove(aside)


def _tmp_name(layout: Layout, suffix: str = "") -> str:
    return atomic.temp_name(layout.key + suffix)


def _tmp_pid(name: str, key: str) -> tuple[str, int] | None:
    """``(host, pid)`` from a temp name made by :func:`_tmp_name`, else None."""
    prefix = f".tmp-{key}-"
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _clean_stale(layout: Layout, *, holding_lease: bool) -> None:
    """Remove what interrupted runs left for this key.

    On the volume only under the lease, and only temps whose builder is gone: its
    process is dead on this host, or its heartbeat stopped (a builder that lost its
    lease, or builds on a volume without hard links, still touches its temps). On
    local disk only temps whose process on this host is gone (a restore takes no lease).
    """
    host = socket.gethostname().replace("-", "_")[:32]
    if holding_lease and layout.volume_envs.is_dir():
        now = volume_now(layout.volume_envs)
        for entry in layout.volume_envs.iterdir():
            owner = _tmp_pid(entry.name, layout.key)
            if owner is None:
                continue
            try:
                mtime = entry.lstat().st_mtime
            except FileNotFoundError:
                continue
            dead_here = owner[0] == host and not pid_is_alive(owner[1])
            if dead_here or is_stale(mtime=mtime, now=now):
                logger.info("removing stale temp %s", entry)
                _remove(entry)
    if layout.local_envs.is_dir():
        for entry in layout.local_envs.iterdir():
            owner = _tmp_pid(entry.name, layout.key)
            if owner and owner[0] == host and not pid_is_alive(owner[1]):
                logger.info("removing stale temp %s", entry)
                _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _python_base() -> Path:
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))


def _restore(
    profile: Profile, layout: Layout, manifest: dict[str, Any], progress: Callable[[str], None]
) -> dict[str, Any]:
    _clean_stale(layout, holding_lease=False)
    need = int(manifest["unpacked_bytes"] * 1.05) + 16 * _disk.MB
    _disk.require_free(layout.local_envs, need, what=f"restoring the {profile.name} environment")
    tmp = layout.local_envs / _tmp_name(layout)
    archive = layout.archive_of(manifest)
    assert archive is not None  # _published checked the name
    mb = manifest["archive_bytes"] / _disk.MB
    progress(f"{profile.name}: restoring the environment from the volume ({mb:.0f} MB)")
    t = time.perf_counter()
    # The layers unpack in a thread while this one unpacks the profile's own archive
    # (both mostly wait on reads, decompression and file creation, which release the
    # GIL); the profile is renamed into place only once every layer is, so an
    # environment without its torch is never served.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layer")
    layers = [
        pool.submit(_ensure_layer, profile, layout.for_key(ref["key"]), ref, progress)
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
        _install_local(tmp, layout, manifest)
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
        _remove(tmp)
    logger.info(
        "profile %s restored archive_mb=%.0f s=%.2f", profile.name, mb, time.perf_counter() - t
    )
    return manifest


def _install_local(tmp: Path, layout: Layout, manifest: dict[str, Any]) -> None:
    """Rename ``tmp`` to the final local path, replacing only an invalid one."""
    _install_dir(tmp, layout.local, layout, manifest)


def _install_dir(tmp: Path, final: Path, layout: Layout, manifest: dict[str, Any]) -> None:
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
            aside = layout.local_envs / _tmp_name(layout, ".old")
            with contextlib.suppress(FileNotFoundError):
                os.rename(final, aside)
            _remove(aside)
    raise BootstrapFailed(f"could not move the environment into {final}")


# --- shared layers (see _layers) ---------------------------------------------------------


def _layer_damage(local_envs: Path, ref: dict[str, Any]) -> list[str]:
    """Why the unpacked layer ``ref`` cannot be used; empty when it can."""
    where = _layers.local_dir(local_envs, ref)
    manifest = read_manifest(where / MANIFEST_IN_ENV)
    if not manifest or manifest.get("archive_sha256") != ref["archive_sha256"]:
        return [f"layer {where.name} is not unpacked"]
    return [f"layer {where.name}: {p}" for p in tree_problems(manifest.get("tree"), where)]


def _ensure_layer(
    profile: Profile, layout: Layout, ref: dict[str, Any], progress: Callable[[str], None]
) -> Path:
    """The layer ``ref`` unpacked on this machine: kept when intact, else restored.

    Raises:
        _pack.CorruptArchive: its archive is missing or does not match ``ref``
            (the caller rebuilds the profile, which re-splits it).
    """
    final = _layers.local_dir(layout.local_envs, ref)
    if not _layer_damage(layout.local_envs, ref):
        return final
    if final.exists():
        logger.warning("layer %s on local disk is damaged; restoring it", final.name)
        aside = layout.local_envs / _tmp_name(layout, ".old")
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, aside)
        _remove(aside)
    _clean_stale(layout, holding_lease=False)
    need = int(ref["unpacked_bytes"] * 1.05) + 16 * _disk.MB
    _disk.require_free(layout.local_envs, need, what=f"restoring the {layout.key} layer")
    archive = layout.volume_envs / ref["archive"]
    mb = ref["archive_bytes"] / _disk.MB
    progress(f"{profile.name}: restoring the shared torch layer from the volume ({mb:.0f} MB)")
    tmp = layout.local_envs / _tmp_name(layout)
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
            "attention_reason": _LAYER_ATTENTION,
            "tree": contents.get("tree", {}),
        }
        write_json_atomic(tmp / MANIFEST_IN_ENV, manifest)
        _install_dir(tmp, final, layout, manifest)
    finally:
        _remove(tmp)
    logger.info("layer %s restored archive_mb=%.0f s=%.2f", final.name, mb, time.perf_counter() - t)
    return final


_LAYER_ATTENTION = "a shared layer; the profile's manifest says which attention it uses"


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
    published = _published(llayout, key.rsplit("-", 1)[1])
    if published is not None and isinstance(published.get("dists"), dict):
        ref = _layers.ref_of(key, published)
        same = _layers.identical(dists, published["dists"])
        if any(d.name == "torch" for d in same):
            try:
                where = _ensure_layer(profile, llayout, ref, progress)
            except _pack.CorruptArchive as exc:
                logger.warning(
                    "profile %s layer %s unusable, making a new one: %s", profile.name, key, exc
                )
            else:
                with contextlib.suppress(OSError):  # fresh for gc's grace until we publish
                    os.utime(llayout.volume_envs / ref["archive"])
                moved = _layers.move_dists(same, site, tmp_env / ".layer-moved")
                _remove(tmp_env / ".layer-moved")
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
    tmp_layer = layout.local_envs / _tmp_name(layout)
    tmp_archive = layout.volume_envs / _tmp_name(layout, ".tar.zst")
    tmp_manifest = layout.volume_envs / _tmp_name(layout, ".json")
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
            "attention_reason": _LAYER_ATTENTION,
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
        _install_dir(tmp_layer, final, layout, local)
        _layers.write_pth(site, [final])
    finally:
        for leftover in (tmp_layer, tmp_archive, tmp_manifest):
            _remove(leftover)
    logger.info(
        "profile %s published layer %s (%d distributions) archive_mb=%.0f",
        profile.name,
        final.name,
        len(names),
        packed.archive_bytes / _disk.MB,
    )
    return ref


def _build_and_publish(
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
    tmp_env = layout.local_envs / _tmp_name(layout)
    tmp_archive = layout.volume_envs / _tmp_name(layout, ".tar.zst")
    tmp_manifest = layout.volume_envs / _tmp_name(layout, ".json")
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
        _install_local(tmp_env, layout, manifest)
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
            _remove(leftover)
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
