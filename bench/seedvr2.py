"""SeedVR2 timed two ways, each in a fresh process: upstream's own call, and the worker.

``upstream``: numz's ``inference_cli._process_frames_core`` (the function its CLI runs
per clip) on the clip's frames already in memory, with its CLI's own defaults, models
cached between calls as its ``--cache_dit --cache_vae`` do. ``worker``: the
``seedvr2-3b``/``-7b`` runner's ``run`` on the clip file, as the runner process
serves a job (PyAV decode, batches, upstream, colour, H.264 encode). Same clip, same
output size, same batch, same seed, no colour correction on either side.

Each path runs twice in one process: ``cold`` is the first job of the process (model
files read and placed on the device), ``warm`` the second. Prints one JSON line per
run. ``bench/gpu.py --only seedvr2`` makes the weights and the clip and calls this;
alone::

    python bench/seedvr2.py worker --source SRC --weights DIR --clip in.mp4 \\
        --size 3b --resolution 1080 --batch 21
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIT = {"3b": "seedvr2_ema_3b_fp16.safetensors", "7b": "seedvr2_ema_7b_fp16.safetensors"}


def _frames(clip: Path) -> Any:
    """The clip's frames as upstream's CLI hands them over: [T, H, W, C] float in [0, 1]."""
    import av
    import numpy as np
    import torch

    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).float().div_(255)


def _peak_mb(torch: Any) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _timed(torch: Any, work: Any) -> tuple[float, Any]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, out


def upstream(args: argparse.Namespace) -> list[dict[str, Any]]:
    sys.path.insert(0, str(args.source))
    import inference_cli as cli  # type: ignore[import-not-found]  # upstream's CLI module
    import torch
    from src.utils.debug import Debug  # type: ignore[import-not-found]

    frames = _frames(args.clip)
    argv = [str(args.clip), "--model_dir", str(args.weights), "--dit_model", DIT[args.size],
            "--resolution", str(args.resolution), "--batch_size", str(args.batch),
            "--seed", "42", "--color_correction", "none", "--cache_dit", "--cache_vae"]  # fmt: skip
    saved, sys.argv = sys.argv, ["inference_cli.py", *argv]
    try:
        options = cli.parse_arguments()
    finally:
        sys.argv = saved
    cache: dict[str, Any] = {}
    runs = []
    for phase in ("cold", "warm"):
        wall, out = _timed(
            torch,
            lambda: cli._process_frames_core(frames, options, "0", Debug(enabled=False), cache),
        )
        runs.append({"path": "upstream", "phase": phase, "wall_s": wall, "frames": len(out),
                     "out": f"{out.shape[2]}x{out.shape[1]}",
                     "peak_mb": _peak_mb(torch)})  # fmt: skip
    return runs


def worker(args: argparse.Namespace) -> list[dict[str, Any]]:
    sys.path.insert(0, str(args.source))  # as the profile's .pth file does
    sys.path.insert(0, str(ROOT))
    import torch

    from runners import seedvr2
    from runtime.protocol import OutputFile
    from runtime.runner import RunContext

    runner = {"3b": seedvr2.SeedVR2Runner3B, "7b": seedvr2.SeedVR2Runner7B}[args.size]()
    runner.setup({seedvr2.REPO.get(): str(args.weights)})
    job = {"resolution": args.resolution, "batch_size": args.batch, "seed": 42,
           "color_correction": "none"}  # fmt: skip
    runs = []
    with tempfile.TemporaryDirectory(prefix="mw-seedvr2-") as tmp:
        for phase in ("cold", "warm"):
            scratch = Path(tmp) / phase
            scratch.mkdir()
            ctx = RunContext(phase, scratch, lambda message, fraction: None,
                             inputs={"video": args.clip})  # fmt: skip
            wall, outputs = _timed(torch, lambda ctx=ctx: runner.run(job, ctx))
            (output,) = outputs
            assert isinstance(output, OutputFile)
            media = ctx.result["media"]
            runs.append({"path": "worker", "phase": phase, "wall_s": wall,
                         "frames": media["frames"], "peak_mb": _peak_mb(torch),
                         "out": f"{media['width']}x{media['height']}",
                         **ctx.result["stage_timings"]})  # fmt: skip
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=("upstream", "worker"))
    parser.add_argument("--source", type=Path, required=True, help="upstream's tree")
    parser.add_argument("--weights", type=Path, required=True, help="DiT and VAE files")
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--size", choices=sorted(DIT), default="3b")
    parser.add_argument("--resolution", type=int, required=True, help="output short side")
    parser.add_argument("--batch", type=int, required=True, help="frames per batch (4n+1)")
    args = parser.parse_args(argv)
    for run in (upstream if args.path == "upstream" else worker)(args):
        print("RESULT " + json.dumps(run), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
