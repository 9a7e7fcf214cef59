"""The restore pipeline: decode -> batches -> backend -> colour -> encode, overlapped.

Three stages in three threads joined by bounded queues, so memory holds at most
``queue_depth`` batches on each side of the backend whatever the video's
length, and the backend (the GPU) computes batch k while the CPU decodes batch
k+1 and encodes batch k-1::

    decode thread --q_in(depth)--> backend (caller's thread) --q_out(depth)--> encode thread

The backend runs in the caller's thread because CUDA work and progress
messages belong there. A failure in any stage stops the other two and is
raised in the caller's thread; the encoder's temp file is then removed, so a
failed or killed job never leaves a file that looks finished.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from errors import UnsupportedMedia
from media import image_header
from media.video import _color
from media.video._encode import EncodeSettings, VideoWriter
from media.video._plan import (
    SourceInfo,
    check_frame,
    choose_encoder,
    progress_message,
)
from runtime import atomic
from runtime.protocol import ProgressFn

logger = logging.getLogger(__name__)

# A backend maps a batch of RGB frames (N, h, w, 3) uint8 to (N, H, W, 3) uint8.
Backend = Callable[[np.ndarray], np.ndarray]
T = TypeVar("T")
_DONE = object()


@dataclass(frozen=True)
class PipelineOptions:
    """How the pipeline runs; every field has a job knob or a setting."""

    batch_frames: int = 8
    overlap: int = 0  # frames of the previous batch repeated as temporal context
    crf: int = 18
    color_correction: str = "none"
    encoder: str = ""  # force an encoder; empty: NVENC on an NVIDIA GPU, else libx264
    has_nvidia_gpu: bool = False
    queue_depth: int = 2
    max_source_side: int = 3840  # MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE: bounds each frame


@dataclass(frozen=True)
class RestoreResult:
    """What one restore produced, reported in the job result."""

    path: Path
    kind: str  # "video" or "image"
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str
    encoder: str
    audio: str  # "copy", "aac" (re-encoded) or "none"
    decode_s: float
    compute_s: float
    encode_s: float
    wall_s: float
    compute_waited_s: float  # the backend idle, waiting for decoded frames

    def meta(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def batched_with_context(
    items: Iterable[T], size: int, overlap: int
) -> Iterator[tuple[list[T], int]]:
    """Batches of at most ``size`` items; every batch after the first starts with
    the previous batch's last ``overlap`` items (its context count is given).

    Pure and lazy: holds one batch at a time.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"batch size {size} with overlap {overlap}: need 0 <= overlap < size")
    batch: list[T] = []
    context = 0
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch, context
            context = min(overlap, len(batch))
            batch = batch[len(batch) - context :] if context else []
    if len(batch) > context:
        yield batch, context


def crossfade(held: np.ndarray, again: np.ndarray) -> np.ndarray:
    """The frames two batches share: the earlier batch's restored tail (``held``) fading
    into the later batch's restored context (``again``), the later batch's weight rising
    ``1/(n+1) .. n/(n+1)`` over the ``n`` frames, so neither batch's edge shows as a jump.
    """
    if held.shape != again.shape:
        raise ValueError(f"overlap frames differ: {held.shape} and {again.shape}")
    n = len(held)
    w = (np.arange(1, n + 1, dtype=np.float32) / (n + 1)).reshape(n, 1, 1, 1)
    mixed = held.astype(np.float32) * (1 - w) + again.astype(np.float32) * w
    return np.rint(mixed).astype(np.uint8)


class _Stage:
    """A worker thread whose exception is re-raised where the pipeline is driven."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        self.error: BaseException | None = None
        self.busy_s = 0.0
        self._stop = stop

        def run() -> None:
            try:
                target()
            except BaseException as exc:  # handed to the driving thread
                self.error = exc
                stop.set()

        self.thread = threading.Thread(target=run, name=name, daemon=True)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _DONE


def _frames(
    path: Path, busy: list[float], *, size: tuple[int, int], max_side: int
) -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
    """Decoded RGB frames with their (timestamp, duration) in the stream's time base.

    Every frame must be ``size`` (the probed one): the probe saw the first frame
    only, and a stream may change resolution later. Any other size is refused
    before the frame is converted, and the decoder itself refuses to allocate one
    over ``max_side`` squared pixels (FFmpeg's ``max_pixels``).

    Raises:
        UnsupportedMedia: a frame cannot be decoded, has another size, or there is
            no frame at all (field ``video``).
    """
    import av

    limit = image_header.decoder_options(max_side * max_side)
    with av.open(str(path), options=limit, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.options = limit
        step = 1
        if stream.average_rate and stream.time_base:
            step = max(1, round(1 / (stream.average_rate * stream.time_base)))
        index = 0
        decoded = container.decode(stream)
        while True:
            t = time.perf_counter()
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                raise UnsupportedMedia(
                    f"video: frame {index} could not be decoded ({exc.strerror or exc}): the "
                    "file is damaged, or its frames grow mid-stream",
                    field="video",
                ) from None
            check_frame(index, frame.width, frame.height, expected=size)
            rgb = frame.to_ndarray(format="rgb24")
            pts = frame.pts if frame.pts is not None else index * step
            busy[0] += time.perf_counter() - t
            index += 1
            # The duration keeps the last frame as long as in the source (a VFR
            # clip's last interval is not the average one).
            yield rgb, (pts, frame.duration or step)
    if index == 0:
        # Before: an mp4 with its tail cut probed as 10 frames, decoded none, and the
        # job failed on the missing output with an internal path in the message.
        raise UnsupportedMedia(
            "video: no frame could be decoded; the file is cut short or damaged",
            field="video",
        )


def restore_video(
    src: Path,
    dest: Path,
    backend: Backend,
    *,
    info: SourceInfo,
    size: tuple[int, int],
    options: PipelineOptions,
    progress: ProgressFn,
) -> RestoreResult:
    """Restore ``src`` into ``dest`` (an .mp4) through ``backend``.

    Args:
        size: the output (width, height); the backend must return frames of it.

    Raises:
        UnsupportedMedia: a frame cannot be decoded, or the written file fails
            its check. Whatever the backend raises is raised as it is.
    """
    import av

    limit = image_header.decoder_options(options.max_source_side**2)
    with av.open(str(src), options=limit, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        time_base = stream.time_base or Fraction(1, 90_000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    encoder = choose_encoder(
        av.codecs_available, has_nvidia_gpu=options.has_nvidia_gpu, forced=options.encoder
    )
    width, height = size
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=options.queue_depth)
    q_out: queue.Queue = queue.Queue(maxsize=options.queue_depth)
    decode_busy = [0.0]
    started = time.perf_counter()

    def decode() -> None:
        frames = _frames(
            src, decode_busy, size=(info.width, info.height), max_side=options.max_source_side
        )
        for batch, context in batched_with_context(frames, options.batch_frames, options.overlap):
            images = np.stack([rgb for rgb, _ in batch])
            if not _put(q_in, (images, [pts for _, pts in batch], context), stop):
                return
        _put(q_in, _DONE, stop)

    writer = VideoWriter(
        dest,
        width=width,
        height=height,
        rate=rate,
        time_base=time_base,
        settings=EncodeSettings(encoder, options.crf),
        audio_source=src if info.has_audio else None,
    )
    with writer:

        def encode() -> None:
            while (item := _get(q_out, stop)) is not _DONE:
                t = time.perf_counter()
                writer.write(*item)  # type: ignore[misc]
                encoder_stage.busy_s += time.perf_counter() - t
            if stop.is_set():
                return
            t = time.perf_counter()
            writer.close()
            writer.publish()
            encoder_stage.busy_s += time.perf_counter() - t

        decoder_stage = _Stage("restore-decode", decode, stop)
        encoder_stage = _Stage("restore-encode", encode, stop)
        decoder_stage.thread.start()
        encoder_stage.thread.start()
        compute_s = waited_s = 0.0
        done = 0
        # The restored frames the next batch repeats as context, held back to be blended.
        held: np.ndarray | None = None
        held_pts: list = []
        try:
            while True:
                t = time.perf_counter()
                item = _get(q_in, stop)
                waited_s += time.perf_counter() - t
                if item is _DONE:
                    if held is not None:
                        _put(q_out, (held, held_pts), stop)
                    break
                images, pts, context = item  # type: ignore[misc]
                t = time.perf_counter()
                restored = backend(images)
                if restored.shape != (len(images), height, width, 3):
                    raise RuntimeError(
                        f"backend returned {restored.shape}, expected "
                        f"{(len(images), height, width, 3)}"
                    )
                restored = _color.correct(restored, images, options.color_correction)
                if context:
                    assert held is not None and len(held) == context
                    restored = np.concatenate([crossfade(held, restored[:context]),
                                               restored[context:]])  # fmt: skip
                    pts = held_pts + pts[context:]
                keep = min(options.overlap, len(restored) - 1)
                cut = len(restored) - keep
                held, held_pts = (restored[cut:], pts[cut:]) if keep else (None, [])
                compute_s += time.perf_counter() - t
                if not _put(q_out, (restored[:cut], pts[:cut]), stop):
                    break
                done += len(images) - context
                total = max(info.frames, done)
                progress(progress_message(done, total, time.perf_counter() - started), done / total)
            _put(q_out, _DONE, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            decoder_stage.thread.join()
            encoder_stage.thread.join()
        decoder_stage.raise_error()
        encoder_stage.raise_error()
    wall = time.perf_counter() - started
    fps = float(rate)
    return RestoreResult(
        path=dest,
        kind="video",
        frames=writer.frames,
        fps=fps,
        width=width,
        height=height,
        duration_s=info.duration_s,
        codec="h264",
        encoder=writer.encoder,
        audio=writer.audio,
        decode_s=decode_busy[0],
        compute_s=compute_s,
        encode_s=encoder_stage.busy_s,
        wall_s=wall,
        compute_waited_s=waited_s,
    )


def restore_image(
    src: Path,
    dest: Path,
    backend: Backend,
    *,
    info: SourceInfo,
    size: tuple[int, int],
    max_source_side: int,
    color_correction: str = "none",
) -> RestoreResult:
    """Restore a still image into ``dest`` (a .png) through the same backend.

    Raises:
        UnsupportedMedia: the picture cannot be decoded at its probed size.
    """

    import av

    started = time.perf_counter()
    frames = _frames(src, [0.0], size=(info.width, info.height), max_side=max_source_side)
    try:
        image = next(frames)[0][None]
    finally:
        frames.close()
    decode_s = time.perf_counter() - started
    t = time.perf_counter()
    restored = _color.correct(backend(image), image, color_correction)
    compute_s = time.perf_counter() - t
    t = time.perf_counter()
    with atomic.atomic_path(dest) as partial:
        out_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(restored[0]), format="rgb24")
        with av.open(str(partial), mode="w", format="image2", options={"update": "1"}) as out:
            stream = out.add_stream("png")
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "rgb24"
            for packet in [*stream.encode(out_frame), *stream.encode(None)]:
                out.mux(packet)
        with av.open(str(partial)) as check:
            got = check.streams.video[0].codec_context
            if (got.width, got.height) != size:
                raise UnsupportedMedia(f"the written image is {got.width}x{got.height}, not {size}")
    encode_s = time.perf_counter() - t
    return RestoreResult(
        path=dest,
        kind="image",
        frames=1,
        fps=0.0,
        width=size[0],
        height=size[1],
        duration_s=0.0,
        codec="png",
        encoder="png",
        audio="none",
        decode_s=decode_s,
        compute_s=compute_s,
        encode_s=encode_s,
        wall_s=time.perf_counter() - started,
        compute_waited_s=0.0,
    )
