"""How long a weights download takes to fail when the hub does not answer, side by side:

  raw   huggingface_hub's own call (``HfApi.list_repo_tree``), with its retries;
  ours  ``bootstrap._weights.ensure_weights``, which asks once, bounded by
        MEDIA_WORKER_HUB_TIMEOUT_S, before any hub call.

Two hubs: a closed port (connection refused) and a silent one (accepts, never answers;
ours waits the setting, 10 s by default). The last line is ``hub_fail_ratio=<ours/raw>``
for the refused hub.

Usage: python bench/hub_unreachable.py
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bootstrap import Weights, _weights  # noqa: E402
from errors import BootstrapFailed  # noqa: E402

PIN = Weights("bench/unreachable-model", "e" * 40, ("*.safetensors",))


def _raw(endpoint: str) -> float:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=False)
    started = time.perf_counter()
    with contextlib.suppress(Exception):  # any failure ends the timing; it is the point
        list(api.list_repo_tree(PIN.repo_id, revision=PIN.revision))
    return time.perf_counter() - started


def _ours(endpoint: str, home: Path) -> float:
    os.environ["HF_ENDPOINT"] = endpoint
    started = time.perf_counter()
    with contextlib.suppress(BootstrapFailed):
        _weights.ensure_weights(
            [PIN], hf_home=home / "hf", cached_models=home / "none", on_progress=lambda _m: None
        )
    return time.perf_counter() - started


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the client's retry lines, not the figures
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as closed, socket.socket() as silent:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        quiet = f"http://127.0.0.1:{silent.getsockname()[1]}"
        raw_refused, ours_refused = _raw(refused), _ours(refused, Path(tmp))
        print(f"refused hub: raw {raw_refused:.2f} s, ours {ours_refused:.2f} s")
        ours_quiet = _ours(quiet, Path(tmp))
        print(f"silent hub:  ours {ours_quiet:.2f} s (MEDIA_WORKER_HUB_TIMEOUT_S)")
        print(f"hub_fail_ratio={ours_refused / raw_refused:.3f}")


if __name__ == "__main__":
    main()
