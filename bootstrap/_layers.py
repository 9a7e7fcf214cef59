"""Shared layers: one torch per volume, one unpacked torch per machine.

torch and the CUDA libraries it pulls in are most of every torch profile (about
4.5 of kokoro's 5 GB). Profiles that pin the same torch from the same indexes
(hence the same CUDA build) for the same Python and platform share one *layer*:
the site-packages files of torch and of every distribution it needs, packed
once on the volume and unpacked once per machine. Each profile's own archive
then holds only its own packages, plus one ``.pth`` line that puts the layer on
``sys.path`` after the profile's site-packages.

Files (``<lkey>`` is ``torch_layer-<hash16>``, see :func:`layer_key`)::

    <home>/envs/<lkey>.json                   the layer manifest new builds reuse
    <home>/envs/<lkey>-<sha12>.tar.zst        a layer archive (site-packages content)
    <envs>/<lkey>-<sha12>/                    unpacked layer, media-worker-manifest.json inside
    <envs>/<key>/lib/pythonX.Y/site-packages/_media_worker_layers.pth
                                              ``../../../../<lkey>-<sha12>``

A profile's manifest names the layer archive by content (``layers``: key,
archive, sha256, sizes), so a profile is restored with exactly the layer it was
split against, whatever the layer manifest names later; ``gc`` removes a layer
archive only once no profile manifest names it. The ``.pth`` path is relative
(``site`` joins it with the site-packages directory), so an environment and its
layer work wherever the local envs directory is, as long as they are siblings.

Why split by identity, not by resolution: the profile is still resolved and
installed whole by uv (its pins decide every version, as without layers); only
then are the distributions that are byte-for-byte the layer's (same version,
same RECORD hashes) removed from it. A distribution the profile resolved
differently (another sympy) stays in the profile and, being earlier on
``sys.path``, is the one imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PathDistribution
from pathlib import Path
from typing import Any

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement

from bootstrap._profile import Profile, canonical_pin, normalize_name
from bootstrap._spec import FORMAT, Target

LAYER_NAME = "torch_layer"
PTH_FILE = "_media_worker_layers.pth"
# Inside each layer archive: its file listing and distributions, known before packing.
CONTENTS_FILE = "media-worker-layer.json"
_ROOT_DIST = "torch"
# dist-info files written by the installer, not the wheel (their RECORD lines have no hash).
_INSTALLER_FILES = frozenset(
    {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "uv_cache.json"}
)


@dataclass(frozen=True)
class Dist:
    """One installed distribution in a site-packages directory."""

    name: str  # normalised
    version: str
    requires: tuple[str, ...]
    files: tuple[str, ...]  # relative to site-packages, inside it (scripts in bin/ stay)
    record: str  # sha256 of its RECORD's hashed lines: equal means the same wheel content


def layer_key(profile: Profile, target: Target) -> str | None:
    """``torch_layer-<hash16>`` for a profile that pins torch, else None.

    Covers what decides the torch wheel and its dependencies' wheels: the torch
    pin, the indexes (which carry the CUDA build), the interpreter and platform.
    """
    if "torch" not in profile.pins:
        return None
    torch_pin = next(
        canonical_pin(r) for r in profile.requirements if normalize_name(r.split("=")[0]) == "torch"
    )
    payload = {
        "format": FORMAT,
        "torch": torch_pin,
        "index_url": profile.index_url,
        "extra_index_urls": list(profile.extra_index_urls),
        "python": target.python,
        "abi": target.abi,
        "platform": target.platform,
        "libc": target.libc,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return f"{LAYER_NAME}-{hashlib.sha256(blob).hexdigest()[:16]}"


def site_packages(env: Path, target: Target) -> Path:
    return env / "lib" / f"python{target.python}" / "site-packages"


def _record_digest(record: str) -> str:
    lines = []
    for line in record.splitlines():
        path, _, rest = line.partition(",")
        digest = rest.split(",", 1)[0]
        if digest and path.rsplit("/", 1)[-1] not in _INSTALLER_FILES:
            lines.append(f"{path},{digest}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def read_dists(site: Path) -> dict[str, Dist]:
    """Every distribution installed in ``site``, by normalised name."""
    found: dict[str, Dist] = {}
    for info in sorted(site.glob("*.dist-info")):
        dist = PathDistribution(info)
        name, version = dist.metadata["Name"], dist.metadata["Version"]
        record = dist.read_text("RECORD") or ""
        if not name or not version:
            continue
        # the whole dist-info directory goes with it: a half-moved one would be a
        # distribution without METADATA shadowing the layer's for importlib.metadata
        files = [p.relative_to(site).as_posix() for p in sorted(info.rglob("*")) if p.is_file()]
        for line in record.splitlines():
            rel = os.path.normpath(line.partition(",")[0])
            if rel and not rel.startswith(("..", "/")):
                files.append(rel)
        found[normalize_name(name)] = Dist(
            name=normalize_name(name),
            version=version,
            requires=tuple(dist.requires or ()),
            files=tuple(dict.fromkeys(files)),
            record=_record_digest(record),
        )
    return found


def closure(dists: Mapping[str, Dist], root: str = _ROOT_DIST) -> list[str]:
    """``root`` and every installed distribution it needs, extras followed. Pure.

    Markers are evaluated for the running interpreter, which is the one the
    environment was built for (the spec hash pins it).
    """
    wanted: dict[str, set[str]] = {root: set()}
    queue = [(root, frozenset[str]())]
    while queue:
        name, extras = queue.pop()
        dist = dists.get(name)
        if dist is None:
            continue
        for text in dist.requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                _marker_true(req, extra) for extra in (extras or {""})
            ):
                continue
            dep = normalize_name(req.name)
            new = set(req.extras) - wanted.get(dep, set())
            if dep not in wanted or new:
                wanted.setdefault(dep, set()).update(req.extras)
                queue.append((dep, frozenset(req.extras)))
    return sorted(n for n in wanted if n in dists)


def _marker_true(req: Requirement, extra: str) -> bool:
    try:
        return bool(req.marker and req.marker.evaluate({"extra": extra}))
    except UndefinedEnvironmentName:
        return False


def move_dists(dists: Iterable[Dist], src: Path, dest: Path) -> int:
    """Move the site-packages files of ``dists`` from ``src`` to ``dest``; returns bytes moved.

    Both are on one file system (the local envs directory), so each is a rename.
    Directories left holding nothing but bytecode caches are removed, so no
    empty ``torch/`` shadows the layer's as a namespace package.
    """
    moved = 0
    parents: set[Path] = set()
    for dist in dists:
        for rel in dist.files:
            source = src / rel
            if not source.is_file() and not source.is_symlink():
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            moved += source.lstat().st_size
            os.rename(source, target)
            parents.add(source.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        _prune(parent, stop=src)
    return moved


def _prune(path: Path, *, stop: Path) -> None:
    while path != stop and path.is_dir():
        left = [p for p in path.iterdir() if p.name != "__pycache__"]
        if left:
            return
        shutil.rmtree(path, ignore_errors=True)
        path = path.parent


def identical(profile_dists: Mapping[str, Dist], layer: Mapping[str, Any]) -> list[Dist]:
    """The profile's distributions that are byte-for-byte the layer's. Pure.

    ``layer`` is the layer manifest's ``dists``: name -> {version, record}.
    """
    same = []
    for name, recorded in layer.items():
        dist = profile_dists.get(name)
        if (
            dist is not None
            and isinstance(recorded, Mapping)
            and recorded.get("version") == dist.version
            and recorded.get("record") == dist.record
        ):
            same.append(dist)
    return same


def write_pth(site: Path, layer_dirs: Iterable[Path]) -> None:
    """Put each layer on ``sys.path`` (after site-packages) by a path relative to ``site``."""
    lines = [os.path.relpath(d, site) for d in layer_dirs]
    (site / PTH_FILE).write_text("".join(f"{line}\n" for line in lines))


def ref_of(key: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What a profile manifest records of the layer it was split against."""
    return {
        "key": key,
        "archive": manifest["archive"],
        "archive_sha256": manifest["archive_sha256"],
        "archive_bytes": manifest["archive_bytes"],
        "unpacked_bytes": manifest["unpacked_bytes"],
    }


def refs_are_valid(refs: object) -> bool:
    """True when ``refs`` (a manifest's ``layers``) is a list of well-formed references. Pure."""
    if not isinstance(refs, list):
        return False
    for ref in refs:
        if not (
            isinstance(ref, dict)
            and isinstance(ref.get("key"), str)
            and ref["key"].startswith(f"{LAYER_NAME}-")
            and isinstance(ref.get("archive_sha256"), str)
            and len(ref["archive_sha256"]) == 64
            and ref.get("archive") == f"{ref['key']}-{ref['archive_sha256'][:12]}.tar.zst"
            and isinstance(ref.get("archive_bytes"), int)
            and isinstance(ref.get("unpacked_bytes"), int)
        ):
            return False
    return True


def local_dir(local_envs: Path, ref: Mapping[str, Any]) -> Path:
    """Where the layer ``ref`` is unpacked on this machine (named by its content)."""
    return local_envs / f"{ref['key']}-{ref['archive_sha256'][:12]}"
