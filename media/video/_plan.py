"""Pure decisions of the restore pipeline: limits, target size, batches, encoder, ETA.

No PyAV, no numpy: plain data in, plain data out, tested with tables
(``tests/media/video/test_plan.py``). The pipeline and the backends call these
and do the side effects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from errors import InvalidInput, UnsupportedMedia


@dataclass(frozen=True)
class SourceInfo:
    """What a probe learned about an input, before any frame is decoded."""

    kind: str  # "video" or "image"
    width: int
    height: int
    fps: float  # average frame rate; 0.0 for an image
    frames: int  # counted from the container when known, else estimated from duration
    duration_s: float
    codec: str
    has_audio: bool
    bytes: int


@dataclass(frozen=True)
class Limits:
    """Caps on what one restore job may ask for (``config.RESTORE_*``)."""

    max_input_bytes: int
    max_duration_s: float
    max_source_side: int  # longest side of the input, pixels
    max_target_side: int  # longest side of the output, pixels
    max_frames: int


def check_source(info: SourceInfo, limits: Limits) -> None:
    """Refuse an input over the caps, naming the cap and its setting.

    Raises:
        InvalidInput: the input is over a cap (field ``video``).
    """
    problems = (
        (info.bytes > limits.max_input_bytes, f"{info.bytes} bytes", limits.max_input_bytes,
         "MEDIA_WORKER_RESTORE_MAX_INPUT_BYTES"),
        (info.duration_s > limits.max_duration_s, f"{info.duration_s:.1f} s",
         limits.max_duration_s, "MEDIA_WORKER_RESTORE_MAX_DURATION_S"),
        (max(info.width, info.height) > limits.max_source_side,
         f"{info.width}x{info.height}", limits.max_source_side,
         "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE"),
        (info.frames > limits.max_frames, f"{info.frames} frames", limits.max_frames,
         "MEDIA_WORKER_RESTORE_MAX_FRAMES"),
    )  # fmt: skip
    for over, what, cap, setting in problems:
        if over:
            raise over_cap(what, cap, setting)
    if info.width == 0 or info.height == 0:
        # FFmpeg's decoder refused the picture (over its max_pixels, or damaged)
        raise UnsupportedMedia(
            "video: the picture's size could not be read: the file is damaged, or larger "
            f"than this worker's cap of {limits.max_source_side} pixels on a side "
            "(MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE)",
            field="video",
        )
    if info.width < 2 or info.height < 2:
        raise UnsupportedMedia(
            f"video: {info.width}x{info.height} is too small to restore", field="video"
        )


def over_cap(what: str, cap: float, setting: str) -> InvalidInput:
    """The error for an input over one of the restore caps (field ``video``)."""
    return InvalidInput(
        f"video: the input is {what}, over this worker's cap of {cap} ({setting}); "
        "send a shorter or smaller input",
        field="video",
    )


def check_frame(index: int, width: int, height: int, *, expected: tuple[int, int]) -> None:
    """Refuse a decoded frame whose size is not the probed one (checked per frame:
    an H.264 stream may switch from 64x48 to 1920x1088 after the probe's first frame).

    Raises:
        UnsupportedMedia: the frame's size differs (field ``video``).
    """
    if (width, height) != expected:
        raise UnsupportedMedia(
            f"video: frame {index} is {width}x{height}, but the video starts at "
            f"{expected[0]}x{expected[1]}; a video whose resolution changes mid-stream "
            "is not supported (re-encode it at one size)",
            field="video",
        )


def _even(x: float) -> int:
    # yuv420p halves both chroma dimensions, so H.264 wants even sizes.
    return max(2, round(x / 2.0) * 2)


def target_size(
    width: int,
    height: int,
    *,
    short_side: int | None,
    max_scale: float,
    max_target_side: int,
    even: bool = True,
    even_down: bool = False,
) -> tuple[int, int]:
    """The output size: ``short_side`` as the short side with the aspect kept, or the
    source times ``max_scale`` when no resolution is asked for.

    Args:
        max_scale: the most the backend can enlarge (a x4 model: 4.0).
        even: round both sides to even numbers (video; an image keeps odd sizes).
        even_down: with ``even``, round down instead of to the nearest (what a backend
            that sizes its own output that way gives, so no resize is needed after it).

    Raises:
        InvalidInput: the resolution needs more enlargement than the backend
            has, or the output would pass ``max_target_side`` (field ``resolution``).
    """
    short = min(width, height)
    if short_side is None:
        scale = max_scale
    else:
        scale = short_side / short
        if scale > max_scale + 1e-9:
            raise InvalidInput(
                f"resolution: {short_side} needs x{scale:.2f} from a {width}x{height} source; "
                f"this model enlarges at most x{max_scale:g} (highest reachable short side "
                f"{int(short * max_scale)})",
                field="resolution",
            )
    if short_side is not None and width <= height:
        out_w, out_h = float(short_side), height * scale
    elif short_side is not None:
        out_w, out_h = width * scale, float(short_side)
    else:
        out_w, out_h = width * scale, height * scale
    if even and even_down:
        size = (max(2, int(out_w // 2) * 2), max(2, int(out_h // 2) * 2))
    else:
        size = (_even(out_w), _even(out_h)) if even else (round(out_w), round(out_h))
    if max(size) > max_target_side:
        raise InvalidInput(
            f"resolution: the output would be {size[0]}x{size[1]}, over this worker's cap "
            f"of {max_target_side} pixels on the long side (MEDIA_WORKER_RESTORE_MAX_TARGET_SIDE)",
            field="resolution",
        )
    return size


def choose_encoder(available: Iterable[str], *, has_nvidia_gpu: bool, forced: str = "") -> str:
    """``h264_nvenc`` when the wheel has it and an NVIDIA GPU is present, else libx264.

    NVENC is absent on some data-centre GPUs (an H100 has no encoder block): the
    pipeline falls back to libx264 when opening NVENC fails, and records it.
    """
    names = set(available)
    if forced:
        if forced not in names:
            raise ValueError(f"encoder {forced!r} is not in this PyAV build")
        return forced
    if has_nvidia_gpu and "h264_nvenc" in names:
        return "h264_nvenc"
    return "libx264"


def eta_s(done: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far, or None before the first frame."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, (total - done) * elapsed_s / done)


def progress_message(done: int, total: int, elapsed_s: float) -> str:
    eta = eta_s(done, total, elapsed_s)
    left = "" if eta is None else f" eta_s={math.ceil(eta)}"
    return f"frames {done}/{total}{left}"
