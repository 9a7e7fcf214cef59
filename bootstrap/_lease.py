"""Build leases on the volume: one builder per (profile, spec hash) at a time.

A lease is a ``flufl.lock`` lock file (link-based, NFS-safe, with a lifetime)
under ``<home>/leases/``. The holder refreshes it from a heartbeat thread; a
holder that dies stops refreshing, and the next worker breaks the lease once its
lifetime (plus flufl's 10 s clock slop) has passed, or at once when the holder's
PID is gone on this same host.

Time is the volume's, never a worker's: every expiry written and every "now"
compared with one is the mtime of a file just created on the volume (the file
server stamps it), so workers whose clocks disagree by minutes still agree on
whether a lease is live. flufl.lock offers ``_now`` as the hook for exactly this
("locks across NFS servers that cannot properly synchronize their clocks").

Leases only avoid duplicate work. Correctness never depends on them (network file
systems may not honour even link semantics under partitions, and some refuse hard
links outright, see :class:`LeasesUnsupported`): a build writes to unique temp
names that its heartbeat keeps fresh, publishes a content-addressed archive and
then its manifest by rename, and never removes what another builder published;
readers trust only a manifest that matches what they hash.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path

from flufl.lock import AlreadyLockedError, Lock, LockError, NotLockedError, TimeOutError

logger = logging.getLogger(__name__)
# flufl.lock logs every unsuccessful poll as ERROR ("timed out"), which reads like
# a failure at 3 a.m.; waiting is normal here and our own lines say who holds what.
logging.getLogger("flufl.lock").setLevel(logging.CRITICAL)

DEFAULT_LIFETIME_S = 120.0  # a heartbeat every lifetime/4 keeps a live build's lease
CLOCK_SLOP_S = 10.0  # flufl.lock breaks a lease this long after it expired
RETRY_BEAT_S = 1.0  # after a failed heartbeat, try again this soon
# link(2) errors that mean "this file system has no hard links", not "someone holds it".
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


class LeasesUnsupported(OSError):
    """The volume refuses hard links, so link-based leases cannot work there."""


def lease_state(*, exists: bool, expires_at: float | None, now: float) -> str:
    """``free``, ``live`` or ``expired`` for a lease file (pure; ``expires_at`` is its mtime,
    ``now`` the volume's clock, see :func:`volume_now`)."""
    if not exists or expires_at is None:
        return "free"
    return "expired" if now > expires_at + CLOCK_SLOP_S else "live"


def is_stale(*, mtime: float, now: float, lifetime_s: float = DEFAULT_LIFETIME_S) -> bool:
    """True when a file its owner touches every heartbeat has not been touched for a
    whole lease lifetime plus the slop (pure; both times on the volume's clock)."""
    return now - mtime > lifetime_s + CLOCK_SLOP_S


def volume_now(directory: Path) -> float:
    """The volume's current time: the mtime of a file just created in ``directory``.

    The file server stamps a new file's mtime with its own clock, so this is the
    clock every lease and heartbeat on that volume is written and judged with.
    """
    fd, name = tempfile.mkstemp(prefix=".clock-", dir=directory)
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


def touch(path: Path) -> None:
    """Stamp ``path`` with the volume's current time (``utime`` with no time given)."""
    os.utime(path)


def lease_path(leases_dir: Path, key: str) -> Path:
    return leases_dir / f"{key}.lock"


def claim_owner(claim: str) -> tuple[str, int] | None:
    """``(host, pid)`` from a flufl claim file name ``<lock>|<host>|<pid>|<random>``."""
    parts = claim.strip().rsplit("|", 3)
    if len(parts) == 4 and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def lease_owner(path: Path) -> str:
    """``host pid N`` of the lease's holder, or ``unknown`` (the lock file names its claim file)."""
    try:
        owner = claim_owner(path.read_text())
    except OSError:
        owner = None
    return f"{owner[0]} pid {owner[1]}" if owner else "unknown"


def holder_is_dead_here(owner: tuple[str, int] | None, *, host: str, pid: int) -> bool:
    """True when the holder ran on this host and its process is gone (not us)."""
    return owner is not None and owner[0] == host and owner[1] != pid and not pid_is_alive(owner[1])


class _VolumeClockLock(Lock):
    """flufl's lock, timed by the volume's clock instead of this machine's."""

    def _now(self) -> datetime:
        return datetime.fromtimestamp(volume_now(Path(self.lockfile).parent))


class Lease:
    """One attempt to hold the build lease for ``key``, and the heartbeat of a build.

    The heartbeat (:meth:`start_heartbeat`, started by :meth:`try_acquire`) refreshes
    the lease while it is held and touches every file given to :meth:`keep_fresh`, so
    another worker can tell a live builder's temps from a dead one's. It runs for an
    unleased build too (a volume without hard links), to keep the temps fresh.

    Args:
        path: the lock file (``<home>/leases/<profile>-<hash>.lock``).
        lifetime_s: how long the lease stays valid without a heartbeat.
    """

    def __init__(self, path: Path, *, lifetime_s: float | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lifetime_s = lifetime_s = lifetime_s or DEFAULT_LIFETIME_S
        self.held = False
        self.lost = False  # set when another worker broke the lease while we built
        self._lock = _VolumeClockLock(str(path), lifetime=timedelta(seconds=lifetime_s))
        self._fresh: set[Path] = set()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def try_acquire(self, timeout_s: float) -> bool:
        """Take the lease within ``timeout_s`` (breaking an expired one, or a dead local
        holder's at once); False if still held.

        Raises:
            LeasesUnsupported: the volume refuses hard links.
        """
        self._break_if_holder_died()
        try:
            self._lock.lock(timeout=timedelta(seconds=timeout_s))
        except TimeOutError:
            return False
        except AlreadyLockedError:
            pass
        except OSError as exc:
            if exc.errno in _NO_LINKS:
                raise LeasesUnsupported(exc.errno, f"{self.path.parent}: {exc.strerror}") from exc
            raise
        self.held = True
        self.start_heartbeat()
        logger.info("lease taken %s lifetime_s=%.0f", self.path.name, self.lifetime_s)
        return True

    def _break_if_holder_died(self) -> None:
        """Remove the lease of a holder whose process is gone on this host.

        A worker restarted in the same container, or a sibling process, need not
        wait out a dead holder's lifetime. The lock file is read twice: it is
        removed only if it still names the same dead claim.
        """
        try:
            claim = self.path.read_text().strip()
        except OSError:
            return
        owner = claim_owner(claim)
        if not holder_is_dead_here(owner, host=self._lock.hostname, pid=os.getpid()):
            return
        with contextlib.suppress(OSError):
            if self.path.read_text().strip() == claim:
                os.unlink(self.path)
                logger.info(
                    "lease %s: holder pid %d on this host is gone; taking over",
                    self.path.name,
                    owner[1],  # type: ignore[index]
                )
        with contextlib.suppress(OSError):
            os.unlink(claim)

    def keep_fresh(self, *paths: Path) -> None:
        """Touch ``paths`` on every heartbeat (temps of the build in progress)."""
        self._fresh.update(paths)

    def start_heartbeat(self) -> None:
        if self._beat is not None and self._beat.is_alive():
            return
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        wait = self.lifetime_s / 4
        while not self._stop.wait(wait):
            wait = self.lifetime_s / 4
            for path in list(self._fresh):
                try:
                    touch(path)
                except FileNotFoundError:
                    # Not written yet, or already renamed into place: nothing to keep
                    # fresh. (It is an OSError too, so it must be caught first.)
                    continue
                except OSError as exc:
                    logger.warning("heartbeat could not touch %s: %s", path.name, exc)
                    wait = min(wait, RETRY_BEAT_S)
            if not self.held:
                continue
            try:
                self._lock.refresh()
            except NotLockedError as exc:
                # Someone broke our lease (we looked dead). Keep building: the publish
                # never removes what another builder published, so a duplicate build
                # is only waste. Our temps stay fresh, so nobody removes them.
                if not self.lost:
                    logger.warning("lease lost %s while building: %s", self.path.name, exc)
                self.lost = True
            except (LockError, OSError) as exc:
                # A volume hiccup (EIO, ESTALE): try again soon rather than let the
                # lease lapse and another worker start a duplicate build.
                logger.warning("lease refresh failed %s, retrying: %s", self.path.name, exc)
                wait = min(wait, RETRY_BEAT_S)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        if not self.held:
            return
        self.held = False
        try:
            # Removes the lock file only while it is still ours; our claim file always.
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
