"""Which runner serves a job: task + model -> RunnerSpec. Pure data and lookups.

Models that are designed but not shipped yet are listed in ``PLANNED`` so a caller
asking for one gets ``model_unavailable`` with a clear reason, not a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import config
from errors import InvalidInput, ModelUnavailable
from models.runners import piper


@dataclass(frozen=True)
class RunnerSpec:
    """One runner: the task and model it serves, its code and its profile."""

    task: str
    model: str
    runner_ref: str  # "package.module:Class", imported inside the runner process
    profile: str
    check: Callable[[Any], None] | None = None  # cheap pre-flight validation, no ML imports


RUNNERS: tuple[RunnerSpec, ...] = (
    RunnerSpec("tts", "piper", "models.runners.piper:PiperRunner", "piper", piper.check_job),
)

PLANNED: dict[str, tuple[str, ...]] = {
    "tts": ("kokoro",),
    "clone": ("f5tts", "chatterbox"),
    "restore": ("seedvr2",),
}


def default_model(task: str) -> str | None:
    if task == "tts":
        return config.DEFAULT_TTS_MODEL.get()
    shipped = [r.model for r in RUNNERS if r.task == task]
    return shipped[0] if shipped else None


def resolve(job: Any) -> RunnerSpec:
    """The runner for a validated job.

    Raises:
        InvalidInput: ``model`` names no model of this task (field ``model``), or
            the runner's pre-flight check rejects a field (e.g. ``voice``).
        ModelUnavailable: the task or model is designed but not shipped here.
    """
    task = job.task
    model = job.model or default_model(task)
    shipped = [r for r in RUNNERS if r.task == task]
    for spec in shipped:
        if spec.model == model:
            if spec.check is not None:
                spec.check(job)
            return spec
    available = ", ".join(r.model for r in shipped) or "none yet"
    if model is None or model in PLANNED.get(task, ()):
        what = f"model {model!r}" if model else f"task {task!r}"
        raise ModelUnavailable(
            f"{what} is not available in this worker version (task {task!r} models "
            f"available: {available}); see the README's model list",
            field="model" if model else "task",
        )
    known = ", ".join(sorted({r.model for r in shipped} | set(PLANNED.get(task, ()))))
    raise InvalidInput(
        f"model: unknown model {model!r} for task {task!r} (known: {known})", field="model"
    )
