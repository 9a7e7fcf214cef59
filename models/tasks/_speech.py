"""What the speech tasks (tts, clone) share in their contract fragments."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator

from models.contract import KNOB, JobBase, without_nul

# Each word of the contract is written once: the Literal type is what the models
# use, the tuple (via get_args) is what code and messages iterate over.
AudioFormat = Literal["wav", "flac", "ogg", "mp3"]
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
MAX_TEXT_CHARS = 20_000


class SpeechJob(JobBase):
    """What the speech tasks (tts, clone) share: the text, the audio format, streaming."""

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
        description="Return per-word start/end times (`words`) and publish .srt, .vtt and .ass "
        "captions beside the audio. Only models that align (see docs/tasks/).",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain something to say, not only whitespace")
        return without_nul(value)
