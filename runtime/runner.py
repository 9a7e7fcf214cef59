"""What a runner module declares and subclasses. Stdlib only: it runs in a profile environment.

A runner module (``runners/<name>.py``) holds three things:

- ``SPECS``: a tuple of :class:`RunnerSpec`, one per (task, model) it serves. The
  registry finds every module in this package by that name; nothing else lists runners.
  The task itself (its contract fragment) is declared by a task module
  (``models/tasks/``), on the worker side: this module never imports it.
- an optional ``check(job)``, named by the spec: pre-flight validation run in the
  handler process (no model import there).
- a :class:`Runner` subclass, run in its own process with the profile's interpreter.

Example::

    class EchoRunner(Runner):
        def setup(self, weights):
            self.greeting = "hello"          # load the model once, here

        def run(self, job, ctx):
            path = ctx.scratch / "out.txt"
            path.write_text(self.greeting + job["text"])
            ctx.progress("written", 1.0)
            return [OutputFile(str(path), "text/plain")]

    SPECS = (RunnerSpec("tts", "echo", "runners.echo:EchoRunner", profile="piper"),)

``tests/models/test_new_runner.py`` serves a whole new task and runner this way
from a package outside this repository (``MEDIA_WORKER_RUNNER_PACKAGES``).

Media inputs (contract fields typed ``MediaRefField``, e.g. ``reference_audio``) are
fetched by the handler before the job reaches the runner; the runner opens the
local copy at ``ctx.inputs["reference_audio"]`` (a :class:`~pathlib.Path` inside
``ctx.scratch``). ``job["reference_audio"]`` keeps the caller's reference.

A streaming job (``job["stream"]``) also reports each finished piece of audio
as soon as it exists with ``ctx.emit_chunk(...)``; the returned outputs are
still the full result. A runner that wants to return extra result fields
(``words``) sets them in ``ctx.result``.

A runner raises ``errors.InvalidInput`` (or another ``WorkerError``) for a
problem with this job: the job fails with that code and the runner stays up. Any
other exception fails the job as ``runner_crashed``; ``MemoryError`` and an
exit end the process, and the host starts a fresh one for the next job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.protocol import Chunk, OutputFile, ProgressFn, RunnerInput


@dataclass(frozen=True)
class RunnerSpec:
    """One (task, model) a runner module serves, and what the worker needs to run it.

    Attributes:
        task: the contract task (``"tts"``, ``"clone"``...).
        model: the name callers put in ``model``.
        runner_ref: ``"package.module:Class"``, imported inside the runner process.
        profile: the ``models.profiles`` profile whose environment runs it.
        check: cheap pre-flight validation of the parsed job in the handler process
            (no ML imports); raises ``InvalidInput`` naming the field.
        knobs: the optional contract fields this model honours (e.g. ``("speed",)``);
            the others of its task are ignored by it.
        vram_mb: GPU memory the loaded model needs (0 for a CPU runner); the host
            stops idle runners to make that much free before it starts this one.
        default: when this model is its task's default (unless a setting names one):
            ``"gpu"`` on a machine with a GPU, ``"cpu"`` on one without, ``"always"``,
            or ``""`` never (asked for by name). The first matching runner wins.
        max_jobs: how many jobs of this model one GPU serves at once, measured
            (``bench/gpu.py``): the host keeps up to that many processes of the
            runner, one job each, while GPU memory allows; capped by
            ``MEDIA_WORKER_MAX_CONCURRENCY`` (default 1).
    """

    task: str
    model: str
    runner_ref: str
    profile: str
    check: Callable[[Any], None] | None = None
    knobs: tuple[str, ...] = ()
    vram_mb: int = 0
    default: str = ""
    max_jobs: int = 1


DEFAULT_RULES = ("", "gpu", "cpu", "always")


def _drop(chunk: Chunk) -> None:
    pass


@dataclass
class RunContext:
    """What a runner gets besides the job: where to write, how to report, its inputs."""

    job_id: str
    scratch: Path
    progress: ProgressFn
    inputs: Mapping[str, Path] = field(default_factory=dict)
    """Contract media field -> the fetched local file (inside ``scratch``)."""
    send_chunk: Callable[[Chunk], None] = _drop
    result: dict[str, Any] = field(default_factory=dict)
    chunks_sent: int = 0

    def emit_chunk(
        self,
        path: Path,
        *,
        content_type: str,
        format: str,
        sample_rate: int,
        offset_s: float,
        duration_s: float,
        words: list[dict[str, Any]] | None = None,
    ) -> None:
        """Report a finished, encoded piece of the output (``path`` in the scratch dir).

        Chunks are numbered in call order; call it in playing order.
        """
        self.send_chunk(
            Chunk(
                job_id=self.job_id,
                index=self.chunks_sent,
                path=str(path),
                content_type=content_type,
                format=format,
                sample_rate=sample_rate,
                offset_s=round(offset_s, 6),
                duration_s=round(duration_s, 6),
                words=words or [],
            )
        )
        self.chunks_sent += 1


class Runner:
    """Loaded once per process by ``setup()``; serves jobs with ``run()``."""

    def setup(self, weights: dict[str, str]) -> None:
        """Load the model. ``weights`` maps repo ids to local snapshot paths."""

    def run(self, job: RunnerInput, ctx: RunContext) -> list[OutputFile]:
        """Serve one job (the validated ``input`` as a dict); return the files written."""
        raise NotImplementedError
