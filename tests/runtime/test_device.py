"""runtime.device: one answer to "which torch device", torch imported only when asked.

The test venv has no torch (the runner profiles do), so the answers are checked
against a stand-in module; the slow runner tests call the helper with real torch
(a CPU build: tests/runners/test_upscale.py).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

from runtime.device import torch_device

ROOT = Path(__file__).resolve().parents[2]

no_real_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is not None,
    reason="a real torch is importable here: the stand-in would hide it",
)


def _torch_reporting(cuda: bool) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_available=lambda: cuda)  # type: ignore[attr-defined]
    return torch


def test_importing_it_imports_no_torch():
    # runner modules import it at their top, and the worker imports runner modules
    code = "import sys, runtime.device; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@no_real_torch
@pytest.mark.parametrize(("cuda", "device"), [(True, "cuda"), (False, "cpu")])
def test_the_device_is_cuda_only_when_torch_can_use_it(monkeypatch, cuda, device):
    monkeypatch.setitem(sys.modules, "torch", _torch_reporting(cuda))
    assert torch_device() == device


def test_without_torch_it_fails_instead_of_guessing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as in an interpreter without torch
    with pytest.raises(ImportError):
        torch_device()
