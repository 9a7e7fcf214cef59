"""``python -m bootstrap doctor``: gather facts, then judge them with a pure function."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from bootstrap import _disk
from bootstrap._build import uv_binary
from bootstrap._profile import Profile
from bootstrap._spec import current_target
from errors import BootstrapFailed


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn", "fail"
    message: str
    fix: str = ""


@dataclass
class Facts:
    home: Path
    envs: Path
    on_volume: bool
    home_writable: bool
    home_free: int
    envs_free: int
    python: str
    platform: str
    uv: str | None
    driver_cuda: str | None  # from nvidia-smi, None without a GPU
    gpu: str | None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


def profile_cuda(profile: Profile) -> str | None:
    """The CUDA version a profile's torch needs, from its index (``.../cu126`` -> ``12.6``)."""
    for url in (profile.index_url or "", *profile.extra_index_urls):
        m = re.search(r"/cu(\d{2})(\d)\b", url)
        if m:
            return f"{int(m[1])}.{m[2]}"
    return None


def _version(v: str) -> Version:
    return Version(v)


def diagnose(
    facts: Facts, min_free: int = 2 * 1024**3, *, cli: str = "python -m bootstrap"
) -> list[Finding]:
    """Findings, worst first within each topic; fixes are ``cli`` commands. Pure."""
    out: list[Finding] = []
    where = "a volume" if facts.on_volume else "no volume (using the container disk)"
    if facts.home_writable:
        out.append(Finding("ok", f"state root {facts.home} ({where}) is writable"))
    else:
        out.append(
            Finding(
                "fail",
                f"state root {facts.home} is not writable",
                "mount the network volume, or set MEDIA_WORKER_HOME to a writable directory",
            )
        )
    for label, path, free in (
        ("volume", facts.home, facts.home_free),
        ("local disk", facts.envs, facts.envs_free),
    ):
        msg = f"{label} {path}: {free / 1024**3:.1f} GB free"
        if free < min_free:
            out.append(
                Finding(
                    "warn",
                    msg,
                    f"free space ({cli} gc) or enlarge the {label}",
                )
            )
        else:
            out.append(Finding("ok", msg))
    out.append(Finding("ok", f"python {facts.python} on {facts.platform}"))
    if facts.uv is None:
        out.append(Finding("fail", "uv not found: environments cannot be built", "pip install uv"))
    if facts.gpu is None:
        out.append(Finding("warn", "no NVIDIA GPU visible (nvidia-smi missing or failing)"))
    else:
        out.append(Finding("ok", f"GPU {facts.gpu}, driver supports CUDA {facts.driver_cuda}"))
    for name, info in sorted(facts.profiles.items()):
        need = info.get("cuda")
        if need and facts.driver_cuda and _version(facts.driver_cuda) < _version(need):
            out.append(
                Finding(
                    "fail",
                    f"profile {name}: torch is built for CUDA {need}, "
                    f"the driver supports only {facts.driver_cuda}",
                    f"pick workers whose driver allows CUDA >= {need} (RunPod: "
                    "'Allowed CUDA versions')",
                )
            )
        for problem in info.get("problems", ()):
            out.append(Finding("fail", f"profile {name}: {problem['problem']}", problem["fix"]))
        env = info.get("env", "missing")
        if env == "missing":
            out.append(
                Finding(
                    "warn",
                    f"profile {name}: no environment yet (the first job builds it)",
                    f"{cli} prepare {name}",
                )
            )
        elif env != "damaged":
            out.append(Finding("ok", f"profile {name}: environment {env}"))
        for repo, state in sorted(info.get("weights", {}).items()):
            if state != "present":
                out.append(
                    Finding(
                        "warn",
                        f"profile {name}: weights {repo} {state}",
                        f"{cli} prepare {name}",
                    )
                )
    return out


def gather(home: Path, envs: Path, on_volume: bool, profiles: dict[str, Any]) -> Facts:
    target = current_target()
    gpu, driver_cuda = _nvidia()
    return Facts(
        home=home,
        envs=envs,
        on_volume=on_volume,
        home_writable=_writable(home),
        home_free=_disk.free_bytes(home),
        envs_free=_disk.free_bytes(envs),
        python=sys.version.split()[0],
        platform=f"{target.platform} {target.libc}",
        uv=_uv_or_none(),
        driver_cuda=driver_cuda,
        gpu=gpu,
        profiles=profiles,
    )


def _uv_or_none() -> str | None:
    try:
        return uv_binary()
    except BootstrapFailed:
        return None


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".doctor-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _nvidia() -> tuple[str | None, str | None]:
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20)
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if out.returncode != 0:
        return None, None
    m = re.search(r"CUDA Version:\s*([\d.]+)", out.stdout)
    return (names.stdout.strip().splitlines() or ["unknown"])[0], m[1] if m else None


def render(findings: list[Finding]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for f in findings:
        lines.append(f"{marks[f.level]} {f.message}")
        if f.fix:
            lines.append(f"     fix: {f.fix}")
    return "\n".join(lines)
