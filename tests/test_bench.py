"""Every bench in bench/ runs at its smallest size, so none can rot unnoticed again.

``bench/voices.py`` failed at once for weeks (it sent ``seed`` to Piper, which the
worker refuses) because nothing ran it. Each bench has a smoke test here or,
where it needs a profile interpreter that a model's tests build anyway, beside
those tests; ``SMOKE_TESTS`` names them all and a fast test keeps it complete.
The smoke tests check that a bench prints its table and its last ``name=<ratio>``
line; they assert nothing about the figures (benches measure, tests do not).
"""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# bench script -> the tests that run it ("file::function").
SMOKE_TESTS: dict[str, tuple[str, ...]] = {
    "bootstrap.py": ("tests/test_bench.py::test_bootstrap_bench_runs",),
    "concurrency.py": ("tests/test_bench.py::test_concurrency_bench_runs_small",),
    "hub_unreachable.py": ("tests/test_bench.py::test_hub_unreachable_bench_runs",),
    "g2p.py": ("tests/runners/test_kokoro.py::test_g2p_bench_runs_with_the_profile_interpreter",),
    "gpu.py": (
        "tests/runners/test_kokoro.py::test_gpu_bench_cpu_path_runs_with_the_profile_interpreter",
        "tests/runners/test_upscale.py::"
        "test_gpu_bench_upscale_rows_run_on_the_cpu_with_the_profile_interpreter",
    ),
    "reference_audio.py": ("tests/test_bench.py::test_reference_audio_bench_runs",),
    "restore.py": (
        "tests/runners/test_upscale.py::test_restore_bench_runs_small",
        "tests/test_bench.py::test_restore_bench_measures_x264_presets",
    ),
    "startup.py": ("tests/test_bench.py::test_startup_bench_runs",),
    "seedvr2.py": ("tests/runners/test_seedvr2.py::test_seedvr2_bench_runs_both_paths_small",),
    "transcribe.py": ("tests/runners/test_whisper.py::test_transcribe_bench_runs_small",),
    "tts_overhead.py": ("tests/test_bench.py::test_tts_overhead_bench_runs_small",),
    "voices.py": (
        "tests/test_bench.py::test_voices_bench_runs_piper",
        "tests/runners/test_kokoro.py::test_voices_bench_runs_kokoro_with_the_profile_interpreter",
    ),
}

# Benches no test here can run, and why; each still needs a smoke test where it can run.
NOT_RUN_HERE: dict[str, str] = {}


def run_bench(
    argv: list[str], *, python: str = sys.executable, env: dict[str, str] | None = None
) -> list[str]:
    """Run ``bench/<argv[0]>`` with ``python``; its stdout lines (fails with its stderr)."""
    done = subprocess.run(
        [python, f"bench/{argv[0]}", *argv[1:]],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout.splitlines()


def last_ratio(lines: list[str], name: str) -> float:
    """The value of the bench's closing ``name=<ratio>`` line, a positive finite number."""
    key, _, value = lines[-1].partition("=")
    assert key == name, lines[-5:]
    ratio = float(value)
    assert math.isfinite(ratio) and ratio > 0, lines[-1]
    return ratio


def _benches() -> set[str]:
    return {p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")}


def test_every_bench_has_a_smoke_test_that_runs_it():
    assert set(SMOKE_TESTS) | set(NOT_RUN_HERE) == _benches()
    assert not set(SMOKE_TESTS) & set(NOT_RUN_HERE)
    for bench, nodes in SMOKE_TESTS.items():
        for node in nodes:
            path, _, name = node.partition("::")
            tree = ast.parse((ROOT / path).read_text())
            found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
            assert found, f"{node} does not exist: SMOKE_TESTS names a renamed or removed test"
            fn = found[0]
            source = ast.get_source_segment((ROOT / path).read_text(), fn) or ""
            # The test names its bench: a path "bench/x.py" or run_bench(["x.py", ...]).
            assert f"bench/{bench}" in source or f'"{bench}"' in source, node


@pytest.mark.slow
def test_voices_bench_runs_piper():
    """The issue's own command, at one run: Piper ours vs raw and the worst ratio."""
    lines = run_bench(["voices.py", "--runs", "1"])
    rows = [line.split() for line in lines if line.startswith("piper")]
    assert [r[1] for r in rows] == ["first_ms", "total_ms", "rtf_x"], lines
    last_ratio(lines, "worst_overhead_ratio")


@pytest.mark.slow
def test_tts_overhead_bench_runs_small():
    lines = run_bench(["tts_overhead.py", "--runs", "1", "--small"])
    assert any(line.startswith("ours: full job through handler.handler") for line in lines)
    last_ratio(lines, "overhead_ratio")


@pytest.mark.slow
def test_concurrency_bench_runs_small():
    lines = run_bench(["concurrency.py", "--small"])
    ways = [line.split()[0:2] for line in lines[2:-1]]
    assert ways == [["raw", "serial"], ["raw", "threads"], ["pool", "1"], ["pool", "2"]], lines
    last_ratio(lines, "pool_ratio")


@pytest.mark.slow
def test_restore_bench_measures_x264_presets():
    lines = run_bench(["restore.py", "--presets", "--frames", "2"])
    assert [line.split()[0] for line in lines[2:-1]] == [
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
    ], lines
    last_ratio(lines, "veryfast_speedup")


@pytest.mark.slow
def test_startup_bench_runs():
    lines = run_bench(["startup.py", "--runs", "1"])
    assert any("import handler (ours)" in line for line in lines), lines
    last_ratio(lines, "startup_ratio")


@pytest.mark.slow
def test_reference_audio_bench_runs():
    lines = run_bench(["reference_audio.py", "--runs", "1"])
    assert any(line.startswith("webm-opus") for line in lines), lines
    last_ratio(lines, "overhead_ratio")


@pytest.mark.slow
def test_bootstrap_bench_runs(uv_cache):
    lines = run_bench(["bootstrap.py", "--reps", "1"], env={"UV_CACHE_DIR": str(uv_cache)})
    assert any(line.startswith("warm ensure()") for line in lines), lines
    last_ratio(lines, "restore_ratio")


@pytest.mark.slow
def test_hub_unreachable_bench_runs():
    lines = run_bench(["hub_unreachable.py"], env={"MEDIA_WORKER_HUB_TIMEOUT_S": "1"})
    assert lines[0].startswith("refused hub: raw ") and lines[1].startswith("silent hub:  ours")
    last_ratio(lines, "hub_fail_ratio")
