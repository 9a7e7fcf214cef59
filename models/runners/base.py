"""The base every runner subclasses. Stdlib only: it runs in a profile environment.

Example::

    class EchoRunner(Runner):
        def setup(self, weights):
            self.greeting = "hello"          # load the model once, here

        def run(self, job, ctx):
            path = ctx.scratch / "out.txt"
            path.write_text(self.greeting + job["text"])
            ctx.progress("written", 1.0)
            return [OutputFile(str(path), "text/plain")]

A runner raises ``errors.InvalidInput`` (or another ``WorkerError``) for a
problem with this job: the job fails with that code and the runner stays up. Any
other exception fails the job as ``runner_crashed``; ``MemoryError`` and an
exit end the process, and the host starts a fresh one for the next job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.protocol import OutputFile


@dataclass(frozen=True)
class RunContext:
    """What a runner gets besides the job: where to write, how to report."""

    job_id: str
    scratch: Path
    progress: Callable[[str, float | None], None]


class Runner:
    """Loaded once per process by ``setup()``; serves jobs with ``run()``."""

    def setup(self, weights: dict[str, str]) -> None:
        """Load the model. ``weights`` maps repo ids to local snapshot paths."""

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        """Serve one job (the validated ``input`` as a dict); return the files written."""
        raise NotImplementedError
