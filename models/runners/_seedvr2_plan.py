"""SeedVR2 glue decisions: batch size, model file, precision, BlockSwap, VAE tiling.

Pure functions over plain data (no torch, no upstream import), tested with tables
(``tests/models/video/test_seedvr2_plan.py``). The runner measures the free VRAM
and hands these decisions to upstream (numz/ComfyUI-SeedVR2_VideoUpscaler,
read at v2.5.23: ``inference_cli.py`` ``_process_frames_core`` and
``src/core/generation_utils.py``): which facts come from where is said per constant.
"""

from __future__ import annotations

import math
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
# Activation memory per output megapixel-frame of a batch, untiled VAE decode
# included. A rough working figure, not an upstream one: it makes a 24 GB card
# run 3B fp16 at 1080p with batch 5 untiled, which upstream's README lists for
# 24 GB+ ("FP16 models ... without memory optimizations"). VAE tiling divides it.
ACTIVATION_GB_PER_MPX_FRAME = 1.2
VAE_TILE_SHRINK = 4.0  # tiled VAE (1024 px tiles, upstream default) cuts activations ~4x
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
    """How the runner asks upstream to fit in the VRAM it has."""

    precision: str  # "fp16" or "fp8"
    dit_file: str
    blocks_to_swap: int
    swap_io_components: bool
    offload_device: str  # "none" or "cpu"
    vae_tiled: bool
    reason: str


def plan_memory(
    size: str,
    *,
    free_vram_gb: float | None,
    width: int,
    height: int,
    batch: int,
    fp8_ok: bool,
) -> MemoryPlan:
    """Precision, BlockSwap and VAE tiling for ``size`` ("3b"/"7b") at ``width`` x
    ``height`` output with ``batch`` frames in ``free_vram_gb``.

    The first that fits, cheapest concession first: fp16 as it is; VAE tiling
    (small speed cost); fp8 weights (small quality cost; only where the GPU has
    fp8); then BlockSwap of as many blocks as needed (large speed cost).

    Raises:
        InvalidInput: even with every concession the job does not fit (field
            ``resolution``: a smaller one, or a smaller batch, would).
    """
    fp16_file, fp16_gb = DIT_FILES[(size, "fp16")]
    if free_vram_gb is None:
        return MemoryPlan("fp16", fp16_file, 0, False, "none", False, "fp16 on the CPU")
    mpx_frames = batch * width * height / 1e6
    activations = ACTIVATION_GB_PER_MPX_FRAME * mpx_frames
    budget = free_vram_gb - HEADROOM_GB - VAE_GB
    wanted = ["fp16", "fp8"] if fp8_ok else ["fp16"]
    choices = [c for c in wanted if (size, c) in DIT_FILES]
    if fp16_gb + activations <= budget:
        return MemoryPlan("fp16", fp16_file, 0, False, "none", False, "fp16")
    vae_tiled = True
    activations /= VAE_TILE_SHRINK
    notes = ["VAE tiled"]
    for chosen in choices:
        file, weights = DIT_FILES[(size, chosen)]
        if weights + activations <= budget:
            return MemoryPlan(chosen, file, 0, False, "none", vae_tiled, _why(notes, chosen))
    chosen = choices[-1]
    file, weights = DIT_FILES[(size, chosen)]
    per_block = weights / BLOCKS[size]
    room = budget - activations
    if room > per_block:  # at least one block must stay to compute with
        blocks = min(BLOCKS[size], math.ceil((weights - room) / per_block) + 1)
        io = blocks == BLOCKS[size]
        notes.append(f"BlockSwap {blocks}/{BLOCKS[size]}" + (" + io" if io else ""))
        return MemoryPlan(chosen, file, blocks, io, "cpu", vae_tiled, _why(notes, chosen))
    raise InvalidInput(
        f"resolution: {width}x{height} with {batch} frames per batch needs about "
        f"{activations + per_block + HEADROOM_GB + VAE_GB:.1f} GB of GPU memory with every "
        f"saving on; {free_vram_gb:.1f} GB are free. Ask for a smaller resolution or batch_size",
        field="resolution",
    )


def _why(notes: list[str], precision: str) -> str:
    return ", ".join([precision, *notes])


def upstream_arguments(
    plan: MemoryPlan, *, resolution: int, batch: int, overlap: int, seed: int, device: str
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
            "batch_size": batch,
            "seed": seed,
            "temporal_overlap": overlap,
            "resolution": resolution,
            # The worker corrects colours itself, after upstream (models/video/_color.py).
            "color_correction": "none",
        },
        "upscale_all_batches": {"seed": seed},
        "postprocess_all_batches": {
            "color_correction": "none",
            "temporal_overlap": overlap,
            "batch_size": batch,
        },
    }
