"""Which runner serves a job: task + model -> RunnerSpec. Pure data and lookups.

The specs come from the runner modules themselves: every module in
``models/runners/`` (but ``base`` and ``_private`` ones) declares ``SPECS``, so
shipping a runner touches no list here. Models that are designed but not shipped
yet are listed in ``PLANNED`` so a caller asking for one gets ``model_unavailable``
with a clear reason, not a crash; a planned model that ships simply stops being
reported as planned.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from types import ModuleType
from typing import Any

import config
from bootstrap import machine
from errors import InvalidInput, ModelUnavailable
from models import contract, runners
from models.runners import whisper
from models.runners.base import RunnerSpec

logger = logging.getLogger(__name__)

__all__ = [
    "PLANNED",
    "RUNNERS",
    "RunnerSpec",
    "check_default_models",
    "choose_default_tts",
    "decide_default_tts",
    "default_model",
    "discover",
    "resolve",
]


def discover(package: ModuleType = runners) -> tuple[RunnerSpec, ...]:
    """The ``SPECS`` of every runner module in ``package``, in module name order.

    Runner modules import their model libraries inside ``setup()``/``run()``, so
    importing them all here is cheap.

    Raises:
        TypeError: a runner module declares no ``SPECS`` tuple of RunnerSpec.
    """
    specs: list[RunnerSpec] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        declared = getattr(module, "SPECS", None)
        if not isinstance(declared, tuple) or not all(isinstance(s, RunnerSpec) for s in declared):
            raise TypeError(
                f"{module.__name__} must declare SPECS = (RunnerSpec(...), ...); "
                "see models/runners/base.py"
            )
        specs.extend(declared)
    return tuple(specs)


RUNNERS: tuple[RunnerSpec, ...] = discover()

PLANNED: dict[str, tuple[str, ...]] = {}


# clone: chatterbox (MIT weights); f5tts is never a default (CC-BY-NC weights).
# restore: the fast tier; SeedVR2 costs ~100x more per frame, so it is asked for by name.
DEFAULT_MODELS = {"clone": "chatterbox", "restore": "upscale"}


# The tts default for this process, decided once (see decide_default_tts).
_DEFAULT_TTS: list[str] = []


def choose_default_tts(setting: str, gpu_visible: bool) -> str:
    """The tts default: the setting when set, else kokoro on a GPU, piper on a CPU."""
    if setting:
        return setting
    return "kokoro" if gpu_visible else "piper"


def decide_default_tts() -> str:
    """Decide (once per process) and log the tts default; later calls return it."""
    if not _DEFAULT_TTS:
        setting = config.DEFAULT_TTS_MODEL.get()
        gpu = machine.probe().has_gpu
        model = choose_default_tts(setting, gpu)
        why = f"{config.DEFAULT_TTS_MODEL.name}={setting}" if setting else f"gpu_visible={gpu}"
        logger.info("default tts model=%s (%s)", model, why)
        _DEFAULT_TTS.append(model)
    return _DEFAULT_TTS[0]


def default_model(task: str) -> str | None:
    if task == "tts":
        return decide_default_tts()
    if task == "transcribe":
        return config.DEFAULT_TRANSCRIBE_MODEL.get() or whisper.default_model(
            gpu=machine.probe().has_gpu
        )
    if task in DEFAULT_MODELS:
        return DEFAULT_MODELS[task]
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
            _check_knobs(job, spec)
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


def _check_knobs(job: Any, spec: RunnerSpec) -> None:
    """Reject a model-specific option this model would silently ignore.

    An option left at its default changes nothing, so only a changed one is refused.
    """
    fields = type(job).model_fields
    for name in contract.fields_marked(type(job), contract.KNOB):
        if name in spec.knobs or getattr(job, name) == fields[name].default:
            continue
        honoured = ", ".join(spec.knobs) or "none"
        raise InvalidInput(
            f"{name}: model {spec.model!r} does not use this option (its options: {honoured})",
            field=name,
        )


def check_default_models() -> None:
    """Each task's default model is one this worker ships (run at start).

    Raises:
        config.ConfigError: ``MEDIA_WORKER_DEFAULT_TTS_MODEL`` or
            ``MEDIA_WORKER_DEFAULT_TRANSCRIBE_MODEL`` names no shipped model of its
            task; the message names the variable and the choices.
    """
    setting = config.DEFAULT_TTS_MODEL
    model = setting.get() or decide_default_tts()
    shipped = [r.model for r in RUNNERS if r.task == "tts"]
    if model not in shipped:
        raise config.ConfigError(
            f"{setting.name}={model!r} is invalid: no tts model {model!r} in this worker "
            f"(available: {', '.join(shipped)})"
        )
    transcribe = config.DEFAULT_TRANSCRIBE_MODEL
    if (model := transcribe.get()) and model not in whisper.MODELS:
        raise config.ConfigError(
            f"{transcribe.name}={model!r} is invalid: no transcribe model {model!r} in this "
            f"worker (available: {', '.join(whisper.MODELS)})"
        )
