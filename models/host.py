"""The runner host: one subprocess per runner, started lazily, kept warm.

A runner process runs ``python -m runtime._child`` with its profile's interpreter
and talks to the host over two pipes (see ``runtime.protocol``). A crash, OOM
kill or hang inside a model never takes the handler down: the job fails with
``runner_crashed`` or ``timeout``, the process is killed (which is also how GPU
memory is given back) and the next job starts a fresh one. A runner that died
while idle (the OOM killer, ``kill -9``) is found before reuse and replaced
without failing the job.

Concurrency: each runner name has a pool of processes, each serving one job at a
time. A runner declares how many jobs it serves at once on one GPU
(``RunnerSpec.max_jobs``); ``MEDIA_WORKER_MAX_CONCURRENCY`` (default 1) caps every
pool, so by default a runner is one process and jobs for it run one after another,
while jobs for different runners run in parallel. Starting a process, and stopping
others to make room for it, happens one at a time. How many jobs reach the host at
once is the worker's ``concurrency_modifier`` (:meth:`RunnerHost.capacity`, see
``handler.py``).

Room: at most ``max_runners`` models are loaded at once (a pool counts once), and a
runner that declares the GPU memory it needs (``vram_mb``) starts only after idle
pools are stopped, least recently used first, until it fits in the GPU's free memory
(:func:`pick_runners_to_evict`). A busy runner is never stopped to make room, and a
pool grows past its first process only into free memory.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import config
from errors import ERRORS, JobTimeout, RunnerCrashed, WorkerError
from runtime import machine
from runtime import protocol as p

logger = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SHUTDOWN_GRACE_S = 5.0
_STDERR_FD = 2

ProgressFn = p.ProgressFn
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


@dataclass(frozen=True)
class HeldPool:
    """One loaded model as the concurrency decision sees it."""

    max_jobs: int  # the most processes its pool may have (already capped by the setting)
    processes: int  # live or starting
    vram_mb: int = 0  # what one process needs (0: a CPU runner)


def decide_concurrency(held: Sequence[HeldPool], *, limit: int, free_mb: int | None) -> int:
    """How many jobs the worker takes at once: the SDK's ``concurrency_modifier``. Pure.

    ``limit`` is ``MEDIA_WORKER_MAX_CONCURRENCY``. With no model loaded the answer is
    1: the first job decides which model is loaded, and a job for a model that is
    not loaded may have to stop the idle ones. Otherwise each loaded model counts
    for as many jobs as its pool may grow to: its ``max_jobs``, but for a GPU runner
    only as many more processes as fit in ``free_mb`` (None: no GPU seen). Jobs
    beyond that would have to wait, or evict a busy runner, which the host never does.

    The answer is stable while pools grow (a started process moves its memory from
    ``free_mb`` into the pool), which matters: the SDK resizes its job queue only
    after every job in flight has finished (``JobScaler.set_scale``).
    """
    if limit <= 1 or not held:
        return 1
    spare = free_mb
    total = 0
    for pool in held:
        jobs = pool.max_jobs
        if pool.vram_mb > 0 and spare is not None:
            jobs = max(pool.processes, min(jobs, pool.processes + spare // pool.vram_mb))
            spare = max(spare - (jobs - pool.processes) * pool.vram_mb, 0)
        total += jobs
    return max(1, min(limit, total))


def pool_cpu_threads(cpus: int, pool_size: int) -> int | None:
    """The CPU threads each process of a pool of ``pool_size`` gets (``OMP_NUM_THREADS``,
    which torch reads at import), or None to leave the libraries' default. Pure.

    torch's default is one thread per core in every process: N processes then spin
    against each other (bench/gpu.py's Kokoro streams on the CPU: 20 s per tiny
    sentence with the default, 1.7 s with the cores shared out).
    """
    if pool_size <= 1:
        return None
    return max(1, cpus // pool_size)


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

    def claim(self) -> None:
        """Reserve this idle runner for one job (the host does, under its lock)."""
        self._assert_state(RunnerState.IDLE)
        self.state = RunnerState.BUSY

    def start(
        self,
        *,
        weights: dict[str, str],
        timeout_s: float,
        job_id: str,
        cpu_threads: int | None = None,
    ) -> None:
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
        if cpu_threads is not None:  # an operator's OMP_NUM_THREADS wins
            env.setdefault("OMP_NUM_THREADS", str(cpu_threads))
        try:
            self._proc = subprocess.Popen(
                [str(self.python), "-m", "runtime._child", "--fds", f"{to_child_r},{from_child_w}"],
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
        self._assert_state(RunnerState.BUSY)
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
class _Pool:
    """One runner name's processes: each serves one job at a time."""

    runners: list[RunnerProcess] = field(default_factory=list)
    starting: int = 0  # processes being started, each for the job that asked
    max_jobs: int = 1  # the most processes (jobs at once) this pool may have now
    vram_mb: int = 0  # what one of its processes needs

    def alive(self) -> list[RunnerProcess]:
        return [r for r in self.runners if r.is_alive()]

    def is_busy(self) -> bool:
        return self.starting > 0 or any(r.state is RunnerState.BUSY for r in self.runners)


class RunnerHost:
    """Keeps runner processes warm and routes jobs to them.

    Thread-safe. Each runner name has a pool of processes, one job per process at a
    time: a job takes an idle process of its pool, or starts one more while the pool
    is under its size (``max_jobs``, capped by ``MEDIA_WORKER_MAX_CONCURRENCY``) and
    the GPU has free memory for it, or waits for one to become idle. Starts and
    evictions happen one at a time; only idle pools are stopped to make room.

    Why a pool of processes and not several jobs inside one runner: a process per job
    keeps the runner protocol and every runner module as they are (one ``run`` at a
    time, no shared state between jobs), a killed or poisoned process fails only its
    own job, and the GPU measurement decides the size (``bench/gpu.py``'s Kokoro
    concurrency rows: N processes against N threads in one process, each on its own
    CUDA stream). In one process, Python holds the GIL for everything between kernels
    (Kokoro's G2P, its per-sentence glue), and Kokoro's ``KModel`` takes one utterance
    per call, so batching would mean changing the model's code.
    """

    def __init__(
        self, *, max_runners: int | None = None, free_memory: FreeMemoryFn = machine.free_mb
    ) -> None:
        self._max_runners = max_runners
        self._free_memory = free_memory
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.Lock()  # guards the pools; never held during a job or start
        self._changed = threading.Condition(self._lock)  # a process became idle, or left
        self._start_lock = threading.Lock()  # one start (and its evictions) at a time

    @property
    def live(self) -> dict[str, int | None]:
        """Live runner names and the pid of one of their processes (the newest)."""
        return {name: pids[-1] for name, pids in self.pids.items()}

    @property
    def pids(self) -> dict[str, list[int | None]]:
        """Live runner names and the pids of their processes, oldest first."""
        with self._lock:
            pools = list(self._pools.items())
            return {n: [r.pid for r in alive] for n, pool in pools if (alive := pool.alive())}

    def capacity(self, limit: int) -> int:
        """How many jobs the worker should take at once (see :func:`decide_concurrency`)."""
        if limit <= 1:
            return 1
        with self._lock:
            held = [
                HeldPool(pool.max_jobs, len(pool.alive()) + pool.starting, pool.vram_mb)
                for pool in self._pools.values()
                if pool.starting or pool.alive()
            ]
            promised_mb = self._starting_mb()
        free_mb = self._free_memory() if any(pool.vram_mb > 0 for pool in held) else None
        if free_mb is not None:
            free_mb = max(free_mb - promised_mb, 0)
        return decide_concurrency(held, limit=limit, free_mb=free_mb)

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
        max_jobs: int = 1,
        timeout_s: float | None = None,
        on_progress: ProgressFn | None = None,
        inputs: Mapping[str, Path] | None = None,
        on_chunk: ChunkFn | None = None,
        on_start_failure: RepairFn | None = None,
    ) -> RunOutcome:
        """Run one job on a process of runner ``name``, starting one (and stopping
        idle others) if needed.

        Args:
            vram_mb: GPU memory one process of the runner needs (0: a CPU runner).
            max_jobs: how many jobs the runner serves at once (its pool's most
                processes), capped by ``MEDIA_WORKER_MAX_CONCURRENCY``.
            on_start_failure: called once when the runner cannot start (its
                interpreter is gone, its imports fail); it repairs the environment
                and returns the interpreter to try once more with.

        Raises:
            WorkerError: whatever the runner reported for this job.
            RunnerCrashed: the runner could not start (after the one retry), or
                died during the job.
            JobTimeout: start or job exceeded its limit (the runner was killed), or
                no process of the pool became free within the job's limit.
        """
        timeout_s = config.JOB_TIMEOUT_S.get() if timeout_s is None else timeout_s
        on_progress = on_progress or (lambda message, fraction: None)
        size = max(1, min(max_jobs, config.MAX_CONCURRENCY.get()))
        runner = self._take(name, python, runner_ref, vram_mb, size, job_id, timeout_s)
        cold = runner is None
        try:
            if runner is None:
                runner = self._start_for(
                    name, python, runner_ref, vram_mb, weights or {}, job_id, on_start_failure
                )
            done = runner.run(
                job_id=job_id,
                payload=payload,
                scratch=scratch,
                timeout_s=timeout_s,
                on_progress=on_progress,
                inputs=inputs,
                on_chunk=on_chunk,
            )
        finally:
            with self._changed:
                self._changed.notify_all()
        return RunOutcome(
            outputs=done.outputs,
            load_s=runner.load_s if cold else 0.0,
            infer_s=done.infer_s,
            cold=cold,
            result=done.result,
        )

    def _take(
        self,
        name: str,
        python: Path,
        runner_ref: str,
        vram_mb: int,
        size: int,
        job_id: str,
        timeout_s: float,
    ) -> RunnerProcess | None:
        """An idle process of the pool, claimed for this job; or None after reserving
        the start of a new one; or wait for either."""
        deadline = time.monotonic() + timeout_s
        while True:
            # Read outside the lock: it may run nvidia-smi. A waiting job reads it
            # again at least once a second, as other runners give memory back.
            free_mb = self._free_memory() if vram_mb > 0 else None
            with self._changed:
                pool = self._pools.setdefault(name, _Pool())
                pool.max_jobs, pool.vram_mb = size, vram_mb
                self._prune(pool, name, python, runner_ref, job_id)
                idle = [r for r in pool.runners if r.state is RunnerState.IDLE]
                if idle:
                    runner = max(idle, key=lambda r: r.last_used)  # the warmest
                    runner.claim()
                    return runner
                count = len(pool.runners) + pool.starting
                if count == 0 or (count < size and self._fits(vram_mb, free_mb)):
                    pool.starting += 1
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobTimeout(
                        f"no {name} runner became free within {timeout_s:g} s "
                        f"({config.JOB_TIMEOUT_S.name}); {count} are busy",
                        details=[{"field": None, "message": f"timeout_s={timeout_s:g}"}],
                    )
                self._changed.wait(min(left, 1.0))

    def _prune(self, pool: _Pool, name: str, python: Path, runner_ref: str, job_id: str) -> None:
        """Drop the pool's dead processes, and idle ones of another interpreter (the
        environment was repaired meanwhile). Called under the lock."""
        for runner in list(pool.runners):
            if runner.state is RunnerState.IDLE and not runner.is_alive():
                logger.warning(
                    "job=%s runner %s %s while idle; starting a fresh one",
                    job_id,
                    name,
                    describe_exit(runner.exit_code()),
                )
                runner.kill()
            elif runner.state is RunnerState.IDLE and (runner.python, runner.runner_ref) != (
                python,
                runner_ref,
            ):
                runner.stop()
            if runner.state is RunnerState.DEAD:
                pool.runners.remove(runner)

    def _starting_mb(self) -> int:
        """GPU memory promised to processes still starting (not in the reading yet).
        Called under the lock."""
        return sum(pool.starting * pool.vram_mb for pool in self._pools.values())

    def _fits(self, vram_mb: int, free_mb: int | None) -> bool:
        """Whether one more process that needs ``vram_mb`` fits in ``free_mb``, less
        what starting processes will take (a pool grows only into free memory; it
        never evicts for that). Called under the lock."""
        if vram_mb <= 0 or free_mb is None:
            return True
        return free_mb - self._starting_mb() >= vram_mb

    def _start_for(
        self,
        name: str,
        python: Path,
        runner_ref: str,
        vram_mb: int,
        weights: dict[str, str],
        job_id: str,
        on_start_failure: RepairFn | None,
    ) -> RunnerProcess:
        """Start one more process for ``name`` (its place was reserved by ``_take``),
        claimed for this job."""
        runner: RunnerProcess | None = None
        try:
            with self._start_lock:
                self._make_room(name, vram_mb, job_id)
                try:
                    runner = self._start(name, runner_ref, vram_mb, weights, job_id, python)
                except RunnerCrashed as exc:
                    if on_start_failure is None:
                        raise
                    logger.warning(
                        "job=%s %s; repairing its environment and trying once more",
                        job_id,
                        exc.message,
                    )
                    runner = self._start(
                        name, runner_ref, vram_mb, weights, job_id, on_start_failure()
                    )
        finally:
            with self._changed:
                pool = self._pools.setdefault(name, _Pool())
                pool.starting -= 1
                if runner is not None:
                    runner.claim()
                    pool.runners.append(runner)
                self._changed.notify_all()
        assert runner is not None  # a failed start raised above
        return runner

    def _start(
        self,
        name: str,
        runner_ref: str,
        vram_mb: int,
        weights: dict[str, str],
        job_id: str,
        python: Path,
    ) -> RunnerProcess:
        runner = RunnerProcess(name, python, runner_ref, vram_mb=vram_mb)
        with self._lock:
            pool = self._pools.get(name)  # gone only if the host is shutting down
            size = pool.max_jobs if pool is not None else 1
        runner.start(
            weights=weights,
            timeout_s=config.RUNNER_START_TIMEOUT_S.get(),
            job_id=job_id,
            cpu_threads=pool_cpu_threads(os.cpu_count() or 1, size),
        )
        return runner

    def _make_room(self, name: str, vram_mb: int, job_id: str) -> None:
        """Stop idle pools so that one more process of ``name`` fits by count and by
        GPU memory."""
        max_live = self._max_runners or config.MAX_RUNNERS.get()
        with self._lock:
            table = {}
            for n, pool in self._pools.items():
                if alive := pool.alive():
                    table[n] = LiveRunner(
                        max(r.last_used for r in alive),
                        sum(r.vram_mb for r in alive),
                        busy=pool.is_busy(),
                    )
        free_mb = self._free_memory() if vram_mb > 0 else None
        victims = pick_runners_to_evict(
            table, keep=name, max_live=max_live, need_mb=vram_mb, free_mb=free_mb
        )
        for victim in victims:
            with self._lock:
                pool = self._pools[victim]
                if pool.is_busy():
                    continue  # a job took it meanwhile: it is not idle any more
                stopping, pool.runners = pool.runners, []
            logger.info(
                "job=%s stopping idle runner %s to make room (max=%d need_mb=%d free_mb=%s)",
                job_id,
                victim,
                max_live,
                vram_mb,
                free_mb,
            )
            for runner in stopping:
                runner.stop()

    def shutdown(self) -> None:
        """Stop every runner (at exit)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            for runner in pool.runners:
                runner.stop()
