"""Reference audio for voice cloning: any common container in, one clean clip out.

Both cloning runners (chatterbox, f5tts) call :func:`prepare` on the fetched
``reference_audio`` file: PyAV decodes it (wav, flac, mp3, ogg/vorbis/opus, m4a/aac,
webm), its resampler downmixes to mono float32 at the model's rate, leading and
trailing silence is trimmed, and the clip is cut (or refused) to the model's useful
length. The result is written as a 16-bit WAV beside the input (temp name, then
rename) for the model library to read.

Runs in the runner's profile environment (PyAV, numpy and soundfile are pinned
there); the decisions (:func:`speech_bounds`, :func:`fit_length`) are pure numpy
functions with table tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import InvalidInput, UnsupportedMedia
from media import image_header
from runtime import atomic

FIELD = "reference_audio"
# Longest input decoded at all: a reference is seconds of speech; decoding stops
# here so a two-hour podcast sent by mistake costs a moment, not minutes of CPU.
MAX_INPUT_S = 120.0
_FRAME_S = 0.02  # silence is judged on 20 ms frames
# A frame is speech when its RMS is within 40 dB of the loudest frame and above
# -60 dBFS (a clip whose loudest frame is under that is treated as silence).
_RELATIVE_DB = -40.0
_FLOOR_DBFS = -60.0
_KEEP_MARGIN_S = 0.1  # keep a little room around speech so onsets are not clipped


@dataclass(frozen=True)
class ReferenceSpec:
    """What one model wants from a reference clip.

    Args:
        model: the model's name, used in error messages.
        sample_rate: the rate the model reads (Hz).
        min_s: shortest useful speech after trimming (seconds).
        max_s: longest useful speech (seconds).
        cut_long: True: keep the first ``max_s`` seconds of a longer clip. False:
            refuse it (a model that aligns the clip with ``reference_text`` cannot
            be given half of what the transcript says).
    """

    model: str
    sample_rate: int
    min_s: float
    max_s: float
    cut_long: bool = True


@dataclass(frozen=True)
class Reference:
    """A prepared clip: where it is, its rate and length."""

    path: Path
    sample_rate: int
    duration_s: float


def file_sha256(path: Path) -> str:
    """The digest of the reference *file* (the runners' conditioning cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(path: Path, spec: ReferenceSpec, *, dest: Path | None = None) -> Reference:
    """Decode, downmix, resample, trim and cut ``path`` for ``spec``'s model.

    Args:
        path: the fetched reference file (any container PyAV reads).
        spec: the model's wishes.
        dest: where to write the WAV; default ``<path>.<model>.wav``.

    Returns:
        The prepared clip.

    Raises:
        UnsupportedMedia: the file is not audio PyAV can decode (field ``reference_audio``).
        InvalidInput: the clip is silent, too short, or over the caps (field
            ``reference_audio``).
    """
    import soundfile

    samples = decode(path, sample_rate=spec.sample_rate)
    start, end = speech_bounds(samples, spec.sample_rate)
    start, end = fit_length(start, end, spec)
    clip = samples[start:end]
    dest = dest or path.with_name(f"{path.name}.{spec.model}.wav")
    with atomic.atomic_path(dest) as partial:
        soundfile.write(partial, clip, spec.sample_rate, format="WAV", subtype="PCM_16")
    return Reference(dest, spec.sample_rate, len(clip) / spec.sample_rate)


def decode(path: Path, *, sample_rate: int) -> Any:
    """All of the first audio stream as mono float32 at ``sample_rate`` (a numpy array).

    Raises:
        UnsupportedMedia: not a media file, or no audio stream in it.
        InvalidInput: longer than :data:`MAX_INPUT_S`.
    """
    import av
    import numpy as np

    image_header.refuse_as_audio(path, field=FIELD)
    # FFmpeg decodes a picture of each video stream while opening: bound it (issue 20).
    options = image_header.decoder_options(image_header.AUDIO_MAX_PIXELS)
    try:
        container = av.open(str(path), options=options, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise _not_audio(f"it is not a media file PyAV can open ({_reason(exc)})") from None
    with container:
        if not container.streams.audio:
            raise _not_audio("it has no audio stream")
        stream = container.streams.audio[0]
        # PyAV's resampler (libswresample) downmixes and resamples in one pass.
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        limit = int(MAX_INPUT_S * sample_rate)
        chunks: list[Any] = []
        total = 0
        try:
            for frame in container.decode(stream):
                try:
                    resampled = resampler.resample(frame)
                except ValueError:
                    # set up by the first frame; a damaged file can switch rate or
                    # layout mid-stream (fuzz pass)
                    raise _not_audio("its format (rate or channels) changes mid-stream") from None
                for out in resampled:
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total > limit:
                    raise InvalidInput(
                        f"{FIELD}: the clip is longer than {MAX_INPUT_S:.0f} s, the most "
                        "accepted; send a few seconds of clean speech (the model uses "
                        "about 10 s)",
                        field=FIELD,
                    )
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise _not_audio(f"its audio could not be decoded ({_reason(exc)})") from None
    if not chunks:
        raise _not_audio("its audio stream holds no samples")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        # A float WAV can hold NaN or infinity: the loudness that trims silence
        # becomes NaN (every comparison false: an IndexError) or infinite (a 4 s clip
        # read as 0.2 s of speech). No recording has them: the file is damaged.
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise _not_audio(f"{bad} of its samples are NaN or infinite (a damaged float file)")
    return samples


def speech_bounds(samples: Any, sample_rate: int) -> tuple[int, int]:
    """``(start, end)`` sample indexes of the speech, silence trimmed at both ends.

    Raises:
        InvalidInput: the clip is silent (nothing above -60 dBFS).
    """
    import numpy as np

    frame = max(1, int(_FRAME_S * sample_rate))
    n = len(samples) // frame
    if n == 0:
        raise _too_short(len(samples) / sample_rate, 0.0, None)
    frames = np.asarray(samples[: n * frame], dtype=np.float64).reshape(n, frame)
    rms_db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)
    loudest = float(rms_db.max())
    if loudest < _FLOOR_DBFS:
        raise InvalidInput(
            f"{FIELD}: the clip is silent (loudest part {loudest:.0f} dBFS); send a "
            "recording of someone speaking",
            field=FIELD,
        )
    voiced = np.flatnonzero(rms_db >= max(loudest + _RELATIVE_DB, _FLOOR_DBFS))
    margin = int(_KEEP_MARGIN_S * sample_rate)
    start = max(0, int(voiced[0]) * frame - margin)
    end = min(len(samples), (int(voiced[-1]) + 1) * frame + margin)
    return start, end


def fit_length(start: int, end: int, spec: ReferenceSpec) -> tuple[int, int]:
    """The part of ``[start, end)`` the model uses.

    Raises:
        InvalidInput: shorter than ``spec.min_s``, or longer than ``spec.max_s`` for a
            model that cannot be given a cut clip.
    """
    rate = spec.sample_rate
    duration = (end - start) / rate
    if duration < spec.min_s:
        raise _too_short(duration, spec.min_s, spec.model)
    if duration <= spec.max_s:
        return start, end
    if spec.cut_long:
        return start, start + int(spec.max_s * rate)
    raise InvalidInput(
        f"{FIELD}: {duration:.1f} s of speech; {spec.model} uses at most {spec.max_s:.0f} s "
        "and must match reference_text word for word, so it is not cut; send a shorter "
        "clip and its transcript",
        field=FIELD,
    )


def _too_short(duration: float, min_s: float, model: str | None) -> InvalidInput:
    need = f"; {model} needs at least {min_s:.1f} s" if model else ""
    return InvalidInput(
        f"{FIELD}: only {duration:.2f} s of speech after trimming silence{need}; send a "
        "longer clip of clear speech",
        field=FIELD,
    )


def _not_audio(why: str) -> UnsupportedMedia:
    return UnsupportedMedia(
        f"{FIELD}: not usable as audio: {why}; send wav, flac, mp3, ogg, m4a or webm",
        field=FIELD,
    )


def _reason(exc: BaseException) -> str:
    # FFmpeg messages can carry the file path; keep the error's kind and text only.
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}"[:200]
