"""Profiles: what one runner needs (pinned requirements, weights, smoke check).

A profile is pure data. Runners declare theirs in ``models/profiles.py``; this
module validates them so a typo fails at import, not on a GPU worker at 3 a.m.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import config

_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.+!_-]+)")
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Weights:
    """One Hugging Face repository a runner reads, pinned to a commit.

    Args:
        repo_id: ``owner/name`` on the hub.
        revision: the full 40-character commit hash (branches move; commits do not).
        patterns: ``allow_patterns`` globs; only matching files are downloaded.
        repo_type: ``model`` (default), ``dataset`` or ``space``.
    """

    repo_id: str
    revision: str
    patterns: tuple[str, ...] = ("*",)
    repo_type: str = "model"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", self.repo_id):
            raise ValueError(f"weights repo_id {self.repo_id!r} is not 'owner/name'")
        if not _COMMIT.fullmatch(self.revision):
            raise ValueError(
                f"weights {self.repo_id}: revision {self.revision!r} must be a full 40-character "
                "commit hash (a branch or tag can change under a running fleet)"
            )
        if isinstance(self.patterns, str):
            raise ValueError(f"weights {self.repo_id}: patterns must be a tuple of globs")


@dataclass(frozen=True)
class Profile:
    """What one runner needs, turned into an environment by :func:`bootstrap.ensure`.

    Args:
        name: short identifier (``piper``); names the archive on the volume.
        requirements: every direct dependency pinned with ``==``.
        weights: Hugging Face repositories to cache on the volume.
        smoke_imports: modules that must import in the built environment.
        index_url: replaces PyPI as the main index (e.g. a mirror), when set.
        extra_index_urls: more indexes (e.g. ``https://download.pytorch.org/whl/cu126``).
        flash_attn: the flash-attn version wanted, or None; the wheel is chosen to
            match the built torch (see ``_flash_attn``), and sdpa is the fallback.
        size_mb: the unpacked environment's rough size, used for disk-space checks
            before the real size is known.
    """

    name: str
    requirements: tuple[str, ...]
    weights: tuple[Weights, ...] = ()
    smoke_imports: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    flash_attn: str | None = None
    size_mb: int = 500
    pins: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"profile name {self.name!r}: use [a-z0-9_], at most 40 characters")
        if isinstance(self.requirements, str) or not self.requirements:
            raise ValueError(f"profile {self.name}: requirements must be a non-empty tuple")
        pins: dict[str, str] = {}
        for req in self.requirements:
            match = _PIN.fullmatch(req.strip())
            if match is None:
                raise ValueError(
                    f"profile {self.name}: requirement {req!r} is not pinned as 'name==version'"
                )
            pins[normalize_name(match.group(1))] = match.group(3)
        if self.flash_attn is not None and "torch" not in pins:
            raise ValueError(f"profile {self.name}: flash_attn needs a pinned torch requirement")
        object.__setattr__(self, "pins", pins)


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Joe_US.Piper`` -> ``joe-us-piper``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def with_index_overrides(profile: Profile, env: Mapping[str, str] | None = None) -> Profile:
    """``profile`` with ``MEDIA_WORKER_INDEX_URL`` / ``MEDIA_WORKER_EXTRA_INDEX_URLS``
    applied; later wins: the profile's own indexes, then the environment. The result
    has its own spec hash, so an archive built from a mirror is never mistaken for
    one built from the profile's indexes."""
    changes: dict[str, object] = {}
    if index_url := config.INDEX_URL.get(env):
        changes["index_url"] = index_url
    if extra := config.EXTRA_INDEX_URLS.get(env):
        changes["extra_index_urls"] = extra
    return dataclasses.replace(profile, **changes) if changes else profile
