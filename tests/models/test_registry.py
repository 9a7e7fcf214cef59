"""Registry: modules declare runners, tasks and profiles; the registry checks them together."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from errors import InvalidInput, ModelUnavailable
from models import contract, jobs, registry
from models.tasks.clone import CloneJob
from models.tasks.restore import RestoreJob
from models.tasks.tts import TtsJob

ROOT = Path(__file__).resolve().parents[2]


def _declared_in_source(folder: str, name: str) -> set[str]:
    """The modules of ``folder`` that assign ``name`` at top level, read as source text."""
    found = set()
    for path in sorted((ROOT / folder).glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.add(path.stem)
    return found


def test_every_module_declaring_specs_or_tasks_is_served():
    # Read from the files, not from discover(): a module the registry skipped, or a
    # spec it dropped, fails here.
    runner_modules = _declared_in_source("runners", "SPECS")
    assert {"piper", "kokoro", "chatterbox", "f5tts", "whisper", "upscale", "seedvr2"} <= (
        runner_modules
    )
    served = {spec.runner_ref.split(":")[0].rsplit(".", 1)[1] for spec in registry.RUNNERS}
    assert served == runner_modules
    for module in runner_modules:
        specs = importlib.import_module(f"runners.{module}").SPECS
        assert all(spec in registry.RUNNERS for spec in specs)
    task_modules = _declared_in_source("models/tasks", "TASKS")
    declared = {
        t.name for m in task_modules for t in importlib.import_module(f"models.tasks.{m}").TASKS
    }
    assert declared == set(registry.TASKS) == {"tts", "clone", "voices", "restore", "transcribe"}


def _package(tmp_path, name, modules: dict[str, str]):
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    for module, text in modules.items():
        (root / f"{module}.py").write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


_SPEC = (
    "from runtime.runner import RunnerSpec\n"
    "SPECS = (RunnerSpec('tts', '{m}', 'r:R', 'piper'{extra}),)\n"
)


def test_discover_collects_specs_and_skips_base_and_private(tmp_path):
    package = _package(
        tmp_path,
        "runners_ok",
        {
            "b": _SPEC.format(m="b", extra=""),
            "a": _SPEC.format(m="a", extra=""),
            "base": "",
            "_util": "",
        },
    )
    declared = registry.discover("models.tasks", package)
    assert [s.model for s in declared.runners] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("X = 1\n", r"runners_bad_\d+\.m must declare SPECS"),
        ("SPECS = ['not a tuple']\n", r"_\d+\.m\.SPECS must be a tuple of RunnerSpec"),
        (_SPEC.replace("'tts'", "'sing'").format(m="a", extra=""), "no module declares task"),
        (_SPEC.replace("'piper'", "'nope'").format(m="a", extra=""), "no profile 'nope'"),
        (_SPEC.format(m="a", extra=", knobs=('tempo',)"), r"knobs \['tempo'\] are not KNOB"),
        (_SPEC.format(m="a", extra=", default='sometimes'"), "default must be one of"),
        (_SPEC.format(m="piper", extra=""), "model 'piper' is declared twice"),
    ],
)
def test_discover_names_what_a_module_declares_wrongly(tmp_path, text, error):
    # a package name of its own per case: Python caches imported modules by name
    package = _package(tmp_path, f"runners_bad_{len(sys.modules)}", {"m": text})
    with pytest.raises(TypeError, match=error):
        registry.discover("models.tasks", "runners", package)


@pytest.mark.parametrize(
    ("job_type", "mark", "fields"),
    [
        (TtsJob, contract.MEDIA, ()),
        (CloneJob, contract.MEDIA, ("reference_audio",)),
        (RestoreJob, contract.MEDIA, ("video",)),
        (TtsJob, contract.KNOB, ("seed", "timestamps", "voice", "speed", "instructions")),
        (
            CloneJob,
            contract.KNOB,
            (
                "seed",
                "timestamps",
                "language",
                "speed",
                "temperature",
                "exaggeration",
                "cfg_weight",
                "nfe_step",
            ),
        ),
        (
            RestoreJob,
            contract.KNOB,
            ("seed", "batch_size", "temporal_overlap", "color_correction", "crf", "tile"),
        ),
    ],
)
def test_fields_marked(job_type, mark, fields):
    assert contract.fields_marked(job_type, mark) == fields


def _clone(**fields):
    return jobs.parse_job(
        {"task": "clone", "model": "plain-clone", "text": "Hi.", "reference_audio": "s3://b/k"}
        | fields
    )


@pytest.mark.parametrize(
    ("fields", "knobs", "refused"),
    [
        ({}, (), None),
        ({"speed": 1.0, "exaggeration": None}, (), None),  # defaults change nothing
        ({"exaggeration": 1.5}, (), "exaggeration"),
        ({"exaggeration": 1.5}, ("exaggeration",), None),
        ({"nfe_step": 16, "speed": 1.2}, ("speed",), "nfe_step"),
    ],
)
def test_a_model_refuses_options_it_would_ignore(monkeypatch, fields, knobs, refused):
    spec = registry.RunnerSpec("clone", "plain-clone", "x:Y", "piper", knobs=knobs)
    monkeypatch.setattr(registry, "RUNNERS", (spec,))
    job = _clone(**fields)
    if refused is None:
        assert registry.resolve(job) is spec
        return
    with pytest.raises(InvalidInput, match=f"^{refused}: model 'plain-clone' does not use") as e:
        registry.resolve(job)
    assert e.value.field == refused


def test_a_task_without_a_shipped_model_is_unavailable(monkeypatch):
    job = jobs.parse_job({"task": "restore", "video": "s3://b/k.mp4"})
    monkeypatch.setattr(registry, "RUNNERS", ())
    with pytest.raises(ModelUnavailable, match="task 'restore' has no model") as info:
        registry.resolve(job)
    assert info.value.field == "task"
    shipped = registry.RunnerSpec("restore", "seedvr3", "x:Y", "piper", default="always")
    monkeypatch.setattr(registry, "RUNNERS", (shipped,))
    assert registry.resolve(job) is shipped


def test_start_logs_a_default_model_only_for_tasks_a_runner_serves(monkeypatch, caplog):
    """Every start logged "default voices model=None": voices has no runner to choose."""
    monkeypatch.setattr(registry, "_DEFAULTS", {})
    caplog.set_level("INFO", logger="models.registry")
    for task in registry.TASKS:
        registry.decide_default(task)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("default ")]
    assert not any(m.startswith("default voices ") for m in logged), logged
    served = [t for t, spec in registry.TASKS.items() if spec.serve is None]
    assert sorted(m.split()[1] for m in logged) == sorted(served)
    assert registry.decide_default("voices") is None
