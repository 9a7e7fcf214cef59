""".ci/check_skips.py on the log of a real pytest run: skips counted, must-run tiers fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_TESTS = """
import pytest
from tests.fixtures.tiers import skip_tier

def test_runs():
    assert True

def test_optional_extra():
    pytest.skip("needs the optional GPU")

def test_needs_a_tool():
    {tier_call}
"""


def _pytest_log(tmp_path: Path, tier_call: str) -> Path:
    (tmp_path / "test_sample.py").write_text(_TESTS.format(tier_call=tier_call))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = tmp_path / "pytest.log"
    log.write_text(run.stdout + run.stderr)
    return log


def _check(log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "check_skips.py"), str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.parametrize("tier", ["s3", "url-fetch", "tmpfs"])
def test_a_skipped_must_run_tier_fails_ci_and_names_the_tool(tmp_path, tier):
    log = _pytest_log(tmp_path, f'skip_tier("{tier}", "the tool is not installed")')
    check = _check(log)
    assert check.returncode == 1, check.stdout
    assert "skipped tests: 2" in check.stdout
    assert "needs the optional GPU" in check.stdout
    assert "FAIL: a tier that must run here was skipped" in check.stdout
    assert f"tier {tier} not run: the tool is not installed" in check.stdout.split("FAIL:")[1]


@pytest.mark.slow
def test_other_skips_are_counted_and_pass(tmp_path):
    log = _pytest_log(tmp_path, "pass")
    check = _check(log)
    assert check.returncode == 0, check.stdout
    assert "skipped tests: 1" in check.stdout and "needs the optional GPU" in check.stdout
    assert "FAIL" not in check.stdout
