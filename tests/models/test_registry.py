"""Registry: runner modules declare their specs; the contract's markers drive the rest."""

from __future__ import annotations

import importlib
import sys

import pytest

from errors import InvalidInput, ModelUnavailable
from models import contract, registry
from models.runners import piper


def test_runner_modules_declare_what_the_registry_serves():
    assert piper.SPECS[0] in registry.RUNNERS
    assert registry.discover() == registry.RUNNERS


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


def test_discover_collects_specs_and_skips_base_and_private(tmp_path):
    spec = (
        "from models.runners.base import RunnerSpec\n"
        "SPECS = (RunnerSpec('tts', '{m}', 'r:R', 'p'),)\n"
    )
    package = _package(
        tmp_path,
        "runners_ok",
        {"b": spec.format(m="b"), "a": spec.format(m="a"), "base": "", "_util": ""},
    )
    assert [s.model for s in registry.discover(package)] == ["a", "b"]


def test_a_runner_module_without_specs_is_named(tmp_path):
    package = _package(tmp_path, "runners_bad", {"forgot": "X = 1\n"})
    with pytest.raises(TypeError, match=r"runners_bad\.forgot must declare SPECS"):
        registry.discover(package)


@pytest.mark.parametrize(
    ("job_type", "mark", "fields"),
    [
        (contract.TtsJob, contract.MEDIA, ()),
        (contract.CloneJob, contract.MEDIA, ("reference_audio",)),
        (contract.RestoreJob, contract.MEDIA, ("video",)),
        (contract.TtsJob, contract.KNOB, ("seed", "timestamps", "voice", "speed")),
        (
            contract.CloneJob,
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
            contract.RestoreJob,
            contract.KNOB,
            ("seed", "batch_size", "temporal_overlap", "color_correction", "crf", "tile"),
        ),
    ],
)
def test_fields_marked(job_type, mark, fields):
    assert contract.fields_marked(job_type, mark) == fields


def _clone(**fields):
    return contract.parse_job(
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


def test_planned_model_is_unavailable_until_a_module_ships_it(monkeypatch):
    monkeypatch.setattr(registry, "PLANNED", {"restore": ("seedvr3",)})
    job = contract.parse_job({"task": "restore", "model": "seedvr3", "video": "s3://b/k.mp4"})
    with pytest.raises(ModelUnavailable, match="'seedvr3' is not available"):
        registry.resolve(job)
    shipped = registry.RunnerSpec("restore", "seedvr3", "x:Y", "piper")
    monkeypatch.setattr(registry, "RUNNERS", (shipped,))
    assert registry.resolve(job) is shipped
