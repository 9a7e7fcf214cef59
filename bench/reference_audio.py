"""What the reference step costs on top of decoding the clip with PyAV.

Side by side, medians over repeated runs, per container (an 8 s stereo clip at
44.1/48 kHz with 1 s of silence each side, made here):
  raw   PyAV decode + libswresample to mono 24 kHz float, as one numpy array (the
        library call alone);
  ours  media.reference_audio.prepare: the same decode, then silence trimming,
        cutting to 10 s and writing the 16-bit WAV the model reads.
A cloning runner runs this once per new reference: its conditioning cache is keyed
by the file's sha256, so a repeated reference skips it (and the model's conditioning).

Usage: python bench/reference_audio.py [--runs 7]
The last line is ``overhead_ratio=<median ours/raw over formats>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMATS = [  # name, suffix, codec (None: soundfile), container, rate
    ("wav", "wav", "pcm_s16le", "wav", 44_100),
    ("flac", "flac", "flac", "flac", 48_000),
    ("mp3", "mp3", "libmp3lame", "mp3", 44_100),
    ("ogg-vorbis", "ogg", None, "OGG", 44_100),
    ("m4a-aac", "m4a", "aac", "ipod", 44_100),
    ("webm-opus", "webm", "libopus", "webm", 48_000),
]


def _median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _raw_decode(path: Path) -> object:
    """The samples as one numpy array, as a model needs them."""
    import av
    import numpy as np

    parts = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=24_000)
        for frame in container.decode(container.streams.audio[0]):
            parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    from media.reference_audio import ReferenceSpec, prepare
    from tests.media.test_reference_audio import encode, voice_like

    spec = ReferenceSpec("chatterbox", sample_rate=24_000, min_s=2.0, max_s=10.0)
    ratios = []
    print(f"{'format':<11} {'raw_ms':>7} {'ours_ms':>8} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, suffix, codec, fmt, rate in FORMATS:
            clip = voice_like(8.0, rate, lead_s=1.0, tail_s=1.0, channels=2)
            path = encode(Path(tmp) / f"ref.{suffix}", clip, rate, codec=codec, fmt=fmt)
            dest = Path(tmp) / f"out-{name}.wav"
            raw = _median_s(lambda path=path: _raw_decode(path), args.runs)
            ours = _median_s(lambda path=path, dest=dest: prepare(path, spec, dest=dest), args.runs)
            ratios.append(ours / raw)
            print(f"{name:<11} {1000 * raw:7.1f} {1000 * ours:8.1f} {ours / raw:6.2f}")
    print(f"overhead_ratio={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
