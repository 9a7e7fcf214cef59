"""The runner host: one subprocess per runner, started lazily, kept warm.

A runner process runs ``python -m models._child`` with its profile's interpreter
and talks to the host over two pipes (see ``models.protocol``). A crash, OOM
kill or hang inside a model never takes the handler down: the job fails with
``runner_crashed`` or ``timeout``, the process is killed (which is also how GPU
memory is given back) and the next job starts a fresh one. A runner that died
while idle (the OOM killer, ``kill -9``) is found before reuse and replaced
without failing the job.

Concurrency: the host serves jobs for different runners in parallel and one job
per runner at a time (a runner process holds one model and serves one job).
Starting a runner, and stopping others to make room for it, happens one at a
time. What decides how many jobs reach the host at once is the worker's
``concurrency_modifier`` (see ``handler.py``).

Room: at most ``max_runners`` processes live at once, and a runner that declares
the GPU memory it needs (``vram_mb``) starts only after idle runners are stopped,
least recently used first, until it fits in the GPU's free memory
(:func:`pick_runners_to_evict`). A busy runner is never stopped to make room.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import config
from bootstrap import machine
from errors import ERRORS, JobTimeout, RunnerCrashed, WorkerError
from models import protocol as p

logger = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SHUTDOWN_GRACE_S = 5.0
_STDERR_FD = 2

ProgressFn = Callable[[str, float | None], None]
ChunkFn = Callable[[p.Chunk], None]
FreeMemoryFn = Callable[[], int | None]
RepairFn = Callable[[], Path]


class RunnerState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(frozen=True)
class RunOutcome:
    """What one job got from its runner."""

    outputs: list[p.OutputFile]
    load_s: float
    infer_s: float
    cold: bool
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveRunner:
    """One row of the eviction table: a live runner as the eviction decision sees it."""

    last_used: float
    vram_mb: int = 0
    busy: bool = False


def pick_runners_to_evict(
    live: Mapping[str, LiveRunner],
    *,
    keep: str,
    max_live: int,
    need_mb: int = 0,
    free_mb: int | None = None,
) -> list[str]:
    """Names of the runners to stop, in order, so that ``keep`` can start.

    ``live`` is every live runner (``keep`` may be among them: it is never
    stopped). Only idle runners are stopped, least recently used first: first as
    many as the count limit ``max_live`` needs, then, while ``need_mb`` of GPU
    memory does not fit in ``free_mb`` (None: no GPU visible, count only), more
    of those that hold GPU memory. When even that is not enough, every idle GPU
    runner is stopped and the new runner tries anyway: a job never fails because
    an idle runner holds memory it could give back.
    """
    idle = sorted(
        (row.last_used, name) for name, row in live.items() if name != keep and not row.busy
    )
    others = sum(1 for name in live if name != keep)
    victims = [name for _, name in idle[: max(others + 1 - max_live, 0)]]
    if free_mb is not None and need_mb > 0:
        free = free_mb + sum(live[name].vram_mb for name in victims)
        for _, name in idle:
            if free >= need_mb:
                break
            if name not in victims and live[name].vram_mb > 0:
                victims.append(name)
                free += live[name].vram_mb
    return victims


def describe_exit(returncode: int | None) -> str:
    """Say in words why a runner process ended."""
    if returncode is None:
        return "is not responding"
    if returncode < 0:
        sig = signal.Signals(-returncode)
        hint = " (often the kernel's out-of-memory killer)" if sig == signal.SIGKILL else ""
        return f"was killed by {sig.name}{hint}"
    return f"exited with code {returncode}"


class RunnerProcess:
    """One live runner subprocess and the two pipe ends that reach it."""

    def __init__(self, name: str, python: Path, runner_ref: str, *, vram_mb: int = 0) -> None:
        self.name = name
        self.python = python
        self.runner_ref = runner_ref
        self.vram_mb = vram_mb
        self.state = RunnerState.STARTING
        self.last_used = time.monotonic()
        self.load_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._inbox: Connection | None = None  # messages from the runner
        self._outbox: Connection | None = None  # messages to the runner

    def _assert_state(self, *expected: RunnerState) -> None:
        if self.state not in expected:
            raise RuntimeError(f"runner {self.name} is {self.state.value}, expected {expected}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def exit_code(self) -> int | None:
        """The process's exit status once it has ended (without waiting), else None."""
        return self._proc.poll() if self._proc is not None else None

    def is_alive(self) -> bool:
        """True while the process runs and the host has not given up on it."""
        return self.state is not RunnerState.DEAD and self.exit_code() is None

    def start(self, *, weights: dict[str, str], timeout_s: float, job_id: str) -> None:
        """Start the process and wait for it to load its model.

        Raises:
            RunnerCrashed: the process could not be started, died, or reported
                ``Fatal`` while starting.
            JobTimeout: it did not become ready within ``timeout_s``.
        """
        self._assert_state(RunnerState.STARTING)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = config.child_environ()  # no S3 keys, no HF token: see config.child_environ
        env["PYTHONPATH"] = os.pathsep.join(
            x for x in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if x
        )
        env["HF_HUB_OFFLINE"] = "1"  # weights were resolved to local paths beforehand
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self._proc = subprocess.Popen(
                [str(self.python), "-m", "models._child", "--fds", f"{to_child_r},{from_child_w}"],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                # The process's fd 2, not sys.stderr: that object may be replaced
                # (pytest, log shippers) by one without a file descriptor.
                stdout=_STDERR_FD,
                cwd=_REPO_ROOT,
                env=env,
                start_new_session=True,  # so a kill reaches the runner's own children
            )
        except OSError as exc:
            os.close(to_child_w)
            os.close(from_child_r)
            self.state = RunnerState.DEAD
            raise RunnerCrashed(
                f"runner {self.name} could not start: {self.python}: {exc.strerror}"
            ) from None
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._outbox = Connection(to_child_w, readable=False)
        self._inbox = Connection(from_child_r, writable=False)
        logger.info("job=%s runner %s starting pid=%s", job_id, self.name, self._proc.pid)
        self._send(p.Setup(p.PROTOCOL_VERSION, self.runner_ref, weights))
        ready = self._receive(timeout_s, job_id, what="start", limit_s=timeout_s)
        if isinstance(ready, p.Fatal):
            self.kill()
            raise RunnerCrashed(f"runner {self.name} could not start: {ready.reason}")
        if not isinstance(ready, p.Ready) or ready.protocol != p.PROTOCOL_VERSION:
            self.kill()
            raise RunnerCrashed(f"runner {self.name} answered {ready!r} instead of Ready")
        self.load_s = ready.load_s
        self.state = RunnerState.IDLE
        logger.info("job=%s runner %s ready load_s=%.2f", job_id, self.name, ready.load_s)

    def run(
        self,
        *,
        job_id: str,
        payload: dict[str, Any],
        scratch: Path,
        timeout_s: float,
        on_progress: ProgressFn,
        inputs: Mapping[str, Path] | None = None,
        on_chunk: ChunkFn | None = None,
    ) -> p.Done:
        """Send one job and wait for its end, relaying progress and chunks.

        Raises:
            WorkerError: the runner reported ``Failed`` with this code.
            RunnerCrashed: the process died, or reported ``Fatal``.
            JobTimeout: no result within ``timeout_s``; the process is killed.
        """
        self._assert_state(RunnerState.IDLE)
        self.state = RunnerState.BUSY
        self.last_used = time.monotonic()
        deadline = time.monotonic() + timeout_s
        paths = {name: str(path) for name, path in (inputs or {}).items()}
        self._send(p.Run(job_id, payload, str(scratch), paths))
        while True:
            message = self._receive(
                deadline - time.monotonic(), job_id, what="job", limit_s=timeout_s
            )
            if isinstance(message, p.Progress):
                on_progress(message.message, message.fraction)
                continue
            if isinstance(message, p.Chunk) and message.job_id == job_id:
                if on_chunk is not None:
                    on_chunk(message)
                continue
            self.last_used = time.monotonic()
            if isinstance(message, p.Done) and message.job_id == job_id:
                self.state = RunnerState.IDLE
                return message
            if isinstance(message, p.Failed) and message.job_id == job_id:
                self.state = RunnerState.IDLE
                raise _failed_to_error(self.name, message)
            if isinstance(message, p.Fatal):
                self.kill()
                raise RunnerCrashed(f"runner {self.name} failed and was stopped: {message.reason}")
            self.kill()
            raise RunnerCrashed(f"runner {self.name} sent {message!r} during job {job_id}")

    def _send(self, message: p.Message) -> None:
        assert self._outbox is not None
        try:
            self._outbox.send_bytes(p.encode(message))
        except (BrokenPipeError, OSError):
            self._raise_dead("before it received its work")

    def _receive(self, timeout_s: float, job_id: str, *, what: str, limit_s: float) -> p.Message:
        """The next message within ``timeout_s`` (what is left of ``limit_s``, the
        configured limit that a timeout message names)."""
        assert self._inbox is not None
        try:
            ready = self._inbox.poll(max(timeout_s, 0.0))
        except OSError:
            ready = True  # a closed pipe: recv below reports the exit
        if not ready:
            self.kill()
            verb, setting = (
                ("start", config.RUNNER_START_TIMEOUT_S)
                if what == "start"
                else ("finish the job", config.JOB_TIMEOUT_S)
            )
            raise JobTimeout(
                f"runner {self.name} did not {verb} within {limit_s:g} s ({setting.name}); "
                f"it was stopped and the next job starts a fresh one",
                details=[{"field": None, "message": f"timeout_s={limit_s:g}"}],
            )
        try:
            return p.decode(self._inbox.recv_bytes())
        except (EOFError, OSError):
            self._raise_dead(f"during the {what} of job {job_id}")
        except p.ProtocolError as exc:
            self.kill()
            raise RunnerCrashed(f"runner {self.name} broke the protocol: {exc}") from None

    def _raise_dead(self, when: str) -> None:
        returncode = self._wait_exit(2.0)
        self.kill()
        raise RunnerCrashed(
            f"runner {self.name} {describe_exit(returncode)} {when}; "
            "it will be restarted for the next job"
        )

    def _wait_exit(self, timeout_s: float) -> int | None:
        assert self._proc is not None
        try:
            return self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Ask the runner to exit; kill it if it does not within a grace period."""
        if self.state is RunnerState.DEAD:
            return
        try:
            if self._outbox is not None:
                self._outbox.send_bytes(p.encode(p.Shutdown()))
        except OSError:
            pass
        if self._wait_exit(_SHUTDOWN_GRACE_S) is None:
            logger.warning("runner %s ignored shutdown; killing pid=%s", self.name, self.pid)
        self.kill()

    def kill(self) -> None:
        """Kill the process group and close the pipes. Idempotent."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        for conn in (self._inbox, self._outbox):
            if conn is not None and not conn.closed:
                conn.close()
        self.state = RunnerState.DEAD


def _failed_to_error(name: str, failed: p.Failed) -> WorkerError:
    cls = ERRORS.get(failed.code)
    if cls is None or cls in (WorkerError, RunnerCrashed):
        return RunnerCrashed(f"runner {name} failed on this job: {failed.message}")
    return cls(failed.message, field=failed.field)


@dataclass
class _Slot:
    """One runner name's place in the host: its process, and the lock that lets
    one job at a time use it."""

    lock: threading.Lock
    runner: RunnerProcess | None = None


class RunnerHost:
    """Keeps runner processes warm and routes jobs to them.

    Thread-safe: jobs for different runners run in parallel, jobs for the same
    runner one after another; starts and evictions happen one at a time.
    """

    def __init__(
        self, *, max_runners: int | None = None, free_memory: FreeMemoryFn = machine.free_mb
    ) -> None:
        self._max_runners = max_runners
        self._free_memory = free_memory
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()  # guards _slots only; never held during a job
        self._start_lock = threading.Lock()  # one start (and its evictions) at a time

    @property
    def live(self) -> dict[str, int | None]:
        """Live runner names and their pids."""
        with self._lock:
            slots = list(self._slots.items())
        return {n: s.runner.pid for n, s in slots if s.runner and s.runner.is_alive()}

    def _slot(self, name: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(name, _Slot(threading.Lock()))

    def run(
        self,
        *,
        name: str,
        python: Path,
        runner_ref: str,
        job_id: str,
        payload: dict[str, Any],
        scratch: Path,
        weights: dict[str, str] | None = None,
        vram_mb: int = 0,
        timeout_s: float | None = None,
        on_progress: ProgressFn | None = None,
        inputs: Mapping[str, Path] | None = None,
        on_chunk: ChunkFn | None = None,
        on_start_failure: RepairFn | None = None,
    ) -> RunOutcome:
        """Run one job on runner ``name``, starting it (and stopping others) if needed.

        Args:
            vram_mb: GPU memory the runner needs when it starts (0: a CPU runner).
            on_start_failure: called once when the runner cannot start (its
                interpreter is gone, its imports fail); it repairs the environment
                and returns the interpreter to try once more with.

        Raises:
            WorkerError: whatever the runner reported for this job.
            RunnerCrashed: the runner could not start (after the one retry), or
                died during the job.
            JobTimeout: start or job exceeded its limit; the runner was killed.
        """
        timeout_s = config.JOB_TIMEOUT_S.get() if timeout_s is None else timeout_s
        on_progress = on_progress or (lambda message, fraction: None)
        slot = self._slot(name)
        with slot.lock:
            runner = slot.runner
            if runner is not None and not runner.is_alive():
                if runner.state is not RunnerState.DEAD:
                    logger.warning(
                        "job=%s runner %s %s while idle; starting a fresh one",
                        job_id,
                        name,
                        describe_exit(runner.exit_code()),
                    )
                runner.kill()
                runner = slot.runner = None
            if runner is not None and (runner.python, runner.runner_ref) != (python, runner_ref):
                runner.stop()
                runner = slot.runner = None
            cold = runner is None
            if runner is None:
                with self._start_lock:
                    self._make_room(name, vram_mb, job_id)
                    start = functools.partial(
                        self._start, slot, name, runner_ref, vram_mb, weights or {}, job_id
                    )
                    try:
                        runner = start(python)
                    except RunnerCrashed as exc:
                        if on_start_failure is None:
                            raise
                        logger.warning(
                            "job=%s %s; repairing its environment and trying once more",
                            job_id,
                            exc.message,
                        )
                        runner = start(on_start_failure())
            done = runner.run(
                job_id=job_id,
                payload=payload,
                scratch=scratch,
                timeout_s=timeout_s,
                on_progress=on_progress,
                inputs=inputs,
                on_chunk=on_chunk,
            )
        return RunOutcome(
            outputs=done.outputs,
            load_s=runner.load_s if cold else 0.0,
            infer_s=done.infer_s,
            cold=cold,
            result=done.result,
        )

    def _start(
        self,
        slot: _Slot,
        name: str,
        runner_ref: str,
        vram_mb: int,
        weights: dict[str, str],
        job_id: str,
        python: Path,
    ) -> RunnerProcess:
        runner = slot.runner = RunnerProcess(name, python, runner_ref, vram_mb=vram_mb)
        runner.start(weights=weights, timeout_s=config.RUNNER_START_TIMEOUT_S.get(), job_id=job_id)
        return runner

    def _make_room(self, name: str, vram_mb: int, job_id: str) -> None:
        """Stop idle runners so that ``name`` fits by count and by GPU memory."""
        max_live = self._max_runners or config.MAX_RUNNERS.get()
        with self._lock:
            slots = {n: s for n, s in self._slots.items() if s.runner and s.runner.is_alive()}
        table = {
            n: LiveRunner(s.runner.last_used, s.runner.vram_mb, busy=s.lock.locked())  # type: ignore[union-attr]
            for n, s in slots.items()
        }
        free_mb = self._free_memory() if vram_mb > 0 else None
        victims = pick_runners_to_evict(
            table, keep=name, max_live=max_live, need_mb=vram_mb, free_mb=free_mb
        )
        for victim in victims:
            slot = slots[victim]
            if not slot.lock.acquire(blocking=False):
                continue  # a job took it meanwhile: it is not idle any more
            try:
                if slot.runner is not None:
                    logger.info(
                        "job=%s stopping idle runner %s to make room "
                        "(max=%d need_mb=%d free_mb=%s)",
                        job_id,
                        victim,
                        max_live,
                        vram_mb,
                        free_mb,
                    )
                    slot.runner.stop()
                    slot.runner = None
            finally:
                slot.lock.release()

    def shutdown(self) -> None:
        """Stop every runner (at exit)."""
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            if slot.runner is not None:
                slot.runner.stop()
