"""SeedVR2 glue decisions: batch size, model file, precision, BlockSwap, VAE tiling.

Pure functions over plain data (no torch, no upstream import), tested with tables
(``tests/runners/test_seedvr2_plan.py``). The runner measures the free VRAM
and hands these decisions to upstream (numz/ComfyUI-SeedVR2_VideoUpscaler,
read at v2.5.23: ``inference_cli.py`` ``_process_frames_core`` and
``src/core/generation_utils.py``): which facts come from where is said per constant.
"""

from __future__ import annotations

from dataclasses import dataclass

from errors import InvalidInput

# Transformer blocks BlockSwap can move to the CPU (upstream README: "1-32" for
# 3B, "1-36" for 7B).
BLOCKS = {"3b": 32, "7b": 36}
# DiT weight files of numz/SeedVR2_comfyUI in upstream's model registry
# (src/utils/model_registry.py), with their sizes on disk in GB (the weights' VRAM
# when resident). The 7B fp8 file lives in another repository (AInVFX/...), so the
# profile does not fetch it and 7B runs fp16 (with BlockSwap where needed).
DIT_FILES = {
    ("3b", "fp16"): ("seedvr2_ema_3b_fp16.safetensors", 6.8),
    ("3b", "fp8"): ("seedvr2_ema_3b_fp8_e4m3fn.safetensors", 3.4),
    ("7b", "fp16"): ("seedvr2_ema_7b_fp16.safetensors", 16.5),
}
VAE_FILE, VAE_GB = "ema_vae_fp16.safetensors", 0.5
# Peak memory, from one measurement (docs: GPU.md; numz v2.5.23 on an H200, sdpa):
# 1920x1080 out, 21 frames in one batch, untiled, peaked at 36 GB for 3B *and* for
# 7B. So the VAE decode sets the peak and the DiT is not resident then: the peak is
# the larger of the DiT phase (weights + activations) and the VAE phase.
VAE_GB_PER_MPX_FRAME = 0.82  # (36 - 0.5 GB of VAE) / (2.07 Mpx x 21 frames), untiled
# Not measured alone; the same run bounds it: 7B's 16.5 GB + 0.3 x 43.5 <= 36 GB.
DIT_GB_PER_MPX_FRAME = 0.30
VAE_TILE_PX, VAE_TILE_OVERLAP_PX = 1024, 128  # upstream's CLI defaults
HEADROOM_GB = 1.5  # CUDA context, allocator slack, text embeddings
DEFAULT_BATCH = 5  # upstream CLI default (4n+1)


def batch_frames(requested: int | None, total_frames: int) -> int:
    """A batch of 4n+1 frames (the model's temporal constraint, upstream's
    ``calculate_optimal_batch_params``): the request rounded down to 4n+1, and never
    more than the smallest 4n+1 that holds the whole clip."""
    want = DEFAULT_BATCH if requested is None else max(1, requested)
    want = (want - 1) // 4 * 4 + 1
    whole = (max(1, total_frames) - 1 + 3) // 4 * 4 + 1  # smallest 4n+1 >= total
    return min(want, whole)


def overlap_frames(requested: int | None, batch: int) -> int:
    """Temporal overlap between batches: the request, capped below the batch."""
    if batch <= 1:
        return 0
    return min(requested or 0, batch - 1)


@dataclass(frozen=True)
class MemoryPlan:
    """How the runner asks upstream to fit in the memory it has (said in the result)."""

    precision: str  # "fp16" or "fp8"
    dit_file: str
    blocks_to_swap: int
    swap_io_components: bool
    offload_device: str  # "none" or "cpu"
    vae_tiled: bool
    batch: int  # frames per upstream batch (4n+1); below the asked one only as a last resort
    peak_gb: float | None  # the estimate it was chosen by; None on the CPU
    reason: str


def peak_gb(
    size: str, precision: str, *, blocks: int, tiled: bool, width: int, height: int, batch: int
) -> float:
    """Estimated peak GPU memory of one batch: the larger of the DiT phase and the
    VAE phase (see the constants), plus headroom."""
    frame_mpx = width * height / 1e6
    weights = DIT_FILES[(size, precision)][1] * (1 - blocks / BLOCKS[size])
    dit = weights + DIT_GB_PER_MPX_FRAME * frame_mpx * batch
    vae_mpx = min(frame_mpx, VAE_TILE_PX**2 / 1e6) if tiled else frame_mpx
    vae = VAE_GB + VAE_GB_PER_MPX_FRAME * vae_mpx * batch
    return max(dit, vae) + HEADROOM_GB


def plan_memory(
    size: str,
    *,
    free_vram_gb: float | None,
    width: int,
    height: int,
    batch: int,
    fp8_ok: bool,
) -> MemoryPlan:
    """Precision, VAE tiling, BlockSwap and batch for ``size`` ("3b"/"7b") at ``width``
    x ``height`` output with ``batch`` frames asked, in ``free_vram_gb`` (None: the CPU).

    The first that fits, cheapest concession first: fp16 as it is; VAE tiling (small
    speed cost); fp8 weights (small quality cost; 3B only, on a GPU with fp8); BlockSwap
    of as few blocks as fit (large speed cost); and only then a smaller batch (more
    batch boundaries), down to one frame. The model size is the job's.

    Raises:
        InvalidInput: not even one frame per batch fits (field ``resolution``).
    """
    fp16_file, _ = DIT_FILES[(size, "fp16")]
    if free_vram_gb is None:
        return MemoryPlan("fp16", fp16_file, 0, False, "none", False, batch, None,
                          f"fp16, batch {batch}, on the CPU")  # fmt: skip
    precisions = ["fp16", "fp8"] if fp8_ok and (size, "fp8") in DIT_FILES else ["fp16"]
    n = BLOCKS[size]
    for b in range(batch, 0, -4):
        options = [("fp16", 0, False)] + [(p, 0, True) for p in precisions]
        options += [(precisions[-1], k, True) for k in range(1, n + 1)]
        for precision, blocks, tiled in options:
            need = peak_gb(size, precision, blocks=blocks, tiled=tiled, width=width,
                           height=height, batch=b)  # fmt: skip
            if need <= free_vram_gb:
                notes = [precision] + (["VAE tiled"] if tiled else [])
                if blocks:
                    notes.append(f"BlockSwap {blocks}/{n}" + (" + io" if blocks == n else ""))
                notes.append(f"batch {b}" + (f" (asked {batch})" if b != batch else ""))
                reason = f"{', '.join(notes)}; ~{need:.0f} of {free_vram_gb:.0f} GB free"
                return MemoryPlan(precision, DIT_FILES[(size, precision)][0], blocks, blocks == n,
                                  "cpu" if blocks else "none", tiled, b, round(need, 1),
                                  reason)  # fmt: skip
    least = peak_gb(size, precisions[-1], blocks=n, tiled=True, width=width, height=height,
                    batch=1)  # fmt: skip
    raise InvalidInput(
        f"resolution: {width}x{height} needs about {least:.1f} GB of GPU memory with every "
        f"saving on and one frame per batch; {free_vram_gb:.1f} GB are free. Ask for a "
        "smaller resolution",
        field="resolution",
    )


def upstream_arguments(
    plan: MemoryPlan, *, resolution: int, overlap: int, seed: int, device: str
) -> dict[str, dict[str, object]]:
    """Keyword arguments for upstream's calls, by function name (the contract the
    runner's call into upstream follows; ``inference_cli._process_frames_core``)."""
    offload = None if plan.offload_device == "none" else plan.offload_device
    tile = (VAE_TILE_PX, VAE_TILE_PX)
    tile_overlap = (VAE_TILE_OVERLAP_PX, VAE_TILE_OVERLAP_PX)
    return {
        "setup_generation_context": {
            "dit_device": device,
            "vae_device": device,
            "dit_offload_device": offload,
            "vae_offload_device": None,
            "tensor_offload_device": "cpu",
        },
        "prepare_runner": {
            "dit_model": plan.dit_file,
            "vae_model": VAE_FILE,
            "block_swap_config": {
                "blocks_to_swap": plan.blocks_to_swap,
                "swap_io_components": plan.swap_io_components,
                "offload_device": offload,
            },
            "encode_tiled": plan.vae_tiled,
            "encode_tile_size": tile,
            "encode_tile_overlap": tile_overlap,
            "decode_tiled": plan.vae_tiled,
            "decode_tile_size": tile,
            "decode_tile_overlap": tile_overlap,
            "attention_mode": "sdpa",
        },
        "encode_all_batches": {
            "batch_size": plan.batch,
            "seed": seed,
            "temporal_overlap": overlap,
            "resolution": resolution,
            # The worker corrects colours itself, after upstream (media/video/_color.py).
            "color_correction": "none",
        },
        "upscale_all_batches": {"seed": seed},
        "postprocess_all_batches": {
            "color_correction": "none",
            "temporal_overlap": overlap,
            "batch_size": plan.batch,
        },
    }
