"""What a task module declares: :class:`TaskSpec`, and what its hooks see: :class:`Prepared`.

Worker side (pydantic is there). The registry collects every ``TASKS`` it finds
(``models.registry.discover``); the job and result unions (``models.jobs``), the
handler's hooks and the default-model settings all come from these specs, so the
shared code names no task and no runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import config
from models.contract import Job
from runtime.protocol import RunnerInput


@dataclass
class Prepared:
    """A validated job on its way to its runner, as a task's hooks see it.

    Attributes:
        job: the validated job (the task's pydantic model).
        scratch: the job's scratch directory.
        inputs: media field -> fetched local file; a hook may add one.
        runner_input: what the runner gets as its ``job`` (``job`` as JSON); a hook
            may fill a field.
        s3: the job's S3 settings (``storage.S3Settings``), None for the local store.
        prefix: the validated output prefix, or None.
        result: extra result fields the task adds (``after_run`` fills them).
    """

    job: Job
    scratch: Path
    inputs: dict[str, Path]
    runner_input: RunnerInput
    s3: Any
    prefix: str | None
    result: dict[str, Any] = field(default_factory=dict)


Hook = Callable[[Prepared], None]
# A task no runner serves: (job, s3 settings, job id) -> the result dict.
Serve = Callable[[Any, Any, str], dict[str, Any]]


@dataclass(frozen=True)
class TaskSpec:
    """One task of the contract and what the worker does around its runner.

    Attributes:
        name: the job's ``task`` tag.
        job: the task's pydantic model (a ``contract.JobBase`` subclass with
            ``task: Literal[name]``): its fields, media fields (``MediaRefField``)
            and knobs (``KNOB``) are the contract fragment.
        result: the task's result model (a ``contract.ResultBase`` subclass with
            ``task: Literal[name]``); None: the common fields only. For a task
            with ``serve``, the model of what ``serve`` returns (in the schema
            under its own name, beside ``JobResult``).
        default_setting: the setting that names the default model; unset, the
            runners' own ``RunnerSpec.default`` rule (GPU or CPU) decides.
        before_run: after the media fields are fetched, before the runner (clone:
            a saved voice becomes the reference).
        after_run: after the runner succeeded, before publishing (clone: save the voice).
        serve: for a task no runner serves (``voices``): the whole job.
    """

    name: str
    job: type
    result: type | None = None
    default_setting: config.Setting[str] | None = None
    before_run: Hook | None = None
    after_run: Hook | None = None
    serve: Serve | None = None
