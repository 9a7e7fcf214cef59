"""Profiles become ready environments and cached weights, safe under concurrent cold starts.

``ensure(profile)`` is the one call the handler makes; ``python -m bootstrap``
(status, prepare, verify, gc, doctor) is the operator's view of the same state.
See ``_ensure`` for the walk and the file layout on the volume.
"""

from __future__ import annotations

from bootstrap._ensure import Environment, ensure
from bootstrap._profile import Artifact, Profile, Weights

__all__ = ["Artifact", "Environment", "Profile", "Weights", "ensure"]
