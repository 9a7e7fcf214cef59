"""``python -m bootstrap`` was the operator's command line; it is
``python -m models`` now (the command line lists the worker's profiles, so it lives
with the worker, and the bootstrapper imports nothing above it).

Kept only to say so: scripts on Pods and in image builds call it.
"""

import sys

print(
    "error: 'python -m bootstrap' is now 'python -m models' (same commands: status, "
    f"prepare, verify, gc, doctor); run: python -m models {' '.join(sys.argv[1:])}".rstrip(),
    file=sys.stderr,
)
sys.exit(2)
