"""Per-job scratch directories.

::

    <MEDIA_WORKER_SCRATCH_DIR or system temp>/
      mw-<safe job id>-<random>/     one per job, removed when the job ends
        <field>.<ext>                fetched inputs
        ...                          runner outputs

While a job's scratch directory is open, :func:`current_job_id` returns its job id,
so log lines of ``fetch`` carry ``job=<id>`` without threading it through every call.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import config

logger = logging.getLogger(__name__)

MAX_JOB_ID_CHARS = 128
# Hex digits of sha256(job id) appended when the id had to change: 96 bits, so two
# different ids meet only by a SHA-256 collision, not by any crafted spelling.
_DIGEST_CHARS = 24

_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("media_worker_job_id", default="-")
_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_job_id(job_id: str) -> str:
    """The job id as a directory name and key segment, one to one.

    An id made of ``[A-Za-z0-9._-]`` that does not start with a dot and fits in
    ``MAX_JOB_ID_CHARS`` is used as it is (RunPod's ids always are). Any other id is
    untrusted input: its unsafe characters become ``_``, leading dots go (so it can
    never name a parent directory), and ``~`` plus a digest of the original id is
    appended. ``~`` never occurs in an id used as it is, and the digest separates
    changed ids from each other, so ``a/b`` and ``a_b`` keep separate outputs.
    """
    job_id = str(job_id)
    if len(job_id) <= MAX_JOB_ID_CHARS and _SAFE.fullmatch(job_id):
        return job_id
    digest = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    readable = _UNSAFE.sub("_", job_id).lstrip(".")[: MAX_JOB_ID_CHARS - _DIGEST_CHARS - 1]
    return f"{readable or 'job'}~{digest}"


def current_job_id() -> str:
    """The job id of the innermost open :func:`scratch` in this context, else ``"-"``."""
    return _job_id.get()


@contextmanager
def scratch(job_id: str) -> Iterator[Path]:
    """A fresh directory for one job, removed on exit, success or failure.

    Args:
        job_id: the job's id (untrusted; sanitised for the directory name).

    Yields:
        The directory, under ``config.SCRATCH_DIR`` or the system temp dir. Two
        ``scratch`` calls never share a directory, even for the same job id.
    """
    base = Path(config.SCRATCH_DIR.get() or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"mw-{safe_job_id(job_id)}-", dir=base))
    token = _job_id.set(str(job_id))
    try:
        yield path
    finally:
        _job_id.reset(token)
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            # Never mask the job's own outcome; a leftover dir is only wasted disk.
            logger.warning("job=%s scratch cleanup failed path=%s error=%s", job_id, path, exc)
