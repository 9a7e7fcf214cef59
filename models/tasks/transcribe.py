"""``transcribe``: speech to text, with word timings and subtitles."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

import config
from models.contract import JobBase, MediaRefField, ResultBase, StrictModel, WordTiming
from models.tasks.base import TaskSpec
from runners.whisper import LANGUAGES

TranscriptFormat = Literal["json", "txt", "srt", "vtt", "ass"]
TRANSCRIPT_FORMATS: tuple[str, ...] = get_args(TranscriptFormat)
# worker-faster_whisper's inline formats (models.dialects.TEXT_FORMATS).
TextFormat = Literal["plain_text", "formatted_text", "srt", "vtt"]


class FasterWhisperReply(StrictModel):
    """Answer in worker-faster_whisper's keys too (docs/guides/migrate.md)."""

    transcription: TextFormat = Field(
        default="plain_text",
        description="The format of `transcription`, the transcript inline: plain_text "
        "(segments joined by spaces), formatted_text (one per line), srt or vtt (one "
        "cue per segment).",
    )
    translation: TextFormat | None = Field(
        default=None,
        description="Also translate to English in a second pass, inline in this format "
        "as `translation`; null: no translation (`translation` is null).",
    )


class TranscribeJob(JobBase):
    """Speech to text, with word timings and subtitles (Whisper)."""

    task: Literal["transcribe"]
    audio: MediaRefField
    language: str | None = Field(
        default=None,
        min_length=2,
        max_length=3,
        pattern=r"^[a-z]{2,3}$",
        # The schema lists Whisper's codes so clients can offer them; the handler's
        # check (runners.whisper.check_job) refuses any other with a readable message.
        json_schema_extra={"enum": [*sorted(LANGUAGES), None]},
        description="Spoken language as a Whisper code ('en', 'de', 'yue'...); detected "
        "and reported with its probability when absent.",
        examples=["en"],
    )
    translate: bool = Field(default=False, description="Translate the speech to English.")
    # One name for one idea across tasks (tts and clone call it timestamps too);
    # word_timestamps, its name until contract 1.5, is still accepted.
    timestamps: bool = Field(
        default=False,
        validation_alias=AliasChoices("timestamps", "word_timestamps"),
        description="Per-word start, end and probability in the segments (`words`). "
        "Also accepted as `word_timestamps`, its name until contract 1.5.",
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

    # Whisper's decoding options, with faster-whisper's defaults (WhisperModel.transcribe,
    # faster-whisper 1.2.1) and the names openai-whisper and worker-faster_whisper use.
    beam_size: int = Field(
        default=5, ge=1, le=16, description="Beams when decoding at temperature 0."
    )
    best_of: int = Field(
        default=5, ge=1, le=16, description="Candidates sampled at a temperature above 0."
    )
    patience: float = Field(default=1.0, gt=0, le=10, description="Beam search patience.")
    length_penalty: float = Field(
        default=1.0, ge=0, le=10, description="Exponent of the length penalty in beam search."
    )
    temperature: float | list[float] | None = Field(
        default=None,
        description="Sampling temperature, or the ladder tried in turn when a window "
        "fails the thresholds below (each 0 to 1). Default: 0, 0.2, ..., 1.0.",
        examples=[0.0, [0.0, 0.4, 0.8]],
    )
    temperature_increment_on_fallback: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="With one `temperature`: the ladder from it up to 1.0 in these "
        "steps. Without it, one temperature means no fallback.",
    )
    compression_ratio_threshold: float | None = Field(
        default=2.4,
        gt=0,
        description="A window whose text compresses better than this (gzip ratio) is "
        "decoded again hotter; null: never.",
    )
    logprob_threshold: float | None = Field(
        default=-1.0,
        le=0,
        validation_alias=AliasChoices("logprob_threshold", "log_prob_threshold"),
        description="A window whose mean token log probability is below this is decoded "
        "again hotter; null: never. Also accepted as `log_prob_threshold`.",
    )
    no_speech_threshold: float | None = Field(
        default=0.6,
        ge=0,
        le=1,
        description="A window whose no-speech probability is above this, with a low "
        "log probability, is silence; null: never.",
    )
    condition_on_previous_text: bool = Field(
        default=True,
        description="Prompt each window with the text before it (false: only with "
        "`initial_prompt`; avoids a repetition loop carrying over).",
    )
    faster_whisper: FasterWhisperReply | None = Field(
        default=None,
        description="Also answer in worker-faster_whisper's keys: `transcription`, "
        "`translation`, `detected_language`, `device`, `word_timestamps`, and segments "
        "with that worker's fields. A job without `task` in that worker's fields gets "
        "it set (docs/guides/migrate.md).",
    )
    suppress_tokens: list[int] = Field(
        default_factory=lambda: [-1],
        max_length=1000,
        description="Token ids never emitted; -1 stands for Whisper's default set of "
        "symbols. Also accepted as a comma-separated string ('-1,50364').",
    )

    @field_validator("formats")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("temperature")
    @classmethod
    def _temperatures(cls, value: float | list[float] | None) -> float | list[float] | None:
        ladder = value if isinstance(value, list) else [] if value is None else [value]
        if isinstance(value, list) and not 1 <= len(value) <= 10:
            raise ValueError("give 1 to 10 temperatures")
        if any(not 0 <= t <= 1 for t in ladder):
            raise ValueError("each temperature must be between 0 and 1")
        return value

    @field_validator("suppress_tokens", mode="before")
    @classmethod
    def _token_list(cls, value: object) -> object:
        if isinstance(value, str):  # worker-faster_whisper's and openai-whisper's CLI form
            try:
                return [int(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise ValueError("a comma-separated list of token ids, e.g. '-1'") from None
        return value


class TranscriptWord(WordTiming):
    """One recognised word: where it is in the input, and how sure the model was."""

    probability: float | None = Field(default=None, ge=0, le=1)


class TranscriptSegment(BaseModel):
    """One stretch of recognised speech, as the model segmented it.

    With ``faster_whisper`` it also has that worker's fields (faster-whisper's own
    Segment: ``id`` from 1, ``seek`` in 10 ms frames, ``start``/``end`` in seconds and
    the decoder's statistics); without, they are absent, not null.
    """

    _DETAILS: ClassVar[tuple[str, ...]] = (
        "id",
        "seek",
        "start",
        "end",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    )

    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    text: str
    words: list[TranscriptWord] | None = Field(
        default=None, description="With timestamps: its words, in order."
    )
    id: int | None = Field(default=None, ge=1)
    seek: int | None = Field(default=None, ge=0)
    start: float | None = Field(default=None, ge=0)
    end: float | None = Field(default=None, ge=0)
    tokens: list[int] | None = None
    temperature: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None

    @model_serializer(mode="wrap")
    def _without_absent_details(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        for name in self._DETAILS:
            if data.get(name) is None:
                data.pop(name, None)
        return data


class FasterWhisperWord(BaseModel):
    """One word in worker-faster_whisper's ``word_timestamps`` list."""

    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)


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
    # worker-faster_whisper's keys, present only with `faster_whisper`.
    transcription: str | None = Field(
        default=None, description="The transcript inline, in `faster_whisper.transcription`."
    )
    translation: str | None = Field(
        default=None,
        description="The English translation inline, when `faster_whisper.translation` "
        "asked for it; else null.",
    )
    detected_language: str | None = Field(default=None, description="Same as `language`.")
    device: Literal["cuda", "cpu"] | None = Field(default=None, description="Where the model ran.")
    word_timestamps: list[FasterWhisperWord] | None = Field(
        default=None, description="With timestamps: every word, in order."
    )

    _COMPAT: ClassVar[frozenset[str]] = frozenset(
        {"transcription", "translation", "detected_language", "device", "word_timestamps"}
    )

    def omitted(self) -> set[str]:
        # That worker's keys come as a set (`device` is always one of them), with
        # `translation` null when not asked for, as that worker gives it.
        if self.device is None:
            return set(self._COMPAT)
        return {"word_timestamps"} if self.word_timestamps is None else set()


TASKS = (
    TaskSpec(
        "transcribe",
        TranscribeJob,
        result=TranscribeResult,
        default_setting=config.DEFAULT_TRANSCRIBE_MODEL,
    ),
)
