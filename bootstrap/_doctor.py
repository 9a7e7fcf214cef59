"""``python -m models doctor``: gather facts, then judge them with a pure function.

The facts include whether the servers a job would need answer from here (a HEAD
request each, :func:`head`): the package indexes of the profiles that have no
environment yet, the hub when weights are not on the volume, and the hosts
artifacts are fetched from. A server no job needs is not asked.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap import _disk
from bootstrap._build import uv_binary
from bootstrap._manifest import redact_url
from bootstrap._profile import Profile
from bootstrap._spec import current_target
from bootstrap._weights import DEFAULT_ENDPOINT
from errors import BootstrapFailed
from runtime import machine
from runtime.machine import Machine

# uv's own default index, used by a profile that names no index_url.
PYPI = "https://pypi.org/simple"
PROBE_TIMEOUT_S = 3.0

# A probe: None when the URL answers, else why not, in words (never a credential).
Probe = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn", "fail"
    message: str
    fix: str = ""
    short: str = ""  # what the summary line calls a problem (default: the message)


@dataclass(frozen=True)
class Endpoint:
    """A server the next job of ``profiles`` needs, and the setting that names another."""

    kind: str  # "index", "hub" or "artifact"
    url: str  # as configured: shown only through redact_url
    profiles: tuple[str, ...]
    setting: str


@dataclass(frozen=True)
class Reach:
    endpoint: Endpoint
    error: str | None  # None: it answered


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
    reach: list[Reach] = field(default_factory=list)


def endpoints(
    profiles: Mapping[str, Profile],
    status: Mapping[str, Mapping[str, Any]],
    *,
    default_index: str = PYPI,
    hub: str = DEFAULT_ENDPOINT,
) -> list[Endpoint]:
    """The servers the next job of each profile would ask, from what ``status`` says is
    missing: its indexes and artifact hosts when its environment must be built, the hub
    when its weights are not all present. Pure; ``profiles`` as this machine builds them."""
    users: dict[tuple[str, str, str], list[str]] = {}

    def need(kind: str, url: str, setting: str, name: str) -> None:
        users.setdefault((kind, url, setting), []).append(name)

    for name, profile in sorted(profiles.items()):
        info = status.get(name, {})
        if info.get("env", "missing") in ("missing", "damaged"):
            need("index", profile.index_url or default_index, "MEDIA_WORKER_INDEX_URL", name)
            for url in profile.extra_index_urls:
                need("index", url, "MEDIA_WORKER_EXTRA_INDEX_URLS", name)
            for artifact in profile.artifacts:
                source = urllib.parse.urlsplit(artifact.fetch_from or artifact.url)
                if source.scheme in ("http", "https"):
                    origin = f"{source.scheme}://{source.netloc}"
                    need("artifact", origin, "MEDIA_WORKER_ARTIFACT_OVERRIDES", name)
        if any(state != "present" for state in info.get("weights", {}).values()):
            need("hub", hub, "HF_ENDPOINT", name)
    return [Endpoint(k, url, tuple(names), s) for (k, url, s), names in users.items()]


def _names(names: list[str] | tuple[str, ...]) -> str:
    """``profile a`` or ``profiles a, b, c``."""
    return f"profile{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or url


def _reach_finding(reach: Reach, cli: str) -> Finding:
    e = reach.endpoint
    url, who = redact_url(e.url), _names(e.profiles)
    if e.kind == "index":
        label, short = f"package index {url}", f"package index {_host(e.url)} unreachable"
        cannot, other = "build an environment", f"set {e.setting} to an index it can reach"
    elif e.kind == "hub":
        label, short = f"the hub {url}", f"hub {_host(e.url)} unreachable"
        cannot, other = "download weights", "set HF_ENDPOINT to a mirror it can reach"
    else:
        name = "GitHub" if _host(e.url) == "github.com" else "artifact host"
        label, short = f"{name} {url}", f"{name} {_host(e.url)} unreachable"
        cannot = "fetch an artifact"
        other = f"set {e.setting} to a mirror of the artifact (file=url#sha256=...)"
    if reach.error is None:
        return Finding("ok", f"{label} answers (needed by {who})")
    return Finding(
        "fail",
        f"{label} does not answer from here ({reach.error}): {who} cannot {cannot}",
        f"let this machine reach {_host(e.url)}, or {other}, or run "
        f"{cli} prepare {' '.join(e.profiles)} where it is reachable",
        short,
    )


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
                "state root not writable",
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
    out.extend(_profile_findings(facts.profiles, cli))
    out.extend(_reach_finding(r, cli) for r in facts.reach)
    return out


def _profile_findings(profiles: dict[str, dict[str, Any]], cli: str) -> list[Finding]:
    """One finding per distinct message, naming every profile it is about: a fresh
    volume says "no environment yet" once for all its profiles, not once each."""
    groups: dict[tuple[str, str, str], list[str]] = {}

    def add(level: str, message: str, fix: str, name: str) -> None:
        groups.setdefault((level, message, fix), []).append(name)

    missing_env: list[str] = []
    weights: dict[str, list[str]] = {}  # state -> profiles
    repos: dict[str, set[str]] = {}
    problems: list[Finding] = []
    for name, info in sorted(profiles.items()):
        if cuda := info.get("cuda"):  # bootstrap._cuda's choice, or its refusal
            if cuda["build"] is None:
                why, _, hint = cuda["reason"].partition("\n\nhint: ")
                add("fail", why, hint, name)
            else:
                add("ok", cuda["reason"], "", name)
        for problem in info.get("problems", ()):
            problems.append(
                Finding(
                    "fail",
                    f"profile {name}: {problem['problem']}",
                    problem["fix"],
                    f"profile {name}: archive on the volume unusable",
                )
            )
        env = info.get("env", "missing")
        if env == "missing":
            missing_env.append(name)
        elif env == "in-place":
            add(
                "ok",
                f"served in place by this interpreter ({info.get('python')}); "
                "no environment to build",
                "",
                name,
            )
        elif env != "damaged":
            add("ok", f"environment {env}", "", name)
        for repo, state in sorted(info.get("weights", {}).items()):
            if state != "present":
                if name not in weights.setdefault(state, []):
                    weights[state].append(name)
                repos.setdefault(state, set()).add(repo)
    # A refusal reads "<GPU>, driver ...: no CUDA build of torch 2.13.0 runs here. ...";
    # the summary keeps the part after the machine.
    out = [
        Finding(
            level,
            f"{_names(names)}: {message}",
            fix,
            f"{_names(names)}: {message.rsplit(': ', 1)[-1].split('. ')[0]}",
        )
        for (level, message, fix), names in groups.items()
    ]
    out.extend(problems)
    if missing_env:
        out.append(
            Finding(
                "warn",
                f"no environment yet for {_names(missing_env)} (the first job of each builds it)",
                f"{cli} prepare {' '.join(missing_env)}",
            )
        )
    for state, names in sorted(weights.items()):
        listed = f": {', '.join(sorted(repos[state]))}" if len(repos[state]) <= 3 else ""
        out.append(
            Finding(
                "warn",
                f"weights {state} for {_names(names)}{listed} (the first job of each "
                "downloads them)",
                f"{cli} prepare {' '.join(names)}",
            )
        )
    return out


def gather(
    home: Path,
    envs: Path,
    on_volume: bool,
    profiles: dict[str, Any],
    needed: list[Endpoint] | None = None,
    probe: Probe | None = None,
) -> Facts:
    """The facts of this machine; ``needed`` are asked with ``probe`` (default :func:`head`)."""
    target = current_target()
    probe, needed = probe or head, needed or []
    with ThreadPoolExecutor(max_workers=8) as pool:
        errors = list(pool.map(probe, [e.url for e in needed]))
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
        reach=[Reach(e, error) for e, error in zip(needed, errors, strict=True)],
    )


def head(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``url`` answers a HEAD request within ``timeout`` seconds, else why not.

    Any HTTP answer below 400 counts, and 405 (the server is there, HEAD is not
    allowed). A ``file://`` URL (a local index) is checked for existence. Credentials
    in the URL are sent as basic auth, as uv does, and never appear in the answer.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = urllib.parse.unquote(parts.path)
        return None if os.path.exists(path) else f"{path} does not exist"
    headers = {"User-Agent": "media-worker-doctor"}
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        parts = parts._replace(netloc=host)
    request = urllib.request.Request(urllib.parse.urlunsplit(parts), headers=headers, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code == 405:
            return None
        return f"HTTP {exc.code}" + (" (credentials?)" if exc.code in (401, 403) else "")
    except urllib.error.URLError as exc:
        return _why(exc.reason, timeout)
    except (OSError, ValueError) as exc:
        return _why(exc, timeout)


def _why(reason: object, timeout: float) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer in {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return "the name does not resolve"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed: {reason.reason or reason}"
    return str(getattr(reason, "strerror", None) or reason)


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


def summary(findings: list[Finding]) -> str:
    """The last line: how many problems (``fail``: a job would fail) and which."""
    fails = [f.short or f.message for f in findings if f.level == "fail"]
    warns = sum(f.level == "warn" for f in findings)
    tail = f" ({warns} warning{'s' if warns != 1 else ''})" if warns else ""
    if not fails:
        return f"doctor: no problems{tail}"
    s = "s" if len(fails) > 1 else ""
    return f"doctor: {len(fails)} problem{s}: {'; '.join(fails)}{tail}"


def render(findings: list[Finding]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for f in findings:
        lines.append(f"{marks[f.level]} {f.message}")
        if f.fix:
            lines.append(f"     fix: {f.fix}")
    lines.append(summary(findings))
    return "\n".join(lines)
