"""Which task and runner serve a job: task + model -> RunnerSpec. Data and lookups.

Everything here is collected from the modules that declare it, so adding a
runner (or a task) touches no list in this file:

- runner modules declare ``SPECS`` (:class:`RunnerSpec`, ``runtime/runner.py``),
- task modules declare ``TASKS`` (:class:`TaskSpec`, ``models/tasks/base.py``),
- either may declare ``PROFILES`` (``bootstrap.Profile``) for a runner to name;
  :func:`get_profile` finds them beside the built-in ones (``models.profiles``),
- a runner module declares the settings only it reads (``config.declare``), which
  makes :data:`SETTINGS` the whole list once its modules are imported.

The packages read are ``models.tasks`` and ``runners``, then those named in
``MEDIA_WORKER_RUNNER_PACKAGES`` (an operator's own runners, on ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import config
from bootstrap import Profile
from errors import InvalidInput, ModelUnavailable
from models import contract, profiles
from models.tasks.base import TaskSpec
from runtime import machine
from runtime.machine import Machine
from runtime.runner import DEFAULT_RULES, RunnerSpec

logger = logging.getLogger(__name__)

__all__ = [
    "RUNNERS",
    "SETTINGS",
    "TASKS",
    "RunnerSpec",
    "TaskSpec",
    "check_default_models",
    "choose_default",
    "decide_default",
    "default_model",
    "discover",
    "get_profile",
    "profile_names",
    "resolve",
    "task",
]

BUILT_IN_PACKAGES = ("models.tasks", "runners")


@dataclass(frozen=True)
class Declared:
    """What the modules of some packages declare, checked against each other."""

    runners: tuple[RunnerSpec, ...]
    tasks: dict[str, TaskSpec]
    profiles: dict[str, Profile]


def _modules(package: ModuleType) -> Iterable[ModuleType]:
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        yield importlib.import_module(f"{package.__name__}.{info.name}")


def _tuple_of(module: ModuleType, name: str, kind: type) -> tuple[Any, ...]:
    declared = getattr(module, name, ())
    if not isinstance(declared, tuple) or not all(isinstance(x, kind) for x in declared):
        raise TypeError(f"{module.__name__}.{name} must be a tuple of {kind.__name__}")
    return declared


def discover(*packages: ModuleType | str) -> Declared:
    """Collect ``SPECS``, ``TASKS`` and ``PROFILES`` from every module of ``packages``.

    Modules are read in package order, then name order; ``base`` and ``_private``
    modules are skipped. Runner modules import their model libraries inside
    ``setup()``/``run()``, so importing them all here is cheap.

    Raises:
        TypeError: a module declares none of the three, or declares one wrongly;
            a runner names an unknown task or profile, a knob its task lacks, or
            a default rule outside ``DEFAULT_RULES``; a (task, model) or a task is
            declared twice. The message names the module or the spec.
    """
    runners: list[RunnerSpec] = []
    tasks: dict[str, TaskSpec] = {}
    declared_profiles: dict[str, Profile] = {}
    for package in packages:
        package = importlib.import_module(package) if isinstance(package, str) else package
        for module in _modules(package):
            specs = _tuple_of(module, "SPECS", RunnerSpec)
            task_specs = _tuple_of(module, "TASKS", TaskSpec)
            module_profiles = _tuple_of(module, "PROFILES", Profile)
            if not (specs or task_specs or module_profiles):
                raise TypeError(
                    f"{module.__name__} must declare SPECS = (RunnerSpec(...), ...), "
                    "TASKS = (TaskSpec(...), ...) or PROFILES = (Profile(...), ...); "
                    "see runtime/runner.py and models/tasks/base.py"
                )
            runners.extend(specs)
            for spec in task_specs:
                if spec.name in tasks:
                    raise TypeError(f"{module.__name__}: task {spec.name!r} is declared twice")
                tasks[spec.name] = spec
            declared_profiles.update((p.name, p) for p in module_profiles)
    known_profiles = profiles.built_in_names() | set(declared_profiles)
    seen: set[tuple[str, str]] = set()
    for spec in runners:
        what = f"runner {spec.task}/{spec.model} ({spec.runner_ref})"
        if spec.task not in tasks:
            raise TypeError(f"{what}: no module declares task {spec.task!r}")
        if (spec.task, spec.model) in seen:
            raise TypeError(f"{what}: model {spec.model!r} is declared twice")
        seen.add((spec.task, spec.model))
        if spec.profile not in known_profiles:
            raise TypeError(f"{what}: no profile {spec.profile!r}")
        knobs = contract.fields_marked(tasks[spec.task].job, contract.KNOB)
        if unknown := [k for k in spec.knobs if k not in knobs]:
            raise TypeError(f"{what}: knobs {unknown} are not KNOB fields of its task")
        if spec.default not in DEFAULT_RULES:
            raise TypeError(f"{what}: default must be one of {DEFAULT_RULES}")
    return Declared(tuple(runners), dict(sorted(tasks.items())), declared_profiles)


def _declared() -> Declared:
    return discover(*BUILT_IN_PACKAGES, *config.RUNNER_PACKAGES.get())


_DECLARED = _declared()
RUNNERS: tuple[RunnerSpec, ...] = _DECLARED.runners
TASKS: dict[str, TaskSpec] = _DECLARED.tasks
DECLARED_PROFILES: dict[str, Profile] = _DECLARED.profiles
# Every setting this worker reads: config.py's own and those the runner modules declare
# beside their SPECS (each of them was imported just above, and so has declared its own).
SETTINGS: tuple[config.Setting[Any], ...] = tuple(config.SETTINGS)


def profile_names() -> tuple[str, ...]:
    """Every profile a runner can ask for, those made per machine or from settings included.

    The one list the handler (``MEDIA_WORKER_PREPARE_PROFILES``), the operator CLI
    and the Dockerfile's ``BAKE_PROFILES`` (which runs that CLI) all read: the
    built-in ones (``models.profiles``) and those declared by runner packages
    (``MEDIA_WORKER_RUNNER_PACKAGES``).
    """
    return tuple(sorted(profiles.built_in_names() | set(DECLARED_PROFILES)))


def get_profile(name: str, facts: Machine | None = None) -> Profile:
    """The profile called ``name`` (one of :func:`profile_names`), for ``facts``
    (default: this machine, probed once). A built-in profile wins over a runner
    package's of the same name.

    Raises:
        KeyError: no runner declares that profile (the message lists those that do).
        errors.ModelUnavailable, config.ConfigError: a profile made from settings
            cannot be made from these (``models.profiles``).
    """
    profile = profiles.built_in(name, facts)
    if profile is None:
        profile = DECLARED_PROFILES.get(name)
    if profile is None:
        raise KeyError(f"no profile {name!r}; known: {', '.join(profile_names())}")
    return profile


def task(name: str) -> TaskSpec:
    """The spec of task ``name`` (a validated job's task is always one)."""
    return TASKS[name]


def choose_default(task: str, specs: Iterable[RunnerSpec], setting: str, facts: Machine) -> str:
    """A task's default model: the setting when set, else its runners' rule. Pure.

    The first runner whose ``default`` is ``"always"``, or ``"gpu"``/``"cpu"``
    matching ``facts``, in declaration order; None when no runner claims it.
    """
    if setting:
        return setting
    wanted = ("always", "gpu" if facts.has_gpu else "cpu")
    return next((s.model for s in specs if s.task == task and s.default in wanted), None)


# The default model per task for this process, decided once and logged.
_DEFAULTS: dict[str, str | None] = {}


def decide_default(task: str) -> str | None:
    """Decide (once per process) and log ``task``'s default model; later calls return it.

    A task the worker serves itself (``voices``: no runner) has no model to decide, and
    nothing is logged for it: "default voices model=None" read as a missing model.
    """
    if TASKS[task].serve is not None:
        return None
    if task not in _DEFAULTS:
        setting = TASKS[task].default_setting
        value = setting.get() if setting is not None else ""
        facts = machine.probe()
        model = choose_default(task, RUNNERS, value, facts)
        why = f"{setting.name}={value}" if value and setting else f"gpu_visible={facts.has_gpu}"
        logger.info("default %s model=%s (%s)", task, model, why)
        _DEFAULTS[task] = model
    return _DEFAULTS[task]


def default_model(task: str) -> str | None:
    """``task``'s default model, decided now (tests change settings and machines)."""
    setting = TASKS[task].default_setting
    return choose_default(task, RUNNERS, setting.get() if setting else "", machine.probe())


def resolve(job: contract.Job) -> RunnerSpec:
    """The runner for a validated job.

    Raises:
        InvalidInput: ``model`` names no model of this task (field ``model``), or
            the runner's pre-flight check rejects a field (e.g. ``voice``).
        ModelUnavailable: no model of this task is shipped here.
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
    if model is None:
        raise ModelUnavailable(
            f"task {task!r} has no model in this worker version; see the README's model list",
            field="task",
        )
    known = ", ".join(r.model for r in shipped)
    raise InvalidInput(
        f"model: unknown model {model!r} for task {task!r} (known: {known})", field="model"
    )


def _check_knobs(job: contract.Job, spec: RunnerSpec) -> None:
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
    """Each task's default-model setting names a model this worker ships (run at start).

    Raises:
        config.ConfigError: a ``MEDIA_WORKER_DEFAULT_<TASK>_MODEL`` setting names no
            shipped model of its task; the message names the variable and the choices.
    """
    for name, spec in TASKS.items():
        setting = spec.default_setting
        if setting is None or not (model := setting.get()):
            continue
        shipped = [r.model for r in RUNNERS if r.task == name]
        if model not in shipped:
            raise config.ConfigError(
                f"{setting.name}={model!r} is invalid: no {name} model {model!r} in this "
                f"worker (available: {', '.join(shipped)})"
            )
