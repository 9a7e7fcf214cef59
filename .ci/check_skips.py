"""Skipped tests in a pytest log: how many, why, and whether CI must fail.

Usage: ``python .ci/check_skips.py <log>`` on the output of ``pytest -rs``. Prints
the number of skipped tests and each reason; exits 1 when a tier that must run on
the CI machine (S3, URL fetch, tmpfs; see tests/fixtures/tiers.py) was skipped,
since a missing tool there would otherwise pass as green.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# pytest -rs: "SKIPPED [2] tests/storage/test_s3.py:12: tier s3 not run: ..."
_SKIP_LINE = re.compile(r"^SKIPPED \[(\d+)\] (.+?): (.*)$")
_FINAL_LINE = re.compile(r"^=+ .*\b(\d+) skipped\b.* =+$")
_MUST_RUN = re.compile(r"\btier (s3|url-fetch|tmpfs) not run: ")


def skips(log: str) -> tuple[int, list[str], list[str]]:
    """``(skipped, reasons, blocking)`` from a pytest log.

    ``skipped`` comes from the final summary line (0 when it names none);
    ``reasons`` are the ``-rs`` lines; ``blocking`` those of a must-run tier.
    """
    lines = log.splitlines()
    finals = [m for line in lines if (m := _FINAL_LINE.match(line))]
    skipped = int(finals[-1].group(1)) if finals else 0
    reasons = [line for line in lines if _SKIP_LINE.match(line)]
    blocking = [line for line in reasons if _MUST_RUN.search(line)]
    return skipped, reasons, blocking


def main(argv: list[str]) -> int:
    skipped, reasons, blocking = skips(Path(argv[1]).read_text(errors="replace"))
    print(f"skipped tests: {skipped}")
    for line in reasons:
        print(f"  {line}")
    if blocking:
        print("FAIL: a tier that must run here was skipped (install the tool it names):")
        for line in blocking:
            print(f"  {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
