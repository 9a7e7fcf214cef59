"""Hand the handler a profile environment as ready, for benches that measure warm jobs.

A bench that already has a profile's interpreter (and its weights) skips
bootstrap this way: it serves its jobs with a ``handler.Worker`` whose readiness
registry's ``ensure`` returns that environment for the profile (what
``bootstrap.ensure`` returns when everything is warm) and really ensures any other
profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import handler


def hand_ready(profile: str, python: Path, weights: dict[str, Path]) -> handler.Worker:
    """A worker that finds ``profile`` ready; serve with it inside ``.installed()``."""
    import bootstrap
    import handler
    from models.environments import Environments

    env = bootstrap.Environment(
        python=python,
        source="local",
        spec_hash="bench",
        attention="sdpa",
        weights=weights,
        seconds=0.0,
    )

    def ensure(p: bootstrap.Profile, **kwargs: object) -> bootstrap.Environment:
        return env if p.name == profile else bootstrap.ensure(p, **kwargs)

    return handler.Worker(Environments(ensure))
