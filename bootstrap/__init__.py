"""Profiles become ready environments and cached weights, safe under concurrent cold starts.

``ensure(profile)`` is the one call the handler makes; ``python -m models``
(status, prepare, verify, gc, doctor) is the operator's view of the same state.
See ``_ensure`` for the walk and ``_layout`` for the files on the volume; the GPU
facts it decides by come from ``runtime.machine``.

Names are exported lazily (PEP 562): importing one of them loads only its module and
what that needs (zstandard only with packing, huggingface_hub only when weights load).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Artifact", "Environment", "Profile", "Weights", "ensure"]

_EXPORTS = {
    "Artifact": "bootstrap._profile",
    "Environment": "bootstrap._ensure",
    "Profile": "bootstrap._profile",
    "Weights": "bootstrap._profile",
    "ensure": "bootstrap._ensure",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bootstrap' has no attribute {name!r}")
