"""A runner is one module and one profile: a new one, in a package of its own, is served.

The package below is written to a temporary folder and named in
``MEDIA_WORKER_RUNNER_PACKAGES``; no file of this repository changes. It adds a
task (``shout``) with its contract fragment, a runner module for it, and the
profile that runner names. Real processes read it: ``python -m models schema``,
``python -m models status`` and ``python handler.py --test_input`` (the runpod
SDK's local mode), whose runner runs in its own process.

The names below (a task, a model, a profile) appear in no file of the worker: the
last test greps the shared code for every runner name the registry serves.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models import plugin, registry

ROOT = Path(__file__).resolve().parents[2]

GUIDE = ROOT / "docs" / "guides" / "add-a-runner.md"
# The guide's two blocks are the package served here, so the guide cannot drift from
# what works: the worker-side module (models.plugin) and the runner module (runtime).
TASK_MODULE, RUNNER_MODULE = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
FACES = {"runtime", "models.plugin"}  # the two import paths promised to such packages


@pytest.fixture
def shout_env(tmp_path):
    """The environment of a worker deployed with the shout package beside it."""
    package = tmp_path / "plugins" / "shout_runners"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    installed = importlib.metadata.version("soundfile")
    # The worker's own interpreter has this pin, so the profile runs in place (no build).
    task = re.sub(r"soundfile==[\w.]+", f"soundfile=={installed}", TASK_MODULE)
    (package / "task.py").write_text(task)
    (package / "loud.py").write_text(RUNNER_MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "BUCKET_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(package.parent)]),
        MEDIA_WORKER_RUNNER_PACKAGES="shout_runners",
        MEDIA_WORKER_HOME=str(tmp_path / "home"),
        MEDIA_WORKER_ENVS_DIR=str(tmp_path / "envs"),
        MEDIA_WORKER_OUTPUT_DIR=str(tmp_path / "outputs"),
    )
    return env


def _run(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_a_runner_package_is_listed_by_the_schema_and_the_operator_cli(shout_env):
    schema = _run(shout_env, "-m", "models", "schema")
    assert schema.returncode == 0, schema.stderr
    defs = json.loads(schema.stdout)["$defs"]
    shout = defs["ShoutJob"]
    assert shout["properties"]["task"]["const"] == "shout"
    assert shout["properties"]["marks"]["maximum"] == 5
    assert {"$ref": "#/$defs/ShoutJob"} in json.loads(schema.stdout)["oneOf"]

    status = _run(shout_env, "-m", "models", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert "shout" in json.loads(status.stdout)["profiles"]


@pytest.mark.slow
def test_a_runner_package_is_validated_and_served_through_the_handler(shout_env, tmp_path):
    # Media (a WAV header and silence): the worker refuses text as a media input.
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(52)
    source = "data:audio/wav;base64," + base64.b64encode(wav).decode()
    job = {"input": {"task": "shout", "text": "hello", "source": source, "marks": 3}}
    served = _run(shout_env, "handler.py", "--test_input", json.dumps(job))
    log = served.stdout + served.stderr
    assert served.returncode == 0, log
    (out,) = (tmp_path / "outputs" / "jobs").glob("local_test*/shout.txt")
    assert out.read_text() == f"HELLO AND {len(wav)} BYTES!!!"
    assert "accepted task=shout model=loud" in log  # the default: its runner's rule

    bad = {"input": {"task": "shout", "text": "hello", "marks": 9}}
    refused = _run(shout_env, "handler.py", "--test_input", json.dumps(bad))
    assert refused.returncode == 1
    assert "invalid_input: marks: Input should be less than or equal to 5" in (
        refused.stdout + refused.stderr
    )


@pytest.mark.slow
def test_a_runner_naming_a_missing_profile_stops_the_worker_in_words(shout_env, tmp_path):
    runner = tmp_path / "plugins" / "shout_runners" / "loud.py"
    runner.write_text(RUNNER_MODULE.replace('profile="shout"', 'profile="whisper"'))
    listed = _run(shout_env, "-m", "models", "schema")
    assert listed.returncode != 0
    assert "runner shout/loud (shout_runners.loud:ShoutRunner): no profile 'whisper'" in (
        listed.stderr
    )


# The shared code: what every job walks through. A runner's name belongs in its own
# module, its profile and its task module, never here.
SHARED = (
    "handler.py",
    "models/registry.py",
    "models/contract.py",
    "models/jobs.py",
    "models/environments.py",
    "models/plugin.py",
)


def test_the_shared_code_names_no_runner():
    names = {spec.model for spec in registry.RUNNERS} | {spec.profile for spec in registry.RUNNERS}
    names |= {ref.runner_ref.split(":")[0].rsplit(".", 1)[1] for ref in registry.RUNNERS}
    # Model names that are ordinary words would match prose ("small", "base", "medium").
    names = {n for n in names if not re.fullmatch(r"tiny|base|small|medium|large(-v\d)?", n)}
    assert {"piper", "kokoro", "chatterbox", "f5tts", "whisper", "upscale", "seedvr2"} <= {
        re.split(r"[-_]", n)[0] for n in names
    }
    for path in SHARED:
        text = (ROOT / path).read_text().lower()
        found = sorted(n for n in names if re.search(rf"\b{re.escape(n.lower())}\b", text))
        assert not found, f"{path} names runners {found}"


def test_the_plugin_module_exports_exactly_what_it_lists():
    # models.plugin is a promise to operators' packages: every listed name is there,
    # and nothing else public sneaks in beside them (a name would become a promise).
    public = {n for n in vars(plugin) if not n.startswith("_") and n != "annotations"}
    assert public == set(plugin.__all__)


def test_the_guides_package_imports_only_the_two_faces_and_each_name_is_exported():
    import ast
    import importlib

    for module in (TASK_MODULE, RUNNER_MODULE):
        for node in ast.walk(ast.parse(module)):
            if isinstance(node, ast.ImportFrom) and node.module not in ("typing", "pydantic"):
                assert node.module in FACES, f"the guide imports {node.module}"
                exported = importlib.import_module(node.module).__all__
                assert {a.name for a in node.names} <= set(exported), node.module
            assert not isinstance(node, ast.Import), "the guide imports a module whole"
