"""The worker's errors: one class per contract error code.

::

    WorkerError                        code: raised when
    ├── InvalidInput (ValueError)      invalid_input: a job field is missing, wrong or out of range
    ├── FetchFailed                    fetch_failed: an input could not be fetched
    ├── UnsupportedMedia (ValueError)  unsupported_media: an input is not media we can read
    ├── ModelUnavailable               model_unavailable: no runner serves this task/model here
    ├── BootstrapFailed                bootstrap_failed: an environment or weights not prepared
    ├── RunnerCrashed                  runner_crashed: the runner process died or failed mid-job
    ├── JobTimeout (TimeoutError)      timeout: the job ran past its time limit
    └── StorageFailed                  storage_failed: an output could not be published

Only ``handler.py`` turns these into the contract's error envelope; anything else
becomes ``internal`` there, with the traceback logged and never returned.
Messages say what failed, for which item, why, and what to do next; they never
contain a secret.
"""

from __future__ import annotations

from typing import Any, ClassVar


class WorkerError(Exception):
    """Root of every error the caller may see.

    Args:
        message: one human-readable line (no traceback, no secret).
        field: the job input field at fault, when there is one.
        details: structured detail for the envelope's ``details`` list.
    """

    code: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if details is None:
            details = [{"field": field, "message": message}] if field else []
        self.details = details


def one_line(message: str) -> tuple[str, str]:
    """``message`` as the contract's one-line ``error`` and the rest, its cause. Pure.

    Many messages carry a tool's output (uv's error chain) and end with a
    ``hint:`` paragraph that says what to do. The line is the first line and the
    hint; the cause is everything between, for the envelope's ``details``.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return (lines[0] if lines else message), ""
    hints = [line.removeprefix("hint:").strip() for line in lines if line.startswith("hint:")]
    cause = [line for line in lines[1:] if not line.startswith("hint:")]
    head = lines[0].rstrip(":")
    return "; ".join([head, *hints]), "\n".join(cause)


class InvalidInput(WorkerError, ValueError):
    code = "invalid_input"


class FetchFailed(WorkerError):
    code = "fetch_failed"


class UnsupportedMedia(WorkerError, ValueError):
    code = "unsupported_media"


class ModelUnavailable(WorkerError):
    code = "model_unavailable"


class BootstrapFailed(WorkerError):
    code = "bootstrap_failed"


class RunnerCrashed(WorkerError):
    code = "runner_crashed"


class JobTimeout(WorkerError, TimeoutError):
    code = "timeout"


class StorageFailed(WorkerError):
    code = "storage_failed"


ERRORS: dict[str, type[WorkerError]] = {
    cls.code: cls
    for cls in (
        WorkerError,
        InvalidInput,
        FetchFailed,
        UnsupportedMedia,
        ModelUnavailable,
        BootstrapFailed,
        RunnerCrashed,
        JobTimeout,
        StorageFailed,
    )
}
"""Contract error code -> class; a test keeps its keys equal to ``contract.ErrorCode``."""
