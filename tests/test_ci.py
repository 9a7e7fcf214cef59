""".ci/check_skips.py on the log of a real pytest run: skips counted, must-run tiers fail."""

from __future__ import annotations

import os
import re
import shutil
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


_PROJECT = """\
[project]
name = "ci-sample"
version = "0"

[project.optional-dependencies]
piper = []
dev = ["pytest", "ruff", "import-linter"]

[tool.setuptools]
packages = ["sample"]

[tool.ruff]
line-length = 100

[tool.importlinter]
root_packages = ["sample"]

[[tool.importlinter.contracts]]
name = "low never imports high"
type = "layers"
layers = ["sample.high", "sample.low"]
"""


# Writes into tmp_path, as the real suite's builds do, so a kept basetemp would show.
_SAMPLE = """\
def test_sample(tmp_path):
    (tmp_path / "env").write_bytes(bytes(1024))
    assert 1 + 1 == {total}
"""


@pytest.mark.slow
def test_ci_run_removes_its_log_when_green_and_keeps_it_when_red(tmp_path):
    """.ci/run itself, on a one-test project with the same layout: a green run leaves
    no log in the temp folder (it left 2.3 MB there every time); a red run keeps it
    and prints where it is. Neither leaves the tests' temporary files behind: red
    runs' basetemps once piled up to 49 GB and failed the next run's builds."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    for name in ("run", "check_skips.py"):
        shutil.copy2(ROOT / ".ci" / name, repo / ".ci" / name)
    (repo / "pyproject.toml").write_text(_PROJECT)
    (repo / "sample").mkdir()
    for name in ("__init__", "high", "low"):
        (repo / "sample" / f"{name}.py").write_text("")
    (repo / "tests").mkdir()
    sample = repo / "tests" / "test_sample.py"
    sample.write_text(_SAMPLE.format(total=2))
    temp = tmp_path / "tmp"
    temp.mkdir()
    # As on a fresh machine: not the outer .ci/run's SeedVR2 source, if one ran this.
    env = {k: v for k, v in os.environ.items() if k != "MW_TEST_SEEDVR2_SOURCE"}
    env["TMPDIR"] = str(temp)

    def ci() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", ".ci/run"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
        )

    green = ci()
    assert green.returncode == 0, green.stdout + green.stderr
    assert "1 passed" in green.stdout
    assert re.search(r"^disk: \d+ GB free for the run's temporary files", green.stdout, re.M)
    assert list(temp.iterdir()) == []
    assert "SeedVR2 source for its tier: none (that tier skips)" in green.stdout

    vendored = tmp_path / "shared" / "vendor" / "seedvr2-src"  # beside the checkout
    vendored.mkdir(parents=True)

    sample.write_text(_SAMPLE.format(total=3))
    red = ci()
    assert red.returncode == 1, red.stdout + red.stderr
    (log,) = temp.glob("media-worker-ci.*.log")
    assert f"full log kept: {log}" in red.stdout
    assert "1 failed" in red.stdout and "assert 1 + 1 == 3" in log.read_text()
    assert list(temp.iterdir()) == [log]
    assert f"SeedVR2 source for its tier: {vendored}" in red.stdout


def test_the_seedvr2_source_is_found_skipped_without_or_refused_when_set_wrong(
    tmp_path, monkeypatch
):
    from tests.fixtures import seedvr2 as fx

    monkeypatch.setattr(fx, "DEFAULT_SOURCE", tmp_path / "carry")
    monkeypatch.delenv(fx.SOURCE_ENV, raising=False)
    assert fx.find_source() is None  # a user's clone: the tier skips, saying why
    assert fx.SOURCE_ENV in fx.missing_source_reason()
    monkeypatch.setenv(fx.SOURCE_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="holds no SeedVR2 checkout"):
        fx.find_source()
    (tmp_path / "tree" / "src" / "core").mkdir(parents=True)
    (tmp_path / "tree" / "src" / "core" / "generation_phases.py").write_text("")
    monkeypatch.setenv(fx.SOURCE_ENV, str(tmp_path / "tree"))
    assert fx.find_source() == tmp_path / "tree"
