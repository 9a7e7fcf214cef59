#!/usr/bin/env python3
"""Mutation checks: break the riskiest glue on purpose and expect the suite to notice.

For each mutant below, a scratch copy of the repository gets one textual change
(the search text must occur exactly once, so a mutant that no longer applies is
an error, not a silent pass) and a few targeted tests run against it. A mutant
the tests do not fail "survived": the script prints it and exits 1. The same
tests run once on the unchanged copy first and must pass, so a failure is the
mutant's doing.

    python .ci/mutants.py                 # every mutant
    python .ci/mutants.py --only ssrf     # one (or more, repeated)
    python .ci/mutants.py --list

Adding one is a row in MUTANTS. tests/test_mutants.py runs this in the slow tier.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file to change, relative to the repository root
    search: str  # text that must occur exactly once
    replace: str
    tests: tuple[str, ...]  # pytest node ids (or files) that must fail
    why: str


MUTANTS = (
    Mutant(
        "seedvr2-context-pruning",
        "runners/seedvr2.py",
        "    for key in [k for k in ctx if k not in _KEEP]:\n        del ctx[key]\n",
        "    pass\n",
        (
            "tests/runners/test_seedvr2_plan.py::"
            "test_call_upstream_keeps_only_the_device_context_between_batches",
        ),
        "upstream's context must be pruned to its kept keys between batches",
    ),
    Mutant(
        "whisper-task",
        "runners/whisper.py",
        '        "task": "translate" if job.get("translate") else "transcribe",\n',
        "",
        (
            "tests/runners/test_whisper.py::"
            "test_transcribe_options_name_the_job_in_faster_whispers_terms",
        ),
        "translate must reach faster-whisper as task='translate'",
    ),
    Mutant(
        "whisper-vad",
        "runners/whisper.py",
        '        "vad_filter": bool(job.get("vad")),\n',
        "",
        (
            "tests/runners/test_whisper.py::"
            "test_transcribe_options_name_the_job_in_faster_whispers_terms",
        ),
        "vad must reach faster-whisper as vad_filter",
    ),
    # The same two options dropped where the runner calls faster-whisper, past the
    # helper's test: only the slow test that records what the call received sees it.
    Mutant(
        "whisper-call-task",
        "runners/whisper.py",
        "found, info = self.model.transcribe(samples, **options)",
        "found, info = self.model.transcribe("
        'samples, **{k: v for k, v in options.items() if k != "task"})',
        (
            "tests/runners/test_whisper.py::test_the_job_reaches_faster_whisper_as_its_own_arguments",
        ),
        "translate must reach WhisperModel.transcribe as task='translate'",
    ),
    Mutant(
        "whisper-call-vad",
        "runners/whisper.py",
        "found, info = self.model.transcribe(samples, **options)",
        "found, info = self.model.transcribe("
        'samples, **{k: v for k, v in options.items() if k != "vad_filter"})',
        (
            "tests/runners/test_whisper.py::test_the_job_reaches_faster_whisper_as_its_own_arguments",
        ),
        "vad must reach WhisperModel.transcribe as vad_filter",
    ),
    Mutant(
        "clone-reference-key",
        "media/cloning.py",
        '    return file_sha256(ctx.inputs["reference_audio"])\n',
        '    return ctx.inputs["reference_audio"].name\n',
        (
            "tests/test_handler_clone.py::"
            "test_the_reference_cache_is_keyed_by_the_recordings_content",
        ),
        "the cloning cache must key a reference by its content, not its file name",
    ),
    Mutant(
        "seed-not-applied",
        "runners/kokoro.py",
        '            torch.manual_seed(int(job["seed"]))  # the vocoder\'s noise source\n',
        "            pass\n",
        (
            "tests/runners/test_kokoro.py::"
            "test_plain_jobs_are_24khz_deterministic_with_a_seed_and_grow_with_text",
        ),
        "a job's seed must seed the model's sampling, so the same seed repeats the audio",
    ),
    Mutant(
        "pool-never-grows",
        "models/host.py",
        "                if count == 0 or (count < size and self._fits(vram_mb, free_mb)):\n",
        "                if count == 0:\n",
        ("tests/test_concurrency.py::test_a_pool_serves_jobs_at_once_each_in_its_own_process",),
        "a runner's pool must grow past one process to serve jobs at once",
    ),
    Mutant(
        "ssrf",
        "storage/_fetch.py",
        "response = safe_get(url, stream=True, timeout=timeout_s, max_bytes=max_bytes)",
        'response = __import__("requests").get(url, stream=True, timeout=timeout_s)',
        (
            "tests/storage/test_fetch.py::test_direct_forbidden_hosts_are_refused",
            "tests/storage/test_fetch.py::test_redirect_to_forbidden_target_is_refused",
        ),
        "user URLs must go through the SSRF-safe fetch",
    ),
    Mutant(
        "cuda-visible-devices",
        "runtime/machine.py",
        'raw = env.get("CUDA_VISIBLE_DEVICES")',
        "raw = None",
        (
            "tests/runtime/test_machine.py",
            "tests/runners/test_whisper.py::"
            "test_default_model_profile_and_spec_hash_agree_on_one_gpu_fact",
        ),
        "CUDA_VISIBLE_DEVICES='' must hide the GPU from every decision",
    ),
    Mutant(
        "knob-refusal",
        "models/registry.py",
        "        if name in spec.knobs or getattr(job, name) == fields[name].default:\n",
        "        if True:\n",
        ("tests/models/test_registry.py::test_a_model_refuses_options_it_would_ignore",),
        "a model must refuse an option it would silently ignore",
    ),
    Mutant(
        "atomic-leftovers",
        "runtime/atomic.py",
        "            tmp.unlink(missing_ok=True)\n",
        "            pass\n",
        ("tests/runtime/test_atomic.py",),
        "a failed write must leave no temp file behind",
    ),
)


def _copy_repository(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a reviewer would see them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        source = ROOT / rel
        if source.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _pytest(copy: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="mutant name (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:26} {m.path}: {m.why}")
        return 0
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutant(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    with tempfile.TemporaryDirectory(prefix="mw-mutants-") as scratch:
        copy = Path(scratch)
        _copy_repository(copy)
        # The copy, not the editable install, must be what the tests import.
        where = subprocess.run(
            [sys.executable, "-c", "import config; print(config.__file__)"],
            cwd=copy,
            env={**os.environ, "PYTHONPATH": str(copy)},
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not where.startswith(str(copy)):
            print(f"the scratch copy is not what Python imports ({where})", file=sys.stderr)
            return 2
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        rc, out, took = _pytest(copy, tests)
        if rc != 0:
            print(f"baseline: the targeted tests fail without any mutant (rc {rc}):\n{out[-3000:]}")
            return 1
        print(f"baseline: {len(tests)} targeted test(s) pass ({took:.1f} s)")
        survived = []
        for m in chosen:
            path = copy / m.path
            original = path.read_text()
            if original.count(m.search) != 1:
                print(
                    f"{m.name}: its search text occurs {original.count(m.search)} times in "
                    f"{m.path}; update the mutant"
                )
                return 1
            path.write_text(original.replace(m.search, m.replace))
            try:
                rc, out, took = _pytest(copy, m.tests)
            finally:
                path.write_text(original)
            if rc == 1:
                print(f"killed   {m.name:26} ({took:.1f} s) {m.why}")
            else:
                survived.append(m.name)
                print(f"SURVIVED {m.name:26} (pytest rc {rc}) {m.why}\n{out[-1500:]}")
    if survived:
        print(f"{len(survived)} mutant(s) survived: {', '.join(survived)}")
        return 1
    print(f"all {len(chosen)} mutant(s) killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
