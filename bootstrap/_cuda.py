"""Which CUDA build of torch a machine gets: cu126 or cu130, or a refusal in words.

Pure: the machine's facts (the GPU's compute capability, the driver's CUDA
version as ``nvidia-smi``/NVML report it) come in as arguments, read once by the
caller. The result rewrites the profile's torch index (``.../cu126`` ->
``.../cu130``), and the index is part of the spec hash, so each kind of machine
gets its own archive and never restores one built for another.

The two builds (torch 2.13 publishes both; 2.15 drops cu126):

* **cu126** carries kernels for compute capability 5.0 to 9.0 (Maxwell to
  Hopper) and nothing for Blackwell (10.x, 12.x: B200, RTX 5090, RTX PRO 6000).
  It runs on any CUDA 12 driver (525.60.13 or newer) through CUDA's minor-version
  compatibility: its kernels are compiled for every GPU it supports, so no PTX
  has to be JIT-compiled by the driver, which is the one thing that compatibility
  does not cover.
* **cu130** carries kernels for 7.5 (Turing) upwards, Blackwell included, and
  PTX for what comes after; it needs a CUDA 13 driver, 580 or newer. Volta
  (7.0) and older were dropped from it.

The rule: the newest build that has kernels for the GPU and that the driver can
run. So Blackwell gets cu130, drivers below 580 get cu126, a driver of 580 or
newer on Turing to Hopper gets cu130 (the build torch keeps after 2.14), and a
Blackwell GPU on a driver below 580 is refused: no build serves it, and starting
anyway is the "no kernel image is available" crash loop.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bootstrap._profile import Profile

Version = tuple[int, int]


@dataclass(frozen=True)
class CudaBuild:
    """One CUDA build of PyTorch's wheels.

    Attributes:
        tag: the index's last path segment (``cu126``).
        cuda: the CUDA toolkit it is built with.
        min_driver_cuda: the lowest CUDA version a driver must report to run it.
        min_driver: that driver's version, for messages.
        min_cc, max_cc: the compute capabilities it has kernels for; ``max_cc``
            None means newer GPUs run its PTX.
    """

    tag: str
    cuda: Version
    min_driver_cuda: Version
    min_driver: str
    min_cc: Version
    max_cc: Version | None

    def has_kernels_for(self, cc: Version) -> bool:
        return cc >= self.min_cc and (self.max_cc is None or cc <= self.max_cc)


BUILDS: dict[str, CudaBuild] = {
    b.tag: b
    for b in (
        CudaBuild("cu126", (12, 6), (12, 0), "525.60.13", (5, 0), (9, 0)),
        CudaBuild("cu130", (13, 0), (13, 0), "580", (7, 5), None),
    )
}

# torch release (major.minor) -> the builds among BUILDS its index publishes.
# torch 2.6 (chatterbox's pin) predates CUDA 13; 2.13 ships cu126 and cu130 only.
TORCH_BUILDS: dict[str, tuple[str, ...]] = {
    "2.6": ("cu126",),
    "2.13": ("cu126", "cu130"),
}

_INDEX_BUILD = re.compile(r"(?P<base>.*/)cu\d{3}/?")


@dataclass(frozen=True)
class CudaChoice:
    """The build a machine gets, or ``build=None`` and the refusal in ``reason``."""

    build: str | None
    reason: str

    @property
    def refused(self) -> bool:
        return self.build is None


def parse_version(text: str | None) -> Version | None:
    """``"13.0"`` -> ``(13, 0)``; ``"8.9"`` -> ``(8, 9)``; None or junk -> None."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)*\s*", text or "")
    return (int(m[1]), int(m[2])) if m else None


def _v(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def choose_cuda_build(
    torch_version: str,
    *,
    compute_capability: Version | None,
    driver_cuda: Version | None,
    driver: str | None = None,
    gpu: str | None = None,
    forced: str | None = None,
) -> CudaChoice:
    """The CUDA build of ``torch_version`` for this machine, and why.

    Args:
        torch_version: the profile's torch pin (``2.13.0``).
        compute_capability: the GPU's, e.g. ``(9, 0)``; None without a visible GPU.
        driver_cuda: the highest CUDA version the driver supports (``nvidia-smi``'s
            "CUDA Version"), e.g. ``(13, 0)``; None without a visible GPU.
        driver: the driver's version (``580.65.06``), only for the words.
        gpu: the GPU's name, only for the words.
        forced: a build the operator asked for (``MEDIA_WORKER_CUDA_BUILD``), e.g.
            to prepare archives for another kind of machine from a Pod without a GPU.

    Returns:
        The :class:`CudaChoice`; refused when no build of this torch can run on
        this GPU with this driver (or the forced one cannot).
    """
    release = ".".join(torch_version.split("+")[0].split(".")[:2])
    published = TORCH_BUILDS.get(release)
    if published is None:
        known = ", ".join(sorted(TORCH_BUILDS))
        return CudaChoice(
            None,
            f"torch {torch_version} is not in the CUDA build table (torch {known}); "
            "add the builds PyTorch publishes for it to bootstrap/_cuda.py TORCH_BUILDS",
        )
    if forced is not None and forced not in published:
        return CudaChoice(
            None,
            f"MEDIA_WORKER_CUDA_BUILD={forced}, but torch {torch_version} is published for "
            f"{', '.join(published)} only",
        )
    if gpu is None and compute_capability is None and driver_cuda is None:
        build = forced or published[0]
        why = (
            "set by MEDIA_WORKER_CUDA_BUILD"
            if forced
            else "the build that runs on the widest range of drivers; "
            "MEDIA_WORKER_CUDA_BUILD prepares another"
        )
        return CudaChoice(build, f"no NVIDIA GPU visible: torch {torch_version} {build}, {why}")
    cc = _v(compute_capability) if compute_capability else "unknown"
    name = f"{gpu or 'NVIDIA GPU'} (compute capability {cc})"
    drv = f"driver {driver or 'unknown'} (CUDA {_v(driver_cuda) if driver_cuda else 'unknown'})"
    candidates = [forced] if forced else list(published)
    fits = [t for t in candidates if not _why_not([t], compute_capability, driver_cuda, driver)]
    if fits:
        tag = max(fits, key=lambda t: BUILDS[t].cuda)
        others = [t for t in published if t != tag]
        if forced:
            why = "set by MEDIA_WORKER_CUDA_BUILD"
        elif not others:
            why = f"the only build of torch {torch_version}"
        elif tag == published[-1]:
            why = "the newest build, and the driver runs it"
        else:
            why = _why_not(others, compute_capability, driver_cuda, driver)
        return CudaChoice(tag, f"{name}, {drv}: torch {torch_version} {tag}; {why}")
    return CudaChoice(
        None,
        f"{name}, {drv}: no CUDA build of torch {torch_version} runs here. "
        f"{_why_not(candidates, compute_capability, driver_cuda, driver)}.\n\n"
        f"hint: {_fix(published, compute_capability)}",
    )


def _why_not(
    tags: Sequence[str], cc: Version | None, driver_cuda: Version | None, driver: str | None
) -> str:
    """Why each of ``tags`` cannot run here ("" when all can). An unknown compute
    capability is assumed served (only a proc-only probe lacks it); the driver is
    judged by its CUDA version, else by its own version number."""
    reasons = []
    for tag in tags:
        build = BUILDS[tag]
        if cc is not None and not build.has_kernels_for(cc):
            reasons.append(f"{tag} has no kernels for compute capability {_v(cc)}")
        elif not _driver_runs(build, driver_cuda, driver):
            reasons.append(
                f"{tag} needs a driver supporting CUDA {_v(build.min_driver_cuda)} "
                f"({build.min_driver} or newer)"
            )
    return "; ".join(reasons)


def _driver_runs(build: CudaBuild, driver_cuda: Version | None, driver: str | None) -> bool:
    if driver_cuda is not None:
        return driver_cuda >= build.min_driver_cuda
    have, need = _numbers(driver), _numbers(build.min_driver)
    return bool(have) and have >= need


def _numbers(version: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version or ""))


def _fix(published: Sequence[str], cc: Version | None) -> str:
    serving = [BUILDS[t] for t in published if cc is None or BUILDS[t].has_kernels_for(cc)]
    if not serving:
        return (
            "this GPU needs a newer torch than the profile pins; choose other GPUs for "
            "this endpoint"
        )
    low = min(serving, key=lambda b: b.min_driver_cuda)
    return (
        f"choose hosts whose driver supports CUDA {_v(low.min_driver_cuda)} or newer "
        f"(driver {low.min_driver}+; RunPod: CUDA version {_v(low.min_driver_cuda)} or "
        "higher), or other GPUs"
    )


def with_cuda_build(profile: Profile, build: str) -> Profile:
    """``profile`` with its CUDA torch index (``…/cuNNN``) pointing at ``build``.

    Any index whose last path segment is a CUDA build is rewritten (PyTorch's,
    or a mirror laid out like it); a profile without one (an operator's
    ``MEDIA_WORKER_EXTRA_INDEX_URLS`` naming PyPI or the CPU index) is unchanged,
    since the choice then changes nothing it installs.
    """

    def point(url: str) -> str:
        m = _INDEX_BUILD.fullmatch(url)
        return f"{m['base']}{build}" if m else url

    index_url = point(profile.index_url) if profile.index_url else profile.index_url
    extra = tuple(point(u) for u in profile.extra_index_urls)
    if (index_url, extra) == (profile.index_url, profile.extra_index_urls):
        return profile
    return dataclasses.replace(profile, index_url=index_url, extra_index_urls=extra)


class MachineFacts(Protocol):
    """What the choice reads of ``runtime.machine.Machine`` (the one GPU reader)."""

    gpu: str | None
    compute_capability: str | None
    driver: str | None
    driver_cuda: str | None


def for_machine(
    profile: Profile, machine: MachineFacts, *, forced: str | None = None
) -> tuple[Profile, CudaChoice | None]:
    """``profile`` with the CUDA build this machine gets, and the choice.

    A profile that does not declare ``cuda`` is returned as is, with no choice.
    The caller refuses to go on when the choice is refused.
    """
    if not profile.cuda:
        return profile, None
    # A GPU hidden by CUDA_VISIBLE_DEVICES is no GPU: runners use the CPU.
    seen = machine.gpu is not None
    choice = choose_cuda_build(
        profile.pins["torch"],
        compute_capability=parse_version(machine.compute_capability) if seen else None,
        driver_cuda=parse_version(machine.driver_cuda) if seen else None,
        driver=machine.driver if seen else None,
        gpu=machine.gpu,
        forced=forced,
    )
    if choice.build is None:
        return profile, choice
    return with_cuda_build(profile, choice.build), choice
