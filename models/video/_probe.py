"""Probe an input with PyAV: video or still image, size, rate, length, audio.

Reads container headers only (no frame is decoded) except when the container
does not state a frame count, where the video packets are counted (demuxing
without decoding: fast, and the count is exact, which ``frames`` must be for
the "same frame count out" promise and the frame cap).
"""

from __future__ import annotations

import os
from pathlib import Path

from errors import UnsupportedMedia
from models.video._plan import SourceInfo

# Demuxers that read one still picture (ffmpeg's image2 family).
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "webp", "apng")


def probe(path: Path, *, field: str = "video") -> SourceInfo:
    """What ``path`` holds.

    Raises:
        UnsupportedMedia: not a container PyAV reads, or no video stream in it
            (an audio file, a subtitle file), or its codec has no decoder here.
    """
    import av

    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise UnsupportedMedia(
            f"{field}: not a video or image this worker can read ({exc.strerror or exc})",
            field=field,
        ) from None
    with container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise UnsupportedMedia(
                f"{field}: the input has no video stream (it holds {kinds}); "
                "send a video or a png/jpeg/webp image",
                field=field,
            )
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or not ctx.codec.name:
            raise UnsupportedMedia(f"{field}: the video codec has no decoder here", field=field)
        kind = "image" if container.format.name in _IMAGE_FORMATS else "video"
        fps = float(stream.average_rate or stream.guessed_rate or 0) if kind == "video" else 0.0
        if kind == "image":
            duration, frames = 0.0, 1
        else:
            duration = _duration_s(container, stream)
            frames = stream.frames or _count_packets(path)
            if duration <= 0 and fps > 0:
                duration = frames / fps
        return SourceInfo(
            kind=kind,
            width=ctx.width,
            height=ctx.height,
            fps=fps,
            frames=frames,
            duration_s=duration,
            codec=ctx.codec.name,
            has_audio=bool(container.streams.audio),
            bytes=os.path.getsize(path),
        )


def _duration_s(container: object, stream: object) -> float:
    if stream.duration is not None and stream.time_base is not None:  # type: ignore[attr-defined]
        return float(stream.duration * stream.time_base)  # type: ignore[attr-defined]
    if container.duration is not None:  # type: ignore[attr-defined]
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _count_packets(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)
