"""The video restore pipeline: PyAV decode, batched backend, H.264 encode, audio remux.

Runner processes import this (it needs numpy and PyAV, which restore profiles
pin); the handler never does. Layout: ``_plan`` pure decisions, ``_probe``
reads an input's headers, ``_pipeline`` runs the stages, ``_encode`` writes
and checks the output, ``_color`` corrects colours.
"""

from __future__ import annotations

from media.video._pipeline import (
    Backend,
    PipelineOptions,
    RestoreResult,
    batched_with_context,
    restore_image,
    restore_video,
)
from media.video._plan import Limits, SourceInfo, check_source, target_size
from media.video._probe import probe

__all__ = [
    "Backend",
    "Limits",
    "PipelineOptions",
    "RestoreResult",
    "SourceInfo",
    "batched_with_context",
    "check_source",
    "probe",
    "restore_image",
    "restore_video",
    "target_size",
]
