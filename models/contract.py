"""The job contract, version 1.5: what a caller sends and gets back.

The pydantic models here are the reference; ``python -m models schema`` prints
their JSON Schema and ``models/schema.json`` is the committed copy (a test keeps
it in sync). Unknown fields are rejected everywhere so a typo never passes
silently. Only pure validation lives here: nothing is fetched or run.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from errors import InvalidInput

# "<major>.<minor>": a new field or task bumps the minor (README changelog).
CONTRACT_VERSION = "1.5"

# Each word of the contract is written once, here: the Literal types are what the
# models use, the tuples (via get_args) are what code and messages iterate over.
# Served by a runner; a JobResult's task.
RunnerTask = Literal["tts", "clone", "restore", "transcribe"]
Task = Literal[RunnerTask, "voices"]  # every job's tag
TASKS: tuple[str, ...] = get_args(Task)
AudioFormat = Literal["wav", "flac", "ogg", "mp3"]
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
VideoFormat = Literal["mp4"]
VIDEO_FORMATS: tuple[str, ...] = get_args(VideoFormat)
# SigV4 presigned URLs live at most 7 days; below a minute a URL is useless.
MIN_PRESIGN_S, MAX_PRESIGN_S = 60, 604_800
MAX_TEXT_CHARS = 20_000
_MEDIA_SCHEMES = ("https://", "s3://", "data:")


class _Strict(BaseModel):
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


class OutputOptions(_Strict):
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


class _JobBase(_Strict):
    model: str | None = Field(
        default=None, min_length=1, description="The task's default model when absent."
    )
    output: OutputOptions = Field(default_factory=OutputOptions)
    seed: Annotated[int | None, KNOB] = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Fixes the model's sampling, for models that sample (see the README's "
        "model table); a model without a seedable sampler refuses it.",
    )


def _without_nul(value: str) -> str:
    # A NUL reaches C libraries (espeak-ng via Piper) as the end of the string, or
    # makes them raise mid-job: refuse it here, naming the field.
    if "\x00" in value:
        raise ValueError(f"contains a NUL character (\\x00) at index {value.index(chr(0))}")
    return value


class _SpeechBase(_JobBase):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    format: AudioFormat = "wav"
    sample_rate: int | None = Field(
        default=None, ge=8_000, le=48_000, description="Resample the output to this rate (Hz)."
    )
    stream: bool = Field(
        default=False,
        description="Yield each sentence's audio as soon as it exists (a StreamChunk each, "
        "then the full result). Only on a streaming endpoint (MEDIA_WORKER_STREAMING=1).",
    )
    timestamps: Annotated[bool, KNOB] = Field(
        default=False,
        description="Return per-word start/end times (`words`) and publish .srt and .vtt "
        "captions beside the audio. Only models that align (kokoro).",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain something to say, not only whitespace")
        return _without_nul(value)


class TtsJob(_SpeechBase):
    """Text to speech."""

    task: Literal["tts"]
    voice: Annotated[str | None, KNOB] = Field(
        default=None, min_length=1, max_length=128, description="Model-specific voice name."
    )
    speed: Annotated[float, KNOB] = Field(default=1.0, ge=0.5, le=2.0)


# Saved voice names become directory names on the volume and S3 key parts.
VOICE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VoiceNameField = Annotated[
    str,
    Field(
        pattern=VOICE_NAME_PATTERN,
        description="A saved voice: 1-64 of a-z, 0-9, '_', '-', starting with a letter or digit.",
        examples=["narrator", "ana-es"],
    ),
]


class CloneJob(_SpeechBase):
    """Zero-shot voice cloning from a reference recording or a saved voice."""

    task: Literal["clone"]
    reference_audio: MediaRefField | None = Field(
        default=None,
        description="The voice to clone (a few seconds of clean speech). Without it and "
        "without `voice`, chatterbox speaks with its built-in voice.",
    )
    voice: VoiceNameField | None = Field(
        default=None, description="A voice saved earlier with `save_voice`, instead of audio."
    )
    save_voice: VoiceNameField | None = Field(
        default=None,
        description="Save this job's reference (and reference_text) under this name once "
        "the job succeeds; an existing voice of that name is replaced.",
    )
    reference_text: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="Transcript of the reference; required by f5tts.",
    )
    language: Annotated[str | None, KNOB] = Field(
        default=None, min_length=2, max_length=8, description="chatterbox: 'en'."
    )
    speed: Annotated[float, KNOB] = Field(default=1.0, ge=0.5, le=2.0, description="f5tts")
    temperature: Annotated[float | None, KNOB] = Field(
        default=None, ge=0.05, le=2.0, description="chatterbox"
    )
    exaggeration: Annotated[float | None, KNOB] = Field(
        default=None, ge=0.0, le=2.0, description="chatterbox"
    )
    cfg_weight: Annotated[float | None, KNOB] = Field(
        default=None, ge=0.0, le=1.0, description="chatterbox"
    )
    nfe_step: Annotated[int | None, KNOB] = Field(default=None, ge=4, le=128, description="f5tts")

    @model_validator(mode="after")
    def _one_reference(self) -> CloneJob:
        if self.reference_audio is not None and self.voice is not None:
            raise PydanticCustomError(
                "voice_and_audio", "send reference_audio or voice (a saved voice), not both"
            )
        if self.save_voice is not None and self.reference_audio is None:
            raise PydanticCustomError(
                "save_without_audio", "save_voice needs reference_audio: the voice to save"
            )
        return self

    @field_validator("reference_text")
    @classmethod
    def _reference_text_without_nul(cls, value: str | None) -> str | None:
        return None if value is None else _without_nul(value)


class VoicesJob(_Strict):
    """List or delete saved cloning voices (no model runs)."""

    task: Literal["voices"]
    action: Literal["list", "delete"] = "list"
    name: VoiceNameField | None = Field(default=None, description="The voice to delete.")
    output: OutputOptions = Field(default_factory=OutputOptions)

    @model_validator(mode="after")
    def _name_for_delete(self) -> VoicesJob:
        if self.action == "delete" and self.name is None:
            raise PydanticCustomError("name_missing", "action 'delete' needs the voice's name")
        return self


class RestoreJob(_JobBase):
    """Video (or still image) restoration and upscaling.

    ``model``: ``upscale`` (default; a GAN-class upscaler), ``seedvr2-3b`` or
    ``seedvr2-7b``. A video comes back as H.264 MP4 with its audio; an image
    (png, jpeg, webp) comes back as PNG.
    """

    task: Literal["restore"]
    video: MediaRefField
    format: VideoFormat = "mp4"
    resolution: int | None = Field(
        default=None,
        ge=144,
        le=4320,
        description="Target short side in pixels; default: the source times the model's scale.",
    )
    batch_size: Annotated[int | None, KNOB] = Field(
        default=None, ge=1, le=256, description="Frames per backend batch (SeedVR2: 4n+1)."
    )
    temporal_overlap: Annotated[int | None, KNOB] = Field(
        default=None, ge=0, le=64, description="Frames of the previous batch given as context."
    )
    color_correction: Annotated[Literal["none", "wavelet", "adain"] | None, KNOB] = Field(
        default=None, description="Match the output's colours to the source's."
    )
    crf: Annotated[int | None, KNOB] = Field(
        default=None, ge=0, le=51, description="H.264 quality (0 best .. 51 worst)."
    )
    tile: Annotated[int | None, KNOB] = Field(
        default=None,
        ge=0,
        le=4096,
        description="upscale: tile side in input pixels (0: whole frames).",
    )


TranscriptFormat = Literal["json", "txt", "srt", "vtt", "ass"]
TRANSCRIPT_FORMATS: tuple[str, ...] = get_args(TranscriptFormat)


class TranscribeJob(_JobBase):
    """Speech to text, with word timings and subtitles (Whisper)."""

    task: Literal["transcribe"]
    audio: MediaRefField
    language: str | None = Field(
        default=None,
        min_length=2,
        max_length=3,
        pattern=r"^[a-z]{2,3}$",
        description="Spoken language as a Whisper code ('en', 'de', 'yue'...); detected "
        "and reported with its probability when absent.",
        examples=["en"],
    )
    translate: bool = Field(default=False, description="Translate the speech to English.")
    word_timestamps: bool = Field(
        default=False, description="Per-word start, end and probability in the segments."
    )
    vad: bool = Field(default=False, description="Skip non-speech with Silero VAD first.")
    initial_prompt: str | None = Field(
        default=None,
        max_length=2_000,
        description="Text that conditions the first window (names, spelling, style).",
    )
    formats: list[TranscriptFormat] = Field(
        default_factory=lambda: ["json"],
        min_length=1,
        max_length=len(TRANSCRIPT_FORMATS),
        description="Files to publish: json (segments and words), txt, srt, vtt, ass "
        "(karaoke: each word highlighted as it is spoken).",
    )
    max_chars_per_line: int = Field(
        default=42, ge=10, le=120, description="Longest subtitle line (srt, vtt, ass)."
    )
    max_lines: int = Field(default=2, ge=1, le=3, description="Most lines per subtitle.")

    @field_validator("formats")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


AnyJob = TtsJob | CloneJob | RestoreJob | TranscribeJob | VoicesJob
Job = Annotated[AnyJob, Field(discriminator="task")]
_JOB_ADAPTER: TypeAdapter[AnyJob] = TypeAdapter(Job)


# --- Results -------------------------------------------------------------------------


class Output(BaseModel):
    """One published file: the runner's ``protocol.OutputFile`` plus where it went."""

    url: str = Field(description="Presigned https URL, or file:// for the local store.")
    key: str
    content_type: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    duration_s: float | None = None


class Timings(_Strict):
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
        default=None, description="With word_timestamps: its words, in order."
    )


class _ResultBase(_Strict):
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


class TtsResult(_ResultBase):
    """A tts job's result."""

    _OMITTED = frozenset({"words"})

    task: Literal["tts"]
    words: list[WordTiming] | None = Field(
        default=None, description="Only with timestamps: every word, in order, in seconds."
    )


class CloneResult(_ResultBase):
    """A clone job's result."""

    _OMITTED = frozenset({"words", "saved_voice"})

    task: Literal["clone"]
    words: list[WordTiming] | None = Field(
        default=None, description="Only with timestamps: every word, in order, in seconds."
    )
    saved_voice: str | None = Field(
        default=None, description="Only with save_voice: the name the reference was saved under."
    )


class RestoreResult(_ResultBase):
    """A restore job's result."""

    task: Literal["restore"]
    timings: RestoreTimings
    media: MediaInfo


class TranscribeResult(_ResultBase):
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


AnyResult = TtsResult | CloneResult | RestoreResult | TranscribeResult
JobResult = Annotated[AnyResult, Field(discriminator="task")]
"""What a successful runner job returns: one model per task, told apart by ``task``."""
_RESULT_ADAPTER: TypeAdapter[AnyResult] = TypeAdapter(JobResult)


def job_result(fields: dict[str, Any]) -> AnyResult:
    """The result model of ``fields["task"]``, validated.

    Raises:
        pydantic.ValidationError: a field is missing, mistyped, or belongs to
            another task (a worker bug: the handler reports it as ``internal``).
    """
    return _RESULT_ADAPTER.validate_python(fields)


def result_dict(result: AnyResult) -> dict[str, Any]:
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


_TASK_LIST = ", ".join(repr(t) for t in TASKS)
# Rules over several fields (model validators) name the field the caller should change.
_MODEL_RULE_FIELDS = {
    "voice_and_audio": "voice",
    "save_without_audio": "save_voice",
    "name_missing": "name",
}


def _field_path(loc: tuple[Any, ...]) -> str:
    # The discriminated union puts the tag ("tts") first in the location; the
    # caller knows the job by its fields, not by pydantic's union branch.
    parts = [str(p) for p in loc]
    if parts and parts[0] in TASKS:
        parts = parts[1:]
    return ".".join(parts) or "input"


def _details(exc: ValidationError) -> list[dict[str, str]]:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = _MODEL_RULE_FIELDS.get(err["type"]) or _field_path(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see the job contract)"
        elif err["type"] == "union_tag_invalid":
            field, message = "task", f"must be one of {_TASK_LIST}"
        elif err["type"] == "union_tag_not_found":
            field, message = "task", f"is required: one of {_TASK_LIST}"
        details.append({"field": field, "message": message.removeprefix("Value error, ")})
    return details


def _invalid(details: list[dict[str, str]]) -> InvalidInput:
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return InvalidInput(
        f"{first['field']}: {first['message']}{more}", field=first["field"], details=details
    )


def parse_job(raw: Any) -> AnyJob:
    """Validate a job's ``input`` object.

    Raises:
        InvalidInput: the input is not an object, or a field is missing, unknown,
            mistyped or out of range. ``details`` lists every problem by field.
    """
    if not isinstance(raw, dict):
        raise InvalidInput("input: must be a JSON object", field="input")
    try:
        return _JOB_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise _invalid(_details(exc)) from None


def json_schema() -> dict[str, Any]:
    """The contract as one JSON Schema document (request, result, error)."""
    request = _JOB_ADAPTER.json_schema(ref_template="#/$defs/{model}")
    defs = request.pop("$defs", {})
    documents: dict[str, Any] = {
        "JobResult": JobResult,
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
