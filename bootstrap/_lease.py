"""Build leases on the volume: one builder per (profile, spec hash) at a time.

A lease is a ``flufl.lock`` lock file (link-based, NFS-safe, with a lifetime)
under ``<home>/leases/``. The holder refreshes it from a heartbeat thread; a
holder that dies stops refreshing, and the next worker breaks the lease once its
lifetime (plus flufl's 10 s clock slop) has passed.

Leases only avoid duplicate work. Correctness never depends on them (network file
systems may not honour even link semantics under partitions): a build writes to
unique temp names and publishes by renaming a verified archive and its manifest,
and readers trust only a manifest that matches what they hash.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path

from flufl.lock import AlreadyLockedError, Lock, LockError, NotLockedError, TimeOutError

logger = logging.getLogger(__name__)
# flufl.lock logs every unsuccessful poll as ERROR ("timed out"), which reads like
# a failure at 3 a.m.; waiting is normal here and our own lines say who holds what.
logging.getLogger("flufl.lock").setLevel(logging.CRITICAL)

DEFAULT_LIFETIME_S = 120.0  # a heartbeat every lifetime/4 keeps a live build's lease
CLOCK_SLOP_S = 10.0  # flufl.lock breaks a lease this long after it expired


def lease_state(*, exists: bool, expires_at: float | None, now: float) -> str:
    """``free``, ``live`` or ``expired`` for a lease file (pure; ``expires_at`` is its mtime)."""
    if not exists or expires_at is None:
        return "free"
    return "expired" if now > expires_at + CLOCK_SLOP_S else "live"


def lease_path(leases_dir: Path, key: str) -> Path:
    return leases_dir / f"{key}.lock"


def lease_owner(path: Path) -> str:
    """``host pid N`` of the lease's holder, or ``unknown`` (the lock file names its claim file)."""
    try:
        claim = path.read_text().strip()
        parts = claim.rsplit("|", 3)
        if len(parts) == 4:
            return f"{parts[1]} pid {parts[2]}"
    except OSError:
        pass
    return "unknown"


class Lease:
    """One attempt to hold the build lease for ``key``.

    Args:
        path: the lock file (``<home>/leases/<profile>-<hash>.lock``).
        lifetime_s: how long the lease stays valid without a heartbeat.
    """

    def __init__(self, path: Path, *, lifetime_s: float | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lifetime_s = lifetime_s = lifetime_s or DEFAULT_LIFETIME_S
        self._lock = Lock(str(path), lifetime=timedelta(seconds=lifetime_s))
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def try_acquire(self, timeout_s: float) -> bool:
        """Take the lease within ``timeout_s`` (breaking an expired one); False if still held."""
        try:
            self._lock.lock(timeout=timedelta(seconds=timeout_s))
        except TimeOutError:
            return False
        except AlreadyLockedError:
            pass
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._beat.start()
        logger.info("lease taken %s lifetime_s=%.0f", self.path.name, self.lifetime_s)
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lifetime_s / 4):
            try:
                self._lock.refresh()
            except (NotLockedError, LockError, OSError) as exc:
                # Someone broke our lease (we looked dead). Keep building: the
                # publish is a verified rename, so a duplicate build is only waste.
                logger.warning("lease lost %s while building: %s", self.path.name, exc)
                return

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        try:
            self._lock.unlock(unconditionally=True)
        except (LockError, OSError) as exc:
            logger.warning("lease release failed %s: %s", self.path.name, exc)
        logger.info("lease released %s", self.path.name)


def pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
