"""Reference audio: every common container decodes to one clean mono clip, and each
unusable clip fails with an error naming ``reference_audio``. Clips are generated here
with PyAV and soundfile (never downloaded)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from errors import InvalidInput, UnsupportedMedia
from media import reference_audio
from media.reference_audio import ReferenceSpec, fit_length, prepare, speech_bounds

RATE = 24_000
SPEC = ReferenceSpec(model="testmodel", sample_rate=RATE, min_s=1.0, max_s=4.0)


def voice_like(seconds: float, rate: int, *, lead_s=0.5, tail_s=0.5, channels=1) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope between stretches of silence."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540), start=1))
    body = 0.3 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    clip = np.concatenate([np.zeros(int(lead_s * rate)), body, np.zeros(int(tail_s * rate))])
    clip = clip.astype(np.float32)
    return np.stack([clip] * channels, axis=1) if channels > 1 else clip


def encode(path: Path, samples: np.ndarray, rate: int, *, codec: str | None, fmt: str):
    """Encode mono/stereo float samples with PyAV (soundfile when codec is None)."""
    if codec is None:
        soundfile.write(path, samples, rate, format=fmt)
        return path
    stereo = samples.ndim == 2
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo" if stereo else "mono")
        planar = samples.T if stereo else samples[None, :]
        frame_size = stream.codec_context.frame_size or 1024
        pts = 0
        for i in range(0, planar.shape[1], frame_size):
            part = np.ascontiguousarray(planar[:, i : i + frame_size], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=stream.layout.name)
            frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
            pts += part.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


# name, suffix, PyAV codec, container format, input rate, channels
CONTAINERS = [
    ("wav", "wav", "pcm_s16le", "wav", 44_100, 2),
    ("flac", "flac", "flac", "flac", 48_000, 1),
    ("mp3", "mp3", "libmp3lame", "mp3", 44_100, 2),
    # PyAV's wheels carry no Vorbis encoder; libsndfile writes that one.
    ("ogg-vorbis", "ogg", None, "OGG", 44_100, 1),
    ("ogg-opus", "opus", "libopus", "ogg", 48_000, 1),
    ("m4a-aac", "m4a", "aac", "ipod", 44_100, 2),
    ("webm-opus", "webm", "libopus", "webm", 48_000, 2),
]


@pytest.mark.parametrize(("name", "suffix", "codec", "fmt", "rate", "channels"), CONTAINERS)
def test_each_container_becomes_a_trimmed_mono_clip_at_the_model_rate(
    tmp_path, name, suffix, codec, fmt, rate, channels
):
    source = encode(
        tmp_path / f"ref.{suffix}",
        voice_like(3.0, rate, lead_s=1.0, tail_s=1.0, channels=channels),
        rate,
        codec=codec,
        fmt=fmt,
    )
    ref = prepare(source, SPEC)
    audio, sr = soundfile.read(ref.path)
    assert sr == RATE and audio.ndim == 1
    # 3 s of sound between 1 s of silence each side: trimmed to the sound plus margins
    # (lossy codecs pad a few ms; their encoder delay moves the onset a little).
    assert 2.9 <= ref.duration_s <= 3.4, ref.duration_s
    assert ref.duration_s == pytest.approx(len(audio) / sr)


def test_a_long_clip_is_cut_to_the_useful_length(tmp_path):
    src = tmp_path / "long.wav"
    soundfile.write(src, voice_like(9.0, 16_000), 16_000)
    ref = prepare(src, SPEC)
    assert ref.duration_s == pytest.approx(SPEC.max_s)


def test_a_long_clip_is_refused_when_the_model_cannot_take_a_cut_one(tmp_path):
    src = tmp_path / "long.wav"
    soundfile.write(src, voice_like(9.0, 16_000), 16_000)
    strict = ReferenceSpec("f5tts", RATE, min_s=1.0, max_s=4.0, cut_long=False)
    with pytest.raises(InvalidInput, match=r"reference_audio: .*f5tts uses at most 4 s") as exc:
        prepare(src, strict)
    assert exc.value.field == "reference_audio"


def test_the_output_is_written_by_rename_and_leaves_no_partial(tmp_path):
    src = tmp_path / "ref.wav"
    soundfile.write(src, voice_like(2.0, RATE), RATE)
    ref = prepare(src, SPEC, dest=tmp_path / "out.wav")
    assert ref.path == tmp_path / "out.wav"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "ref.wav"]


def _write(tmp_path, name, data):
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        soundfile.write(path, data, RATE)
    return path


def _float_wav_with(tmp_path, name, value):
    """4 s of voice-like sound as a 32-bit float WAV, one sample of it ``value``."""
    samples = voice_like(4.0, RATE).astype(np.float32)
    samples[len(samples) // 2] = value
    path = tmp_path / name
    soundfile.write(path, samples, RATE, subtype="FLOAT")
    return path


def _video_only(tmp_path):
    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), "rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


BAD = [
    (
        "text file",
        lambda p: _write(p, "notes.wav", b"hello, this is not audio\n" * 20),
        UnsupportedMedia,
        "not usable as audio",
    ),
    ("empty file", lambda p: _write(p, "empty.mp3", b""), UnsupportedMedia, "not usable as audio"),
    ("video without audio", _video_only, UnsupportedMedia, "no audio stream"),
    # An IndexError in speech_bounds before (issue 33); infinity read as 0.2 s of speech.
    (
        "a NaN sample",
        lambda p: _float_wav_with(p, "nan.wav", np.nan),
        UnsupportedMedia,
        "1 of its samples are NaN or infinite",
    ),
    (
        "an infinite sample",
        lambda p: _float_wav_with(p, "inf.wav", np.inf),
        UnsupportedMedia,
        "NaN or infinite",
    ),
    (
        "digital silence",
        lambda p: _write(p, "silent.wav", np.zeros(3 * RATE, np.float32)),
        InvalidInput,
        "silent",
    ),
    (
        "room hiss only",
        lambda p: _write(
            p,
            "hiss.wav",
            (1e-4 * np.random.default_rng(0).standard_normal(3 * RATE)).astype(np.float32),
        ),
        InvalidInput,
        "silent",
    ),
    (
        "too short",
        lambda p: _write(p, "blip.wav", voice_like(0.4, RATE)),
        InvalidInput,
        "needs at least 1.0 s",
    ),
    (
        "over the decode cap",
        lambda p: _write(
            p, "podcast.flac", voice_like(reference_audio.MAX_INPUT_S + 5, RATE, lead_s=0, tail_s=0)
        ),
        InvalidInput,
        "longer than 120 s",
    ),
]


@pytest.mark.parametrize(("case", "make", "error", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_unusable_clips_fail_naming_the_field(tmp_path, case, make, error, fragment):
    with pytest.raises(error) as exc:
        prepare(make(tmp_path), SPEC)
    assert exc.value.field == "reference_audio"
    assert exc.value.message.startswith("reference_audio: ")
    assert fragment in exc.value.message
    assert str(tmp_path) not in exc.value.message


# samples (as a list of (seconds, amplitude) stretches), expected (start_s, end_s)
BOUNDS = [
    ([(0.0, 0.0), (1.0, 0.3)], (0.0, 1.0)),
    ([(0.5, 0.0), (1.0, 0.3), (0.5, 0.0)], (0.4, 1.6)),
    ([(0.5, 0.0), (0.5, 0.3), (0.3, 0.0), (0.5, 0.3), (0.5, 0.0)], (0.4, 1.9)),
    # a quiet tail 50 dB under the speech counts as silence
    ([(1.0, 0.3), (1.0, 0.001)], (0.0, 1.1)),
]


@pytest.mark.parametrize(("stretches", "expected"), BOUNDS)
def test_speech_bounds(stretches, expected):
    rate = 1000
    parts = []
    for seconds, amp in stretches:
        t = np.arange(int(seconds * rate)) / rate
        parts.append(amp * np.sin(2 * np.pi * 50 * t))
    start, end = speech_bounds(np.concatenate(parts), rate)
    assert (start / rate, end / rate) == pytest.approx(expected, abs=0.021)


FIT = [
    # (start_s, end_s), spec, result (start_s, end_s) or the error fragment
    ((0.0, 2.0), SPEC, (0.0, 2.0)),
    ((1.0, 9.0), SPEC, (1.0, 5.0)),
    ((0.0, 0.5), SPEC, "only 0.50 s of speech"),
    ((0.0, 9.0), ReferenceSpec("m", RATE, 1.0, 4.0, cut_long=False), "m uses at most 4 s"),
    ((0.0, 4.0), ReferenceSpec("m", RATE, 1.0, 4.0, cut_long=False), (0.0, 4.0)),
]


@pytest.mark.parametrize(("bounds", "spec", "expected"), FIT)
def test_fit_length(bounds, spec, expected):
    start, end = (int(s * spec.sample_rate) for s in bounds)
    if isinstance(expected, str):
        with pytest.raises(InvalidInput, match=expected):
            fit_length(start, end, spec)
    else:
        got = fit_length(start, end, spec)
        assert tuple(x / spec.sample_rate for x in got) == expected
