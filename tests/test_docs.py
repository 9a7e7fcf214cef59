"""The docs are pages checked against the code: links resolve, the front page's model
table is the registry's, the CLI reference is the CLI's own help, no page is orphaned.

``python -m tests.test_docs`` rewrites docs/reference/cli.md from the CLI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models import registry

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _links(page: Path) -> list[str]:
    text, fence = [], False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence:
            text.append(line)
    return _LINK.findall("\n".join(text))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    for target in _links(page):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which is not there"


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md":
            continue
        seen.add(page)
        for target in _links(page):
            if not target.startswith(("http://", "https://", "mailto:", "#")):
                todo.append((page.parent / target.split("#", 1)[0]).resolve())
    orphans = [p.relative_to(ROOT) for p in PAGES if p.resolve() not in seen]
    assert not orphans, f"no link reaches {orphans}"


_DEFAULT = {"gpu": "on a GPU", "cpu": "on a CPU", "always": "yes", "": "no"}


def test_the_front_page_model_table_is_the_registry():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Tasks and models", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and (m := re.fullmatch(r"`([\w.-]+)`", cells[1])):
            rows[m[1]] = cells
    served = {spec.model: spec for spec in registry.RUNNERS}
    assert set(rows) == set(served), "README's model table and the registry differ"
    for model, cells in rows.items():
        spec = served[model]
        assert f"`{spec.task}`" in cells[0], model
        assert cells[3] == _DEFAULT[spec.default], f"{model}: default"
        vram = f"{spec.vram_mb} MB" if spec.vram_mb else "none (CPU)"
        assert cells[4] == vram, f"{model}: declared VRAM is {vram} in the code"


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    run, test = block.strip().splitlines()
    assert run.endswith(".venv/bin/python handler.py")
    assert test.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[piper,dev]'" in ci
    assert ".venv/bin/python -m pytest" in ci


CLI = (
    ("python -m models", ("-m", "models", "--help")),
    *(
        (f"python -m models {c}", ("-m", "models", c, "--help"))
        for c in ("status", "prepare", "verify", "gc", "doctor", "schema", "settings")
    ),
)


def cli_reference() -> str:
    """docs/reference/cli.md, from each command's own --help."""
    env = {**os.environ, "COLUMNS": "90"}
    parts = [
        "# CLI reference\n\n"
        "Generated from the commands' own `--help` (`python -m tests.test_docs` rewrites "
        "this page; a test keeps it current). What the commands do and when to run them: "
        "[the volume](../concepts/volume.md). Other entry points: `python handler.py` "
        "(the worker; [quick start](../../README.md)); `python -m models settings` prints "
        "the [settings](configuration.md) table.\n"
    ]
    for title, args in CLI:
        out = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout
        parts.append(f"## `{title}`\n\n```\n{out.rstrip()}\n```\n")
    return "\n".join(parts)


def test_the_cli_reference_is_the_clis_own_help():
    page = ROOT / "docs" / "reference" / "cli.md"
    assert page.read_text() == cli_reference(), (
        "docs/reference/cli.md is stale: run `python -m tests.test_docs`"
    )


if __name__ == "__main__":
    (ROOT / "docs" / "reference" / "cli.md").write_text(cli_reference())


def test_the_contract_references_knob_table_is_each_runners_knobs():
    """docs/reference/contract.md's "honours" column is RunnerSpec.knobs, row by row."""
    text = (ROOT / "docs" / "reference" / "contract.md").read_text()
    table = text.split("| model | honours | refuses |", 1)[1].split("\n\n", 1)[0]
    honoured: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        models, knobs, _ = (c.strip() for c in line.strip().strip("|").split("|"))
        if "whisper" in models:
            continue  # their own fields, not knobs
        for model in re.findall(r"`([\w.-]+)`", models):
            honoured[model] = set(re.findall(r"`(\w+)`", knobs))
    served = {s.model: set(s.knobs) for s in registry.RUNNERS if s.task != "transcribe"}
    assert honoured == served


def _migration_rows() -> list[tuple[str, str, object, str]]:
    text = (ROOT / "docs" / "guides" / "migrate.md").read_text()
    rows = []
    for section in text.split("\n## ")[1:]:
        title = section.splitlines()[0]
        for line in section.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 3 and (m := re.fullmatch(r"`(\w+)`", cells[0])):
                example = json.loads(cells[1].strip("`"))
                rows.append((title, m[1], example, cells[2]))
    return rows


@pytest.mark.parametrize(("peer", "field", "example", "here"), _migration_rows())
def test_the_migration_guide_says_what_each_peer_field_gets(peer, field, example, here):
    """Every row of docs/guides/migrate.md, through the worker's validation and the
    runner's pre-flight check (no model runs): accepted or refused, as the row says."""
    from errors import InvalidInput
    from models import jobs

    if peer.startswith("worker-faster_whisper"):  # their jobs have no task
        job = {"audio": "https://example.com/speech.wav", field: example}
        if field == "audio_base64":
            del job["audio"]
    else:
        job = {"task": "tts", "model": "kokoro", "text": "Hello there.", field: example}
        if field == "input":
            del job["text"]
        if field == "model":
            job["model"] = example
    assert here.split(":")[0] in ("accepted", "refused"), here
    if here.startswith("accepted"):
        registry.resolve(jobs.parse_job(job))
    else:
        with pytest.raises(InvalidInput) as refused:
            registry.resolve(jobs.parse_job(job))
        assert refused.value.field == field or refused.value.message.startswith(f"{field}:")


def test_the_deploy_guides_vram_figures_are_the_runners_declared_ones():
    """The figures the deploy guide quotes for RunnerSpec.vram_mb (one had gone stale:
    upscale 2048 after the code declared 3072)."""
    text = " ".join((ROOT / "docs" / "guides" / "deploy-runpod.md").read_text().split())
    declared = {s.model: s.vram_mb for s in registry.RUNNERS}
    quoted = re.search(r"RunnerSpec\.vram_mb`: (.+?), estimates", text)[1]
    for name, figure in re.findall(r"(kokoro|f5tts|chatterbox|upscale) (\d+)", quoted):
        assert declared[name] == int(figure), name
    assert f"whisper {declared['tiny']} (tiny) to {declared['large-v3']} (large)" in quoted
    assert f"seedvr2 {declared['seedvr2-3b']} (3b) and {declared['seedvr2-7b']} (7b)" in quoted


def test_the_restore_page_gives_resolutions_range_as_the_contract_has_it():
    from models.tasks.restore import RestoreJob

    bounds = {type(m).__name__: m for m in RestoreJob.model_fields["resolution"].metadata}
    low, high = bounds["Ge"].ge, bounds["Le"].le
    page = " ".join((ROOT / "docs" / "tasks" / "restore.md").read_text().split())
    assert f"is {low} to {high} pixels" in page


def _job_examples() -> list[tuple[str, dict]]:
    """Every job the docs show (a JSON block or a shell-quoted one with an ``input``
    holding a ``task``), test_input.json and the Hub's test jobs."""
    found = []
    for page in [ROOT / "README.md", *PAGES]:
        text = page.read_text()
        for raw in re.findall(r"```json\n(.*?)```", text, re.S) + re.findall(r"'(\{.*?\})'", text):
            try:
                example = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a sketch with "..." in it, not a job
            if isinstance(example.get("input"), dict) and "task" in example["input"]:
                found.append((str(page.relative_to(ROOT)), example["input"]))
    found.append(("test_input.json", json.loads((ROOT / "test_input.json").read_text())["input"]))
    for test in json.loads((ROOT / ".runpod" / "tests.json").read_text())["tests"]:
        found.append((f".runpod/tests.json {test['name']}", test["input"]))
    return found


def test_every_job_the_docs_show_is_accepted_by_the_schema_and_the_worker():
    from jsonschema import Draft202012Validator

    from models import jobs

    validator = Draft202012Validator(jobs.json_schema())
    examples = _job_examples()
    assert len(examples) >= 10, examples  # the extraction itself still finds them
    for where, job in examples:
        errors = [e.message for e in validator.iter_errors(job)]
        assert not errors, (where, errors)
        jobs.parse_job(job)


def test_every_field_the_task_pages_document_is_in_the_schema():
    """The other way round: a field a task page's tables name (a `| field |` table, or
    a model's knobs column) is a property of that task's job in the published schema."""
    from models import jobs, registry

    defs = jobs.json_schema()["$defs"]
    checked = 0
    for task, spec in registry.TASKS.items():
        page = ROOT / "docs" / "tasks" / f"{task}.md"
        if not page.exists():
            continue
        properties = defs[spec.job.__name__]["properties"]
        column = None
        for line in page.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.startswith("|") or set(cells[0]) <= {"-", " "}:
                column = None if not line.startswith("|") else column
                continue
            if "field" in cells[:1] or "knobs" in cells:
                column = 0 if cells[0] == "field" else cells.index("knobs")
                continue
            if column is not None:
                for name in re.findall(r"`(\w+)`", cells[column]):
                    assert name in properties, (task, name)
                    checked += 1
    assert checked >= 20, checked


def test_the_readmes_test_counts_are_what_pytest_collects():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", "not slow"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    fast, total = map(int, re.search(r"(\d+)/(\d+) tests collected", done.stdout).groups())
    readme = (ROOT / "README.md").read_text()
    assert f"the whole suite ({total:,} tests" in readme, total
    assert f"the fast tier ({fast:,} tests)" in readme, fast
