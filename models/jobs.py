"""The request and result unions over every registered task: parsing, results, schema.

The request is the union of the tasks' job models, tagged by ``task``; a result is
the union of their result models. Each task module declares its own
(``models/tasks/``, collected by ``models.registry``), so this module sits above the
registry and the parsing names no task; ``models.contract``, below both, holds what
every task shares. ``python -m models schema`` prints :func:`json_schema_text`.
"""

from __future__ import annotations

import difflib
import functools
import json
from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, Field, TypeAdapter, ValidationError, create_model

from errors import InvalidInput
from models import dialects, registry
from models.contract import CONTRACT_VERSION, ErrorEnvelope, Job, ResultBase, StreamChunk
from models.tasks.clone import CloneFinal
from models.tasks.tts import TtsFinal

# The speech tasks stream (their jobs' ``stream`` field); tts first, as the
# committed schema lists them.
StreamFinal = Annotated[TtsFinal | CloneFinal, Field(discriminator="task")]
"""The last item of a streaming job (only speech jobs stream)."""


@functools.cache
def _job_adapter() -> TypeAdapter[Any]:
    jobs = tuple(spec.job for spec in registry.TASKS.values())
    return TypeAdapter(Annotated[Union[jobs], Field(discriminator="task")])  # noqa: UP007


def task_names() -> tuple[str, ...]:
    """Every job's possible ``task`` tag, in the registry's order."""
    return tuple(registry.TASKS)


@functools.cache
def _job_result() -> Any:
    """What a successful runner job returns: one model per task, told apart by ``task``.

    Each task names its result model (``TaskSpec.result``); a task that names none
    gets the common fields only.
    """
    results = tuple(
        spec.result
        or create_model(
            f"{spec.name.title()}Result", __base__=ResultBase, task=(Literal[spec.name], ...)
        )
        for spec in registry.TASKS.values()
        if spec.serve is None
    )
    return Annotated[Union[results], Field(discriminator="task")]  # noqa: UP007


@functools.cache
def _result_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(_job_result())


def job_result(fields: dict[str, Any]) -> ResultBase:
    """The result model of ``fields["task"]``, validated.

    Raises:
        pydantic.ValidationError: a field is missing, mistyped, or belongs to
            another task (a worker bug: the handler reports it as ``internal``).
    """
    return _result_adapter().validate_python(fields)


# --- Parsing ---------------------------------------------------------------------------


def _field_path(loc: tuple[Any, ...]) -> str:
    # The discriminated union puts the tag ("tts") first in the location; the
    # caller knows the job by its fields, not by pydantic's union branch.
    parts = [str(p) for p in loc]
    if parts and parts[0] in task_names():
        parts = parts[1:]
    return ".".join(parts) or "input"


def _task_list() -> str:
    return ", ".join(repr(t) for t in task_names())


# Other workers' names for this worker's fields, for a job that has a task (a job
# without one may be worker-faster_whisper's: models.dialects).
PEER_NAMES = {
    "enable_vad": "`vad`",
    "audio_base64": "`audio` with a data: URI (data:audio/wav;base64,...), or leave out "
    "`task` to send worker-faster_whisper's job",
    "transcription": "`formats` (files), or `faster_whisper.transcription` (inline)",
    "language_id": "`language`",
    "voice_id": "`voice`",
    "audio_prompt_path": "`reference_audio`",
    "ref_audio": "`reference_audio`",
    "ref_text": "`reference_text`",
}


def _unknown_field(loc: tuple[Any, ...]) -> str:
    """The message for an unknown field: the field it may have meant, when one is close."""
    name = str(loc[-1])
    if name in PEER_NAMES:
        return f"unknown field; this worker's name for it is {PEER_NAMES[name]}"
    job = registry.TASKS[loc[0]].job if len(loc) == 2 and loc[0] in registry.TASKS else None
    if job is not None:
        known = set(job.model_fields)
        for info in job.model_fields.values():
            if isinstance(info.validation_alias, AliasChoices):
                known.update(a for a in info.validation_alias.choices if isinstance(a, str))
        if close := difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7):
            return f"unknown field; did you mean `{close[0]}`?"
    return "unknown field (check the spelling; see the job contract)"


def _details(exc: ValidationError) -> list[dict[str, str]]:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = (err.get("ctx") or {}).get("field") or _field_path(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = _unknown_field(err["loc"])
        elif err["type"] == "union_tag_invalid":
            field, message = "task", f"must be one of {_task_list()}"
        elif err["type"] == "union_tag_not_found":
            field, message = "task", f"is required: one of {_task_list()}"
        details.append({"field": field, "message": message.removeprefix("Value error, ")})
    return details


def _invalid(details: list[dict[str, str]]) -> InvalidInput:
    # An unknown field usually explains a missing one (audio_base64 for audio), and
    # the error line names only the first: unknown fields go first.
    details = sorted(details, key=lambda d: not d["message"].startswith("unknown field"))
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return InvalidInput(
        f"{first['field']}: {first['message']}{more}", field=first["field"], details=details
    )


def parse_job(raw: Any) -> Job:
    """Validate a job's ``input`` object (a job without ``task`` may be another
    worker's: ``models.dialects``).

    Raises:
        InvalidInput: the input is not an object, or a field is missing, unknown,
            mistyped or out of range. ``details`` lists every problem by field, as
            the caller named it.
    """
    if not isinstance(raw, dict):
        raise InvalidInput("input: must be a JSON object", field="input")
    reading = dialects.read(raw)
    try:
        return _job_adapter().validate_python(reading.job)
    except ValidationError as exc:
        details = [{**d, "field": reading.caller_field(d["field"])} for d in _details(exc)]
        raise _invalid(details) from None


def json_schema() -> dict[str, Any]:
    """The contract as one JSON Schema document (request, result, error)."""
    request = _job_adapter().json_schema(ref_template="#/$defs/{model}")
    defs = request.pop("$defs", {})
    for spec in registry.TASKS.values():
        _publish_aliases(spec.job, defs.get(spec.job.__name__))
        _name_models(spec.name, defs.get(spec.job.__name__))
    documents: dict[str, Any] = {"JobResult": _job_result()}
    # A task no runner serves (voices) returns its own shape, named beside JobResult.
    documents.update(
        (spec.result.__name__, spec.result)
        for spec in registry.TASKS.values()
        if spec.serve is not None and spec.result is not None
    )
    documents.update(
        {"ErrorEnvelope": ErrorEnvelope, "StreamChunk": StreamChunk, "StreamFinal": StreamFinal}
    )
    for name, kind in documents.items():
        schema = TypeAdapter(kind).json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"media-worker job contract v{CONTRACT_VERSION}",
        "description": "`input` of a job request; results are JobResult (one shape per "
        "task, with only that task's fields; VoicesResult for `voices`) or ErrorEnvelope "
        "(a streaming endpoint yields StreamChunk items, then a StreamFinal).",
        **request,
        "$defs": dict(sorted(defs.items())),
    }


def _publish_aliases(job: type[BaseModel], schema: dict[str, Any] | None) -> None:
    """List each field's other accepted names (``input`` for ``text``...) in ``schema``.

    pydantic's schema names a field by its first alias only, and a job model forbids
    extra properties, so a validator reading the schema would refuse a job this worker
    accepts. Each other name gets the field's schema, marked as the same field.
    """
    if schema is None:
        return
    properties = schema["properties"]
    for name, info in job.model_fields.items():
        if not isinstance(info.validation_alias, AliasChoices) or name not in properties:
            continue
        names = [name]
        for alias in info.validation_alias.choices:
            if isinstance(alias, str) and alias != name:
                names.append(alias)
                properties[alias] = {
                    **properties[name],
                    "title": alias,
                    "description": f"Another name for `{name}`: give one of the two.",
                }
        if name in schema.get("required", ()):  # required under any of its names
            schema["required"].remove(name)
            schema.setdefault("allOf", []).append({"anyOf": [{"required": [n]} for n in names]})


def _name_models(task: str, schema: dict[str, Any] | None) -> None:
    """Make ``model`` an enum of the models serving ``task`` (plugin runners found at
    generation included), so a client reading the schema can offer them."""
    served = [spec.model for spec in registry.RUNNERS if spec.task == task]
    if schema is None or "model" not in schema["properties"] or not served:
        return
    field = schema["properties"]["model"]
    field["anyOf"] = [{"enum": served, "type": "string"}, {"type": "null"}]
    field["description"] = "The task's default model when absent (or null)."


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"
