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
(tests/fixtures/make_whisper.py); no weights are downloaded. It is placed where
RunPod's cached models live, so the bootstrapper uses it as is. The conversion and
the whisper profile's environment are cached under ~/.cache/media-worker-bench.

Usage: python bench/transcribe.py [--runs 5] [--seconds 60]
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

REPO, REVISION = "bench/faster-whisper-tiny-random", "0" * 39 + "1"

RAW = """
import json, statistics, sys, time
from faster_whisper import WhisperModel
from models.runners.whisper import cpu_threads
path, model_dir, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=cpu_threads())
def once():
    t = time.perf_counter()
    segments, info = model.transcribe(path, task="transcribe", word_timestamps=False,
                                      vad_filter=False, initial_prompt=None)
    n = len(list(segments))
    return time.perf_counter() - t, n
once()  # warm
times = [once()[0] for _ in range(runs)]
print(json.dumps({"median_s": statistics.median(times)}))
"""


def _checkpoint(cache: Path) -> Path:
    from tests.fixtures.whisper import build_checkpoint, conversion_python

    out = cache / "checkpoint-tiny"
    if not (out / "model.bin").exists():
        build_checkpoint(conversion_python(cache / "convert-venv"), out, dims="tiny")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    cache = Path.home() / ".cache" / "media-worker-bench"
    model_dir = _checkpoint(cache)
    cached_models = cache / "cached-models"
    snapshot = cached_models / f"models--{REPO.replace('/', '--')}" / "snapshots" / REVISION
    if not snapshot.is_dir():
        snapshot.mkdir(parents=True)
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
    from models import profiles

    real = profiles.get_profile("whisper_tiny")
    (weights,) = real.weights
    profiles.PROFILES["whisper_tiny"] = dataclasses.replace(
        real, weights=(Weights(REPO, REVISION, weights.patterns),)
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

    cold = job()  # builds or restores the environment, starts the runner
    env = handler._ENVIRONMENTS["whisper_tiny"]
    times, last = [], cold
    for _ in range(args.runs):
        start = time.perf_counter()
        last = job()
        times.append(time.perf_counter() - start)
    ours_s = statistics.median(times)
    handler._HOST.shutdown()  # free the cores for the raw side

    done = subprocess.run(
        [str(env.python), "-c", RAW, str(path), str(model_dir), str(args.runs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    raw_s = json.loads(done.stdout.strip().splitlines()[-1])["median_s"]

    print(
        f"audio: {args.seconds:.0f} s FLAC, model: tiny dims, random weights, int8 CPU, "
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
    print(f"overhead_ratio={ours_s / raw_s:.3f}")


if __name__ == "__main__":
    main()
