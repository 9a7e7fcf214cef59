"""The machine this process runs on: the one reader of GPU facts.

Everything that asks "is there a GPU, which one, how much memory is free, what
CUDA does the driver allow, can it encode H.264" asks this module; nothing else
reads ``/proc/driver/nvidia``, runs ``nvidia-smi`` or calls NVML. The static
facts are read once per process (:func:`probe`, cached) into a frozen
:class:`Machine`; free memory changes, so :func:`free_mb` reads it afresh.

Where the facts come from, first that answers wins:

1. NVML through ``pynvml`` (nvidia-ml-py) when it is importable: no subprocess.
2. ``nvidia-smi`` (the NVIDIA container runtime mounts it wherever a GPU is).
3. ``/proc/driver/nvidia`` (the kernel driver: name and driver version only).

``CUDA_VISIBLE_DEVICES`` is honoured here and only here: empty or ``-1`` hides
every GPU (the driver's facts stay, ``gpu`` is None), otherwise its first entry
(an index or a ``GPU-``/``MIG-`` UUID) names the device runners use. NVML and
nvidia-smi number devices in PCI bus order; CUDA does so only with
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so on a machine with several different GPUs
set that for the index to mean the same device to both.

Stdlib only (plus ``config``): runner processes import it from a profile
environment. Decisions that depend on the machine take a :class:`Machine` as an
argument, so tests feed them facts without touching this machine.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CPU", "Machine", "free_mb", "probe", "read", "visible_devices"]

_NVIDIA_SMI_TIMEOUT_S = 20
_PROC = Path("/proc/driver/nvidia")
# nvidia-smi --query-gpu fields, in this order; compute_cap needs driver 510+.
_SMI_FIELDS = ("index", "uuid", "name", "memory.total", "memory.free", "driver_version")


@dataclass(frozen=True)
class Machine:
    """What this process can use. ``gpu`` None means: run on the CPU.

    Attributes:
        gpu: the name of the GPU runners use (the first visible one), or None.
        gpu_count: how many GPUs are visible to this process.
        compute_capability: ``"9.0"`` for a Hopper GPU; None when unknown.
        total_mb, free_mb: the GPU's memory in MiB when probed; None when unknown.
        driver: the NVIDIA driver version (also when CUDA_VISIBLE_DEVICES hides the GPUs).
        driver_cuda: the newest CUDA version that driver supports, ``"13.0"``.
        nvenc: whether the GPU has an H.264 encoder; None when nothing said (try it).
        source: where the facts came from: ``nvml``, ``nvidia-smi``, ``proc`` or ``none``.
    """

    gpu: str | None = None
    gpu_count: int = 0
    compute_capability: str | None = None
    total_mb: int | None = None
    free_mb: int | None = None
    driver: str | None = None
    driver_cuda: str | None = None
    nvenc: bool | None = None
    source: str = "none"

    @property
    def has_gpu(self) -> bool:
        return self.gpu is not None

    def describe(self) -> str:
        """One line for logs and the doctor."""
        if self.gpu is None:
            hidden = (
                f" (driver {self.driver}; hidden by CUDA_VISIBLE_DEVICES)" if self.driver else ""
            )
            return f"no GPU{hidden}"
        parts = [f"GPU {self.gpu}"]
        if self.compute_capability:
            parts.append(f"sm {self.compute_capability}")
        if self.free_mb is not None and self.total_mb is not None:
            parts.append(f"{self.free_mb}/{self.total_mb} MiB free")
        parts.append(f"driver {self.driver or 'unknown'}")
        if self.driver_cuda:
            parts.append(f"CUDA {self.driver_cuda}")
        return ", ".join(parts) + f" (from {self.source})"


CPU = Machine()
"""A machine without a GPU: what a CPU-only build and CPU-only tests assume."""


# --- pure decisions --------------------------------------------------------------------


def visible_devices(env: Mapping[str, str]) -> tuple[str, ...] | None:
    """``CUDA_VISIBLE_DEVICES`` read as CUDA reads it. Pure.

    Returns:
        None when unset (every GPU is visible), ``()`` when it hides them all
        (empty, ``-1``, or a first entry CUDA would reject), else the entries in order.
    """
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    entries = tuple(e.strip() for e in raw.split(","))
    # CUDA stops at the first invalid entry; a negative index is the documented "none".
    kept: list[str] = []
    for entry in entries:
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        kept.append(entry)
    return tuple(kept)


def pick(devices: list[dict[str, str]], visible: tuple[str, ...] | None) -> list[dict[str, str]]:
    """The devices this process sees, in its order, from all of the machine's. Pure.

    ``devices`` rows carry ``index`` and ``uuid`` (as nvidia-smi and NVML name them).
    """
    if visible is None:
        return devices
    out = []
    for entry in visible:
        match = [
            d
            for d in devices
            if d.get("index") == entry or (d.get("uuid") and d["uuid"].startswith(entry))
        ]
        if not match:  # CUDA stops at an entry naming no device
            break
        out.extend(m for m in match if m not in out)
    return out


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def parse_nvidia_smi(
    query_csv: str, banner: str, visible: tuple[str, ...] | None, *, compute_cap: bool
) -> Machine | None:
    """Facts from ``nvidia-smi --query-gpu=...`` CSV and the plain ``nvidia-smi`` banner. Pure.

    Returns None when the output names no device and no driver (not an NVIDIA machine).
    """
    fields = (*_SMI_FIELDS, "compute_cap") if compute_cap else _SMI_FIELDS
    rows = []
    for line in query_csv.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == len(fields):
            rows.append(dict(zip(fields, cells, strict=True)))
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    driver = rows[0]["driver_version"] if rows else None
    if driver is None:
        found = re.search(r"Driver Version:\s*([\d.]+)", banner)
        driver = found[1] if found else None
    if not rows and driver is None:
        return None
    seen = pick(rows, visible)
    first = seen[0] if seen else {}
    cc = first.get("compute_cap") or None
    return Machine(
        gpu=first.get("name") or None,
        gpu_count=len(seen),
        compute_capability=cc if cc and cc != "[N/A]" else None,
        total_mb=_int(first.get("memory.total")),
        free_mb=_int(first.get("memory.free")),
        driver=driver,
        driver_cuda=cuda[1] if cuda else None,
        source="nvidia-smi",
    )


def parse_proc(
    version_text: str, gpus: list[tuple[str, str]], visible: tuple[str, ...] | None
) -> Machine:
    """Facts from ``/proc/driver/nvidia/version`` and each ``gpus/<bus>/information``. Pure.

    ``gpus`` is (bus id, information text) in bus order; the driver numbers them so.
    """
    found = re.search(r"Kernel Module\s+([\d.]+)", version_text)
    rows = []
    for number, (_bus, info) in enumerate(gpus):
        model = re.search(r"^Model:\s*(.+)$", info, re.MULTILINE)
        uuid = re.search(r"^GPU UUID:\s*(\S+)", info, re.MULTILINE)
        rows.append(
            {
                "index": str(number),
                "uuid": uuid[1] if uuid else "",
                "name": model[1].strip() if model else "NVIDIA GPU",
            }
        )
    seen = pick(rows, visible)
    return Machine(
        gpu=seen[0]["name"] if seen else None,
        gpu_count=len(seen),
        driver=found[1] if found else None,
        source="proc",
    )


# --- reading the machine ---------------------------------------------------------------


def _smi(smi: str, *args: str) -> str | None:
    import config

    try:
        done = subprocess.run(
            [smi, *args],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            env=config.child_environ(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read_smi(smi: str, visible: tuple[str, ...] | None) -> Machine | None:
    fmt = "--format=csv,noheader,nounits"
    query = _smi(smi, f"--query-gpu={','.join((*_SMI_FIELDS, 'compute_cap'))}", fmt)
    compute_cap = query is not None
    if query is None:  # a driver older than 510 has no compute_cap field
        query = _smi(smi, f"--query-gpu={','.join(_SMI_FIELDS)}", fmt)
    banner = _smi(smi) or ""
    if query is None and not banner:
        return None
    return parse_nvidia_smi(query or "", banner, visible, compute_cap=compute_cap)


def _read_proc(proc: Path, visible: tuple[str, ...] | None) -> Machine | None:
    try:
        version = (proc / "version").read_text()
    except OSError:
        return None
    gpus = []
    try:
        for bus in sorted((proc / "gpus").iterdir()):
            try:
                gpus.append((bus.name, (bus / "information").read_text()))
            except OSError:
                gpus.append((bus.name, ""))
    except OSError:
        pass
    return parse_proc(version, gpus, visible)


def _nvml() -> Any | None:
    try:
        import pynvml  # nvidia-ml-py: optional, the worker image does not need it

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # not installed, no driver library, no device
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_handles(nvml: Any, visible: tuple[str, ...] | None) -> list[Any]:
    rows = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        rows.append({"index": str(i), "uuid": _text(nvml.nvmlDeviceGetUUID(handle)), "h": handle})
    return [row["h"] for row in pick(rows, visible)]


def _read_nvml(nvml: Any, visible: tuple[str, ...] | None) -> Machine:
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = nvml.nvmlSystemGetCudaDriverVersion()  # 13000 -> "13.0"
        handles = _nvml_handles(nvml, visible)
        if not handles:
            return Machine(
                driver=driver, driver_cuda=f"{cuda // 1000}.{cuda % 1000 // 10}", source="nvml"
            )
        first = handles[0]
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(first)
        memory = nvml.nvmlDeviceGetMemoryInfo(first)
        try:
            nvenc: bool | None = nvml.nvmlDeviceGetEncoderCapacity(first, 0) > 0  # 0: H.264
        except nvml.NVMLError_NotSupported:  # H100/H200 have no NVENC
            nvenc = False
        except Exception:
            nvenc = None
        return Machine(
            gpu=_text(nvml.nvmlDeviceGetName(first)),
            gpu_count=len(handles),
            compute_capability=f"{major}.{minor}",
            total_mb=int(memory.total) // 2**20,
            free_mb=int(memory.free) // 2**20,
            driver=driver,
            driver_cuda=f"{cuda // 1000}.{cuda % 1000 // 10}",
            nvenc=nvenc,
            source="nvml",
        )
    finally:
        nvml.nvmlShutdown()


def read(
    env: Mapping[str, str] | None = None,
    *,
    use_nvml: bool = True,
    nvidia_smi: str | None = None,
    proc: Path = _PROC,
) -> Machine:
    """Read the machine now (uncached; :func:`probe` is the cached call).

    Args:
        env: where ``CUDA_VISIBLE_DEVICES`` is read (default ``os.environ``).
        use_nvml: try NVML first (tests turn it off to exercise the other sources).
        nvidia_smi: the ``nvidia-smi`` to run; default the one on ``PATH``.
        proc: the kernel driver's ``/proc`` directory.
    """
    visible = visible_devices(os.environ if env is None else env)
    if use_nvml and (nvml := _nvml()) is not None:
        try:
            return _read_nvml(nvml, visible)
        except Exception:  # a driver/NVML mismatch: the command line may still answer
            pass
    smi = nvidia_smi or shutil.which("nvidia-smi")
    if smi is not None and (facts := _read_smi(smi, visible)) is not None:
        return facts
    return _read_proc(proc, visible) or CPU


@functools.cache
def probe() -> Machine:
    """This process's machine, read once (the first call costs up to one nvidia-smi run)."""
    return read()


def free_mb() -> int | None:
    """Free memory of the GPU runners use, in MiB, read now; None without a visible GPU.

    One NVML call, or one ``nvidia-smi`` query, per call: the host asks before
    each runner start, and other processes' use of the GPU changes it.
    """
    if not probe().has_gpu:
        return None
    visible = visible_devices(os.environ)
    if (nvml := _nvml()) is not None:
        try:
            handles = _nvml_handles(nvml, visible)
            return int(nvml.nvmlDeviceGetMemoryInfo(handles[0]).free) // 2**20 if handles else None
        except Exception:
            pass
        finally:
            nvml.nvmlShutdown()
    smi = shutil.which("nvidia-smi")
    out = smi and _smi(smi, "--query-gpu=index,uuid,memory.free", "--format=csv,noheader,nounits")
    if not out:
        return None
    return parse_free_mb(out, visible)


def parse_free_mb(query_csv: str, visible: tuple[str, ...] | None) -> int | None:
    """Free MiB of the first visible GPU in ``nvidia-smi --query-gpu=index,uuid,memory.free``
    CSV; None when it names none. Pure."""
    rows = []
    for line in query_csv.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == 3:
            rows.append({"index": cells[0], "uuid": cells[1], "free": cells[2]})
    seen = pick(rows, visible)
    return _int(seen[0]["free"]) if seen else None
