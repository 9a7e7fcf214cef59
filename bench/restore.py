"""Restore pipeline cost: ours vs the raw PyAV loops, and vs the model's compute.

Rows, per source size (480p, 720p):
- raw decode fps (PyAV decode + to_ndarray, nothing else) and raw encode fps
  (libx264 yuv420p at the same CRF, frames already in memory);
- the pipeline with an identity backend (decode, batching, colour-less encode,
  audio remux, check) vs raw decode + raw encode of the same clip, run one after
  the other: the overlap of our threads should make the ratio < 1;
- the pipeline with the `upscale` backend at a realistic size: a
  SRVGGNetCompact x4 with realesr-general-x4v3's shape (64 features, 32 convs,
  random weights), output resized to 1080p; pipeline_overhead = (wall - compute)
  / wall, the share of the job not spent in the model (goal < 0.10).

``--presets``: libx264 alone at 1080p (a moving gradient under a moving grain),
each preset's frames per second and file size against ``medium``; PyAV only. The
worker's preset (``media/video/_encode.X264_PRESET``) was chosen by it.

The other rows need torch, spandrel and PyAV: run it with the upscale profile's interpreter
(``python -m models prepare upscale``, then ``<env>/bin/python bench/restore.py``),
or from the repo venv with ``--ensure`` to build that profile first (set
UV_FIND_LINKS / MEDIA_WORKER_EXTRA_INDEX_URLS on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _reexec_in_profile() -> None:
    import dataclasses

    import bootstrap
    from bootstrap._profile import with_index_overrides
    from models.profiles import upscale_profile

    profile = dataclasses.replace(with_index_overrides(upscale_profile()), weights=())
    env = bootstrap.ensure(profile, in_place=False)
    argv = [str(env.python), __file__, *[a for a in sys.argv[1:] if a != "--ensure"]]
    os.environ["PYTHONPATH"] = str(ROOT)
    sys.exit(subprocess.call(argv))


from media.video._encode import X264_PRESET  # noqa: E402 (after the sys.path line)


def _raw_decode(path: Path) -> tuple[float, int]:
    import av

    start = time.perf_counter()
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        n = sum(1 for f in c.decode(video=0) if f.to_ndarray(format="rgb24") is not None)
    return time.perf_counter() - start, n


def _raw_encode(frames: list, path: Path, crf: int) -> float:
    import av

    h, w = frames[0].shape[:2]
    start = time.perf_counter()
    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": X264_PRESET}  # the pipeline's own
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return time.perf_counter() - start


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


def _textured_frames(n: int, width: int, height: int) -> list:
    """A moving gradient under a texture that moves with it: x264 has motion to find
    and detail to spend bits on, as in an upscaled video (a bare gradient would
    compress to nothing and make every preset look alike)."""
    import numpy as np

    from tests.fixtures.clips import pattern

    rng = np.random.default_rng(0)
    texture = rng.normal(0.0, 1.0, (height + 64, width + 64)).astype(np.float32)
    texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) * 6  # soft grain
    frames = []
    for i in range(n):
        grain = texture[i % 64 : i % 64 + height, 2 * i % 64 : 2 * i % 64 + width]
        frames.append(np.clip(pattern(i, width, height) + grain[..., None], 0, 255).astype("uint8"))
    return frames


def x264_presets(frames: int, crf: int, threads: str) -> None:
    """libx264 at 1080p, each preset: frames per second and file size (av only)."""
    import av

    images = _textured_frames(frames, 1920, 1080)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in X264_PRESETS:
            path = Path(tmp) / f"{preset}.mp4"
            start = time.perf_counter()
            with av.open(str(path), "w", format="mp4") as out:
                s = out.add_stream("libx264", rate=24)
                s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
                s.options = {"crf": str(crf), "preset": preset, "threads": threads}
                for img in images:
                    for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        out.mux(packet)
                for packet in s.encode(None):
                    out.mux(packet)
            rows.append((preset, frames / (time.perf_counter() - start), path.stat().st_size))
    medium_fps, medium_bytes = rows[-1][1], rows[-1][2]
    print(f"libx264 1080p, {frames} frames, crf {crf}, threads={threads} ({os.cpu_count()} CPUs)")
    print(f"{'preset':<10} {'fps':>7} {'vs medium':>10} {'MB':>7} {'size vs medium':>15}")
    for preset, fps, size in rows:
        print(
            f"{preset:<10} {fps:7.1f} {fps / medium_fps:9.2f}x {size / 1e6:7.2f} "
            f"{size / medium_bytes:14.2f}x"
        )
    chosen = dict((p, f) for p, f, _ in rows)
    print(f"veryfast_speedup={chosen['veryfast'] / medium_fps:.3f}")


def _compact_x4(features: int, convs: int):  # realesr-general-x4v3's shape
    import spandrel
    import torch

    from tests.fixtures import sr_models

    state = {
        k: torch.from_numpy(v) for k, v in sr_models.compact(features=features, convs=convs).items()
    }
    return spandrel.ModelLoader().load_from_state_dict(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--upscale-frames", type=int, default=6)
    parser.add_argument("--ensure", action="store_true", help="build the profile, rerun in it")
    parser.add_argument(
        "--heights",
        default="480,720",
        help="source heights (the smoke test passes 270: x4 reaches 1080)",
    )
    parser.add_argument(
        "--presets",
        action="store_true",
        help="only libx264 at 1080p, preset by preset (needs PyAV alone)",
    )
    parser.add_argument("--threads", default="0", help="libx264 threads with --presets (0: auto)")
    args = parser.parse_args()
    if args.presets:
        x264_presets(args.frames, 18, args.threads)
        return
    if args.ensure:
        _reexec_in_profile()
    missing = [m for m in ("torch", "spandrel", "av") if importlib.util.find_spec(m) is None]
    if missing:
        parser.exit(
            2,
            f"bench/restore.py: {', '.join(missing)} not installed in this interpreter "
            f"({sys.executable}).\n\nhint: add --ensure to build the upscale profile and "
            "rerun in it, or run this script with that profile's interpreter\n",
        )

    import av
    import torch

    from media.video import PipelineOptions, probe, restore_video, target_size
    from runners import upscale as up
    from tests.fixtures.clips import make_clip

    up._allow_missing_torchvision()

    crf = 18
    rows = []
    overhead = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for height in (int(h) for h in args.heights.split(",")):
            width = height * 16 // 9 // 2 * 2
            src = make_clip(
                work / f"{height}.mp4", frames=args.frames, width=width, height=height, fps=24
            )
            info = probe(src)
            dec_s, n = _raw_decode(src)
            with av.open(str(src)) as c:
                frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            enc_s = _raw_encode(frames, work / "raw.mp4", crf)
            rows.append((f"{height}p raw decode fps", n / dec_s, None, ""))
            rows.append((f"{height}p raw encode fps (libx264 crf {crf})", n / enc_s, None, ""))
            result = restore_video(
                src,
                work / f"id{height}.mp4",
                lambda x: x,
                info=info,
                size=(width, height),
                options=PipelineOptions(batch_frames=4, crf=crf),
                progress=lambda m, f: None,
            )
            rows.append(
                (
                    f"{height}p identity pipeline s (vs raw decode + raw encode)",
                    result.wall_s,
                    dec_s + enc_s,
                    f"{result.wall_s / (dec_s + enc_s):.2f}x",
                )
            )

            runner = up.UpscaleRunner()
            model = _compact_x4(64, 32)
            runner.model, runner.scale = model, model.scale
            runner.device, runner.dtype = torch.device("cpu"), torch.float32
            short = make_clip(
                work / f"u{height}.mp4",
                frames=args.upscale_frames,
                width=width,
                height=height,
                fps=24,
            )
            uinfo = probe(short)
            size = target_size(width, height, short_side=1080, max_scale=4, max_target_side=3840)
            res = restore_video(
                short,
                work / f"up{height}.mp4",
                lambda x, size=size, runner=runner: runner.upscale(x, size, 512, 16),
                info=uinfo,
                size=size,
                options=PipelineOptions(batch_frames=2, crf=crf),
                progress=lambda m, f: None,
            )
            overhead = (res.wall_s - res.compute_s) / res.wall_s
            rows.append(
                (
                    f"{height}p->1080p upscale (Compact 64x32) s/frame: wall vs compute",
                    res.wall_s / res.frames,
                    res.compute_s / res.frames,
                    f"overhead {overhead:.3f}",
                )
            )
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} av {av.__version__}")
    print(f"{'what':<66} {'ours':>9} {'reference':>10}  note")
    for what, ours, ref, note in rows:
        ref_s = f"{ref:10.3f}" if ref is not None else " " * 10
        print(f"{what:<66} {ours:9.3f} {ref_s}  {note}")
    print(f"pipeline_overhead={overhead:.3f}")


if __name__ == "__main__":
    main()
