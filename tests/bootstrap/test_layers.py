"""One torch per volume: real uv builds of two profiles that share a torch layer.

The "torch" here is a small wheel named ``torch`` 2.13.0 (with a CUDA-library
stand-in it requires, and a ranged dependency), served with the profiles' other
packages from a PEP 503 index on loopback: the layer logic keys on the name and
the installed files, so the real multi-GB torch is not needed to prove it
(``bench/bootstrap.py --torch`` measures that one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import config
from bootstrap import _ensure, _layers, _pack, _restore
from bootstrap._layout import Layout
from bootstrap._manifest import read_manifest
from bootstrap._profile import Profile
from bootstrap._spec import current_target, spec_hash
from models import cli
from tests.fixtures.files import make_wheel, serve_directory

pytestmark = pytest.mark.slow

TORCH_LIB = os.urandom(1 << 20)  # incompressible: the layer's share of the bytes shows


def _index(root: Path) -> Path:
    """A PEP 503 simple index of the stand-in wheels under ``root``."""
    wheels = root / "files"
    wheels.mkdir(parents=True)
    made = [
        make_wheel(
            wheels,
            "torch",
            "2.13.0",
            {
                "torch/__init__.py": b"import fake_cuda, fake_sym\n__version__ = '2.13.0'\n",
                "torch/lib/libtorch_cuda.so": TORCH_LIB,
            },
            requires=(
                "fake-cuda==13.0; platform_system == 'Linux'",
                "fake-sym>=1.0",
                "optree>=0.13; extra == 'optree'",  # an extra nobody asks for
            ),
        ),
        make_wheel(wheels, "fake-cuda", "13.0", {"fake_cuda/__init__.py": b"LIB = 'cuda'\n"}),
        make_wheel(wheels, "fake-sym", "1.0", {"fake_sym/__init__.py": b"VERSION = '1.0'\n"}),
        make_wheel(wheels, "fake-sym", "1.1", {"fake_sym/__init__.py": b"VERSION = '1.1'\n"}),
        make_wheel(wheels, "alpha", "1.0", {"alpha/__init__.py": b"NAME = 'alpha'\n"}),
        make_wheel(wheels, "beta", "1.0", {"beta/__init__.py": b"NAME = 'beta'\n"}),
    ]
    by_name: dict[str, list[Path]] = {}
    for wheel in made:
        by_name.setdefault(wheel.name.split("-")[0].replace("_", "-"), []).append(wheel)
    for name, files in by_name.items():
        page = root / "simple" / name
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{w.name}">{w.name}</a>\n' for w in files)
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return root


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    with serve_directory(_index(tmp_path_factory.mktemp("index"))) as server:
        yield f"{server.url}/simple"


def _profiles(index: str) -> tuple[Profile, Profile]:
    alpha = Profile(
        "alpha", ("torch==2.13.0", "alpha==1.0"), index_url=index, smoke_imports=("torch", "alpha")
    )
    beta = Profile(
        "beta",
        ("torch==2.13.0", "beta==1.0", "fake-sym==1.0"),
        index_url=index,
        smoke_imports=("torch", "beta", "fake_sym"),
    )
    return alpha, beta


def _paths(root: Path, envs: str = "envs") -> config.Paths:
    return config.Paths(home=root / "vol", envs=root / envs, outputs=root / "out", on_volume=True)


@pytest.fixture(autouse=True)
def _uv_cache(monkeypatch, uv_cache):
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))


@pytest.fixture(scope="module")
def shared(tmp_path_factory, index, uv_cache):
    """A volume where alpha then beta were built: one layer, two small archives."""
    mp = pytest.MonkeyPatch()
    mp.setenv("UV_CACHE_DIR", str(uv_cache))
    try:
        paths = _paths(tmp_path_factory.mktemp("shared"))
        alpha, beta = _profiles(index)
        envs = [_ensure.ensure(p, paths=paths, in_place=False) for p in (alpha, beta)]
    finally:
        mp.undo()
    assert [e.source for e in envs] == ["built", "built"]
    return paths, alpha, beta, envs


def _run(python: Path, code: str) -> str:
    done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _manifest(paths: config.Paths, name: str) -> dict:
    return read_manifest(next((paths.home / "envs").glob(f"{name}-*.json")))  # type: ignore[return-value]


def _members(archive: Path) -> list[str]:
    with open(archive, "rb") as raw:
        inflater = _pack._Inflater(raw)
        try:
            with tarfile.open(fileobj=inflater, mode="r:") as tar:  # type: ignore[call-overload]
                return tar.getnames()
        finally:
            inflater.close()


def test_two_profiles_hold_one_torch(shared):
    paths, _alpha, _beta, envs = shared
    a, b = _manifest(paths, "alpha"), _manifest(paths, "beta")
    assert a["layers"] == b["layers"] and len(a["layers"]) == 1
    (ref,) = a["layers"]
    layer_archives = list((paths.home / "envs").glob("torch_layer-*.tar.zst"))
    assert [p.name for p in layer_archives] == [ref["archive"]]
    members = _members(layer_archives[0])
    assert "torch/lib/libtorch_cuda.so" in members and "fake_cuda/__init__.py" in members
    for name, manifest in (("alpha", a), ("beta", b)):
        own = _members(paths.home / "envs" / manifest["archive"])
        assert not [m for m in own if "site-packages/torch" in m or "fake_cuda" in m], name
        assert any(m.endswith(f"site-packages/{name}/__init__.py") for m in own)
        assert manifest["archive_bytes"] < ref["archive_bytes"] / 4  # the bytes are torch's
    # alpha resolved fake-sym 1.1 (the layer's); beta pins 1.0, keeps it, and imports it
    for env, sym in zip(envs, ("1.1", "1.0"), strict=True):
        got = _run(
            env.python,
            "import torch, fake_sym, importlib.metadata as m; "
            "print(torch.__file__, fake_sym.VERSION, m.version('torch'), m.version('fake-sym'))",
        ).split()
        assert got[0].startswith(str(paths.envs / f"{ref['key']}-{ref['archive_sha256'][:12]}"))
        assert got[1:] == [sym, "2.13.0", sym]


def test_a_fresh_machine_unpacks_the_layer_once_anywhere(shared, tmp_path, caplog):
    paths, alpha, beta, _ = shared
    caplog.set_level("INFO")
    machine = config.Paths(paths.home, tmp_path / "elsewhere" / "envs", tmp_path / "o", True)
    first = _ensure.ensure(alpha, paths=machine, in_place=False)
    second = _ensure.ensure(beta, paths=machine, in_place=False)
    assert (first.source, second.source) == ("restored", "restored")
    assert (
        sum(" restored archive_mb=" in r.message and "layer" in r.message for r in caplog.records)
        == 1
    )
    for env in (first, second):
        assert _run(env.python, "import torch; print(torch.__version__)") == "2.13.0"
    pth = (second.root / "lib").glob("python*/site-packages/" + _layers.PTH_FILE)
    assert not os.path.isabs(next(pth).read_text().strip())  # works wherever envs is


def test_a_damaged_layer_is_restored_and_a_missing_one_is_rebuilt(shared, tmp_path):
    paths, alpha, _beta, _ = shared
    machine = config.Paths(paths.home, tmp_path / "envs", tmp_path / "o", True)
    env = _ensure.ensure(alpha, paths=machine, in_place=False)
    (ref,) = _manifest(paths, "alpha")["layers"]
    lib = _layers.local_dir(machine.envs, ref) / "torch" / "lib" / "libtorch_cuda.so"
    lib.unlink()
    assert _ensure.ensure(alpha, paths=machine, in_place=False).source == "restored"
    assert lib.read_bytes() == TORCH_LIB and env.python.exists()


def test_no_half_restored_env_is_served_when_the_layer_archive_is_bad(shared, tmp_path):
    paths, alpha, _beta, _ = shared
    volume = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(paths.home), str(volume)], check=True)
    machine = config.Paths(volume, tmp_path / "envs", tmp_path / "o", True)
    (ref,) = _manifest(machine, "alpha")["layers"]
    archive = volume / "envs" / ref["archive"]
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte off: only the digest sees it
    archive.write_bytes(bytes(data))
    digest = spec_hash(alpha, current_target())
    layout = Layout.of("alpha", digest, machine)
    machine.envs.mkdir()
    _checked, problem = cli._verify_archive(layout, digest)  # `verify` re-hashes the layers too
    assert problem and ref["archive"] in problem and "sha256" in problem
    with pytest.raises(_pack.CorruptArchive):
        _restore.restore(alpha, layout, _manifest(machine, "alpha"), lambda m: None)
    assert not layout.local.exists() and not _layers.local_dir(machine.envs, ref).exists()
    assert not [p for p in machine.envs.iterdir() if p.name.startswith(".tmp-")]
    # ensure rebuilds alpha under its lease, with a new layer, and serves that
    env = _ensure.ensure(alpha, paths=machine, in_place=False)
    assert env.source == "built"
    (new,) = _manifest(machine, "alpha")["layers"]
    assert new["archive_sha256"] != ref["archive_sha256"]
    assert _run(env.python, "import torch; print(torch.__version__)") == "2.13.0"


def test_gc_keeps_a_layer_while_a_profile_names_it(shared, tmp_path):
    paths, _alpha, _beta, _ = shared
    volume = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(paths.home), str(volume)], check=True)
    (ref,) = json.loads(next((volume / "envs").glob("alpha-*.json")).read_text())["layers"]
    layer = volume / "envs" / ref["archive"]
    os.utime(layer, (1, 1))  # far past any grace
    env = {**os.environ, "MEDIA_WORKER_ENVS_DIR": str(tmp_path / "envs")}
    gc = [sys.executable, "-m", "models", "--volume", str(volume), "gc"]
    root = Path(__file__).resolve().parents[2]
    subprocess.run(gc, cwd=root, env=env, check=True, capture_output=True)
    assert layer.exists()  # alpha and beta name it (their keys are unknown to models: kept, keep=1)
    for name in ("alpha", "beta"):
        for f in (volume / "envs").glob(f"{name}-*"):
            f.unlink()
    out = subprocess.run(gc, cwd=root, env=env, check=True, capture_output=True, text=True)
    assert f"removing {layer}" in out.stdout and not layer.exists()
    assert not list((volume / "envs").glob("torch_layer-*"))
