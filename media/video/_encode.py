"""Write the restored video: H.264 yuv420p at the source timestamps, audio remuxed.

Files::

    <scratch>/.tmp-<name>-...mp4    being written (never published; runtime.atomic)
    <scratch>/<name>.mp4            renamed into place only after close() re-opened
                                    it and found every frame and the audio stream

The audio is interleaved as the video is written (an audio packet goes out as
soon as the video has passed its time), so the muxer never buffers a whole
track. It is copied untouched when MP4 can carry its codec, else re-encoded to
AAC; which one happened is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from errors import UnsupportedMedia
from runtime import atomic

logger = logging.getLogger(__name__)

# Audio codecs the MP4 muxer accepts as they are (ffmpeg's mov_codec_tags for "mp4").
MP4_AUDIO = frozenset({"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3"})
# Audio this far ahead of the video is held back (seconds), so tracks interleave.
_AUDIO_LEAD_S = 0.5
# libx264's preset, by bench/restore.py --presets (1080p, crf 18, this project's
# 2-core machine): veryfast encodes 2.3x the frames per second of medium for a file
# 1.03x the size; ultrafast 2.8x, but 2.5x the size. At 1080p libx264 set the pace
# of the whole pipeline on an H200 (37.7 fps end to end, the model alone 182.9).
X264_PRESET = "veryfast"
# Encoders that failed to open in this process (NVENC on a GPU without an encoder
# block, such as H100 and H200): tried once per process, not once per video.
_UNOPENABLE: set[str] = set()


@dataclass(frozen=True)
class EncodeSettings:
    encoder: str  # "h264_nvenc" or "libx264"
    crf: int  # libx264 CRF; NVENC's constant-quality level (cq) gets the same number
    preset: str = X264_PRESET


def _codec_options(settings: EncodeSettings) -> dict[str, str]:
    if settings.encoder == "h264_nvenc":
        return {"rc": "vbr", "cq": str(settings.crf), "preset": "p4"}
    return {"crf": str(settings.crf), "preset": settings.preset}


class VideoWriter:
    """Encodes frames into ``final``'s temp name; :meth:`publish` checks and renames.

    Use as a context manager: leaving it without ``publish()`` removes the temp file.
    """

    def __init__(
        self,
        final: Path,
        *,
        width: int,
        height: int,
        rate: Fraction,
        time_base: Fraction,
        settings: EncodeSettings,
        audio_source: Path | None,
    ) -> None:
        import av

        self.final = final
        self.partial = atomic.temp_beside(final)  # renamed in by publish()
        self.width, self.height = width, height
        self.frames = 0
        self.audio = "none"
        self._av = av
        self._out = av.open(str(self.partial), mode="w", format="mp4")
        self.encoder = self._open_video(settings, rate, time_base)
        self._time_base = time_base
        self._audio_in = None
        self._audio_packets: Iterator[object] = iter(())
        self._audio_written = 0
        self._pending = None
        if audio_source is not None:
            self._open_audio(audio_source)

    def _open_video(self, settings: EncodeSettings, rate: Fraction, time_base: Fraction) -> str:
        for encoder in dict.fromkeys((settings.encoder, "libx264")):
            if encoder in _UNOPENABLE and encoder != "libx264":
                continue
            stream = self._out.add_stream(encoder, rate=rate)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            stream.codec_context.time_base = time_base
            stream.options = _codec_options(EncodeSettings(encoder, settings.crf, settings.preset))
            try:
                stream.codec_context.open()
            except self._av.FFmpegError as exc:
                # NVENC needs an encoder block the GPU may lack (H100) or a driver
                # the container does not see; libx264 always works.
                logger.warning(
                    "encoder %s unavailable (%s); using libx264, and not trying %s again "
                    "in this process",
                    encoder,
                    exc,
                    encoder,
                )
                _UNOPENABLE.add(encoder)
                self._out.close()
                self._out = self._av.open(str(self.partial), mode="w", format="mp4")
                continue
            self._video = stream
            return encoder
        raise UnsupportedMedia("no H.264 encoder could be opened")  # libx264 ships in the wheel

    def _open_audio(self, source: Path) -> None:
        av = self._av
        self._audio_in = av.open(str(source), metadata_errors="ignore")
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        src = self._audio_in.streams.audio[0]
        if src.codec_context.name in MP4_AUDIO:
            out = self._out.add_stream_from_template(src)
            self.audio = "copy"
            self._audio_packets = self._copied(src, out)
        else:
            out = self._out.add_stream("aac", rate=src.codec_context.sample_rate or 48_000)
            # A layout with no channel order ("1 channels", from AVI/WAV) is not one
            # the AAC encoder opens; name the common ones.
            channels = src.codec_context.channels
            out.layout = {1: "mono", 2: "stereo"}.get(channels) or src.codec_context.layout
            self.audio = "aac"
            self._audio_packets = self._transcoded(src, out)

    def _copied(self, src: object, out: object) -> Iterator[object]:
        for packet in self._audio_in.demux(src):  # type: ignore[union-attr]
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = out
            yield packet

    def _transcoded(self, src: object, out: object) -> Iterator[object]:
        for packet in self._audio_in.demux(src):  # type: ignore[union-attr]
            for frame in packet.decode():
                frame.pts = None  # let the encoder number samples itself
                yield from out.encode(frame)  # type: ignore[attr-defined]
        yield from out.encode(None)  # type: ignore[attr-defined]

    def _pump_audio(self, until_s: float | None) -> None:
        while True:
            if self._pending is None:
                self._pending = next(self._audio_packets, None)
                if self._pending is None:
                    return
            packet = self._pending
            stamp = packet.pts is not None and packet.time_base is not None
            if (
                until_s is not None
                and stamp
                and float(packet.pts * packet.time_base) > (until_s + _AUDIO_LEAD_S)
            ):
                return
            self._mux(packet, "audio")
            self._audio_written += 1
            self._pending = None

    def _mux(self, packet: object, track: str) -> None:
        try:
            self._out.mux(packet)
        except self._av.FFmpegError as exc:
            # The muxer refuses timestamps that run backwards: a damaged source's
            # (fuzz pass). The message keeps FFmpeg's reason, not the temp path.
            raise UnsupportedMedia(
                f"video: its {track} could not be written ({exc.strerror or type(exc).__name__}); "
                "the input's timestamps are damaged",
                field="video",
            ) from None

    def write(self, frames: np.ndarray, stamps: list[tuple[int, int]]) -> None:
        """Encode a batch of RGB frames (N, H, W, 3) uint8 with their (pts, duration)."""
        VideoFrame = self._av.VideoFrame
        for image, (pts, duration) in zip(frames, stamps, strict=True):
            frame = VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.duration = pts, duration
            frame.time_base = self._time_base
            for packet in self._video.encode(frame):
                self._mux(packet, "video")
            self.frames += 1
        self._pump_audio(float(stamps[-1][0] * self._time_base) if stamps else None)

    def close(self) -> None:
        """Flush the encoder and the rest of the audio, and close the file."""
        for packet in self._video.encode(None):
            self._mux(packet, "video")
        self._pump_audio(None)
        self._out.close()
        if self._audio_in is not None:
            self._audio_in.close()
        if self.audio != "none" and not self._audio_written:
            # A source cut short can announce an audio stream that holds no packet;
            # the muxer then drops the empty track, and the output has no audio.
            logger.warning("the source's audio stream held no packets; output has none")
            self.audio = "none"

    def publish(self) -> Path:
        """Re-open the written file, check it, and rename it to its final name.

        Raises:
            UnsupportedMedia: the file does not hold what was written (a frame
                count, size or audio stream differs); it is not published.
        """
        av = self._av
        with av.open(str(self.partial)) as check:
            video = check.streams.video[0]
            packets = sum(1 for p in check.demux(video) if p.size)
            got = (video.codec_context.name, video.codec_context.width,
                   video.codec_context.height, packets, bool(check.streams.audio))  # fmt: skip
        wanted = ("h264", self.width, self.height, self.frames, self.audio != "none")
        if got != wanted:
            raise UnsupportedMedia(
                "video: the encoded output failed its check (codec, width, height, frames, "
                f"audio: {got} instead of {wanted}); nothing was published",
                field="video",
            )
        os.replace(self.partial, self.final)
        return self.final

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # already closed by close()
            self._out.close()
        if self._audio_in is not None:
            self._audio_in.close()
        self.partial.unlink(missing_ok=True)
