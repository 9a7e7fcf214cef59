"""What an operator's own task or runner package imports to declare a task and a profile.

The stable import path for packages named in ``MEDIA_WORKER_RUNNER_PACKAGES``: the
names below keep their meaning across worker versions, wherever they are defined
inside ``models`` and ``bootstrap``. A worker-side module of such a package
declares, as the built-in ones do (``models/tasks/``, ``models/profiles.py``):

- ``TASKS = (TaskSpec(name, JobModel, result=..., before_run=..., after_run=...),)``:
  ``JobModel`` is a :class:`JobBase` subclass with ``task: Literal[name]``; a media
  input is a :data:`MediaRefField` (fetched before the runner runs), a model-specific
  option is ``Annotated[..., KNOB]``; ``result`` (optional) is a :class:`ResultBase`
  subclass; hooks receive a :class:`Prepared`.
- ``PROFILES = (Profile(name, requirements=..., weights=(Weights(...),),
  artifacts=(Artifact(...),)),)``: what the runner's interpreter needs.

The runner module itself runs in the profile's interpreter, without pydantic: it
imports ``runtime`` only (``Runner``, ``RunnerSpec``, ``RunContext``, ``OutputFile``).
docs/guides/add-a-runner.md shows a whole package; a test serves it.
"""

from __future__ import annotations

from bootstrap import Artifact, Profile, Weights
from models.contract import KNOB, JobBase, MediaRefField, ResultBase, without_nul
from models.tasks.base import Prepared, TaskSpec

__all__ = [
    "KNOB",
    "Artifact",
    "JobBase",
    "MediaRefField",
    "Prepared",
    "Profile",
    "ResultBase",
    "TaskSpec",
    "Weights",
    "without_nul",
]
