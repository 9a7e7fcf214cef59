"""What the speech tasks (tts, clone) share in their contract fragments."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AliasChoices, Field, ValidationInfo, field_validator

from models.contract import KNOB, JobBase, without_nul

# Each word of the contract is written once: the Literal type is what the models
# use, the tuple (via get_args) is what code and messages iterate over.
AudioFormat = Literal["wav", "flac", "ogg", "mp3", "opus", "pcm", "aac"]
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
MAX_TEXT_CHARS = 20_000
# The rates an Opus stream can carry (RFC 6716; media.speech.OPUS_RATES, which the
# worker does not import, is the same tuple and a test keeps them equal).
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
# The rates AAC's sampling frequency index names (ISO 14496-3), within sample_rate's
# range; FFmpeg's encoder refuses any other.
AAC_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


class SpeechJob(JobBase):
    """What the speech tasks (tts, clone) share: the text, the audio format, streaming."""

    # OpenAI's speech API (and Kokoro-FastAPI) name three of these fields otherwise:
    # input, response_format, return_timestamps. Their requests are read as they are.
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        validation_alias=AliasChoices("text", "input"),
        description="What to say. Also accepted as `input` (OpenAI's name).",
    )
    format: AudioFormat = Field(
        default="wav",
        validation_alias=AliasChoices("format", "response_format"),
        description="wav (16-bit), flac, ogg (Vorbis), mp3, opus (Ogg Opus; 22,050 Hz "
        "speech is written at 24,000 Hz, the nearest rate Opus carries) or pcm (raw "
        "16-bit little-endian mono, as OpenAI's pcm; the rate is in the output's content "
        "type, audio/pcm;rate=...;channels=1;format=s16le) or aac (AAC-LC in ADTS "
        "frames). Also accepted as `response_format` (OpenAI's name).",
    )
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
        validation_alias=AliasChoices("timestamps", "return_timestamps"),
        description="Return per-word start/end times (`words`) and publish .srt, .vtt and .ass "
        "captions beside the audio. Only models that align (see docs/tasks/). Also "
        "accepted as `return_timestamps` (Kokoro-FastAPI's name).",
    )

    @field_validator("sample_rate")
    @classmethod
    def _codec_rates(cls, value: int | None, info: ValidationInfo) -> int | None:
        fmt = info.data.get("format")
        carried = {"opus": OPUS_RATES, "aac": AAC_RATES}.get(fmt)
        if value is not None and carried and value not in carried:
            raise ValueError(f"{fmt} carries only {', '.join(str(r) for r in carried)} Hz")
        return value

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain something to say, not only whitespace")
        return without_nul(value)
