"""Whether this interpreter already serves a profile, so ``ensure`` builds nothing.

:func:`unmet_pins` is the decision, a pure function of the pins and the installed
versions (passed in, or read from this interpreter's metadata).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping

from packaging.version import InvalidVersion, Version

import config
from bootstrap._profile import Profile

logger = logging.getLogger(__name__)


def unmet_pins(
    pins: Mapping[str, str], installed: Callable[[str], str | None] | None = None
) -> list[str]:
    """The pins the installed versions (``installed(name)``) do not meet, in words.

    Equal means equal as PEP 440 versions (``1.8`` is ``1.8.0``); a local label
    differs (``2.13.0+cpu`` is not the CUDA index's ``2.13.0``).
    """
    lookup = installed or _installed_version

    def same(version: str, have: str | None) -> bool:
        try:
            return have is not None and Version(have) == Version(version)
        except InvalidVersion:
            return False

    return [
        f"{name}=={version} (installed: {have or 'none'})"
        for name, version in pins.items()
        if not same(version, have := lookup(name))
    ]


def is_satisfied_in_place(
    pins: Mapping[str, str], installed: Callable[[str], str | None] | None = None
) -> bool:
    """True when every pin equals the installed version (see :func:`unmet_pins`)."""
    return not unmet_pins(pins, installed)


def is_served_in_place(profile: Profile) -> bool:
    """True when ``ensure`` serves ``profile`` with this interpreter (no environment built).

    Always with ``MEDIA_WORKER_IN_PLACE``; otherwise every pin must be installed here
    at its version, and the profile must carry no source artifact: that lives only
    inside a built environment, never in this one.
    """
    if config.IN_PLACE.get():
        return True
    has_source = any(a.kind == "source" for a in profile.artifacts)
    return not has_source and is_satisfied_in_place(profile.pins)


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def warn_unmet(profile: Profile) -> None:
    """Log one warning naming what this interpreter lacks of ``profile`` (nothing when complete)."""
    unmet = unmet_pins(profile.pins)
    # wheel artifacts are among the pins; a source archive only ever lives in a built env
    unmet += [f"{a.filename} (a source artifact)" for a in profile.artifacts if a.kind == "source"]
    if unmet:
        logger.warning(
            "profile %s runs in this interpreter (%s) without: %s",
            profile.name,
            config.IN_PLACE.name,
            "; ".join(unmet),
        )


def in_place_attention(profile: Profile) -> dict[str, str]:
    """``attention`` and ``attention_reason`` for ``profile`` served by this interpreter."""
    if "torch" not in profile.pins:
        return {
            "attention": "none",
            "attention_reason": "the profile has no torch; no attention backend applies",
        }
    if profile.flash_attn and _installed_version("flash-attn") == profile.flash_attn:
        return {"attention": "flash_attn", "attention_reason": "installed in this interpreter"}
    return {"attention": "sdpa", "attention_reason": "in place without flash-attn"}
