"""The quality restore tier: SeedVR2 (3B and 7B) through its maintained implementation.

Upstream is numz/ComfyUI-SeedVR2_VideoUpscaler (Apache-2.0), installed by the
``seedvr2`` profile as a pinned source archive and imported as its own ``src``
package; nothing of it is copied here. This module owns only the glue
(``_seedvr2_plan``): 4n+1 batches, the target resolution, the seed, colour
correction (the worker's, after upstream), and precision, BlockSwap and VAE
tiling chosen from the free VRAM and the model's size. The call sequence into
upstream follows its CLI (``inference_cli._process_frames_core`` at v2.5.23):
context, runner, text embeddings, then encode, upscale, decode, postprocess.

``check_job`` runs in the handler (no torch); the runner in its own process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import config
from errors import InvalidInput, ModelUnavailable
from runners import _seedvr2_plan as plan
from runtime.device import torch_device
from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

logger = logging.getLogger(__name__)

# Settings only this runner (and its profile, models/profiles.py) reads.
REPO = config.declare(
    "MEDIA_WORKER_SEEDVR2_REPO",
    "numz/SeedVR2_comfyUI",
    str,
    "Hugging Face repo of the SeedVR2 DiT and VAE files (upstream's model registry).",
    owner=__name__,
)
REVISION = config.declare(
    "MEDIA_WORKER_SEEDVR2_REVISION",
    "",
    config.parse_revision,
    "Commit of MEDIA_WORKER_SEEDVR2_REPO (a full 40-character hash). Unset: upstream's "
    "files pinned by the sha256 its model registry lists; required for another repo.",
    owner=__name__,
)

# SeedVR2 is trained for restoration up to about 4x; beyond that the model's own
# resize (NaResize, "side" mode) still runs but quality is not what users expect.
MAX_SCALE = 4.0
DEFAULT_SEED = 42  # upstream CLI default


def check_job(job: Any) -> None:
    """Pre-flight check in the handler: the knobs make sense together."""
    batch = plan.batch_frames(job.batch_size, 10**9)
    if job.temporal_overlap is not None and job.temporal_overlap >= batch:
        raise InvalidInput(
            f"temporal_overlap: {job.temporal_overlap} must be smaller than the batch "
            f"({batch} frames: batch_size rounded down to 4n+1)",
            field="temporal_overlap",
        )


def load_upstream() -> SimpleNamespace:
    """Upstream's functions, from the source archive the profile put on sys.path."""
    from src.core import generation_phases as phases  # type: ignore[import-not-found]
    from src.core import generation_utils as utils  # type: ignore[import-not-found]
    from src.utils.debug import Debug  # type: ignore[import-not-found]

    return SimpleNamespace(
        setup_generation_context=utils.setup_generation_context,
        prepare_runner=utils.prepare_runner,
        load_text_embeddings=utils.load_text_embeddings,
        compute_generation_info=utils.compute_generation_info,
        encode_all_batches=phases.encode_all_batches,
        upscale_all_batches=phases.upscale_all_batches,
        decode_all_batches=phases.decode_all_batches,
        postprocess_all_batches=phases.postprocess_all_batches,
        Debug=Debug,
        # pos_emb.pt / neg_emb.pt live at the archive's root
        script_directory=str(Path(utils.__file__).resolve().parents[2]),
    )


# Context keys upstream keeps between runs (``_process_frames_core``'s keys_to_keep).
_KEEP = {
    "dit_device",
    "vae_device",
    "dit_offload_device",
    "vae_offload_device",
    "tensor_offload_device",
    "compute_dtype",
}


def call_upstream(
    up: Any,
    cache: dict[str, Any],
    frames: Any,
    *,
    arguments: dict[str, dict[str, Any]],
    model_dir: str,
) -> Any:
    """One batch through upstream: frames [T, H, W, C] float in [0, 1] -> restored
    [T', H', W', C]. ``cache`` keeps upstream's context (its device keys only, as
    upstream's CLI does between clips) and models between batches."""
    debug = up.Debug(enabled=False)
    if "ctx" in cache:
        ctx = cache["ctx"]
        _prune(ctx)  # what a call that failed half-way left
    else:
        ctx = cache["ctx"] = up.setup_generation_context(
            **arguments["setup_generation_context"], debug=debug
        )
    runner, cache_context = up.prepare_runner(
        **arguments["prepare_runner"],
        model_dir=model_dir,
        debug=debug,
        ctx=ctx,
        dit_cache=True,
        vae_cache=True,
        dit_id="worker_dit",
        vae_id="worker_vae",
    )
    ctx["cache_context"] = cache_context
    ctx["text_embeds"] = up.load_text_embeddings(
        up.script_directory, ctx["dit_device"], ctx["compute_dtype"], debug
    )
    encode = arguments["encode_all_batches"]
    images, _ = up.compute_generation_info(
        ctx=ctx,
        images=frames,
        resolution=encode["resolution"],
        batch_size=encode["batch_size"],
        seed=encode["seed"],
        temporal_overlap=encode["temporal_overlap"],
        debug=debug,
    )
    ctx = up.encode_all_batches(
        runner, ctx=ctx, images=images, debug=debug, progress_callback=None, **encode
    )
    ctx = up.upscale_all_batches(
        runner,
        ctx=ctx,
        debug=debug,
        progress_callback=None,
        cache_model=True,
        **arguments["upscale_all_batches"],
    )
    ctx = up.decode_all_batches(
        runner, ctx=ctx, debug=debug, progress_callback=None, cache_model=True
    )
    ctx = up.postprocess_all_batches(
        ctx=ctx,
        debug=debug,
        progress_callback=None,
        prepend_frames=0,
        **arguments["postprocess_all_batches"],
    )
    video = ctx["final_video"]
    # The batch's latents and frames go now, not when the next batch (or job) starts:
    # at 1080p x 21 frames the decoded video alone is half a gigabyte.
    _prune(ctx)
    return video


def _prune(ctx: dict[str, Any]) -> None:
    for key in [k for k in ctx if k not in _KEEP]:
        del ctx[key]


class SeedVR2Runner(Runner):
    """Serves one model size; ``upstream`` replaces the real package (tests only
    check the argument contract against a stand-in)."""

    size = "3b"

    def __init__(self, upstream: Any = None) -> None:
        self._upstream = upstream

    def setup(self, weights: dict[str, str]) -> None:
        import torch

        self.up = self._upstream or load_upstream()
        repo = REPO.get()
        if repo not in weights:
            raise ModelUnavailable(f"SeedVR2 weights {repo} are not in the cache")
        self.model_dir = weights[repo]
        cuda = torch_device() == "cuda"
        self.device = "cuda:0" if cuda else "cpu"
        # fp8 e4m3 matmuls need Ada/Hopper (compute capability 8.9+)
        self.fp8_ok = cuda and torch.cuda.get_device_capability() >= (8, 9)
        self.cache: dict[str, Any] = {}

    def _free_gb(self) -> float | None:
        """Free GPU memory in GB; None on the CPU (BlockSwap and tiling save GPU memory)."""
        import torch

        if self.device.startswith("cuda"):
            return torch.cuda.mem_get_info()[0] / 1e9
        return None

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        from media.restore import run_restore

        seed = DEFAULT_SEED if job.get("seed") is None else job["seed"]

        def make_backend(size: tuple[int, int], frames_total: int) -> Any:
            batch = plan.batch_frames(job.get("batch_size"), frames_total)
            memory = plan.plan_memory(
                self.size,
                free_vram_gb=self._free_gb(),
                width=size[0],
                height=size[1],
                batch=batch,
                fp8_ok=self.fp8_ok,
            )
            logger.info("job=%s seedvr2-%s plan %s", ctx.job_id, self.size, memory.reason)
            chosen.append(memory.reason)
            arguments = plan.upstream_arguments(
                memory,
                resolution=min(size),
                overlap=0,  # the pipeline repeats context frames itself
                seed=seed,
                device=self.device,
            )
            return lambda frames: self._restore(frames, size, arguments)

        chosen: list[str] = []
        outputs = run_restore(
            job,
            ctx,
            max_scale=MAX_SCALE,
            make_backend=make_backend,
            default_batch=plan.DEFAULT_BATCH,
            batch_of=lambda requested, total: plan.batch_frames(requested, total),
            # Upstream sizes its output down to even numbers (854x480 at 1080 gives
            # 1920x1080; the nearest even, 1922, cost a resize of every frame: H200 run).
            even_down=True,
        )
        ctx.result["plan"] = chosen[0]  # what the memory plan chose, for the caller
        return outputs

    def _restore(self, frames: Any, size: tuple[int, int], arguments: dict) -> Any:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(frames).float().div_(255)
        y = call_upstream(self.up, self.cache, x, arguments=arguments, model_dir=self.model_dir)
        y = y[: len(frames)].permute(0, 3, 1, 2).float()
        if (y.shape[3], y.shape[2]) != size:  # upstream pads to multiples of 16
            y = F.interpolate(y, size=(size[1], size[0]), mode="bicubic", antialias=True)
        y = y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
        return y.contiguous().cpu().numpy()


class SeedVR2Runner3B(SeedVR2Runner):
    size = "3b"


class SeedVR2Runner7B(SeedVR2Runner):
    size = "7b"


_KNOBS = ("batch_size", "temporal_overlap", "color_correction", "crf", "seed")
SPECS = (
    RunnerSpec(
        task="restore",
        model="seedvr2-3b",
        runner_ref="runners.seedvr2:SeedVR2Runner3B",
        profile="seedvr2",
        check=check_job,
        knobs=_KNOBS,
        # Declared for the runner host's eviction, not measured on a GPU yet: the DiT in
        # bfloat16 (2 bytes per parameter), the VAE and the smallest tiling's activations.
        vram_mb=12288,
    ),
    RunnerSpec(
        task="restore",
        model="seedvr2-7b",
        runner_ref="runners.seedvr2:SeedVR2Runner7B",
        profile="seedvr2",
        check=check_job,
        knobs=_KNOBS,
        vram_mb=20480,
    ),
)
