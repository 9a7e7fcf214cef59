"""How long until ``runpod.serverless.start()`` is reached, ours vs the SDK alone.

Side by side, medians of fresh interpreters:
  sdk   ``python -c "import runpod"``: the floor any RunPod worker pays;
  ours  ``python -c "import handler"``: everything handler.py imports before start().
The last line is ``startup_ratio=<ours/sdk>``.

Usage: python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _median_s(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bare = _median_s("pass", args.runs)
    sdk = _median_s("import runpod", args.runs)
    ours = _median_s("import handler", args.runs)
    print(f"{'what':<40}{'median_s':>10}")
    print(f"{'python -c pass (interpreter)':<40}{bare:>10.3f}")
    print(f"{'python -c import runpod (sdk)':<40}{sdk:>10.3f}")
    print(f"{'python -c import handler (ours)':<40}{ours:>10.3f}")
    print(f"{'ours minus sdk':<40}{ours - sdk:>10.3f}")
    print(f"startup_ratio={ours / sdk:.3f}")


if __name__ == "__main__":
    main()
