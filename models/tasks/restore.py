"""``restore``: video (or still image) restoration and upscaling."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.contract import KNOB, JobBase, MediaRefField, RestoreResult, VideoFormat
from models.tasks.base import TaskSpec


class RestoreJob(JobBase):
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


TASKS = (TaskSpec("restore", RestoreJob, result=RestoreResult),)
