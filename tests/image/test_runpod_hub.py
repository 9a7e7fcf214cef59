"""The RunPod Hub files validate against schemas written from RunPod's Hub
documentation, and agree with the worker they describe."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # a dependency of check-jsonschema (dev extra)
import pytest

import config
from bootstrap._cuda import BUILDS
from models import contract, jobs, registry
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
    declared = {s.name for s in registry.SETTINGS} | PLATFORM_ENV
    unknown = set(_inputs()) - declared
    assert not unknown, f"hub.json offers variables no setting declares: {unknown}"
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
    settings = {s.name: s for s in registry.SETTINGS}
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
    settings = {s.name: s for s in registry.SETTINGS}
    for preset in _json(HUB)["config"].get("presets", []):
        for key, value in preset["defaults"].items():
            assert key in inputs, f"preset {preset['name']!r} sets {key}, which is not offered"
            if key in settings:
                settings[key].get({key: str(value)})


def test_default_tts_model_and_prepared_profiles_exist():
    shipped = {r.model for r in registry.RUNNERS if r.task == "tts"}
    profiles = {r.profile for r in registry.RUNNERS}
    inputs = _inputs()
    # Empty: the worker's own rule (kokoro with a GPU, piper without), as the README says.
    assert inputs["MEDIA_WORKER_DEFAULT_TTS_MODEL"]["default"] in shipped | {""}
    assert config.DEFAULT_TTS_MODEL.get({"MEDIA_WORKER_DEFAULT_TTS_MODEL": ""}) == ""
    presets = _json(HUB)["config"].get("presets", [])
    for value in [inputs["MEDIA_WORKER_PREPARE"].get("default", "")] + [
        p["defaults"].get("MEDIA_WORKER_PREPARE", "") for p in presets
    ]:
        assert set(config.parse_list(value)) <= profiles, f"unknown profile in {value!r}"


def test_container_disk_fits_two_profile_environments():
    # Profile envs are unpacked to local disk (/opt/media-worker/envs); a torch
    # profile is several GB, and MEDIA_WORKER_MAX_RUNNERS defaults to two.
    assert _json(HUB)["config"]["containerDiskInGb"] >= 30


# --- tests.json and hub.json in line with the code -----------------------------------

# Runner modules the Hub's test run leaves out, and why.
NOT_TESTED_ON_THE_HUB = {
    "runners.f5tts": "F5-TTS weights are CC-BY-NC-4.0: served only with "
    "MEDIA_WORKER_ALLOW_NONCOMMERCIAL, which the listing does not offer",
}
# Every CUDA version RunPod's endpoint settings offer (its docs' templates list 11.7 to
# 12.8; 12.9 and 13.0 came later). The Hub takes a list, not a minimum, so the listing
# names every one from the minimum up; add a new version here when RunPod offers it.
RUNPOD_CUDA_VERSIONS = ("11.7", "11.8", *(f"12.{m}" for m in range(10)), "13.0")
# A cold job builds its profile from PyPI and the PyTorch index: a floor of this many
# MB of unpacked environment per second, plus a fixed allowance for the weights and the
# run (Piper's build measured 61 MB/s from a fast mirror; see docs/guides/deploy-runpod.md, Hub).
COLD_BUILD_MB_PER_S = 10
COLD_ALLOWANCE_S = 120
_GPU_CLASS = re.compile(r"\(GPU class: ([A-Z0-9_, ]+)\)$")
_POOL_GB = re.compile(r"^[A-Z]+_(\d+)(_PRO)?$")
_MEDIA_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".mp4", ".webm", ".png"}


def _test_jobs() -> list[tuple[str, Any]]:
    """(name, parsed job) per test; parse_job raises InvalidInput naming the field."""
    return [(t["name"], jobs.parse_job(t["input"])) for t in _json(TESTS)["tests"]]


def _module(spec: registry.RunnerSpec) -> str:
    return spec.runner_ref.split(":")[0]


def test_every_hub_test_input_is_a_job_a_runner_takes():
    for name, job in _test_jobs():
        spec = registry.resolve(job)  # the model exists and honours every option sent
        assert job.model == spec.model, (
            f"{name}: name the model, so the test is the same on any GPU"
        )


def test_every_runner_has_a_hub_test_job():
    tested = {_module(registry.resolve(job)) for _, job in _test_jobs()}
    runners = {_module(spec) for spec in registry.RUNNERS}
    assert tested == runners - set(NOT_TESTED_ON_THE_HUB), (
        f"runners without a Hub test job: {runners - tested - set(NOT_TESTED_ON_THE_HUB)}"
    )


def test_hub_test_media_are_well_formed_https_urls_or_real_media_in_data_uris():
    import av

    from storage import parse_media_ref

    for name, job in _test_jobs():
        for field in contract.fields_marked(type(job), contract.MEDIA):
            value = getattr(job, field)
            if value is None:
                continue
            ref = parse_media_ref(value, field=field)
            assert ref.kind in ("https", "data"), f"{name}.{field}: the Hub has no s3 credentials"
            if ref.kind == "https":
                url = urlsplit(value)
                assert url.scheme == "https" and url.hostname and "." in url.hostname, value
                assert not re.fullmatch(r"[\d.]+|\[.*\]", url.netloc), f"{value}: a host name"
                assert url.username is None and not url.query and not url.fragment, value
                assert PurePosixPath(url.path).suffix in _MEDIA_SUFFIXES, value
                continue
            with av.open(io.BytesIO(base64.b64decode(ref.data, validate=True))) as media:
                streams = media.streams.audio if field == "audio" else media.streams.video
                assert streams, f"{name}.{field}: no {field} stream in the data: URI"
                assert sum(1 for _ in media.decode(streams[0])) > 0, f"{name}.{field}"


def test_presets_prepare_real_profiles_on_a_gpu_class_that_holds_their_models():
    config_ = _json(HUB)["config"]
    pools = set(config_["gpuIds"].split(","))
    names = set(registry.profile_names())
    for preset in config_["presets"]:
        prepared = config.parse_list(str(preset["defaults"].get("MEDIA_WORKER_PREPARE", "")))
        assert set(prepared) <= names, f"{preset['name']}: unknown profile in {prepared}"
        if not prepared:
            continue
        found = _GPU_CLASS.search(preset["name"])
        assert found, f"{preset['name']!r} names no '(GPU class: POOL, ...)'"
        classes = [c.strip() for c in found.group(1).split(",")]
        assert set(classes) <= pools, f"{preset['name']}: {set(classes) - pools} not in gpuIds"
        need_mb = max(r.vram_mb for r in registry.RUNNERS if r.profile in prepared)
        for pool in classes:
            assert int(_POOL_GB.match(pool).group(1)) * 1024 >= need_mb, (preset["name"], pool)


def test_presets_cover_each_use():
    by_profile: dict[str, list[str]] = {}
    for preset in _json(HUB)["config"]["presets"]:
        for profile in config.parse_list(str(preset["defaults"].get("MEDIA_WORKER_PREPARE", ""))):
            by_profile.setdefault(profile, []).append(preset["name"])
    for use in ("kokoro", "chatterbox", "whisper_large_v3_turbo", "upscale", "piper"):
        assert use in by_profile, f"no preset prepares {use}"
    seedvr2 = " ".join(by_profile.get("seedvr2", []))
    assert "_48" in seedvr2 and "_80" in seedvr2, "SeedVR2 presets for the 48 and 80 GB classes"


def test_profiles_the_listing_names_can_be_made_with_its_settings(monkeypatch):
    """Every profile a preset prepares or a test job runs is made from the listing's
    settings alone (SeedVR2's weights are pinned by upstream's digests in the code)."""
    for key, value in _settings_of_tests():
        monkeypatch.setenv(key, value)
    named = {registry.resolve(job).profile for _, job in _test_jobs()}
    for preset in _json(HUB)["config"]["presets"]:
        named |= set(config.parse_list(str(preset["defaults"].get("MEDIA_WORKER_PREPARE", ""))))
    for name in sorted(named):
        registry.get_profile(name)


def _settings_of_tests() -> list[tuple[str, str]]:
    return [(e["key"], e["value"]) for e in _json(TESTS).get("config", {}).get("env", [])]


def test_allowed_cuda_versions_are_every_version_from_the_minimum():
    """A minimum, not an allow-list: an allow-list that misses a newer CUDA (13.0 was
    missing) keeps the endpoint off those hosts. The minimum is the higher of the
    image's CUDA and the oldest driver CUDA any torch build the worker picks runs on."""
    dockerfile = _dockerfile.parse(ROOT / "Dockerfile")
    image = re.match(r"nvidia/cuda:(\d+)\.(\d+)", dockerfile.final.image)
    assert image, dockerfile.final.image
    minimum = max(
        (int(image.group(1)), int(image.group(2))),
        min(b.min_driver_cuda for b in BUILDS.values()),
    )
    expected = sorted(
        (v for v in RUNPOD_CUDA_VERSIONS if tuple(map(int, v.split("."))) >= minimum),
        key=lambda v: tuple(map(int, v.split("."))),
        reverse=True,
    )
    for path in (HUB, TESTS):
        assert _json(path)["config"]["allowedCudaVersions"] == expected, path.name
    # Blackwell has kernels only in the cu130 build, which needs a CUDA 13 driver: its
    # pools would admit hosts (12.6-12.9) where every torch job is refused.
    blackwell = [p for p in _json(HUB)["config"]["gpuIds"].split(",") if "BLACKWELL" in p]
    assert not blackwell or minimum >= BUILDS["cu130"].min_driver_cuda, blackwell


def test_hub_test_timeouts_allow_a_cold_build_of_their_profile(monkeypatch):
    for test in _json(TESTS)["tests"]:
        profile = registry.get_profile(registry.resolve(jobs.parse_job(test["input"])).profile)
        floor_s = COLD_ALLOWANCE_S + profile.size_mb / COLD_BUILD_MB_PER_S
        assert test["timeout"] >= floor_s * 1000, f"{test['name']}: under {floor_s:.0f} s"
