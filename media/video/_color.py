"""Colour correction of restored frames against their source frames (numpy only).

Restoration models drift colours (a GAN shifts saturation, a diffusion model
shifts the whole palette). Two corrections, both per frame:

- ``adain``: match each channel's mean and standard deviation to the source's
  (adaptive instance normalisation; the statistics do not depend on size, so the
  source needs no resize).
- ``wavelet``: keep the output's fine detail and take the coarse colour from the
  source: output + upsample(down(source) - down(output)), both brought to the
  same coarse grid by block means. A two-level stand-in for the wavelet
  low-frequency swap SeedVR2's authors use, written with numpy because the
  pipeline has no torch (the upscale and SeedVR2 backends run it on frames).
"""

from __future__ import annotations

import numpy as np

MODES = ("none", "adain", "wavelet")
_COARSE = 16  # the coarse grid is 1/16 of the output in each direction


def correct(output: np.ndarray, source: np.ndarray, mode: str) -> np.ndarray:
    """``output`` (N, H, W, 3) uint8 corrected towards ``source`` (N, h, w, 3) uint8."""
    if mode == "none":
        return output
    if mode == "adain":
        return _adain(output, source)
    if mode == "wavelet":
        return _low_frequency_swap(output, source)
    raise ValueError(f"colour correction {mode!r}: use one of {', '.join(MODES)}")


def _adain(output: np.ndarray, source: np.ndarray) -> np.ndarray:
    out = output.astype(np.float32)
    src = source.astype(np.float32)
    o_mean, o_std = out.mean(axis=(1, 2), keepdims=True), out.std(axis=(1, 2), keepdims=True)
    s_mean, s_std = src.mean(axis=(1, 2), keepdims=True), src.std(axis=(1, 2), keepdims=True)
    fixed = (out - o_mean) / np.maximum(o_std, 1e-3) * s_std + s_mean
    return np.clip(fixed + 0.5, 0, 255).astype(np.uint8)


def _block_mean(frames: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean over a rows x cols grid of (nearly) equal blocks: (N, rows, cols, 3)."""
    _, h, w, _ = frames.shape
    ys = np.linspace(0, h, rows + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    summed = np.add.reduceat(np.add.reduceat(frames, ys[:-1], axis=1), xs[:-1], axis=2)
    area = np.outer(np.diff(ys), np.diff(xs))[None, :, :, None]
    return summed / area


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of (N, r, c, 3) to (N, height, width, 3)."""
    _, rows, cols, _ = grid.shape
    y = np.clip((np.arange(height) + 0.5) * rows / height - 0.5, 0, rows - 1)
    x = np.clip((np.arange(width) + 0.5) * cols / width - 0.5, 0, cols - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    wy, wx = (y - y0)[None, :, None, None], (x - x0)[None, None, :, None]
    top = grid[:, y0][:, :, x0] * (1 - wx) + grid[:, y0][:, :, x1] * wx
    bottom = grid[:, y1][:, :, x0] * (1 - wx) + grid[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def _low_frequency_swap(output: np.ndarray, source: np.ndarray) -> np.ndarray:
    _, h, w, _ = output.shape
    rows, cols = max(1, h // _COARSE), max(1, w // _COARSE)
    rows, cols = min(rows, source.shape[1]), min(cols, source.shape[2])
    out = output.astype(np.float32)
    delta = _block_mean(source.astype(np.float32), rows, cols) - _block_mean(out, rows, cols)
    return np.clip(out + _upsample(delta, h, w) + 0.5, 0, 255).astype(np.uint8)
