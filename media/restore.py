"""What the restore runners share: the job's knobs, caps and the pipeline call.

Stdlib at import (the handler imports it for pre-flight checks); numpy and
PyAV are imported by the pipeline inside the runner process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import config
from errors import InvalidInput
from runtime import machine
from runtime.protocol import OutputFile
from runtime.runner import RunContext

# What the job result's ``media`` reports (contract.MediaInfo).
_MEDIA_FIELDS = (
    "kind", "frames", "fps", "width", "height", "duration_s", "codec", "encoder", "audio",
)  # fmt: skip
# Given the output (width, height) and the input's frame count, a backend:
# frames (N, h, w, 3) uint8 -> (N, H, W, 3) uint8.
MakeBackend = Callable[[tuple[int, int], int], Callable[[Any], Any]]


def limits() -> Any:
    from media.video import Limits

    return Limits(
        max_input_bytes=config.RESTORE_MAX_INPUT_BYTES.get(),
        max_duration_s=config.RESTORE_MAX_DURATION_S.get(),
        max_source_side=config.RESTORE_MAX_SOURCE_SIDE.get(),
        max_target_side=config.RESTORE_MAX_TARGET_SIDE.get(),
        max_frames=config.RESTORE_MAX_FRAMES.get(),
    )


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def check_overlap(overlap: int | None, batch: int, frames: int | None) -> None:
    """A job's ``temporal_overlap`` must be smaller than the batch really used: the
    job's ``batch_size`` or the default, as the model rounds it, capped to the clip
    (the handler's pre-flight check cannot know the clip). Pure.

    Raises:
        InvalidInput: naming ``temporal_overlap``, with the batch and why it is that.
    """
    if overlap is None or overlap < batch:
        return
    why = f"; the clip has {frames} frames" if frames is not None and frames <= batch else ""
    raise InvalidInput(
        f"temporal_overlap: {overlap} must be smaller than the batch this job uses "
        f"({batch} frames{why}); leave it out or lower it",
        field="temporal_overlap",
    )


def run_restore(
    job: dict[str, Any],
    ctx: RunContext,
    *,
    max_scale: float,
    make_backend: MakeBackend,
    default_batch: int,
    overlap: int = 0,
    batch_of: Callable[[int | None, int], int] | None = None,
    even_down: bool = False,
) -> list[OutputFile]:
    """Probe, check the caps, size the output, and run the pipeline over ``job``.

    Raises:
        UnsupportedMedia: the input has no video stream or cannot be decoded.
        InvalidInput: the input is over a cap, or the resolution is unreachable.
    """
    from media import video

    src = ctx.inputs["video"]
    caps = limits()
    info = video.probe(src, max_side=caps.max_source_side)
    video.check_source(info, caps)
    size = video.target_size(
        info.width,
        info.height,
        short_side=job.get("resolution"),
        max_scale=max_scale,
        max_target_side=config.RESTORE_MAX_TARGET_SIDE.get(),
        even=info.kind == "video",
        even_down=even_down,
    )
    backend = make_backend(size, info.frames)
    color = job.get("color_correction") or "none"
    if info.kind == "image":
        result = video.restore_image(
            src,
            ctx.scratch / "restored.png",
            backend,
            info=info,
            size=size,
            max_source_side=caps.max_source_side,
            color_correction=color,
        )
        content_type = "image/png"
    else:
        facts = machine.probe()
        batch_frames = (
            batch_of(job.get("batch_size"), info.frames)
            if batch_of
            else job.get("batch_size") or default_batch
        )
        check_overlap(job.get("temporal_overlap"), batch_frames, info.frames)
        options = video.PipelineOptions(
            batch_frames=batch_frames,
            overlap=_given(job.get("temporal_overlap"), overlap),
            crf=_given(job.get("crf"), config.RESTORE_CRF.get()),
            color_correction=color,
            encoder=config.RESTORE_ENCODER.get(),
            # NVENC is tried where a GPU may have it (H100/H200 have none: NVML says so).
            has_nvidia_gpu=facts.has_gpu and facts.nvenc is not False,
            max_source_side=caps.max_source_side,
        )
        result = video.restore_video(
            src,
            ctx.scratch / "restored.mp4",
            backend,
            info=info,
            size=size,
            options=options,
            progress=ctx.progress,
        )
        content_type = "video/mp4"
    meta = result.meta()
    ctx.result["media"] = {k: meta[k] for k in _MEDIA_FIELDS}
    ctx.result["stage_timings"] = {k: meta[k] for k in ("decode_s", "compute_s", "encode_s")}
    return [OutputFile(str(result.path), content_type, result.duration_s or None)]
