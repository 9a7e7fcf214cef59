"""What the worker costs on top of faster-whisper itself, on the CPU.

Side by side, medians over repeated warm runs on the same audio file:
  raw   faster_whisper.WhisperModel(...).transcribe(path) consumed to the end, in the
        whisper profile's own interpreter, with the runner's model settings (int8,
        the same thread count, the same transcribe options);
  ours  a transcribe job through handler.handler (validate, data: URI fetch, runner
        process, streamed decode, transcript.json written and published).
RTF = seconds of work / seconds of audio; overhead_ratio = ours / raw (goal <= 1.05).

The model is Whisper tiny's architecture (d_model 384, 4+4 layers, the real
vocabulary layout) with random weights, converted by CTranslate2's converter
(tests/fixtures/make_whisper.py; ``DECODING`` below keeps its decoding
deterministic); no weights are downloaded. It is placed where
RunPod's cached models live, so the bootstrapper uses it as is. The conversion and
the whisper profile's environment are cached under ~/.cache/media-worker-bench.

Memory (``--memory-minutes``, default 60): peak RSS of decoding a long file and
computing its log-mel features, the part that grows with the input: faster-whisper's
``decode_audio`` + ``FeatureExtractor`` over the whole file (what ``transcribe(path)``
does first) vs the runner's ``decode_windows`` + the same extractor per window.

Usage: python bench/transcribe.py [--runs 5] [--seconds 60] [--memory-minutes 60]
       [--checkpoint DIR] [--whisper-python ENV/bin/python] [--cache DIR]
``--checkpoint`` uses a converted model directory instead of making one;
``--whisper-python`` hands the worker that whisper profile environment as ready
(no build); the smoke test passes both with the suite's micro checkpoint.
The last line is ``overhead_ratio=<ours/raw>``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _ready import hand_ready  # noqa: E402  (bench/, this script's directory)

REPO, REVISION = "bench/faster-whisper-tiny-random", "0" * 39 + "2"
# Confident enough that faster-whisper keeps every greedy pass (no fallback to
# sampling, whose random lengths would make the two sides do different work), and
# ~50 tokens per 30 s window, about what trained models emit for English speech.
DECODING = ("--logit-scale", "60", "--eot-after", "100", "--eot-gain", "1.0")

RAW = """
import json, sys, time
from faster_whisper import WhisperModel
from runners.whisper import cpu_threads
path, model_dir = sys.argv[1], sys.argv[2]
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=cpu_threads())
for _ in sys.stdin:  # one timed run per line, so runs interleave with the worker's
    t = time.perf_counter()
    segments, info = model.transcribe(path, task="transcribe", word_timestamps=False,
                                      vad_filter=False, initial_prompt=None)
    n = len(list(segments))
    print(json.dumps({"s": time.perf_counter() - t, "segments": n}), flush=True)
"""


MEMORY = """
import resource, sys
from pathlib import Path
from faster_whisper.audio import decode_audio
from faster_whisper.feature_extractor import FeatureExtractor
from runners.whisper import decode_windows
path, how = sys.argv[1], sys.argv[2]
extract = FeatureExtractor()
if how == "raw":
    frames = extract(decode_audio(path)).shape[-1]
else:
    frames = sum(extract(w).shape[-1] for _, w in decode_windows(Path(path), max_s=1e9))
print(frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _peak_mb(python: Path, path: Path, how: str) -> tuple[int, int]:
    done = subprocess.run(
        [str(python), "-c", MEMORY, str(path), how],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    frames, peak = done.stdout.split()
    return int(frames), int(peak)


def _checkpoint(cache: Path) -> Path:
    from tests.fixtures.whisper import build_checkpoint, conversion_python

    out = cache / "checkpoint-tiny-greedy"
    if not (out / "model.bin").exists():
        build_checkpoint(
            conversion_python(cache / "convert-venv"), out, dims="tiny", extra=DECODING
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--memory-minutes", type=float, default=60.0)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--whisper-python", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "media-worker-bench")
    args = parser.parse_args()

    cache = args.cache
    model_dir = args.checkpoint or _checkpoint(cache)
    cached_models = cache / "cached-models"
    snapshot = cached_models / f"models--{REPO.replace('/', '--')}" / "snapshots" / REVISION
    if not snapshot.is_dir() or args.checkpoint:
        snapshot.mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            (snapshot / f.name).write_bytes(f.read_bytes())
    os.environ["MEDIA_WORKER_HOME"] = str(cache / "home")
    os.environ["MEDIA_WORKER_ENVS_DIR"] = str(cache / "home" / "local-envs")
    os.environ["MEDIA_WORKER_CACHED_MODELS_DIR"] = str(cached_models)
    os.environ.setdefault("MEDIA_WORKER_LOG_LEVEL", "WARNING")

    import numpy as np
    import soundfile

    import handler
    from bootstrap import Weights
    from models import profiles, registry

    real = registry.get_profile("whisper_tiny")
    (weights,) = real.weights
    profiles.PROFILES["whisper_tiny"] = dataclasses.replace(
        real, weights=(Weights(REPO, REVISION, weights.patterns),)
    )
    worker = (
        hand_ready("whisper_tiny", args.whisper_python, {REPO: snapshot})
        if args.whisper_python
        else handler.Worker()
    )

    # Speech-like on/off bursts of a tone; a FLAC file, as a caller would send.
    t = np.arange(int(16_000 * args.seconds)) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(
        np.float32
    )
    buf = io.BytesIO()
    soundfile.write(buf, audio, 16_000, format="FLAC")
    path = cache / "bench.flac"
    path.write_bytes(buf.getvalue())
    uri = "data:audio/flac;base64," + base64.b64encode(buf.getvalue()).decode()

    counter = iter(range(10**6))

    def job() -> dict:
        result = handler.handler(
            {
                "id": f"bench-{next(counter)}",
                "input": {"task": "transcribe", "model": "tiny", "audio": uri},
            }
        )
        assert "error" not in result, result
        return result

    with worker.installed():
        cold = job()  # builds or restores the environment, starts the runner
        env, _ = worker.environments.get("whisper_tiny", lambda *a: None)  # ready: no work
        raw = subprocess.Popen(
            [str(env.python), "-c", RAW, str(path), str(model_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

        def raw_once() -> float:
            raw.stdin.write("run\n")
            raw.stdin.flush()
            return json.loads(raw.stdout.readline())["s"]

        raw_once()  # warm
        # Interleaved (raw, ours, raw, ours...): on a shared machine, load that comes and
        # goes then weighs on both sides alike.
        raw_times, ours_times, last = [], [], cold
        for _ in range(args.runs):
            raw_times.append(raw_once())
            start = time.perf_counter()
            last = job()
            ours_times.append(time.perf_counter() - start)
        raw.stdin.close()
        raw.wait(timeout=60)
    raw_s, ours_s = statistics.median(raw_times), statistics.median(ours_times)

    print(
        f"audio: {args.seconds:.0f} s FLAC, model: {model_dir.name}, random weights, int8 CPU, "
        f"runs={args.runs}, cores={os.cpu_count()}"
    )
    print(
        f"cold first job: total_s={cold['timings']['total_s']:.2f} "
        f"bootstrap_s={cold['timings']['bootstrap_s']:.2f} load_s={cold['timings']['load_s']:.2f}"
    )
    print(f"{'what':<52}{'median_s':>10}{'RTF':>8}")
    print(
        f"{'raw: WhisperModel.transcribe(path), consumed':<52}{raw_s:>10.3f}"
        f"{raw_s / args.seconds:>8.3f}"
    )
    print(
        f"{'ours: transcribe job through handler.handler':<52}{ours_s:>10.3f}"
        f"{ours_s / args.seconds:>8.3f}"
    )
    print(f"{'  of which infer_s (inside the runner)':<52}{last['timings']['infer_s']:>10.3f}")

    if args.memory_minutes > 0:
        long = cache / f"long-{args.memory_minutes:.0f}min.flac"
        if not long.exists():
            n = int(16_000 * 60 * args.memory_minutes)
            tone = np.sin(2 * np.pi * 220 * np.arange(n, dtype=np.float32) / 16_000)
            soundfile.write(long, 0.3 * tone, 16_000, format="FLAC")
        raw_frames, raw_mb = _peak_mb(env.python, long, "raw")
        ours_frames, ours_mb = _peak_mb(env.python, long, "ours")
        print(f"memory, {args.memory_minutes:.0f} min: decode + log-mel features, peak RSS")
        print(f"{'raw: decode_audio + FeatureExtractor, whole file':<52}{raw_mb:>9} MB")
        print(f"{'ours: decode_windows + FeatureExtractor per window':<52}{ours_mb:>9} MB")
        print(f"feature frames raw={raw_frames} ours={ours_frames}")
    print(f"overhead_ratio={ours_s / raw_s:.3f}")


if __name__ == "__main__":
    main()
