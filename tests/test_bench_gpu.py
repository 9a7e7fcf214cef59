"""bench/gpu.py's table: one row per runner variant, the union of their metrics."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rows_with_different_metrics_share_one_table():
    gpu = _gpu_bench()
    table = gpu.render(
        [
            gpu.Row("kokoro", "fp32", {"rtf_x": "210.0", "first_ms": "95"}, "full"),
            gpu.Row("upscale", "fp16", {"fps": "31.5"}),
            gpu.Row("whisper", "-", note="failed: ImportError: no module"),
        ]
    )
    header, rule, *lines = table.splitlines()
    assert header.split(" | ")[0].strip() == "runner"
    assert [c.strip() for c in header.split("|")] == [
        "runner",
        "variant",
        "rtf_x",
        "first_ms",
        "fps",
        "note",
    ]
    assert set(rule) <= {"-", "+"}
    assert [c.strip() for c in lines[1].split("|")] == ["upscale", "fp16", "", "", "31.5", ""]
    assert lines[2].rstrip().endswith("failed: ImportError: no module")


def test_every_row_function_is_named_after_its_runner():
    gpu = _gpu_bench()
    assert gpu.ROWS and all(fn.__name__.endswith("_rows") for fn in gpu.ROWS)


@pytest.mark.slow
def test_piper_rows_put_the_worker_beside_the_library_on_the_cpu(tmp_path):
    gpu = _gpu_bench()
    rows = gpu.piper_rows(gpu.Bench(device="cpu", small=True, tmp=tmp_path, runs=1))
    assert [(r.runner, r.variant) for r in rows] == [("piper", "cpu worker"), ("piper", "cpu raw")]
    ours, raw = rows
    for row in rows:
        assert float(row.metrics["audio_s"]) > 1.0  # one spoken sentence
        assert row.metrics["rtf_x"] > 0 and row.metrics["first_ms"] > 0
    assert ours.metrics["ours/raw"] == pytest.approx(
        ours.metrics["wall_s"] / raw.metrics["wall_s"], rel=0.01
    )
    assert "piper" in gpu.render(rows)


@pytest.mark.slow
def test_cpu_run_writes_its_rows_as_json_and_names_what_is_not_installed(tmp_path, capsys):
    gpu = _gpu_bench()
    out = tmp_path / "gpu.json"
    with mock.patch.dict(sys.modules, {"kokoro": None}):  # as on a machine without it
        rc = gpu.main(["--device", "cpu", "--small", "--only", "piper,kokoro", "--json", str(out)])
    printed = capsys.readouterr().out
    body = json.loads(out.read_text())
    assert body["done"] is True and body["device"] == "cpu" and body["small"] is True
    assert [(r["runner"], r["variant"]) for r in body["rows"]] == [
        ("piper", "cpu worker"),
        ("piper", "cpu raw"),
        ("kokoro", "-"),
    ]
    assert body["rows"][2]["note"].startswith("not installed: kokoro")
    assert rc == 0  # a row whose library is absent is no failure
    # each row is printed as it is measured, before the table
    assert printed.index("row: piper | cpu worker") < printed.index("runner ")


@pytest.mark.slow
def test_e2e_runs_jobs_through_the_handler_in_this_interpreter(tmp_path):
    gpu = _gpu_bench()
    rows = gpu.e2e_rows(gpu.Bench(device="cpu", small=True, tmp=tmp_path, runs=1))
    by_variant = {r.variant: r for r in rows}
    cold, warm = by_variant["piper cold"], by_variant["piper warm"]
    assert not cold.note.startswith("failed") and not warm.note.startswith("failed"), rows
    assert float(cold.metrics["load_s"]) > 0 and float(warm.metrics["load_s"]) == 0
    assert float(warm.metrics["out_s"]) > 1.0  # one spoken sentence, published
    assert {r.runner for r in rows} == {"e2e tts", "e2e restore"}  # a row per task tried
    assert "MEDIA_WORKER_IN_PLACE" not in os.environ  # the settings were restored
