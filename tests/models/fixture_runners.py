"""One small runner per behaviour, loaded by reference inside real runner processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from errors import InvalidInput
from runtime.protocol import OutputFile
from runtime.runner import Runner


class EchoRunner(Runner):
    """Writes the text to a file; reports its pid so tests can kill it."""

    def setup(self, weights):
        self.weights = weights
        print("stdout noise from a model library", flush=True)  # must not break the protocol

    def run(self, job, ctx):
        if job.get("text") == "reject":
            raise InvalidInput("text: this runner rejects 'reject'", field="text")
        ctx.progress("halfway", 0.5)
        out = Path(ctx.scratch) / "echo.txt"
        out.write_text(f"{os.getpid()} {job['text']} {sorted(self.weights)}")
        return [OutputFile(str(out), "text/plain")]


class SleepRunner(Runner):
    """Sleeps for job['seconds'] (a hang, as far as the host can tell)."""

    def run(self, job, ctx):
        Path(ctx.scratch, "pid").write_text(str(os.getpid()))
        time.sleep(float(job["seconds"]))
        return []


class ProgressThenHang(Runner):
    """Reports progress, works for job['seconds'], reports again, then hangs."""

    def run(self, job, ctx):
        ctx.progress("started", 0.0)
        time.sleep(float(job["seconds"]))
        ctx.progress("still going", 0.5)
        time.sleep(3600)
        return []


class ExcInSetup(Runner):
    def setup(self, weights):
        raise RuntimeError("weights file is corrupt")


class ExitInRun(Runner):
    def run(self, job, ctx):
        sys.stdout.flush()
        os._exit(3)


class KilledInRun(Runner):
    """SIGKILLs itself, as the OOM killer would."""

    def run(self, job, ctx):
        os.kill(os.getpid(), signal.SIGKILL)


class ExcInRun(Runner):
    def run(self, job, ctx):
        raise ZeroDivisionError("division by zero in the model")


class MemoryErrorInRun(Runner):
    def run(self, job, ctx):
        raise MemoryError


class InputEchoRunner(Runner):
    """Copies the fetched reference audio to its output (a stand-in clone model)."""

    def run(self, job, ctx):
        source = ctx.inputs["reference_audio"]
        assert source.parent == Path(ctx.scratch), "inputs must land in the job's scratch dir"
        out = Path(ctx.scratch) / "speech.wav"
        out.write_bytes(source.read_bytes())
        return [OutputFile(str(out), "audio/wav")]


class ChunkThenFail(Runner):
    """A streaming runner that sends one chunk, then rejects the job."""

    def run(self, job, ctx):
        path = Path(ctx.scratch) / "chunk-00000.wav"
        path.write_bytes(b"RIFF-not-really")
        ctx.emit_chunk(
            path,
            content_type="audio/wav",
            format="wav",
            sample_rate=24000,
            offset_s=0.0,
            duration_s=0.5,
        )
        raise InvalidInput("text: the second sentence cannot be spoken", field="text")


class ReferenceRunner(Runner):
    """Runs the real reference step of the cloning runners and answers with the
    prepared clip, so handler tests see what a cloning model would be given. Caches
    prepared clips by the reference file's sha256 as the f5tts runner does, and says
    in a progress message whether the cache served the job."""

    def setup(self, weights):
        import atexit
        import shutil
        import tempfile

        from media.cloning import ConditioningCache

        self.refs = Path(tempfile.mkdtemp(prefix="refecho-"))
        atexit.register(shutil.rmtree, self.refs, ignore_errors=True)
        self.cache = ConditioningCache(2, on_evict=lambda ref: ref.path.unlink())

    def run(self, job, ctx):
        import soundfile

        from media.cloning import prepared_reference, reference_key
        from media.reference_audio import ReferenceSpec
        from media.speech import SpeechAssembler

        spec = ReferenceSpec("refecho", 24_000, min_s=1.0, max_s=5.0)
        key = reference_key(ctx)
        hit = key in self.cache
        ref = self.cache.get_or_make(
            key, lambda: prepared_reference(ctx, spec, self.refs / f"{key}.wav")
        )
        ctx.progress(f"cache {'hit' if hit else 'miss'} text={job.get('reference_text')}", None)
        audio, rate = soundfile.read(ref.path, dtype="float32")
        speech = SpeechAssembler.for_job(ctx, job, rate=rate)
        half = len(audio) // 2  # two pieces: a streaming job gets two chunks
        speech.add(audio[:half])
        speech.add(audio[half:])
        return speech.finish()


class BlockRunner(Runner):
    """Holds its job until the file job['release'] exists (a long model call)."""

    def run(self, job, ctx):
        Path(ctx.scratch, "started").write_text(str(os.getpid()))
        release = Path(job["release"])
        while not release.exists():
            time.sleep(0.02)
        out = Path(ctx.scratch) / "released.txt"
        out.write_text("released")
        return [OutputFile(str(out), "text/plain")]


class EnvReportRunner(Runner):
    """Writes the environment its process was given, as JSON."""

    def run(self, job, ctx):
        out = Path(ctx.scratch) / "environ.json"
        out.write_text(json.dumps({"environ": dict(os.environ), "payload": job}))
        return [OutputFile(str(out), "application/json")]


class GatherRunner(Runner):
    """Serves a job that names its group, ``job["text"] = "<word> of <n>"``: it waits
    (up to a minute) until n jobs of the worker are inside a runner at once, then
    writes its text, its pid and what it saw. Jobs served one at a time never meet."""

    def run(self, job, ctx):
        size = int(job["text"].rsplit(" ", 1)[-1])
        arrived = Path(ctx.scratch).parent / "gather"  # the worker's scratch root
        arrived.mkdir(exist_ok=True)
        (arrived / f"{ctx.job_id}").write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while len(list(arrived.iterdir())) < size and time.monotonic() < deadline:
            time.sleep(0.02)
        met = len(list(arrived.iterdir()))
        out = Path(ctx.scratch) / "gathered.json"
        threads = os.environ.get("OMP_NUM_THREADS")
        seen = {"text": job["text"], "pid": os.getpid(), "met": met, "threads": threads}
        out.write_text(json.dumps(seen))
        return [OutputFile(str(out), "application/json")]
