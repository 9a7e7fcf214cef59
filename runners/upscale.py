"""The fast restore tier: a GAN-class upscaler (Real-ESRGAN and kin) loaded by spandrel.

The model file comes from the weights repository named by
``MEDIA_WORKER_UPSCALE_REPO`` / ``_REVISION`` / ``_FILE`` (default
RealESRGAN_x4plus, BSD-3-Clause); spandrel (MIT) detects the architecture from
the state dict, so any spandrel-supported super-resolution model (.pth or
.safetensors) works. Frames are run in tiles with an overlap (VRAM stays
bounded whatever the frame size), in half precision on a GPU when the
architecture supports it, and resized to the target when the model's scale
overshoots it.

``check_job`` runs in the handler (no torch); ``UpscaleRunner`` in the runner
process, which imports torch and spandrel in ``setup()``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any

import config
from errors import InvalidInput, ModelUnavailable
from runtime.device import torch_device
from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

logger = logging.getLogger(__name__)

# Settings only this runner (and its profile, models/profiles.py) reads.
REPO = config.declare(
    "MEDIA_WORKER_UPSCALE_REPO",
    "2kpr/Real-ESRGAN",
    str,
    "Hugging Face repo holding the upscale model file.",
    owner=__name__,
)
REVISION = config.declare(
    "MEDIA_WORKER_UPSCALE_REVISION",
    "33adcbe305c326365eba1c8b731027a6308e3847",
    config.parse_revision,
    "Commit of MEDIA_WORKER_UPSCALE_REPO to use (a full 40-character hash).",
    owner=__name__,
)
FILE = config.declare(
    "MEDIA_WORKER_UPSCALE_FILE",
    "RealESRGAN_x4plus.pth",
    str,
    "Model file in that repo (.pth or .safetensors, any spandrel SR architecture).",
    owner=__name__,
)
TILE = config.declare(
    "MEDIA_WORKER_UPSCALE_TILE",
    512,
    config.count(0, 4096),
    "Tile side for upscale inference (input pixels; 0: whole frames). Caps VRAM.",
    owner=__name__,
)
TILE_OVERLAP = config.declare(
    "MEDIA_WORKER_UPSCALE_TILE_OVERLAP",
    16,
    config.count(0, 256),
    "Extra input pixels read around each tile so seams do not show.",
    owner=__name__,
)
BATCH_FRAMES = config.declare(
    "MEDIA_WORKER_UPSCALE_BATCH_FRAMES",
    4,
    config.count(1, 256),
    "Frames per upscale batch when a job sets no batch_size.",
    owner=__name__,
)

# Architectures spandrel can load that are not frame-to-frame restorers (inpainting,
# face restoration) or need torchvision, which the profile leaves out.
_REFUSED_ARCHS = {"LaMa", "RestoreFormer", "GFPGAN", "CodeFormer"}


def check_job(job: Any) -> None:
    """Pre-flight check in the handler: the knobs make sense together."""
    # The batch really used: the job's, or MEDIA_WORKER_UPSCALE_BATCH_FRAMES (a job
    # with only temporal_overlap 8 against the default 4 crashed in the pipeline).
    batch, overlap = job.batch_size or BATCH_FRAMES.get(), job.temporal_overlap
    if overlap is not None and overlap >= batch:
        source = "batch_size" if job.batch_size else "MEDIA_WORKER_UPSCALE_BATCH_FRAMES"
        raise InvalidInput(
            f"temporal_overlap: {overlap} must be smaller than the batch ({batch} frames, "
            f"{source})",
            field="temporal_overlap",
        )


def tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, length)`` into tiles: ``(in_start, in_stop, keep_start, keep_stop)``.

    Each tile is read with up to ``overlap`` extra pixels on each side and only
    its core ``[keep_start, keep_stop)`` is kept, so seams see full context. Pure.
    """
    if tile <= 0 or tile >= length:
        return [(0, length, 0, length)]
    out = []
    for start in range(0, length, tile):
        stop = min(length, start + tile)
        out.append((max(0, start - overlap), min(length, stop + overlap), start, stop))
    return out


def _allow_missing_torchvision() -> None:
    """Let ``import spandrel`` succeed without torchvision.

    spandrel imports torchvision at package import for two architectures only
    (LaMa's rotate, RestoreFormer's normalize: spandrel 0.4.2
    ``__helpers/main_registry.py``). The profile leaves torchvision out: PyPI's
    build matches CUDA torch only and the CPU build is not on PyPI, so it cannot
    share a test profile's pins with the GPU one. Those names resolve to
    functions that raise if called, and those architectures are refused anyway.
    """
    # Already imported (the real package, or these stand-ins from an earlier call in
    # this process: find_spec would raise on a module without a __spec__).
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return

    class _Absent(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)

            def absent(*args: Any, **kwargs: Any) -> Any:
                raise ModelUnavailable("this architecture needs torchvision, not installed")

            return absent

    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules.setdefault(name, _Absent(name))


class UpscaleRunner(Runner):
    """Loads the model once; each job streams its frames through it."""

    def setup(self, weights: dict[str, str]) -> None:
        _allow_missing_torchvision()
        import spandrel
        import torch

        repo = REPO.get()
        snapshot = weights.get(repo)
        if snapshot is None:
            raise ModelUnavailable(f"upscale weights {repo} are not in the cache")
        path = Path(snapshot) / FILE.get()
        model = spandrel.ModelLoader().load_from_file(str(path))
        if not isinstance(model, spandrel.ImageModelDescriptor) or (
            model.architecture.id in _REFUSED_ARCHS
        ):
            raise ModelUnavailable(
                f"{path.name}: {model.architecture.id} is not a super-resolution model "
                "this runner serves; set MEDIA_WORKER_UPSCALE_FILE to one (e.g. RealESRGAN)"
            )
        self.device = torch.device(torch_device())
        self.dtype = torch.float32
        if self.device.type == "cuda" and model.supports_half:
            self.dtype = torch.float16
        elif self.device.type == "cuda" and model.supports_bfloat16:
            self.dtype = torch.bfloat16
        model.to(self.device).eval()
        if self.dtype != torch.float32:
            model.to(self.dtype)
        self.model = model
        self.scale = model.scale
        self.minimum = model.size_requirements.minimum
        logger.info(
            "upscale model %s arch=%s scale=%d device=%s dtype=%s",
            path.name,
            model.architecture.id,
            model.scale,
            self.device,
            self.dtype,
        )

    def upscale(self, frames: Any, size: tuple[int, int], tile: int, overlap: int) -> Any:
        """(N, h, w, 3) uint8 -> (N, H, W, 3) uint8 at ``size`` = (W, H)."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            x = torch.from_numpy(frames).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).to(self.dtype).div_(255)
            n, _, h, w = x.shape
            s = self.scale
            y = torch.empty((n, 3, h * s, w * s), dtype=self.dtype, device=self.device)
            for y0, y1, ky0, ky1 in tiles(h, tile, overlap):
                for x0, x1, kx0, kx1 in tiles(w, tile, overlap):
                    out = self.model.model(x[:, :, y0:y1, x0:x1])
                    y[:, :, ky0 * s : ky1 * s, kx0 * s : kx1 * s] = out[
                        :, :, (ky0 - y0) * s : (ky1 - y0) * s, (kx0 - x0) * s : (kx1 - x0) * s
                    ]
            if (y.shape[3], y.shape[2]) != size:
                y = F.interpolate(
                    y.float(), size=(size[1], size[0]), mode="bicubic", antialias=True
                )
            y = y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
            return y.contiguous().cpu().numpy()

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        from media.restore import run_restore

        tile = job.get("tile")
        tile = TILE.get() if tile is None else tile
        overlap = TILE_OVERLAP.get()

        def make_backend(size: tuple[int, int], frames_total: int) -> Any:
            return lambda frames: self.upscale(frames, size, tile, overlap)

        return run_restore(
            job,
            ctx,
            max_scale=float(self.scale),
            make_backend=make_backend,
            default_batch=BATCH_FRAMES.get(),
        )


SPECS = (
    RunnerSpec(
        task="restore",
        model="upscale",
        runner_ref="runners.upscale:UpscaleRunner",
        profile="upscale",
        check=check_job,
        knobs=("batch_size", "temporal_overlap", "color_correction", "crf", "tile"),
        # Measured on an H200 (bench/results): RealESRGAN_x4plus, fp16, batches of 4
        # frames to 1080p peaked at 2606 MB of torch allocations; the CUDA context
        # comes on top, so 3 GB with a little room (realesr-general-x4v3: 732 MB).
        vram_mb=3072,
        # The fast tier is the default; SeedVR2 costs ~100x more per frame, so it is
        # asked for by name.
        default="always",
    ),
)
