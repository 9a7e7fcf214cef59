"""``python -m models doctor``: gather facts, then judge them with a pure function."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap import _disk
from bootstrap._build import uv_binary
from bootstrap._spec import current_target
from errors import BootstrapFailed
from runtime import machine
from runtime.machine import Machine


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
    machine: Machine  # runtime.machine's facts: GPU, driver, CUDA
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


def diagnose(
    facts: Facts, min_free: int = 2 * 1024**3, *, cli: str = "python -m models"
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
    gpu = facts.machine
    if gpu.has_gpu:
        out.append(Finding("ok", f"{gpu.describe()}; driver supports CUDA {gpu.driver_cuda}"))
    elif gpu.driver:
        out.append(
            Finding(
                "warn",
                f"NVIDIA driver {gpu.driver} is loaded but CUDA_VISIBLE_DEVICES hides every "
                "GPU: runners use the CPU, and per-machine profiles are built for the CPU "
                "(whisper without cuBLAS: another spec hash than on a GPU)",
                "unset CUDA_VISIBLE_DEVICES (or name a GPU) to use it",
            )
        )
    else:
        out.append(
            Finding(
                "warn",
                "no NVIDIA GPU visible (no NVML, nvidia-smi or /proc/driver/nvidia): runners "
                "use the CPU, and per-machine profiles are built for the CPU",
            )
        )
    for name, info in sorted(facts.profiles.items()):
        if cuda := info.get("cuda"):  # bootstrap._cuda's choice, or its refusal
            if cuda["build"] is None:
                why, _, hint = cuda["reason"].partition("\n\nhint: ")
                out.append(Finding("fail", f"profile {name}: {why}", hint))
            else:
                out.append(Finding("ok", f"profile {name}: {cuda['reason']}"))
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
        elif env == "in-place":
            out.append(
                Finding(
                    "ok",
                    f"profile {name}: served in place by this interpreter "
                    f"({info.get('python')}); no environment to build",
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
        machine=machine.probe(),
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


def render(findings: list[Finding]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for f in findings:
        lines.append(f"{marks[f.level]} {f.message}")
        if f.fix:
            lines.append(f"     fix: {f.fix}")
    return "\n".join(lines)
