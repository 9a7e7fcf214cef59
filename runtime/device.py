"""Which torch device a runner computes on: ``"cuda"`` or ``"cpu"``.

Called in runner processes (from ``setup()``), where it asks the torch the runner's
profile installed. It lives in ``runtime/``, stdlib at import like the rest of it, so a
runner module may import it at its top (the worker imports runner modules too) and
every torch runner asks the same question the same way; torch is imported only when
it is called.

It differs from :mod:`runtime.machine` on purpose. The machine's facts say what the
hardware and driver offer (read without torch, in the worker too, for decisions
such as the default model or the CUDA build to install); this says whether *this*
torch can use a GPU, which a CPU build of torch, a driver too old for its CUDA, or
``CUDA_VISIBLE_DEVICES`` hiding every GPU answers with ``"cpu"`` on a GPU machine.
"""

from __future__ import annotations


def torch_device() -> str:
    """``"cuda"`` when torch can use a CUDA GPU in this process, else ``"cpu"``.

    Imports torch (the caller's profile must have it).
    """
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
