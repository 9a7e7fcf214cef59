"""The job contract (version in ``CONTRACT_VERSION``): what a caller sends and gets back.

The pydantic models here are the reference; ``python -m models schema`` prints
their JSON Schema and ``models/schema.json`` is the committed copy (a test keeps
it in sync). Unknown fields are rejected everywhere so a typo never passes
silently. Only pure validation lives here: nothing is fetched or run.

The request is the union of the tasks' job models, tagged by ``task``: each task
module declares its own (``models/tasks/``, collected by ``models.registry``), so
the parsing below names no task.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, ClassVar, Literal, TypedDict, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
)

from errors import InvalidInput
from storage import MAX_PRESIGN_S, MIN_PRESIGN_S

# "<major>.<minor>": a new field or task bumps the minor (docs/changelog.md).
CONTRACT_VERSION = "1.7"

# Each word of the contract is written once, here: the Literal types are what the
# models use, the tuples (via get_args) are what code and messages iterate over.
AudioFormat = Literal["wav", "flac", "ogg", "mp3"]
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
VideoFormat = Literal["mp4"]
VIDEO_FORMATS: tuple[str, ...] = get_args(VideoFormat)
MAX_TEXT_CHARS = 20_000
_MEDIA_SCHEMES = ("https://", "s3://", "data:")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_media_ref(value: str) -> str:
    if not value.startswith(_MEDIA_SCHEMES):
        raise ValueError("must be an https:// URL, an s3://bucket/key reference or a data: URI")
    return value


class _Mark:
    """A tag in a field's ``Annotated`` metadata; code asks for the fields carrying it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


MEDIA = _Mark("media")
"""A media input: the handler fetches it into scratch before the runner runs."""
KNOB = _Mark("knob")
"""A model-specific option: only models whose RunnerSpec lists it in ``knobs`` accept it."""

MediaRefField = Annotated[
    str,
    Field(
        min_length=1,
        description="An https:// URL (fetched with SSRF protection and a size cap), "
        "s3://bucket/key (read with the configured credentials) or a base64 data: URI.",
        examples=["https://example.com/voice.wav", "s3://my-bucket/refs/voice.wav"],
    ),
    AfterValidator(_check_media_ref),
    MEDIA,
]


def _marked(annotation: Any, mark: _Mark) -> bool:
    if mark in getattr(annotation, "__metadata__", ()):
        return True
    return any(_marked(arg, mark) for arg in get_args(annotation))


def fields_marked(model: type[BaseModel], mark: _Mark) -> tuple[str, ...]:
    """The names of ``model``'s fields tagged ``mark`` (also inside ``X | None``)."""
    return tuple(
        name
        for name, info in model.model_fields.items()
        if mark in info.metadata or _marked(info.annotation, mark)
    )


class OutputOptions(StrictModel):
    """Where and how outputs are published."""

    prefix: str | None = Field(
        default=None,
        max_length=512,
        description="Key prefix in front of jobs/<job-id>/. No '..', no leading '/'.",
    )
    presign_seconds: int | None = Field(
        default=None,
        ge=MIN_PRESIGN_S,
        le=MAX_PRESIGN_S,
        description="Lifetime of presigned URLs in seconds.",
    )


class JobBase(StrictModel):
    """What every job served by a runner has; a task's job model adds its fields."""

    model: str | None = Field(
        default=None, min_length=1, description="The task's default model when absent."
    )
    output: OutputOptions = Field(default_factory=OutputOptions)
    seed: Annotated[int | None, KNOB] = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Fixes the model's sampling, for models that sample (each model's "
        "knobs are on its task's page, docs/tasks/); a model without a seedable sampler "
        "refuses it.",
    )


def without_nul(value: str) -> str:
    """``value``, refused when it holds a NUL (for a text field's validator).

    A NUL reaches C libraries (espeak-ng, tokenizers) as the end of the string, or
    makes them raise mid-job: refuse it here, naming the field.
    """
    if "\x00" in value:
        raise ValueError(f"contains a NUL character (\\x00) at index {value.index(chr(0))}")
    return value


class Envelope(TypedDict, total=False):
    """What RunPod hands the handler: the first of the three "jobs".

    The request is its ``input``; validated, it is a :data:`Job`; what the runner
    process receives is ``protocol.RunnerInput``.
    """

    id: str
    input: Any
    s3Config: dict[str, Any]


Job = StrictModel
"""The validated job: one of the tasks' job models (``registry.TASKS[...].job``)."""


@functools.cache
def _job_adapter() -> TypeAdapter[Any]:
    from models import registry  # late: the registry collects the task modules, which use us

    jobs = tuple(spec.job for spec in registry.TASKS.values())
    return TypeAdapter(Annotated[Union[jobs], Field(discriminator="task")])  # noqa: UP007


def task_names() -> tuple[str, ...]:
    """Every job's possible ``task`` tag, in the registry's order."""
    from models import registry

    return tuple(registry.TASKS)


# --- Results -------------------------------------------------------------------------


class Output(BaseModel):
    """One published file: the runner's ``protocol.OutputFile`` plus where it went."""

    url: str = Field(description="Presigned https URL, or file:// for the local store.")
    key: str
    content_type: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    duration_s: float | None = None


class Timings(StrictModel):
    bootstrap_s: float = 0.0
    fetch_s: float = 0.0
    load_s: float = 0.0
    infer_s: float = 0.0
    publish_s: float = 0.0
    total_s: float = 0.0


class RestoreTimings(Timings):
    """A restore job's timings: the job's own plus the pipeline's stages."""

    decode_s: float = Field(description="Decoding (CPU busy).")
    compute_s: float = Field(description="The model's batches.")
    encode_s: float = Field(description="Encoding and muxing.")


class MediaInfo(BaseModel):
    """restore: what the output holds and how it was made."""

    kind: Literal["video", "image"]
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str = Field(description="h264 for a video, png for an image.")
    encoder: str = Field(description="libx264 or h264_nvenc (NVENC where the GPU has it).")
    audio: Literal["copy", "aac", "none"] = Field(
        description="copy: the source's audio stream remuxed untouched; aac: re-encoded "
        "because MP4 cannot carry its codec; none: the source had none."
    )


class WordTiming(BaseModel):
    """One spoken word and where it is in the output audio."""

    word: str
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)


class TranscriptWord(WordTiming):
    """One recognised word: where it is in the input, and how sure the model was."""

    probability: float | None = Field(default=None, ge=0, le=1)


class TranscriptSegment(BaseModel):
    """One stretch of recognised speech, as the model segmented it."""

    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    text: str
    words: list[TranscriptWord] | None = Field(
        default=None, description="With timestamps: its words, in order."
    )


class ResultBase(StrictModel):
    """What every successful runner job returns; each task's result adds its own fields.

    A result carries only its task's fields (``extra="forbid"``: the schema says
    ``additionalProperties: false``, and a runner reporting another task's field is
    a worker bug, not a null in the caller's result). Fields named in ``_OMITTED``
    are left out when they are None: they exist only when the job asked for them.
    """

    _OMITTED: ClassVar[frozenset[str]] = frozenset()

    model: str
    outputs: list[Output]
    timings: Timings
    cold: bool = Field(description="True when this job started the runner process.")


class TtsResult(ResultBase):
    """A tts job's result."""

    _OMITTED = frozenset({"words"})

    task: Literal["tts"]
    words: list[WordTiming] | None = Field(
        default=None, description="Only with timestamps: every word, in order, in seconds."
    )


class CloneResult(ResultBase):
    """A clone job's result."""

    _OMITTED = frozenset({"words", "saved_voice"})

    task: Literal["clone"]
    words: list[WordTiming] | None = Field(
        default=None, description="Only with timestamps: every word, in order, in seconds."
    )
    saved_voice: str | None = Field(
        default=None, description="Only with save_voice: the name the reference was saved under."
    )


class RestoreResult(ResultBase):
    """A restore job's result."""

    _OMITTED = frozenset({"plan"})

    task: Literal["restore"]
    timings: RestoreTimings
    media: MediaInfo
    plan: str | None = Field(
        default=None,
        description="What the model's memory plan chose for this GPU (precision, VAE "
        "tiling, BlockSwap, frames per batch) and the peak it estimated; absent for a "
        "model that plans nothing.",
    )


class TranscribeResult(ResultBase):
    """A transcribe job's result (its nulls mean something, so they are kept)."""

    task: Literal["transcribe"]
    language: str | None = Field(
        description="The language spoken (given or detected); null on silence."
    )
    language_probability: float | None = Field(
        ge=0, le=1, description="1.0 when given, else the detector's; null on silence."
    )
    duration_s: float = Field(ge=0, description="The input's length.")
    text: str = Field(description="The whole transcript.")
    segments: list[TranscriptSegment] | None = Field(
        description="The segments ([] for silence). null when they would make the result "
        "too big: then they are in the transcript.json output.",
    )


@functools.cache
def _job_result() -> Any:
    """What a successful runner job returns: one model per task, told apart by ``task``.

    Each task names its result model (``TaskSpec.result``); a task that names none
    gets the common fields only.
    """
    from models import registry

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


def result_dict(result: ResultBase) -> dict[str, Any]:
    """``result`` as the caller receives it: its task's fields, absent extras left out."""
    omit = {name for name in result._OMITTED if getattr(result, name) is None}
    return result.model_dump(mode="json", exclude=omit or None)


class SavedVoice(BaseModel):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Of the saved reference audio.")
    bytes: int = Field(ge=0)
    has_reference_text: bool
    created: str = Field(description="When it was saved (UTC, ISO 8601).")


class VoicesResult(BaseModel):
    """What a ``voices`` job returns: the saved voices after the action."""

    task: Literal["voices"]
    action: Literal["list", "delete"]
    voices: list[SavedVoice]
    deleted: str | None = None


class StreamChunk(BaseModel):
    """One item a streaming job yields before its final result (each < 1 MB)."""

    type: Literal["chunk"] = "chunk"
    index: int = Field(ge=0, description="0, 1, 2... in playing order.")
    offset_s: float = Field(ge=0, description="Where this chunk starts in the full audio.")
    duration_s: float = Field(ge=0)
    sample_rate: int
    format: str
    content_type: str
    audio_base64: str = Field(description="The chunk as a complete file of `format`.")
    elapsed_s: float = Field(description="Seconds since the job started, when it was sent.")
    words: list[WordTiming] | None = None


class _Final(BaseModel):
    type: Literal["result"] = "result"


class TtsFinal(TtsResult, _Final):
    """The last item of a streaming tts job: the full result, published, tagged."""


class CloneFinal(CloneResult, _Final):
    """The last item of a streaming clone job: the full result, published, tagged."""


StreamFinal = Annotated[TtsFinal | CloneFinal, Field(discriminator="task")]
"""The last item of a streaming job (only speech jobs stream)."""


ErrorCode = Literal[
    "invalid_input",
    "fetch_failed",
    "unsupported_media",
    "model_unavailable",
    "bootstrap_failed",
    "runner_crashed",
    "timeout",
    "storage_failed",
    "internal",
]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str | None = None
    message: str


class ErrorEnvelope(BaseModel):
    """What a failed job returns: ``error`` is ``"<code>: <message>"``, one line."""

    error: str
    error_code: ErrorCode
    details: list[ErrorDetail] = Field(default_factory=list)


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


def _details(exc: ValidationError) -> list[dict[str, str]]:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = (err.get("ctx") or {}).get("field") or _field_path(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see the job contract)"
        elif err["type"] == "union_tag_invalid":
            field, message = "task", f"must be one of {_task_list()}"
        elif err["type"] == "union_tag_not_found":
            field, message = "task", f"is required: one of {_task_list()}"
        details.append({"field": field, "message": message.removeprefix("Value error, ")})
    return details


def _invalid(details: list[dict[str, str]]) -> InvalidInput:
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return InvalidInput(
        f"{first['field']}: {first['message']}{more}", field=first["field"], details=details
    )


def parse_job(raw: Any) -> Job:
    """Validate a job's ``input`` object.

    Raises:
        InvalidInput: the input is not an object, or a field is missing, unknown,
            mistyped or out of range. ``details`` lists every problem by field.
    """
    if not isinstance(raw, dict):
        raise InvalidInput("input: must be a JSON object", field="input")
    try:
        return _job_adapter().validate_python(raw)
    except ValidationError as exc:
        raise _invalid(_details(exc)) from None


def json_schema() -> dict[str, Any]:
    """The contract as one JSON Schema document (request, result, error)."""
    request = _job_adapter().json_schema(ref_template="#/$defs/{model}")
    defs = request.pop("$defs", {})
    documents: dict[str, Any] = {
        "JobResult": _job_result(),
        "VoicesResult": VoicesResult,
        "ErrorEnvelope": ErrorEnvelope,
        "StreamChunk": StreamChunk,
        "StreamFinal": StreamFinal,
    }
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


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"
