"""``clone``: zero-shot voice cloning, and ``voices``: the saved voices it reads and writes.

A clone job names its reference either as media (``reference_audio``, fetched
like any media field) or as a saved voice (``voice``), which ``before_run``
copies into scratch as the reference. ``save_voice`` is honoured by
``after_run``: only a reference the model has read is ever saved.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

import storage
from models.contract import (
    KNOB,
    FinalItem,
    MediaRefField,
    OutputOptions,
    ResultBase,
    StrictModel,
    WordTiming,
    without_nul,
)
from models.tasks._speech import MAX_TEXT_CHARS, SpeechJob
from models.tasks.base import Prepared, TaskSpec

logger = logging.getLogger(__name__)


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


class CloneJob(SpeechJob):
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
                "voice_and_audio",
                "send reference_audio or voice (a saved voice), not both",
                {"field": "voice"},
            )
        if self.save_voice is not None and self.reference_audio is None:
            raise PydanticCustomError(
                "save_without_audio",
                "save_voice needs reference_audio: the voice to save",
                {"field": "save_voice"},
            )
        return self

    @field_validator("reference_text")
    @classmethod
    def _reference_textwithout_nul(cls, value: str | None) -> str | None:
        return None if value is None else without_nul(value)


class VoicesJob(StrictModel):
    """List or delete saved cloning voices (no model runs)."""

    task: Literal["voices"]
    action: Literal["list", "delete"] = "list"
    name: VoiceNameField | None = Field(default=None, description="The voice to delete.")
    output: OutputOptions = Field(default_factory=OutputOptions)

    @model_validator(mode="after")
    def _name_for_delete(self) -> VoicesJob:
        if self.action == "delete" and self.name is None:
            raise PydanticCustomError(
                "name_missing", "action 'delete' needs the voice's name", {"field": "name"}
            )
        return self


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


class CloneFinal(CloneResult, FinalItem):
    """The last item of a streaming clone job: the full result, published, tagged."""


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


def _use_saved_voice(job: Prepared) -> None:
    request: CloneJob = job.job
    if request.voice:
        voice = storage.load_voice(request.voice, job.scratch, s3=job.s3, prefix=job.prefix)
        job.inputs["reference_audio"] = voice.audio
        job.runner_input["reference_text"] = request.reference_text or voice.reference_text


def _save_voice(job: Prepared) -> None:
    request: CloneJob = job.job
    if request.save_voice:
        storage.save_voice(
            request.save_voice,
            job.inputs["reference_audio"],
            request.reference_text,
            s3=job.s3,
            prefix=job.prefix,
        )
        job.result["saved_voice"] = request.save_voice


def _serve_voices(request: VoicesJob, s3: Any, job_id: str) -> dict[str, Any]:
    """List or delete saved cloning voices; no runner is involved."""
    prefix = storage.validate_prefix(request.output.prefix) if request.output.prefix else None
    if request.action == "delete":
        assert request.name is not None  # the contract requires it for delete
        storage.delete_voice(request.name, s3=s3, prefix=prefix)
    voices = storage.list_voices(s3=s3, prefix=prefix)
    logger.info("job=%s voices %s count=%d", job_id, request.action, len(voices))
    return VoicesResult(
        task="voices",
        action=request.action,
        voices=[SavedVoice(**vars(v)) for v in voices],
        deleted=request.name if request.action == "delete" else None,
    ).model_dump(mode="json", exclude_none=True)


TASKS = (
    TaskSpec(
        "clone",
        CloneJob,
        result=CloneResult,
        before_run=_use_saved_voice,
        after_run=_save_voice,
    ),
    TaskSpec("voices", VoicesJob, result=VoicesResult, serve=_serve_voices),
)
