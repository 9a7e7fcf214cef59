"""``ensure(profile)``: the cheapest way to a ready environment, then the weights.

The walk, cheapest first::

    in place   the current interpreter already has every pin     no I/O beyond metadata
    local      <envs>/<profile>-<hash>/ with a valid manifest    < 50 ms, no subprocess
    restored   <home>/envs/<profile>-<hash>.json + its archive   stream-extract, verify, rename
    built      under the lease: uv venv, install, smoke check, pack, publish by rename

Where each file lives, and what a crash leaves behind, is ``_layout``'s; the
steps are ``_in_place``, ``_restore`` and ``_publish``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import config
from bootstrap import _build, _cuda, _disk, _pack, _weights
from bootstrap._in_place import in_place_attention, is_served_in_place, warn_unmet
from bootstrap._layout import (
    Layout,
    clean_stale,
    local_manifest,
    published_manifest,
    remove,
    tmp_name,
)
from bootstrap._lease import Lease, LeasesUnsupported, lease_owner
from bootstrap._manifest import env_is_ready, tree_problems
from bootstrap._profile import Profile, with_index_overrides
from bootstrap._publish import build_and_publish
from bootstrap._restore import layer_damage, restore
from bootstrap._spec import Target, current_target, spec_hash
from errors import BootstrapFailed
from runtime import machine

logger = logging.getLogger(__name__)
_A = TypeVar("_A")
_B = TypeVar("_B")

LEASE_POLL_S = 5.0  # how long one attempt to take a held lease blocks
PROGRESS_EVERY_S = 15.0


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


def side_by_side(first: Callable[[], _A], second: Callable[[], _B], *, name: str) -> tuple[_A, _B]:
    """Run ``first`` and ``second`` at the same time (the environment and the weights:
    the slower sets the pace, not their sum) and return both results.

    The first to fail raises at once: an unreachable hub is reported in seconds, not
    after a build of minutes. What still runs goes on in the background and keeps
    what it finishes (a published environment, whole weight files), so the next
    attempt starts further on. Each runs in a copy of the caller's context, so its
    log lines carry the job id.
    """
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"ensure-{name}")
    jobs = [pool.submit(contextvars.copy_context().run, fn) for fn in (first, second)]
    try:
        wait(jobs, return_when=FIRST_EXCEPTION)
    finally:
        pool.shutdown(wait=False)
    for job in sorted(jobs, key=lambda j: not j.done()):
        if job.done() and job.exception() is not None:
            raise job.exception()  # type: ignore[misc]
    return jobs[0].result(), jobs[1].result()


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

    def environment() -> tuple[Path, str, dict[str, Any], Path | None]:
        if in_place and not force and is_served_in_place(profile):
            # With MEDIA_WORKER_IN_PLACE the interpreter is the operator's (a baked image, a
            # GPU machine's own torch), so a pin it misses is theirs to judge: logged only.
            warn_unmet(profile)
            python, source, manifest, root = (
                Path(sys.executable),
                "in-place",
                in_place_attention(profile),
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
        return python, source, manifest, root

    weights_ready = functools.partial(
        _weights.ensure_weights,
        profile.weights,
        hf_home=paths.home / "hf",
        cached_models=(
            Path(config.CACHED_MODELS_DIR.get()) if cached_models is None else cached_models
        ),
        on_progress=progress,
        image_weights=Path(config.IMAGE_WEIGHTS_DIR.get()),
        profile=profile.name,
    )
    (python, source, manifest, root), weights = side_by_side(
        environment, weights_ready, name=profile.name
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
            manifest = published_manifest(layout, digest)
            if manifest is not None and manifest["archive_sha256"] != bad_sha:
                try:
                    return "restored", restore(profile, layout, manifest, progress)
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
                return "built", build_and_publish(profile, layout, target, progress, lease)
            finally:
                lease.release()
        if acquired:
            try:
                manifest = published_manifest(layout, digest)
                if not force and manifest is not None and manifest["archive_sha256"] != bad_sha:
                    continue  # published while we waited: restore it (lease released below)
                clean_stale(layout, holding_lease=True)
                # Under the lease, the archives we replace (the one found corrupt or
                # forced out, or left unnamed by a crash) go once ours is published.
                return "built", build_and_publish(
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
        damage += layer_damage(layout.local_envs, ref)
    if not damage and verify:
        try:
            _build.smoke(profile, python)
        except BootstrapFailed as exc:
            damage = [exc.message.splitlines()[-1]]
    return damage


def _discard_local(layout: Layout) -> None:
    """Move the unpacked environment aside (so no reader finds it), then delete it."""
    aside = layout.local_envs / tmp_name(layout, ".old")
    with contextlib.suppress(FileNotFoundError):
        os.rename(layout.local, aside)
    remove(aside)
