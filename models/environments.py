"""The profile environments this worker process has ready, one readiness per profile.

``bootstrap.ensure`` may take minutes (a multi-GB torch build, or a wait for
another worker's build), so readiness is kept per profile: a job for a ready
profile never waits on another profile's build, and jobs that need the same
unready profile share one ``ensure`` (the first caller runs it; the others wait
for its result, hear its progress, and get the same environment or error).

A ready environment is remembered for the life of the process, since checking it
costs I/O. When a runner cannot start from it (a file deleted or damaged under a
running worker), :meth:`Environments.repair` forgets it and ensures the profile
again with ``verify``: the unpacked tree is checked against its manifest and its
smoke imports run; a damaged one is restored from the volume.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import bootstrap
from models.registry import get_profile
from runtime.protocol import ProgressFn

logger = logging.getLogger(__name__)

EnsureFn = Callable[..., bootstrap.Environment]  # bootstrap.ensure's signature


@dataclass
class _Pending:
    """An ``ensure`` in progress: its result, and everyone who wants its progress."""

    future: Future[bootstrap.Environment] = field(default_factory=Future)
    listeners: list[ProgressFn] = field(default_factory=list)

    def progress(self, message: str) -> None:
        for listener in list(self.listeners):
            listener(message, None)


class Environments:
    """Per-profile readiness, shared by every job and the background prepare thread.

    Args:
        ensure: ``bootstrap.ensure`` or a stand-in with its signature (tests pass
            one bound to a temporary volume).
    """

    def __init__(self, ensure: EnsureFn | None = None) -> None:
        self._ensure = ensure or bootstrap.ensure
        self._lock = threading.Lock()  # guards the two dicts; never held during ensure
        self._ready: dict[str, bootstrap.Environment] = {}
        self._pending: dict[str, _Pending] = {}

    def get(
        self, profile: str, on_progress: ProgressFn, *, verify: bool = False
    ) -> tuple[bootstrap.Environment, bool]:
        """The profile's ready environment; True when this call waited for ``ensure``.

        Raises:
            BootstrapFailed: the shared ``ensure`` failed (every waiter gets it).
        """
        with self._lock:
            if profile in self._ready:
                return self._ready[profile], False
            pending = self._pending.get(profile)
            owner = pending is None
            if pending is None:
                pending = self._pending[profile] = _Pending()
            pending.listeners.append(on_progress)
        if not owner:
            on_progress(f"{profile}: being prepared by another job; waiting for it", None)
            return pending.future.result(), True
        try:
            env = self._ensure(get_profile(profile), on_progress=pending.progress, verify=verify)
        except BaseException as exc:
            with self._lock:
                del self._pending[profile]
            pending.future.set_exception(exc)
            raise
        with self._lock:
            self._ready[profile] = env
            del self._pending[profile]
        pending.future.set_result(env)
        return env, True

    def repair(
        self, profile: str, broken: bootstrap.Environment, on_progress: ProgressFn
    ) -> bootstrap.Environment:
        """Forget ``broken`` and ensure the profile again, verifying what is on disk.

        Raises:
            BootstrapFailed: the profile could not be made ready again.
        """
        with self._lock:
            if self._ready.get(profile) is broken:
                del self._ready[profile]
        logger.warning("profile %s environment distrusted; verifying it again", profile)
        env, _ = self.get(profile, on_progress, verify=True)
        return env
