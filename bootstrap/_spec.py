"""The spec hash: one digest of everything that changes a built environment.

Two workers agree on an archive only if they agree on this hash, so it covers the
requirements, the pinned artifacts (by sha256), the indexes they come from, the
flash-attn choice, whether the profile must use CUDA, the Python version and
ABI, and the platform (CPU architecture and libc). It does not cover
the weights: those live in the HF cache, not in the environment.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import sysconfig
from dataclasses import dataclass

from bootstrap._profile import Profile, canonical_pin, normalize_name

# Bump when the archive layout or the build recipe changes in a way old archives
# cannot satisfy; it is part of every hash. 2: torch in a shared layer (_layers),
# which a worker of format 1 would not restore (it would serve an env without torch).
FORMAT = 2


@dataclass(frozen=True)
class Target:
    """The interpreter and machine an environment is built for."""

    python: str  # "3.11"
    abi: str  # "cp311"
    platform: str  # "linux-x86_64"
    libc: str  # "glibc-2.36"


def current_target() -> Target:
    impl = sys.implementation.name  # "cpython"
    major, minor = sys.version_info[:2]
    tag = {"cpython": "cp"}.get(impl, impl) + f"{major}{minor}"
    libc_name, libc_version = platform.libc_ver()
    return Target(
        python=f"{major}.{minor}",
        abi=tag + getattr(sys, "abiflags", ""),
        platform=sysconfig.get_platform(),
        libc=f"{libc_name or 'unknown'}-{libc_version or '0'}",
    )


def spec_hash(profile: Profile, target: Target) -> str:
    """The profile's spec hash for ``target``: 16 hex characters.

    Requirement order and name spelling do not matter; anything that changes what
    uv would install does.
    """
    payload = {
        "format": FORMAT,
        "requirements": sorted(canonical_pin(r) for r in profile.requirements),
        "index_url": profile.index_url,
        "extra_index_urls": list(profile.extra_index_urls),
        "flash_attn": profile.flash_attn,
        "python": target.python,
        "abi": target.abi,
        "platform": target.platform,
        "libc": target.libc,
    }
    if profile.artifacts:
        # Keyed by content: a mirror serving the same file changes nothing built.
        payload["artifacts"] = sorted(f"{a.kind}:{a.name}:{a.sha256}" for a in profile.artifacts)
    if profile.cuda:
        payload["cuda"] = True
    if profile.excludes:
        payload["excludes"] = sorted(normalize_name(e) for e in profile.excludes)
    if profile.overrides:
        payload["overrides"] = sorted(normalize_name(o) for o in profile.overrides)
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
