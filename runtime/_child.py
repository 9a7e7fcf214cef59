"""Entry point of a runner process: ``python -m runtime._child --fds IN,OUT``.

Imports only the stdlib, the protocol and the runner named in ``Setup``, so it
works in any profile environment with this repository on ``PYTHONPATH``.
Protocol traffic uses two inherited pipe fds, never stdout, so a model library
that prints cannot corrupt it; stdout and stderr are the worker's log.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from errors import WorkerError
from runtime import protocol as p
from runtime.runner import RunContext, Runner

logger = logging.getLogger("models.runner")


def load_runner(ref: str) -> Runner:
    """Import ``"package.module:ClassName"`` and instantiate it."""
    module_name, _, class_name = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()


def _serve(inbox: Connection, outbox: Connection) -> int:
    def send(message: p.Message) -> None:
        outbox.send_bytes(p.encode(message))

    setup = p.decode(inbox.recv_bytes())
    if not isinstance(setup, p.Setup) or setup.protocol != p.PROTOCOL_VERSION:
        send(p.Fatal(f"expected Setup with protocol {p.PROTOCOL_VERSION}, got {setup!r}"))
        return 2
    started = time.perf_counter()
    try:
        runner = load_runner(setup.runner_ref)
        runner.setup(setup.weights)
    except BaseException as exc:
        logger.exception("runner %s failed to start", setup.runner_ref)
        send(p.Fatal(f"{setup.runner_ref} failed to start: {type(exc).__name__}: {exc}"))
        return 1
    send(p.Ready(p.PROTOCOL_VERSION, os.getpid(), round(time.perf_counter() - started, 4)))

    while True:
        try:
            message = p.decode(inbox.recv_bytes())
        except EOFError:
            return 0  # the host went away; nothing left to serve
        if isinstance(message, p.Shutdown):
            return 0
        if not isinstance(message, p.Run):
            send(p.Fatal(f"unexpected message {message.type}"))
            return 2
        job_id = message.job_id

        def progress(text: str, fraction: float | None = None, _job: str = job_id) -> None:
            send(p.Progress(_job, text, fraction))

        inputs = {name: Path(path) for name, path in message.inputs.items()}
        ctx = RunContext(job_id, Path(message.scratch_dir), progress, inputs, send_chunk=send)
        started = time.perf_counter()
        try:
            outputs = runner.run(message.payload, ctx)
        except WorkerError as exc:
            send(p.Failed(job_id, exc.code, exc.message, exc.field))
            continue
        except MemoryError:
            send(p.Fatal("out of memory"))
            return 1
        except Exception as exc:
            logger.error("job=%s runner error\n%s", job_id, traceback.format_exc().rstrip())
            send(p.Failed(job_id, "runner_crashed", f"{type(exc).__name__}: {exc}"))
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        send(p.Done(job_id, outputs, round(time.perf_counter() - started, 4), ctx.result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fds", required=True, help="IN,OUT pipe file descriptors")
    args = parser.parse_args(argv)
    in_fd, out_fd = (int(fd) for fd in args.fds.split(","))
    # The handler owns Ctrl-C; a runner must finish or be killed, not half-exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=os.environ.get("MEDIA_WORKER_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    inbox = Connection(in_fd, writable=False)
    outbox = Connection(out_fd, readable=False)
    return _serve(inbox, outbox)


if __name__ == "__main__":
    sys.exit(main())
