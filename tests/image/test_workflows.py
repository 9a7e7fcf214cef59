"""The GitHub Actions workflows are valid and do what the project relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML  # a dependency of check-jsonschema (dev extra)

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _load(name: str) -> dict[str, Any]:
    # YAML 1.2 (ruamel's safe loader): the "on" key stays a string.
    return YAML(typ="safe").load((ROOT / ".github" / "workflows" / name).read_text())


def _steps_text(workflow: dict[str, Any]) -> str:
    parts = []
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            parts.append(str(step.get("run", "")))
            parts.append(str(step.get("uses", "")))
            parts.append(str(step.get("with", "")))
    return "\n".join(parts)


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"test.yml", "image.yml"}


def test_workflows_validate_against_the_github_workflow_schema():
    here = str(Path(sys.executable).parent)
    exe = shutil.which("check-jsonschema") or shutil.which("check-jsonschema", path=here)
    if exe is None:
        pytest.fail("check-jsonschema not found; install the dev extra: pip install -e '.[dev]'")
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["test.yml", "image.yml"])
def test_a_newer_run_cancels_the_older_one(name: str):
    concurrency = _load(name)["concurrency"]
    assert concurrency["cancel-in-progress"] is True
    assert "github.ref" in concurrency["group"] and "github.workflow" in concurrency["group"]


def test_test_workflow_runs_every_tier_and_check():
    workflow = _load("test.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    text = _steps_text(workflow)
    for needle in (
        "ruff check",
        "ruff format --check",
        'pytest -m "not slow"',
        "pytest -m slow",
        "hadolint",
        "check-jsonschema --builtin-schema vendor.github-workflows",
        "pytest tests/image",
    ):
        assert needle in text, f"test.yml does not run {needle!r}"


def test_image_workflow_builds_caches_tags_and_pushes():
    workflow = _load("image.yml")
    triggers = workflow["on"]
    assert "main" in triggers["push"]["branches"] and triggers["push"]["tags"] == ["v*"]
    job = workflow["jobs"]["build"]
    steps = {str(s.get("uses", "")).split("@")[0]: s for s in job["steps"] if "uses" in s}
    assert "docker/setup-buildx-action" in steps
    build = steps["docker/build-push-action"]["with"]
    assert build["platforms"] == "linux/amd64"
    assert build["cache-from"] == "type=gha" and build["cache-to"].startswith("type=gha")
    tags = steps["docker/metadata-action"]["with"]["tags"]
    for tag in ("type=sha", "value=latest,enable={{is_default_branch}}", "type=semver"):
        assert tag in tags, f"missing tag rule {tag}"
    text = _steps_text(workflow) + str(job.get("env", ""))
    assert "ghcr.io/${GITHUB_REPOSITORY}" in text or "ghcr.io/${{ github.repository }}" in text
    assert "secrets.DOCKERHUB_USERNAME" in text and "secrets.DOCKERHUB_TOKEN" in text
    assert workflow["permissions"]["packages"] == "write"
