"""Messages between the runner host (handler process) and a runner process.

A closed set of small messages, one JSON object each, sent over a
``multiprocessing.connection.Connection`` made from a pipe. JSON rather than
pickle because the two ends may run different interpreters (the runner's comes
from its profile environment). Stdlib only: a profile environment need not
carry pydantic. Big payloads (audio, video) travel as file paths inside the
job's scratch directory, never inline.

Host -> runner: ``Setup`` (once, first), ``Run`` (per job), ``Shutdown``.
Runner -> host: ``Ready`` (answers Setup), ``Progress`` and ``Chunk`` (any
number during a Run; a ``Chunk`` is a finished piece of a streaming job's
output, as a file in the scratch dir), then exactly one of ``Done`` (success),
``Failed`` (this job failed, the runner is still usable) or ``Fatal`` (the
runner is poisoned and exits; the host restarts it for the next job).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

PROTOCOL_VERSION = 3  # 2: Run.inputs; 3: Chunk


@dataclass(frozen=True)
class Setup:
    protocol: int
    runner_ref: str
    weights: dict[str, str] = field(default_factory=dict)
    type: str = "setup"


@dataclass(frozen=True)
class Run:
    job_id: str
    payload: dict[str, Any]
    scratch_dir: str
    inputs: dict[str, str] = field(default_factory=dict)  # media field -> fetched local path
    type: str = "run"


@dataclass(frozen=True)
class Shutdown:
    type: str = "shutdown"


@dataclass(frozen=True)
class Ready:
    protocol: int
    pid: int
    load_s: float
    type: str = "ready"


RunnerInput = dict[str, Any]
"""What a runner's ``run(job, ctx)`` gets as ``job``: the validated job as JSON (the
third of the three "jobs": the RunPod envelope holds the request as ``input``,
``contract.Job`` is it validated, this is what the runner process receives)."""

ProgressFn = Callable[[str, float | None], None]
"""Where progress goes, in every process: (message, fraction done or None). The
runner's ``ctx.progress``, the host's ``on_progress``, the handler's report and the
video pipeline's all have this type; the message says what is done ("synthesized
part 3/7"), the fraction how much."""


@dataclass(frozen=True)
class Progress:
    job_id: str
    message: str
    fraction: float | None = None
    type: str = "progress"


@dataclass(frozen=True)
class Chunk:
    """One finished piece of a streaming job's audio, in playing order.

    ``path`` is a complete, encoded file in the job's scratch dir (``format``,
    ``content_type``), small enough to travel to the caller inline.
    ``offset_s`` is where it starts in the full output; ``words`` are its word
    timings (``{"word", "start_s", "end_s"}``, times in the full output) when the
    job asked for timestamps.
    """

    job_id: str
    index: int
    path: str
    content_type: str
    format: str
    sample_rate: int
    offset_s: float
    duration_s: float
    words: list[dict[str, Any]] = field(default_factory=list)
    type: str = "chunk"


@dataclass(frozen=True)
class OutputFile:
    """One file a runner wrote into the scratch directory."""

    path: str
    content_type: str
    duration_s: float | None = None


@dataclass(frozen=True)
class Done:
    """The job succeeded. ``result`` holds extra result fields the runner
    computed (e.g. ``{"words": [...]}``); the handler validates them against the
    contract before they reach the caller."""

    job_id: str
    outputs: list[OutputFile]
    infer_s: float
    result: dict[str, Any] = field(default_factory=dict)
    type: str = "done"


@dataclass(frozen=True)
class Failed:
    job_id: str
    code: str
    message: str
    field: str | None = None
    type: str = "failed"


@dataclass(frozen=True)
class Fatal:
    reason: str
    type: str = "fatal"


Message = Setup | Run | Shutdown | Ready | Progress | Chunk | Done | Failed | Fatal
_BY_TYPE: dict[str, type] = {
    cls.type: cls  # type: ignore[attr-defined]
    for cls in (Setup, Run, Shutdown, Ready, Progress, Chunk, Done, Failed, Fatal)
}


class ProtocolError(ValueError):
    """A message that is not JSON or not one of the closed set."""


def encode(message: Message) -> bytes:
    return json.dumps(asdict(message), separators=(",", ":")).encode()


def decode(data: bytes) -> Message:
    """Parse one message; raises ProtocolError on anything outside the set."""
    try:
        obj = json.loads(data)
        cls = _BY_TYPE[obj.pop("type")]
        if cls is Done:
            obj["outputs"] = [OutputFile(**o) for o in obj["outputs"]]
        return cls(**obj)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"not a runner protocol message: {data[:200]!r} ({exc})") from None
