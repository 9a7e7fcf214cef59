"""Where one profile's environment lives, on the volume and on local disk.

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

import dataclasses
import logging
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import config
from bootstrap._lease import is_stale, lease_path, pid_is_alive, volume_now
from bootstrap._manifest import MANIFEST_IN_ENV, env_is_ready, read_manifest
from runtime import atomic

logger = logging.getLogger(__name__)


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


def local_manifest(layout: Layout) -> dict[str, Any] | None:
    """The manifest inside the unpacked environment, or None when missing or unreadable."""
    return read_manifest(layout.local / MANIFEST_IN_ENV)


def published_manifest(layout: Layout, digest: str) -> dict[str, Any] | None:
    """The volume's manifest when it is valid for ``digest`` and names its archive properly."""
    manifest = read_manifest(layout.manifest)
    if env_is_ready(manifest, digest) and layout.archive_of(manifest) is not None:  # type: ignore[arg-type]
        return manifest
    return None


def tmp_name(layout: Layout, suffix: str = "") -> str:
    """A fresh temp name for this key, one :func:`tmp_pid` reads its builder back from."""
    return atomic.temp_name(layout.key + suffix)


def tmp_pid(name: str, key: str) -> tuple[str, int] | None:
    """``(host, pid)`` from a temp name made by :func:`tmp_name`, else None."""
    prefix = f".tmp-{key}-"
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def clean_stale(layout: Layout, *, holding_lease: bool) -> None:
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
            owner = tmp_pid(entry.name, layout.key)
            if owner is None:
                continue
            try:
                mtime = entry.lstat().st_mtime
            except FileNotFoundError:
                continue
            dead_here = owner[0] == host and not pid_is_alive(owner[1])
            if dead_here or is_stale(mtime=mtime, now=now):
                logger.info("removing stale temp %s", entry)
                remove(entry)
    if layout.local_envs.is_dir():
        for entry in layout.local_envs.iterdir():
            owner = tmp_pid(entry.name, layout.key)
            if owner and owner[0] == host and not pid_is_alive(owner[1]):
                logger.info("removing stale temp %s", entry)
                remove(entry)


def remove(path: Path) -> None:
    """Delete a file, link or directory tree; best effort for a tree, and a missing path is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
