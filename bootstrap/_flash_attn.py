"""Choose the prebuilt flash-attn wheel that matches a torch build.

flash-attn publishes wheels on its GitHub releases, one per (CUDA, torch minor,
C++11 ABI, Python, platform), named by its ``setup.py``::

    flash_attn-{version}+cu{cuda}torch{torch_minor}cxx11abi{TRUE|FALSE}-{py}-{py}-{platform}.whl

``{cuda}`` has changed over time: up to 2.5.x the wheels were built with CUDA
11.8 and 12.2 (``cu118``/``cu122``), 2.6.x with 11.8 and 12.3 (``cu123``), and
from 2.7.0 on the tag is the major version only (``cu11``/``cu12``), since minor
versions are compatible. A wheel that does not match torch imports with the
classic ``undefined symbol`` error; that is why the choice is made from the
torch actually installed, and why an import failure falls back to sdpa.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

RELEASES_URL = "https://github.com/Dao-AILab/flash-attention/releases/download"
_PLATFORMS = {"linux_x86_64"}  # the only platform upstream has shipped wheels for


def _version_tuple(version: str) -> tuple[int, ...]:
    """``2.7.4.post1`` -> ``(2, 7, 4)``; ``()`` for a string that is no PEP 440 version."""
    try:
        return Version(version).release[:3]
    except InvalidVersion:
        return ()


def _cuda_tag(flash_attn: tuple[int, ...], cuda_major: int) -> str | None:
    if cuda_major not in (11, 12):
        return None
    if flash_attn >= (2, 7, 0):
        return f"cu{cuda_major}"
    if flash_attn >= (2, 6, 0):
        return "cu118" if cuda_major == 11 else "cu123"
    if flash_attn >= (2, 3, 0):
        return "cu118" if cuda_major == 11 else "cu122"
    return None


def choose_flash_attn_wheel(
    flash_attn: str,
    torch: str,
    cuda_major: int | None,
    cxx11_abi: bool,
    python_tag: str,
    platform: str,
) -> tuple[str | None, str]:
    """The wheel file name for this combination, or None, and the reason.

    Args:
        flash_attn: the wanted flash-attn version (``2.7.4.post1``).
        torch: the installed torch version (``2.6.0+cu124``).
        cuda_major: the CUDA major version torch was built with (``torch.version.cuda``),
            None for a CPU build.
        cxx11_abi: ``torch._C._GLIBCXX_USE_CXX11_ABI``.
        python_tag: ``cp311``.
        platform: ``linux_x86_64``.

    Returns:
        ``(file name, reason)``; the name is None when no published wheel can fit.
    """
    if cuda_major is None:
        return None, f"torch {torch} is a CPU build; flash-attn needs CUDA"
    if platform not in _PLATFORMS:
        return None, f"flash-attn publishes no wheels for {platform}"
    fa = _version_tuple(flash_attn)
    cuda = _cuda_tag(fa, cuda_major)
    if cuda is None:
        return None, f"no flash-attn {flash_attn} wheels for CUDA {cuda_major}"
    tv = _version_tuple(torch)
    if len(tv) < 2:
        return None, f"cannot read torch version {torch!r}"
    abi = "TRUE" if cxx11_abi else "FALSE"
    name = (
        f"flash_attn-{flash_attn}+{cuda}torch{tv[0]}.{tv[1]}cxx11abi{abi}"
        f"-{python_tag}-{python_tag}-{platform}.whl"
    )
    return name, f"prebuilt wheel {name}"


def wheel_url(flash_attn: str, wheel: str) -> str:
    return f"{RELEASES_URL}/v{flash_attn}/{wheel.replace('+', '%2B')}"
