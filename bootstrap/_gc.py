"""What ``python -m bootstrap gc`` removes. The decision is a pure function."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ARCHIVE = re.compile(r"(?P<name>[a-z0-9_]+)-(?P<hash>[0-9a-f]{16})\.(?:tar\.zst|json)")


@dataclass(frozen=True)
class Entry:
    """One file or directory under ``<home>/envs`` or ``<home>/leases``."""

    name: str
    mtime: float
    lease_live: bool = False  # for temps: is the lease of their key live?


def plan_gc(
    envs: list[Entry],
    leases: list[Entry],
    *,
    known: set[str],
    keep: int,
    now: float,
    lease_expiry: dict[str, float],
) -> list[str]:
    """Names to remove (``envs/<name>`` or ``leases/<name>``).

    * temps (``.tmp-*``) whose key has no live lease;
    * leases (and claim files) that expired (``lease_expiry``: lock name -> expiry time);
    * archives and manifests whose ``<profile>-<hash>`` no profile has, beyond the
      ``keep`` newest per profile; an archive without its manifest is always garbage
      when no lease for it is live.
    """
    remove: list[str] = []
    by_key: dict[str, dict[str, Entry]] = {}
    for e in envs:
        if e.name.startswith(".tmp-"):
            if not e.lease_live:
                remove.append(f"envs/{e.name}")
            continue
        m = _ARCHIVE.fullmatch(e.name)
        if m:
            by_key.setdefault(f"{m['name']}-{m['hash']}", {})[e.name] = e
    stale_by_profile: dict[str, list[tuple[float, str]]] = {}
    for key, files in by_key.items():
        has_manifest = f"{key}.json" in files
        if not has_manifest:
            if not any(f.lease_live for f in files.values()):
                remove.extend(f"envs/{n}" for n in files)
            continue
        if key in known:
            continue
        newest = max(f.mtime for f in files.values())
        stale_by_profile.setdefault(key.rsplit("-", 1)[0], []).append((newest, key))
    for entries in stale_by_profile.values():
        for _, key in sorted(entries, reverse=True)[keep:]:
            remove.extend(f"envs/{n}" for n in sorted(by_key[key]))
    for e in leases:
        lock = e.name.split("|", 1)[0]
        expiry = lease_expiry.get(lock)
        if expiry is None and "|" in e.name:
            if now - e.mtime > 3600:  # a claim file whose lock is gone
                remove.append(f"leases/{e.name}")
        elif expiry is not None and now > expiry:
            remove.append(f"leases/{e.name}")
    return sorted(set(remove))
