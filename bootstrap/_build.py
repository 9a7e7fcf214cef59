"""Build a profile's environment: a relocatable venv made with uv, then a smoke check.

uv does the resolving, downloading and installing (and caches wheels, so a
rebuild is seconds); this module only assembles its command lines, picks the
flash-attn wheel, and turns failures into messages that say what to do.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import config
from bootstrap import _artifacts, _flash_attn
from bootstrap._profile import Profile, normalize_name, requirement_name
from bootstrap._spec import Target
from errors import BootstrapFailed
from runtime import machine

logger = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 1800.0
SMOKE_TIMEOUT_S = 300.0
_TAIL = 1500
NO_TORCH = "the profile has no torch; no attention backend applies"


def uv_binary() -> str:
    """The uv executable: the one installed with this interpreter, else PATH."""
    try:
        from uv import find_uv_bin  # the uv wheel ships its binary

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found is None:
        raise BootstrapFailed(
            "cannot build environments: the uv executable was not found.\n\n"
            "hint: pip install uv (it is a dependency of media-worker)"
        )
    return found


def uv_version() -> str:
    try:
        out = subprocess.run(
            [uv_binary(), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env=_build_environ(),
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uv unknown"


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL else "…" + text[-_TAIL:]


def _build_environ() -> dict[str, str]:
    """What uv and the new interpreter see: the allow-list, without PYTHONPATH (the
    worker's own modules must not leak into the environment being built)."""
    env = config.child_environ(build=True)
    env.pop("PYTHONPATH", None)
    return env


def _run(
    cmd: list[str], *, what: str, profile: str, timeout: float, indexes: tuple[str, ...] = ()
) -> str:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_build_environ()
        )
    except subprocess.TimeoutExpired:
        raise BootstrapFailed(
            f"profile {profile}: {what} did not finish in {timeout:.0f} s"
        ) from None
    if done.returncode != 0:
        hint = unreachable_index_hint(done.stderr, indexes)
        raise BootstrapFailed(
            f"profile {profile}: {what} failed (exit {done.returncode}):\n{_tail(done.stderr)}"
            + (f"\n\nhint: {hint}" if hint else "")
        )
    return done.stdout


def unreachable_index_hint(stderr: str, indexes: tuple[str, ...]) -> str | None:
    """What to do when uv could not reach one of the profile's package indexes. Pure.

    The common case: a machine without a GPU (a laptop, CI) and without access to
    PyTorch's CUDA index, where PyPI's own torch would run on its CPU.
    """
    if "Failed to fetch" not in stderr and "error sending request" not in stderr:
        return None
    for url in indexes:
        host = url.split("://", 1)[-1].split("/", 1)[0]
        if host and host in stderr:
            return (
                f"the package index {url} cannot be reached from here; give the worker "
                f"access to it, or on a machine without a GPU set "
                f"MEDIA_WORKER_EXTRA_INDEX_URLS=https://pypi.org/simple (PyPI's torch "
                f"runs on a CPU; docs/tasks/clone.md)"
            )
    return None


def _install_args(profile: Profile) -> list[str]:
    args: list[str] = []
    if profile.index_url:
        args += ["--index-url", profile.index_url]
    for url in profile.extra_index_urls:
        args += ["--extra-index-url", url]
    if profile.extra_index_urls:
        # torch from the CUDA index must win over PyPI's build of the same version
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def build(
    profile: Profile,
    dest: Path,
    *,
    target: Target,
    checkpoint: Callable[[str], None],
    artifact_store: Path,
) -> tuple[str, str]:
    """Create the venv at ``dest``, install, smoke-check. Returns ``(attention, reason)``.

    Wheel artifacts are installed in the same uv call as the requirements (so
    their dependencies resolve together); source artifacts are unpacked after.

    Raises:
        BootstrapFailed: a download, uv or the smoke check failed; the message
            carries the tail of their error output.
    """
    uv = uv_binary()
    local = {a: _artifacts.fetch_artifact(a, artifact_store) for a in profile.artifacts}
    _run(
        [uv, "venv", "--quiet", "--relocatable", "--python", sys.executable, str(dest)],
        what="creating the venv (uv venv)",
        profile=profile.name,
        timeout=300,
    )
    python = dest / "bin" / "python"
    install = [uv, "pip", "install", "--quiet", "--python", str(python), *_install_args(profile)]
    wheels = [str(path) for a, path in local.items() if a.kind == "wheel"]
    if profile.excludes:
        excludes = dest / ".excludes.txt"  # uv reads them from a file only
        excludes.write_text("".join(f"{name}\n" for name in profile.excludes))
        install += ["--excludes", str(excludes)]
    if profile.overrides:
        overrides = dest / ".overrides.txt"  # uv reads them from a file only
        wanted = {normalize_name(name) for name in profile.overrides}
        overrides.write_text(
            "".join(f"{r}\n" for r in profile.requirements if requirement_name(r) in wanted)
        )
        install += ["--overrides", str(overrides)]
    _run(
        [*install, *profile.requirements, *wheels],
        what="installing the requirements (uv pip install)",
        profile=profile.name,
        timeout=INSTALL_TIMEOUT_S,
        indexes=tuple(u for u in (profile.index_url, *profile.extra_index_urls) if u),
    )
    for artifact, path in local.items():
        if artifact.kind == "source":
            _artifacts.install_source(artifact, path, dest)
    checkpoint("install")
    attention, reason = _attention(profile, python, uv=uv, target=target)
    smoke(profile, python)
    if profile.cuda:
        check_cuda(profile, python)
    return attention, reason


def smoke(profile: Profile, python: Path) -> None:
    """Import the profile's smoke modules with ``python`` (isolated mode)."""
    if not profile.smoke_imports:
        return
    code = "; ".join(f"import {m}" for m in profile.smoke_imports)
    _run(
        [str(python), "-I", "-c", code],
        what=f"the smoke check ({code})",
        profile=profile.name,
        timeout=SMOKE_TIMEOUT_S,
    )


_CUDA_PROBE = (
    "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, "
    "torch.cuda.is_available()]))"
)


def cuda_verdict(
    driver: str | None, torch_version: str, torch_cuda: str | None, cuda_available: bool
) -> str | None:
    """Why a built torch cannot serve this machine's GPU, or None when it is fine.

    Pure. No visible driver (a CPU machine, or a build Pod without a GPU) is fine:
    the runner then uses the CPU.
    """
    if driver is None or cuda_available:
        return None
    if torch_cuda is None:
        return (
            f"torch {torch_version} is a CPU-only build, but this machine has an NVIDIA "
            f"driver ({driver}); the profile's CUDA index was not used.\n\n"
            "hint: check MEDIA_WORKER_EXTRA_INDEX_URLS / MEDIA_WORKER_INDEX_URL"
        )
    return (
        f"torch {torch_version} is built for CUDA {torch_cuda}, but torch.cuda.is_available() "
        f"is False with NVIDIA driver {driver}: the driver is older than CUDA {torch_cuda} "
        "needs (the 'CUDA driver mismatch' crash loop).\n\n"
        "hint: raise the endpoint's allowed CUDA versions (hub.json allowedCudaVersions) "
        "to at least the image's CUDA floor, or pick GPUs whose hosts run a newer driver"
    )


def check_cuda(profile: Profile, python: Path) -> None:
    """Fail the build, in words, when the driver is visible but torch cannot use it."""
    facts = machine.probe()
    if not facts.has_gpu:  # no GPU for this process: the runner uses the CPU
        return
    driver = facts.driver or "unknown"
    out = _run(
        [str(python), "-I", "-c", _CUDA_PROBE],
        what="probing torch.cuda",
        profile=profile.name,
        timeout=SMOKE_TIMEOUT_S,
    )
    version, cuda, available = json.loads(out.strip().splitlines()[-1])
    if why := cuda_verdict(driver, version, cuda, available):
        raise BootstrapFailed(f"profile {profile.name}: {why}")


_TORCH_PROBE = (
    "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, "
    "bool(torch._C._GLIBCXX_USE_CXX11_ABI)]))"
)


def _attention(profile: Profile, python: Path, *, uv: str, target: Target) -> tuple[str, str]:
    if "torch" not in profile.pins:
        return "none", NO_TORCH
    if profile.flash_attn is None:
        return "sdpa", "the profile does not ask for flash-attn"
    out = _run(
        [str(python), "-I", "-c", _TORCH_PROBE],
        what="reading the installed torch build",
        profile=profile.name,
        timeout=SMOKE_TIMEOUT_S,
    )
    torch_version, cuda, abi = json.loads(out.strip().splitlines()[-1])
    cuda_major = int(cuda.split(".")[0]) if cuda else None
    wheel, why = _flash_attn.choose_flash_attn_wheel(
        profile.flash_attn,
        torch_version,
        cuda_major,
        abi,
        target.abi,
        target.platform.replace("-", "_").replace(".", "_"),
    )
    if wheel is None:
        logger.warning("profile %s attention=sdpa: %s", profile.name, why)
        return "sdpa", why
    try:
        url = _flash_attn.wheel_url(profile.flash_attn, wheel)
        _run(
            [uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps", url],
            what=f"installing {wheel}",
            profile=profile.name,
            timeout=INSTALL_TIMEOUT_S,
        )
        _run(
            [str(python), "-I", "-c", "import flash_attn, flash_attn_2_cuda"],
            what="importing flash_attn",
            profile=profile.name,
            timeout=SMOKE_TIMEOUT_S,
        )
    except BootstrapFailed as exc:
        reason = f"{wheel} unusable, using sdpa: {exc.message.splitlines()[-1][:300]}"
        logger.warning("profile %s attention=sdpa: %s", profile.name, reason)
        subprocess.run(
            [uv, "pip", "uninstall", "--quiet", "--python", str(python), "flash-attn"],
            capture_output=True,
            timeout=300,
            env=_build_environ(),
        )
        return "sdpa", reason
    return "flash_attn", why
