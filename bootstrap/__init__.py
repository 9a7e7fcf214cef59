"""Profiles become ready environments and cached weights, safe under concurrent cold starts.

``ensure(profile)`` is the one call the handler makes; ``python -m models``
(status, prepare, verify, gc, doctor) is the operator's view of the same state.
See ``_ensure`` for the walk and ``_layout`` for the files on the volume; ``machine`` is
the one reader of the GPU facts everything else asks.

Names are exported lazily (PEP 562): a runner process imports ``runtime.machine``
from a profile environment that has none of the builder's dependencies
(packaging, huggingface_hub, zstandard), so this package must not import them eagerly.
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
