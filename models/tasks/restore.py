"""``restore``: video (or still image) restoration and upscaling."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from models.contract import KNOB, JobBase, MediaRefField, ResultBase, Timings
from models.tasks.base import TaskSpec

VideoFormat = Literal["mp4"]


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


TASKS = (TaskSpec("restore", RestoreJob, result=RestoreResult),)
