"""What ``python -m models gc`` removes. The decision is a pure function."""

from __future__ import annotations

from dataclasses import dataclass

from bootstrap._layers import LAYER_NAME
from bootstrap._layout import Layout
from bootstrap._lease import is_stale

# A reader may still be restoring from an archive a newer manifest replaced.
REPLACED_GRACE_S = 3600.0


@dataclass(frozen=True)
class Entry:
    """One file or directory under ``<home>/envs`` or ``<home>/leases``."""

    name: str
    mtime: float
    lease_live: bool = False  # for envs entries: is the lease of their key live?


def plan_gc(
    envs: list[Entry],
    leases: list[Entry],
    *,
    known: set[str],
    keep: int,
    now: float,
    lease_expiry: dict[str, float],
    referenced: dict[str, str],
    layer_refs: dict[str, list[str]] | None = None,
) -> list[str]:
    """Names to remove (``envs/<name>`` or ``leases/<name>``). ``now`` and every mtime
    are on the volume's clock.

    * temps (``.tmp-*``, ``.clock-*``) whose key has no live lease and whose builder's
      heartbeat stopped (older than a lease lifetime);
    * leases (and claim files) that expired (``lease_expiry``: lock name -> expiry time);
    * archives no manifest names (``referenced``: key -> the archive its manifest
      names), once no lease of their key is live and they are old enough that no
      reader can still be restoring them;
    * manifests and their archives whose key no profile has, beyond the ``keep``
      newest per profile;
    * shared layer archives (``torch_layer-*``) that no kept manifest names in its
      ``layers`` (``layer_refs``: key -> the layer archives its manifest names),
      once no lease of theirs is live and they are older than the grace a build
      between publishing its layer and its profile needs; a layer manifest goes
      with the archive it names.
    """
    remove: list[str] = []
    by_key: dict[str, dict[str, Entry]] = {}
    layers: dict[str, dict[str, Entry]] = {}
    for e in envs:
        if e.name.startswith((".tmp-", ".clock-")):
            if not e.lease_live and is_stale(mtime=e.mtime, now=now):
                remove.append(f"envs/{e.name}")
            continue
        if parsed := Layout.parse_volume_name(e.name):
            if parsed[0].startswith(f"{LAYER_NAME}-"):
                layers.setdefault(parsed[0], {})[e.name] = e
            else:
                by_key.setdefault(parsed[0], {})[e.name] = e
    stale_by_profile: dict[str, list[tuple[float, str]]] = {}
    for key, files in by_key.items():
        manifest = f"{key}.json"
        named = referenced.get(key) if manifest in files else None
        for name, e in files.items():
            if name in (manifest, named) or e.lease_live:
                continue
            grace = REPLACED_GRACE_S if named else 0.0
            if is_stale(mtime=e.mtime, now=now - grace):
                remove.append(f"envs/{name}")
        if named is None or key in known:
            continue
        newest = max(f.mtime for f in files.values())
        stale_by_profile.setdefault(key.rsplit("-", 1)[0], []).append((newest, key))
    for entries in stale_by_profile.values():
        for _, key in sorted(entries, reverse=True)[keep:]:
            remove.extend(f"envs/{n}" for n in sorted(by_key[key]))
    used = {
        name
        for key, names in (layer_refs or {}).items()
        if f"envs/{key}.json" not in remove and f"{key}.json" in by_key.get(key, {})
        for name in names
    }
    for key, files in layers.items():
        gone: set[str] = set()
        for name, e in files.items():
            unused = name.endswith(".tar.zst") and name not in used and not e.lease_live
            if unused and is_stale(mtime=e.mtime, now=now - REPLACED_GRACE_S):
                gone.add(name)
        manifest = f"{key}.json"
        named = referenced.get(key)
        if manifest in files and (named in gone or named not in files):
            gone.add(manifest)
        remove.extend(f"envs/{n}" for n in sorted(gone))
    for e in leases:
        lock = e.name.split("|", 1)[0]
        expiry = lease_expiry.get(lock)
        if e.name.startswith(".clock-"):
            if is_stale(mtime=e.mtime, now=now):
                remove.append(f"leases/{e.name}")
        elif expiry is None and "|" in e.name:
            if now - e.mtime > 3600:  # a claim file whose lock is gone
                remove.append(f"leases/{e.name}")
        elif expiry is not None and now > expiry:
            remove.append(f"leases/{e.name}")
    return sorted(set(remove))
