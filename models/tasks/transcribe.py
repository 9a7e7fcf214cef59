"""``transcribe``: speech to text, with word timings and subtitles."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import AliasChoices, BaseModel, Field, field_validator

import config
from models.contract import JobBase, MediaRefField, ResultBase, WordTiming
from models.tasks.base import TaskSpec

TranscriptFormat = Literal["json", "txt", "srt", "vtt", "ass"]
TRANSCRIPT_FORMATS: tuple[str, ...] = get_args(TranscriptFormat)


class TranscribeJob(JobBase):
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

    @field_validator("formats")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


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


TASKS = (
    TaskSpec(
        "transcribe",
        TranscribeJob,
        result=TranscribeResult,
        default_setting=config.DEFAULT_TRANSCRIBE_MODEL,
    ),
)
