"""RunPod entry point: job -> validate -> fetch -> ensure -> run -> publish -> result.

The one rule of this file: it imports no torch and no model library, so
``runpod.serverless.start()`` is reached within moments of process start. Models
run in runner processes (``models.host``); their environments are prepared by
``bootstrap`` after start, on the first job that needs them (or in the
background for the profiles named in ``MEDIA_WORKER_PREPARE``).

Works in every mode of the runpod SDK: the platform, ``python handler.py``
(reads ``test_input.json``), ``python handler.py --test_input '{...}'`` and
``python handler.py --rp_serve_api``.

Two endpoint shapes, chosen at start by ``MEDIA_WORKER_STREAMING`` (the runpod
SDK decides streaming by the handler's type, for every job, not per job):

- plain (default): ``handler`` returns the result (or the error envelope);
  ``"stream": true`` is ``invalid_input``.
- streaming: ``stream_handler`` is a generator started with
  ``return_aggregate_stream``: a ``"stream": true`` job yields one StreamChunk
  per finished piece of audio, and every job ends with its StreamFinal (the
  full published result) or its error envelope, which the SDK turns into a
  FAILED job keeping the error line on the platform (runpod-python #397: it
  streams no exceptions by itself). The SDK's local API answers COMPLETED with
  the envelope as the last item; its ``--test_input`` mode gets
  ``drained_stream_handler`` (docs/tasks/tts.md, Streaming).

Concurrency: ``MEDIA_WORKER_MAX_CONCURRENCY`` (default 1: one job at a time) caps
how many jobs one worker serves at once; the SDK's ``concurrency_modifier`` asks the
runner host, which counts what the loaded models can serve (a runner's declared
``max_jobs``, as far as free GPU memory allows; see ``models.host``). The SDK runs
a synchronous handler on its event loop, where a second job would wait for the
first, so the SDK gets coroutine wrappers that run each job in a thread of its own.
What runs beside jobs is the background prepare thread: readiness is per profile
(``models.environments``), so a job for a ready profile never waits on another
profile's build.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import dataclasses
import functools
import json
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The SDK logs whole jobs (s3Config secrets included) at DEBUG, its default.
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

import runpod
from runpod.serverless.modules import worker_state

import config
import storage
from errors import InvalidInput, WorkerError, one_line
from models import contract, jobs, registry
from models.contract import Envelope
from models.environments import Environments
from models.host import RunnerHost
from models.tasks.base import Prepared
from runtime import atomic
from runtime import protocol as p

logger = logging.getLogger("handler")


class Worker:
    """What jobs are served with: the runner host (warm runner processes) and the
    environments (per-profile readiness).

    The process serves with one, made at import; ``current()`` is it. Tests and
    benches serve with their own: ``with Worker(environments).installed():`` makes it
    current until the block ends, then stops its runners.
    """

    def __init__(self, environments: Environments | None = None) -> None:
        self.host = RunnerHost()
        self.environments = environments if environments is not None else Environments()

    @contextmanager
    def installed(self) -> Iterator[Worker]:
        global _current
        previous, _current = _current, self
        try:
            yield self
        finally:
            _current = previous
            self.host.shutdown()


_current = Worker()


def current() -> Worker:
    """The worker jobs are served with now."""
    return _current


# RunPod's limit on one streamed item; each chunk's base64 must stay under it.
MAX_STREAM_ITEM_BYTES = 1_000_000
ChunkSink = Callable[[p.Chunk], None]


def _progress(envelope: Envelope, job_id: str, message: str, fraction: float | None) -> None:
    logger.info("job=%s progress %s", job_id, message)
    if not worker_state.IS_LOCAL_TEST:
        update: dict[str, Any] = {"message": message}
        if fraction is not None:
            update["fraction"] = round(fraction, 3)
        runpod.serverless.progress_update(envelope, update)


def _concurrency(taking: int) -> int:
    """The SDK's ``concurrency_modifier``: how many jobs this worker takes at once."""
    return current().host.capacity(config.MAX_CONCURRENCY.get())


# One thread per job in flight (the SDK takes at most the concurrency, which the
# setting's ceiling caps), plus one per streaming job's generator step.
_JOB_THREADS = ThreadPoolExecutor(
    max_workers=2 * config.CONCURRENCY_CEILING, thread_name_prefix="job"
)
_END = object()


async def _handle_async(job: dict[str, Any]) -> dict[str, Any]:
    """``handler`` in a thread, so the SDK's event loop can run other jobs meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(_JOB_THREADS, handler, job)


async def _stream_async(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """``stream_handler``, each item waited for in a thread (see ``_handle_async``)."""
    items = stream_handler(job)
    loop = asyncio.get_running_loop()
    while (item := await loop.run_in_executor(_JOB_THREADS, next, items, _END)) is not _END:
        yield item


def sdk_config(*, streaming: bool = False, test_input: bool = False) -> dict[str, Any]:
    """What ``runpod.serverless.start`` gets, for a plain or a streaming endpoint.

    ``test_input``: the SDK runs one job from ``--test_input``/``test_input.json``
    and exits. That mode never iterates a generator (it printed ``<generator
    object>`` and "completed successfully" without running the job), so a
    streaming endpoint gets :func:`drained_stream_handler` there instead.
    """
    if test_input:
        run = drained_stream_handler if streaming else _local_job
        return {"handler": functools.partial(local_run, run), "concurrency_modifier": _concurrency}
    if streaming:
        return {
            "handler": _stream_async,
            "return_aggregate_stream": True,
            "concurrency_modifier": _concurrency,
        }
    return {"handler": _handle_async, "concurrency_modifier": _concurrency}


def _local_job(envelope: Envelope) -> Any:
    """One local job on a plain endpoint: a ``"stream": true`` job is run as a
    streaming endpoint would run it (its items, drained), not refused for the
    endpoint's setting, which a local run has no reason to know."""
    job_input = envelope.get("input")
    streams = isinstance(job_input, dict) and job_input.get("stream") is True
    return (drained_stream_handler if streams else handler)(envelope)


def local_run(run: Callable[[Envelope], Any], envelope: Envelope) -> Any:
    """A local run's job (``python handler.py``): ``run``'s result, also written whole
    as JSON to ``<outputs>/last-result.json``.

    The SDK's local mode prints the result as a Python dict and, for a failed job,
    only its ``error`` line; the file keeps ``error_code`` and ``details`` (a cause
    chain included) for a person or a script (``jq . outputs/last-result.json``).
    """
    result = run(envelope)
    path = config.resolve_paths().outputs / "last-result.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())
        logger.info("job=%s result written to %s", envelope.get("id") or "local", path)
    except OSError as exc:  # the job's own result matters more than this copy of it
        logger.warning("job=%s result not written to %s: %s", envelope.get("id"), path, exc)
    return result


def _run_job(envelope: Envelope, job_id: str, on_chunk: ChunkSink | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    job = jobs.parse_job(envelope.get("input"))
    if getattr(job, "stream", False) and on_chunk is None:
        raise InvalidInput(
            "stream: this endpoint is not a streaming one; leave out stream, or deploy "
            "with MEDIA_WORKER_STREAMING=1 (see docs/tasks/tts.md, Streaming)",
            field="stream",
        )
    task = registry.task(job.task)
    if task.serve is not None:  # a task no runner serves
        return task.serve(job, storage.s3_settings(envelope.get("s3Config")), job_id)
    spec = registry.resolve(job)
    worker = current()
    prefix = storage.validate_prefix(job.output.prefix) if job.output.prefix else None
    s3 = storage.s3_settings(envelope.get("s3Config"))
    logger.info("job=%s accepted task=%s model=%s", job_id, job.task, spec.model)
    logger.debug("job=%s fields %s", job_id, ",".join(sorted(job.model_fields_set)))

    def report(message: str, fraction: float | None = None) -> None:
        _progress(envelope, job_id, message, fraction)

    with storage.scratch(job_id) as scratch:
        t = time.perf_counter()
        inputs: dict[str, Path] = {}
        for field in contract.fields_marked(type(job), contract.MEDIA):
            if (value := getattr(job, field)) is not None:
                ref = storage.parse_media_ref(value, field=field)
                inputs[field] = storage.fetch(ref, scratch, s3=s3)
        prepared = Prepared(job, scratch, inputs, job.model_dump(mode="json"), s3=s3, prefix=prefix)
        if task.before_run is not None:
            task.before_run(prepared)
        fetch_s = time.perf_counter() - t

        t = time.perf_counter()
        env, ensured_now = worker.environments.get(spec.profile, report)
        bootstrap_s = time.perf_counter() - t if ensured_now else 0.0

        def repair() -> Path:
            # A runner that cannot start may stand on a damaged environment (a file
            # deleted under a running worker): verify it, restore it, try once more.
            # Nothing was streamed yet: a start failure comes before any chunk.
            nonlocal env, bootstrap_s
            t = time.perf_counter()
            env = worker.environments.repair(spec.profile, env, report)
            bootstrap_s += time.perf_counter() - t
            return env.python

        outcome = worker.host.run(
            name=spec.model,
            python=env.python,
            runner_ref=spec.runner_ref,
            job_id=job_id,
            payload=prepared.runner_input,
            scratch=scratch,
            inputs=inputs,
            weights={repo: str(path) for repo, path in env.weights.items()},
            vram_mb=spec.vram_mb,
            max_jobs=spec.max_jobs,
            on_progress=report,
            on_chunk=on_chunk if getattr(job, "stream", False) else None,
            on_start_failure=repair,
        )

        if task.after_run is not None:
            task.after_run(prepared)

        t = time.perf_counter()
        published = storage.publish(
            job_id,
            outcome.outputs,
            s3=s3,
            prefix=prefix,
            presign_seconds=job.output.presign_seconds,
        )
        publish_s = time.perf_counter() - t

    fields: dict[str, Any] = {**outcome.result, **prepared.result}
    timings = {
        "bootstrap_s": round(bootstrap_s, 4),
        "fetch_s": round(fetch_s, 4),
        "load_s": round(outcome.load_s, 4),
        "infer_s": round(outcome.infer_s, 4),
        "publish_s": round(publish_s, 4),
        "total_s": round(time.perf_counter() - started, 4),
    }
    # restore: the pipeline's stage timings join the job's own timings
    timings.update(fields.pop("stage_timings", None) or {})
    result = jobs.job_result(
        {
            **fields,
            "task": job.task,
            "model": spec.model,
            "outputs": [contract.Output(**dataclasses.asdict(o)) for o in published],
            "timings": timings,
            "cold": outcome.cold,
        }
    )
    logger.info(
        "job=%s done outputs=%d cold=%s total_s=%.3f",
        job_id,
        len(published),
        result.cold,
        result.timings.total_s,
    )
    return contract.result_dict(result)


def error_envelope(exc: WorkerError) -> dict[str, Any]:
    """The contract's failure shape for a WorkerError: ``error`` is one line (what
    failed and what to do); a tool's error output goes in ``details`` as ``cause``."""
    line, cause = one_line(exc.message)
    details = [*exc.details, {"message": cause, "cause": True}] if cause else exc.details
    return contract.ErrorEnvelope(
        error=f"{exc.code}: {line}",
        error_code=exc.code,  # type: ignore[arg-type]
        details=details,  # type: ignore[arg-type]
    ).model_dump(mode="json", exclude_none=True)


def handler(envelope: Envelope) -> dict[str, Any]:
    """Serve one RunPod job; never raises, never returns a traceback or a secret."""
    return _serve(envelope, str(envelope.get("id") or "local"))


def _serve(envelope: Envelope, job_id: str, on_chunk: ChunkSink | None = None) -> dict[str, Any]:
    try:
        return _run_job(envelope, job_id, on_chunk)
    except WorkerError as exc:
        line, cause = one_line(exc.message)
        logger.warning("job=%s failed %s: %s", job_id, exc.code, line)
        if cause:
            logger.info("job=%s cause: %s", job_id, cause.replace("\n", " | "))
        return error_envelope(exc)
    except Exception:
        logger.exception("job=%s internal error", job_id)
        return error_envelope(
            WorkerError(f"unexpected error in the worker; its log has details under job={job_id}")
        )


def chunk_item(chunk: p.Chunk, elapsed_s: float) -> dict[str, Any]:
    """The StreamChunk a caller receives for a runner's Chunk (reads the file now).

    Raises:
        WorkerError: the chunk would exceed RunPod's item size (a runner bug).
    """
    audio = base64.b64encode(Path(chunk.path).read_bytes()).decode()
    if len(audio) >= MAX_STREAM_ITEM_BYTES:
        raise WorkerError(f"stream chunk {chunk.index} is {len(audio)} bytes in base64")
    return contract.StreamChunk(
        index=chunk.index,
        offset_s=chunk.offset_s,
        duration_s=chunk.duration_s,
        sample_rate=chunk.sample_rate,
        format=chunk.format,
        content_type=chunk.content_type,
        audio_base64=audio,
        elapsed_s=round(elapsed_s, 4),
        words=chunk.words or None,
    ).model_dump(mode="json", exclude_none=True)


def stream_handler(envelope: Envelope) -> Iterator[dict[str, Any]]:
    """Serve one job on a streaming endpoint: chunks as they exist, then the result.

    The job runs in a thread; the runner's chunks arrive through a queue and are
    yielded in order. The last item is the StreamFinal, or the error envelope
    (after which the SDK marks the job FAILED).
    """
    job_id = str(envelope.get("id") or "local")
    started = time.perf_counter()
    items: queue.Queue[tuple[bool, dict[str, Any]]] = queue.Queue()
    broken: list[WorkerError] = []

    def on_chunk(chunk: p.Chunk) -> None:
        # Called on the runner host's thread: it must not raise, or the runner
        # would be left mid-job. A bad chunk fails the job when it ends.
        if broken:
            return
        try:
            items.put((False, chunk_item(chunk, time.perf_counter() - started)))
        except (WorkerError, OSError) as exc:
            logger.error("job=%s chunk %d unusable: %s", job_id, chunk.index, exc)
            broken.append(WorkerError(f"stream chunk {chunk.index} could not be sent"))

    def work() -> None:
        result = _serve(envelope, job_id, on_chunk)
        if broken and "error" not in result:
            result = error_envelope(broken[0])
        if "error" not in result:
            result = {"type": "result", **result}
        items.put((True, result))

    threading.Thread(target=work, name=f"job-{job_id}", daemon=True).start()
    while True:
        last, item = items.get()
        if not last:
            logger.info("job=%s chunk %d sent", job_id, item["index"])
        yield item
        if last:
            return


def drained_stream_handler(envelope: Envelope) -> list[dict[str, Any]] | dict[str, Any]:
    """A streaming endpoint's job run to its end, returning what the platform keeps:
    the list of items (``return_aggregate_stream``), or the error envelope when the
    stream ended with one (the SDK then fails the job, exit code 1 locally)."""
    items = list(stream_handler(envelope))
    return items[-1] if "error" in items[-1] else items


def _is_test_input_run(argv: list[str]) -> bool:
    """True when the SDK will run one local test job and exit: not on the platform,
    not ``--rp_serve_api``, not a realtime API port (``runpod.serverless.start``)."""
    return (
        worker_state.IS_LOCAL_TEST
        and "--rp_serve_api" not in argv
        and os.environ.get("RUNPOD_REALTIME_PORT", "0") in ("", "0")
    )


def _prepare_in_background(profiles: tuple[str, ...]) -> None:
    environments = current().environments

    def prepare() -> None:
        for name in profiles:
            try:
                environments.get(name, lambda message, fraction=None: None)
                logger.info("prepared profile %s in the background", name)
            except WorkerError as exc:
                logger.error("background prepare of %s failed: %s", name, exc.message)

    threading.Thread(target=prepare, name="prepare-profiles", daemon=True).start()


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# The S3 client stack logs every request at DEBUG: botocore its headers, whose
# Authorization names the access key id (Credential=<id>/...), urllib3 its URLs,
# where a presigned one carries it as X-Amz-Credential (issue 20). They stay at INFO
# unless MEDIA_WORKER_LOG_STORAGE_DEBUG opts in, and every record is redacted anyway.
_STORAGE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
_CREDENTIAL = re.compile(r"(Credential=)[^/%\s,&'\"]+")


class _RedactCredentials(logging.Filter):
    """Rewrites a record whose message names a SigV4 credential or a secret value."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _CREDENTIAL.sub(r"\1<redacted>", message)
        for secret in self.secrets:
            redacted = redacted.replace(secret, "<redacted>")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _secret_values(env: Mapping[str, str]) -> list[str]:
    # The access key id is not secret to S3, but with the secret it is a credential
    # and it names the account: it stays out of logs too.
    settings = [s for s in registry.SETTINGS if s.secret] + [config.BUCKET_ACCESS_KEY_ID]
    return [v for s in settings if len(v := env.get(s.name, "").strip()) >= 4]


def _configure_logging(level: str, *, storage_debug: bool = False) -> None:
    # force=True: importing runpod already gave the root logger a handler (its
    # rp_upload module calls basicConfig at import), and basicConfig without force
    # does nothing once a handler exists: the level and format would be ignored.
    logging.basicConfig(level=level, stream=sys.stderr, format=_LOG_FORMAT, force=True)
    redact = _RedactCredentials(_secret_values(os.environ))
    for sink in logging.getLogger().handlers:
        sink.addFilter(redact)
    numeric = logging.getLevelNamesMapping()[level]
    floor = numeric if storage_debug else max(numeric, logging.INFO)
    for name in _STORAGE_LOGGERS:
        logging.getLogger(name).setLevel(floor)


def _checked_settings() -> tuple[str, ...]:
    """Parse every setting now, so a bad value stops the worker at start, in words.

    Returns:
        The profiles to prepare in the background.

    Raises:
        config.ConfigError: a setting is invalid; the message names the variable.
    """
    for setting in registry.SETTINGS:  # config.py's and the runner modules' own
        setting.get()
    config.check_directories()
    registry.check_default_models()
    for task in registry.TASKS:
        registry.decide_default(task)
    profiles = config.PREPARE_PROFILES.get()
    for name in profiles:
        try:
            registry.get_profile(name)
        except KeyError as exc:
            raw = os.environ[config.PREPARE_PROFILES.name]
            raise config.ConfigError(
                f"{config.PREPARE_PROFILES.name}={raw!r} is invalid: {exc.args[0]}"
            ) from None
    return profiles


def expand_test_input(argv: list[str]) -> list[str]:
    """``argv`` with ``--test_input @job.json`` replaced by the file's text.

    The SDK takes the job inline, and a job with a few hundred KB of base64 media is
    over the shell's argument limit ("Argument list too long"); read here, the text
    never passes through exec. The file must hold one JSON object (``{"input": ...}``).

    Raises:
        SystemExit: the file cannot be read (exit 2, the message names it).
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--test_input" and i + 1 < len(out) and out[i + 1].startswith("@"):
            out[i + 1] = _read_job_file(out[i + 1][1:])
        elif arg.startswith("--test_input=@"):
            out[i] = "--test_input=" + _read_job_file(arg.removeprefix("--test_input=@"))
    return out


def _read_job_file(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        sys.exit(f"--test_input @{name}: cannot read the job file: {exc.strerror}")


def main() -> None:
    _configure_logging("INFO")  # the level is a setting, and settings are checked next
    sys.argv = expand_test_input(sys.argv)
    try:
        profiles = _checked_settings()
    except config.ConfigError as exc:
        logger.error("configuration: %s", exc.args[0])
        sys.exit(2)
    _configure_logging(config.LOG_LEVEL.get(), storage_debug=config.LOG_STORAGE_DEBUG.get())
    atexit.register(current().host.shutdown)
    if profiles:
        _prepare_in_background(profiles)
    if config.STREAMING.get():
        logger.info("streaming endpoint: generator handler, aggregate stream")
    local = _is_test_input_run(sys.argv)
    # Only a one-job local run reads media from this machine's disk: a path or
    # file:// there is the user's own file; on an endpoint it would be the worker's.
    storage.allow_local_files(local)
    runpod.serverless.start(sdk_config(streaming=config.STREAMING.get(), test_input=local))


if __name__ == "__main__":
    main()
