"""Probe an input with PyAV: video or still image, size, rate, length, audio.

Reads container headers only (no frame is decoded) except when the container
does not state a frame count, where the video packets are counted (demuxing
without decoding: fast, and the count is exact, which ``frames`` must be for
the "same frame count out" promise and the frame cap).
"""

from __future__ import annotations

import os
from pathlib import Path

import config
from errors import UnsupportedMedia
from media import image_header
from media.video._plan import SourceInfo, over_cap

# Demuxers that read one still picture (ffmpeg's image2 family).
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "webp", "apng")


def probe(path: Path, *, field: str = "video", max_side: int | None = None) -> SourceInfo:
    """What ``path`` holds, decoding no picture larger than ``max_side`` squared
    (default: ``MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE``, read now).

    An image's header is read first (:mod:`media.image_header`): one claiming
    more than ``max_side`` on a side is refused before FFmpeg decodes it.

    Raises:
        InvalidInput: an image whose header claims a side over ``max_side``.
        UnsupportedMedia: not a container PyAV reads, or no video stream in it
            (an audio file, a subtitle file), or its codec has no decoder here,
            or an image header that is cut short.
    """
    import av

    max_side = config.RESTORE_MAX_SOURCE_SIDE.get() if max_side is None else max_side
    header = image_header.read(path)
    if header is not None and not header.readable:
        raise UnsupportedMedia(
            f"{field}: the {header.format} image's header is damaged or cut short",
            field=field,
        )
    if header is not None and max(header.width, header.height) > max_side:
        raise over_cap(
            f"a {header.format} image of {header.width}x{header.height}",
            max_side,
            "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE",
        )
    # Other formats (and lies the header reader cannot see) meet the decoder's limit.
    options = image_header.decoder_options(max_side * max_side)
    try:
        # metadata is never read; a damaged tag must not fail the open (fuzz pass)
        container = av.open(str(path), options=options, metadata_errors="ignore")
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
            frames = stream.frames or _count_packets(path, options)
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
            # an audio stream FFmpeg has no codec for is not remuxed (fuzz pass)
            has_audio=any(s.codec_context is not None for s in container.streams.audio[:1]),
            bytes=os.path.getsize(path),
        )


def _duration_s(container: object, stream: object) -> float:
    if stream.duration is not None and stream.time_base is not None:  # type: ignore[attr-defined]
        return float(stream.duration * stream.time_base)  # type: ignore[attr-defined]
    if container.duration is not None:  # type: ignore[attr-defined]
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _count_packets(path: Path, options: dict[str, str]) -> int:
    import av

    with av.open(str(path), options=options, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)
