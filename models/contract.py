"""The job contract's shared parts (version in ``CONTRACT_VERSION``).

What every task shares: the envelope, the job base and its field marks (``MEDIA``,
``KNOB``, ``MediaRefField``), the outputs, timings and result base, the streaming
items, and the error envelope. Each task's job model and result live in its own
module (``models/tasks/<task>.py``); ``models.jobs`` joins them into the request
and result unions, parses jobs and prints the JSON Schema (``python -m models
schema``; ``models/schema.json`` is the committed copy, a test keeps it in sync).

Unknown fields are rejected everywhere so a typo never passes silently. Only pure
validation lives here: nothing is fetched or run, and no task is named.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypedDict, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from storage import MAX_PRESIGN_S, MIN_PRESIGN_S, local_file_uri

# "<major>.<minor>": a new field or task bumps the minor (docs/changelog.md).
CONTRACT_VERSION = "1.12"

_MEDIA_SCHEMES = ("https://", "s3://", "data:")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_media_ref(value: str) -> str:
    if value.startswith(_MEDIA_SCHEMES):
        return value
    # A path or file:// in a local run becomes an absolute file:// URI (refused, in
    # words, anywhere else: storage.local_file_uri).
    if local := local_file_uri(value):
        return local
    raise ValueError("must be an https:// URL, an s3://bucket/key reference or a data: URI")


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


class WordTiming(BaseModel):
    """One spoken word and where it is in the output audio."""

    word: str
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)


class ResultBase(StrictModel):
    """What every successful runner job returns; each task's result adds its own fields.

    A result carries only its task's fields (``extra="forbid"``: the schema says
    ``additionalProperties: false``, and a runner reporting another task's field is
    a worker bug, not a null in the caller's result). Fields named in ``_OMITTED``
    are left out when they are None: they exist only when the job asked for them
    (a result with another rule overrides :meth:`omitted`).
    """

    _OMITTED: ClassVar[frozenset[str]] = frozenset()

    model: str
    outputs: list[Output]
    timings: Timings
    cold: bool = Field(description="True when this job started the runner process.")

    def omitted(self) -> set[str]:
        """The fields the caller does not see: those of ``_OMITTED`` that are None."""
        return {name for name in self._OMITTED if getattr(self, name) is None}


def result_dict(result: ResultBase) -> dict[str, Any]:
    """``result`` as the caller receives it: its task's fields, absent extras left out."""
    return result.model_dump(mode="json", exclude=result.omitted() or None)


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


class FinalItem(BaseModel):
    """Mixed into a streaming task's result: its last item, tagged ``type: "result"``.

    A task that streams declares ``<Task>Final(<Task>Result, FinalItem)``;
    ``models.jobs.StreamFinal`` is their union.
    """

    type: Literal["result"] = "result"


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
