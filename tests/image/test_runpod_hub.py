"""The RunPod Hub files validate against schemas written from RunPod's Hub
documentation, and agree with the worker they describe."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # a dependency of check-jsonschema (dev extra)
import pytest

import config
from models import contract, registry
from tests.image import _dockerfile

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / ".runpod" / "hub.json"
TESTS = ROOT / ".runpod" / "tests.json"
HUB_SCHEMA = Path(__file__).with_name("runpod_hub.schema.json")
TESTS_SCHEMA = Path(__file__).with_name("runpod_hub_tests.schema.json")
# Read by the RunPod platform, not by config.py.
PLATFORM_ENV = {"RUNPOD_INIT_TIMEOUT"}


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    here = str(Path(sys.executable).parent)
    exe = shutil.which("check-jsonschema") or shutil.which("check-jsonschema", path=here)
    if exe is None:
        pytest.fail("check-jsonschema not found; install the dev extra: pip install -e '.[dev]'")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_schemas_are_valid_json_schema():
    result = _check_jsonschema("--check-metaschema", str(HUB_SCHEMA), str(TESTS_SCHEMA))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("document", "schema"), [(HUB, HUB_SCHEMA), (TESTS, TESTS_SCHEMA)])
def test_hub_files_validate(document: Path, schema: Path):
    result = _check_jsonschema("--schemafile", str(schema), str(document))
    assert result.returncode == 0, result.stdout + result.stderr


def _errors(schema_path: Path, document: Any) -> list[str]:
    schema = _json(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(document)]


def _hub_with(change) -> dict[str, Any]:
    document = copy.deepcopy(_json(HUB))
    change(document)
    return document


# Each mutation breaks one documented rule; the schema must notice.
HUB_MUTATIONS = {
    "missing title": lambda d: d.pop("title"),
    "unknown category": lambda d: d.update(category="speech"),
    "type is not serverless": lambda d: d.update(type="pod"),
    "unknown top-level key": lambda d: d.update(catgory="audio"),
    "GPU without gpuIds": lambda d: d["config"].pop("gpuIds"),
    "GPU without gpuCount": lambda d: d["config"].pop("gpuCount"),
    "CPU without cpuFlavor": lambda d: d["config"].update(runsOn="CPU"),
    "disk as a string": lambda d: d["config"].update(containerDiskInGb="40"),
    "CUDA version with a patch": lambda d: d["config"].update(allowedCudaVersions=["12.8.1"]),
    "env with value and input": lambda d: d["config"]["env"][0].update(value="x"),
    "input of unknown type": lambda d: d["config"]["env"][0]["input"].update(type="text"),
    "number default that is a string": lambda d: d["config"]["env"].append(
        {"key": "N", "input": {"name": "n", "type": "number", "default": "1"}}
    ),
    "boolean with options": lambda d: d["config"]["env"].append(
        {
            "key": "B",
            "input": {"name": "b", "type": "boolean", "options": [{"label": "x", "value": "x"}]},
        }
    ),
    "preset without defaults": lambda d: d["config"]["presets"].append({"name": "p"}),
    "lower-case env key with dash": lambda d: d["config"]["env"].append(
        {"key": "bad-key", "value": "x"}
    ),
}


@pytest.mark.parametrize("mutation", HUB_MUTATIONS)
def test_hub_schema_rejects(mutation: str):
    assert _errors(HUB_SCHEMA, _hub_with(HUB_MUTATIONS[mutation])), f"accepted: {mutation}"


def test_hub_schema_accepts_the_documented_template_shapes():
    # The shapes of RunPod's documented examples: static, string, huggingface,
    # options, number and boolean inputs, and a CPU config.
    document = {
        "title": "t",
        "description": "d",
        "type": "serverless",
        "category": "language",
        "iconUrl": "https://example.com/icon.png",
        "config": {
            "runsOn": "CPU",
            "containerDiskInGb": 20,
            "cpuFlavor": "cpu3c",
            "presets": [{"name": "p", "defaults": {"S": "v", "N": 10, "B": True}}],
            "env": [
                {"key": "STATIC", "value": "v"},
                {"key": "S", "input": {"name": "s", "type": "string", "advanced": False}},
                {"key": "HF", "input": {"name": "h", "type": "huggingface", "default": "a/b"}},
                {
                    "key": "O",
                    "input": {
                        "name": "o",
                        "type": "string",
                        "options": [{"label": "A", "value": "a"}],
                        "default": "a",
                    },
                },
                {"key": "N", "input": {"name": "n", "type": "number", "min": 1, "max": 9}},
                {
                    "key": "B",
                    "input": {
                        "name": "b",
                        "type": "boolean",
                        "default": True,
                        "trueValue": "true",
                        "falseValue": "false",
                    },
                },
            ],
        },
    }
    assert _errors(HUB_SCHEMA, document) == []


TESTS_MUTATIONS = {
    "no tests": lambda d: d.update(tests=[]),
    "test without input": lambda d: d["tests"][0].pop("input"),
    "timeout in seconds as a float": lambda d: d["tests"][0].update(timeout=1.5),
    "gpuTypeId that is a pool": lambda d: d["config"].update(gpuTypeId="ADA_24"),
    "gpuTypeId without gpuCount": lambda d: d["config"].pop("gpuCount"),
    "env entry without value": lambda d: d["config"]["env"].append({"key": "X"}),
}


@pytest.mark.parametrize("mutation", TESTS_MUTATIONS)
def test_tests_schema_rejects(mutation: str):
    document = copy.deepcopy(_json(TESTS))
    TESTS_MUTATIONS[mutation](document)
    assert _errors(TESTS_SCHEMA, document), f"accepted: {mutation}"


# --- agreement with the worker ------------------------------------------------------


def _inputs() -> dict[str, dict[str, Any]]:
    return {e["key"]: e.get("input", {}) for e in _json(HUB)["config"].get("env", [])}


def test_every_hub_variable_is_one_the_worker_reads():
    declared = {s.name for s in config.SETTINGS} | PLATFORM_ENV
    unknown = set(_inputs()) - declared
    assert not unknown, f"hub.json offers variables config.py does not declare: {unknown}"
    test_env = {e["key"] for e in _json(TESTS).get("config", {}).get("env", [])}
    assert not (test_env - declared), f"tests.json sets unknown variables {test_env - declared}"


def test_hub_covers_storage_credentials_and_volume_settings():
    offered = set(_inputs())
    needed = {
        "BUCKET_ENDPOINT_URL",
        "BUCKET_NAME",
        "BUCKET_ACCESS_KEY_ID",
        "BUCKET_SECRET_ACCESS_KEY",
        "BUCKET_REGION",
        "HF_TOKEN",
        "MEDIA_WORKER_DEFAULT_TTS_MODEL",
        "MEDIA_WORKER_PREPARE",
        "MEDIA_WORKER_HOME",
    }
    assert needed <= offered, f"hub.json lacks {needed - offered}"


def test_defaults_parse_and_options_contain_them():
    settings = {s.name: s for s in config.SETTINGS}
    for key, spec in _inputs().items():
        if "default" not in spec:
            continue
        default = spec["default"]
        if "options" in spec:
            assert default in {o["value"] for o in spec["options"]}, key
        if key in settings:
            # The Hub hands the value over as an environment string.
            settings[key].get({key: str(default)})
        for bound in ("min", "max"):
            if bound in spec:
                assert (default >= spec[bound]) if bound == "min" else (default <= spec[bound])


def test_presets_only_set_offered_variables_with_valid_values():
    inputs = _inputs()
    settings = {s.name: s for s in config.SETTINGS}
    for preset in _json(HUB)["config"].get("presets", []):
        for key, value in preset["defaults"].items():
            assert key in inputs, f"preset {preset['name']!r} sets {key}, which is not offered"
            if key in settings:
                settings[key].get({key: str(value)})


def test_default_tts_model_and_prepared_profiles_exist():
    shipped = {r.model for r in registry.RUNNERS if r.task == "tts"}
    profiles = {r.profile for r in registry.RUNNERS}
    inputs = _inputs()
    assert inputs["MEDIA_WORKER_DEFAULT_TTS_MODEL"]["default"] in shipped
    presets = _json(HUB)["config"].get("presets", [])
    for value in [inputs["MEDIA_WORKER_PREPARE"].get("default", "")] + [
        p["defaults"].get("MEDIA_WORKER_PREPARE", "") for p in presets
    ]:
        assert set(config.parse_list(value)) <= profiles, f"unknown profile in {value!r}"


def test_every_hub_test_input_is_a_valid_job():
    for test in _json(TESTS)["tests"]:
        contract.parse_job(test["input"])  # raises InvalidInput naming the field


def test_cuda_versions_are_not_below_the_image_floor():
    dockerfile = _dockerfile.parse(ROOT / "Dockerfile")
    floor = re.match(r"nvidia/cuda:(\d+)\.(\d+)", dockerfile.final.image)
    assert floor, dockerfile.final.image
    minimum = (int(floor.group(1)), int(floor.group(2)))
    for path in (HUB, TESTS):
        data = _json(path)
        versions = data["config"].get("allowedCudaVersions", [])
        assert versions, f"{path.name}: pin allowedCudaVersions to the image's CUDA floor"
        low = [v for v in versions if tuple(map(int, v.split("."))) < minimum]
        assert not low, f"{path.name}: {low} is below the image's CUDA {minimum}"


def test_container_disk_fits_two_profile_environments():
    # Profile envs are unpacked to local disk (/opt/media-worker/envs); a torch
    # profile is several GB, and MEDIA_WORKER_MAX_RUNNERS defaults to two.
    assert _json(HUB)["config"]["containerDiskInGb"] >= 30


def test_hub_tests_have_timeouts_that_allow_a_cold_bootstrap():
    tests = _json(TESTS)["tests"]
    assert all("timeout" in t for t in tests)
    assert tests[0]["timeout"] >= 600_000, "the first test builds the Piper profile from PyPI"
