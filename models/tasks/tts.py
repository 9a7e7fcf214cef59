"""``tts``: text to speech."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

import config
from models.contract import KNOB, FinalItem, ResultBase, WordTiming
from models.tasks._speech import SpeechJob
from models.tasks.base import TaskSpec


class TtsJob(SpeechJob):
    """Text to speech."""

    task: Literal["tts"]
    voice: Annotated[str | None, KNOB] = Field(
        default=None, min_length=1, max_length=128, description="Model-specific voice name."
    )
    speed: Annotated[float, KNOB] = Field(
        default=1.0,
        ge=0.25,
        le=4.0,
        description="Speaking rate, 0.25 to 4.0 as OpenAI's (Kokoro divides its predicted "
        "durations by it, Piper its length scale); never clamped.",
    )
    instructions: Annotated[str | None, KNOB] = Field(
        default=None,
        min_length=1,
        max_length=4_096,
        description="OpenAI's style prompt ('Speak calmly.'). No tts model here can follow "
        "one (Kokoro and Piper take no prompt), so a job that gives it is refused, "
        "naming the model, rather than spoken without it.",
    )


class TtsResult(ResultBase):
    """A tts job's result."""

    _OMITTED = frozenset({"words"})

    task: Literal["tts"]
    words: list[WordTiming] | None = Field(
        default=None, description="Only with timestamps: every word, in order, in seconds."
    )


class TtsFinal(TtsResult, FinalItem):
    """The last item of a streaming tts job: the full result, published, tagged."""


TASKS = (TaskSpec("tts", TtsJob, result=TtsResult, default_setting=config.DEFAULT_TTS_MODEL),)
