"""Profile artifacts: validation, spec hash, overrides (fast); download and build (slow)."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

import config
from bootstrap import Artifact, Profile, _artifacts, _ensure
from bootstrap._build import cuda_verdict
from bootstrap._profile import with_index_overrides
from bootstrap._spec import Target, spec_hash
from errors import BootstrapFailed
from tests.fixtures.files import make_wheel

T = Target("3.11", "cp311", "linux-x86_64", "glibc-2.36")
SHA = "1932429db727d4bff3deed6b34cfc05df17794f4a52eeb26cf8928f7c1a0fb85"
WHEEL_URL = (
    "https://github.com/explosion/spacy-models/releases/download/"
    "en_core_web_sm-3.8.0/en_core_web_sm-3.8.0-py3-none-any.whl"
)


def test_a_wheel_artifact_is_a_pin_named_by_its_file():
    artifact = Artifact(WHEEL_URL, SHA)
    assert (artifact.name, artifact.version, artifact.filename) == (
        "en-core-web-sm",
        "3.8.0",
        "en_core_web_sm-3.8.0-py3-none-any.whl",
    )
    profile = Profile("p", ("soxr==1.1.0",), artifacts=(artifact,))
    assert profile.pins == {"soxr": "1.1.0", "en-core-web-sm": "3.8.0"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"url": "http://example.com/a-1.0-py3-none-any.whl"}, "must be https"),
        ({"sha256": "0" * 64}, "not a real SHA-256"),
        ({"sha256": "TODO"}, "not a real SHA-256"),
        ({"sha256": SHA.upper()}, "not a real SHA-256"),
        ({"url": "https://example.com/not-a-wheel.zip"}, "PEP 427"),
        ({"kind": "source", "url": "https://example.com/x.tar.gz"}, "name ''"),
        ({"kind": "source", "name": "seedvr", "url": "https://e.com/x.rar"}, "use one of"),
        ({"kind": "egg"}, "kind must be"),
        ({"fetch_from": "ftp://mirror/x.whl"}, "fetch_from"),
    ],
)
def test_bad_artifacts_fail_at_import_in_words(kwargs, fragment):
    args = {"url": WHEEL_URL, "sha256": SHA, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        Artifact(**args)


def test_an_artifact_cannot_also_be_a_requirement():
    with pytest.raises(ValueError, match="both a requirement and an artifact"):
        Profile("p", ("en_core_web_sm==3.8.0",), artifacts=(Artifact(WHEEL_URL, SHA),))


def test_spec_hash_covers_artifacts_by_content_not_by_mirror():
    base = Profile("p", ("soxr==1.1.0",))
    with_artifact = dataclasses.replace(base, artifacts=(Artifact(WHEEL_URL, SHA),))
    mirrored = dataclasses.replace(
        base, artifacts=(Artifact(WHEEL_URL, SHA, fetch_from="http://mirror/x.whl"),)
    )
    rebuilt = dataclasses.replace(base, artifacts=(Artifact(WHEEL_URL, "ab" * 32),))
    hashes = {spec_hash(p, T) for p in (base, with_artifact, rebuilt)}
    assert len(hashes) == 3
    assert spec_hash(mirrored, T) == spec_hash(with_artifact, T)
    assert spec_hash(dataclasses.replace(base, cuda=False), T) == spec_hash(base, T)


def test_overrides_replace_source_and_hash_of_the_named_file_only():
    other = Artifact("https://example.com/other-1.0-py3-none-any.whl", "cd" * 32)
    profile = Profile("p", ("soxr==1.1.0",), artifacts=(Artifact(WHEEL_URL, SHA), other))
    env = {
        "MEDIA_WORKER_ARTIFACT_OVERRIDES": (
            f"en_core_web_sm-3.8.0-py3-none-any.whl=http://127.0.0.1:9/x.whl#sha256={'ef' * 32}"
        )
    }
    spacy_model, untouched = with_index_overrides(profile, env).artifacts
    assert (spacy_model.fetch_from, spacy_model.sha256) == ("http://127.0.0.1:9/x.whl", "ef" * 32)
    assert spacy_model.filename == "en_core_web_sm-3.8.0-py3-none-any.whl"
    assert untouched == other


@pytest.mark.parametrize(
    "raw",
    [
        "no-equals-sign",
        f"a.whl=https://x/a.whl#sha256={'z' * 64}",
        "a.whl=https://x/a.whl",
        f"a.whl=ftp://x/a.whl#sha256={'a' * 64}",
    ],
)
def test_bad_override_setting_is_a_config_error(raw):
    with pytest.raises(config.ConfigError, match="MEDIA_WORKER_ARTIFACT_OVERRIDES"):
        config.ARTIFACT_OVERRIDES.get({"MEDIA_WORKER_ARTIFACT_OVERRIDES": raw})


@pytest.mark.parametrize(
    ("driver", "torch_cuda", "available", "fragment"),
    [
        (None, "12.6", False, None),  # no GPU visible: the CPU serves
        (None, None, False, None),
        ("550.54", "12.6", True, None),
        ("535.104", "12.6", False, "driver is older than CUDA 12.6"),
        ("550.54", None, False, "CPU-only build"),
    ],
)
def test_cuda_verdict_table(driver, torch_cuda, available, fragment):
    verdict = cuda_verdict(driver, "2.13.0", torch_cuda, available)
    if fragment is None:
        assert verdict is None
    else:
        assert fragment in verdict and "hint:" in verdict


# --- slow: the real download and a real uv build ------------------------------------


def _source_archive(path: Path) -> Path:
    """A repository snapshot: one top-level directory holding a package."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {
            "snap-abc123/srcpkg/__init__.py": "VALUE = 'from source'\n",
            "snap-abc123/README.md": "not code\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.slow
def test_fetch_verifies_and_reuses_and_refuses_a_wrong_hash(file_server, tmp_path):
    wheel = make_wheel(tmp_path, "tinypkg", "1.0", {"tinypkg/__init__.py": b"X = 1\n"})
    url, digest = file_server.publish(wheel)
    artifact = Artifact(f"https://example.com/{wheel.name}", digest, fetch_from=url)
    store = tmp_path / "store"
    first = _artifacts.fetch_artifact(artifact, store)
    assert first.read_bytes() == wheel.read_bytes()
    (file_server.root / wheel.name).unlink()  # a second fetch must not need the server
    assert _artifacts.fetch_artifact(artifact, store) == first

    wrong = dataclasses.replace(artifact, sha256="ab" * 32)
    file_server.publish(wheel)
    with pytest.raises(BootstrapFailed, match=r"sha256 mismatch: .* served " + digest):
        _artifacts.fetch_artifact(wrong, store)
    assert not list((store / ("ab" * 32)).iterdir())  # nothing half-written looks valid

    gone = dataclasses.replace(artifact, fetch_from=f"{file_server.url}/missing.whl")
    with pytest.raises(BootstrapFailed, match=r"download from .*missing\.whl failed"):
        _artifacts.fetch_artifact(dataclasses.replace(gone, sha256="cd" * 32), store)


def _snapshot(path: Path, files: dict[str, bytes], top: str, *, fmt: str) -> Path:
    """``files`` under one top-level directory ``top``, as a tar.gz or a zip."""
    if fmt == "zip":
        import zipfile

        with zipfile.ZipFile(path, "w") as z:
            for name, data in files.items():
                z.writestr(f"{top}/{name}", data)
        return path
    with tarfile.open(path, "w:gz") as tar:
        for name, data in sorted(files.items(), reverse=True):  # another member order
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), 1234567, 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.slow
def test_a_source_pinned_by_its_tree_accepts_any_faithful_archive_and_refuses_a_change(
    file_server, tmp_path
):
    files = {"src/core/a.py": b"A = 1\n", "configs_3b/main.yaml": b"dit: {}\n", "LICENSE": b"x"}
    (tmp_path / "tree" / "src" / "core").mkdir(parents=True)
    (tmp_path / "tree" / "configs_3b").mkdir()
    for name, data in files.items():
        (tmp_path / "tree" / name).write_bytes(data)
    pinned = _artifacts.tree_digest(tmp_path / "tree")
    artifact = Artifact("https://example.com/abc.tar.gz", pinned, kind="source", name="up",
                        digest="tree")  # fmt: skip
    zipped = dataclasses.replace(artifact, url="https://example.com/abc.zip")
    for i, (a, fmt, top) in enumerate(((artifact, "tar", "Up-abc"), (zipped, "zip", "mirror"))):
        archive = _snapshot(tmp_path / f"{i}-{a.filename}", files, top, fmt=fmt)
        url, file_sha = file_server.publish(archive)
        assert file_sha != pinned
        got = _artifacts.fetch_artifact(
            dataclasses.replace(a, fetch_from=url), tmp_path / f"store{i}"
        )
        assert got.read_bytes() == archive.read_bytes()

    (tmp_path / "x").mkdir()
    changed = _snapshot(tmp_path / "x" / "abc.tar.gz", {**files, "src/core/a.py": b"A = 2\n"},
                        "Up-abc", fmt="tar")  # fmt: skip
    url, _ = file_server.publish(changed)
    with pytest.raises(
        BootstrapFailed, match=f"sha256 of the unpacked tree mismatch: .*pins {pinned}"
    ):
        _artifacts.fetch_artifact(dataclasses.replace(artifact, fetch_from=url), tmp_path / "s")
    assert not list((tmp_path / "s" / pinned).iterdir())  # nothing half-written looks valid
    with pytest.raises(ValueError, match="for source archives only"):
        Artifact(WHEEL_URL, SHA, digest="tree")


@pytest.mark.slow
def test_build_installs_a_wheel_and_a_source_artifact_and_records_them(
    file_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    wheel = make_wheel(
        tmp_path, "tinypkg", "1.0", {"tinypkg/__init__.py": b"X = 1\n"}, requires=("soxr",)
    )
    wheel_url, wheel_sha = file_server.publish(wheel)
    source_url, source_sha = file_server.publish(_source_archive(tmp_path / "snap.tar.gz"))
    profile = Profile(
        "arttest",
        ("soxr==1.1.0",),
        artifacts=(
            Artifact(f"https://example.com/{wheel.name}", "1e" * 32),
            Artifact("https://example.com/snap.tar.gz", "2f" * 32, kind="source", name="snap"),
        ),
        smoke_imports=("tinypkg", "srcpkg", "soxr"),
    )
    # The profile's pins point at files no test can reach; an operator's override
    # (the real feature) brings them from the local server with their real hashes.
    monkeypatch.setenv(
        "MEDIA_WORKER_ARTIFACT_OVERRIDES",
        f"{wheel.name}={wheel_url}#sha256={wheel_sha},snap.tar.gz={source_url}#sha256={source_sha}",
    )
    paths = config.Paths(
        home=tmp_path / "vol", envs=tmp_path / "envs", outputs=tmp_path / "o", on_volume=True
    )
    env = _ensure.ensure(profile, paths=paths)
    assert env.source == "built"
    out = subprocess.run(
        [str(env.python), "-I", "-c", "import srcpkg, tinypkg; print(srcpkg.VALUE, tinypkg.X)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "from source 1", out.stderr
    manifest = json.loads(next((paths.home / "envs").glob("arttest-*.json")).read_text())
    assert [(a["file"], a["sha256"], a["kind"]) for a in manifest["artifacts"]] == [
        (wheel.name, wheel_sha, "wheel"),
        ("snap.tar.gz", source_sha, "source"),
    ]
    assert manifest["artifacts"][0]["fetched_from"] == wheel_url
    assert "tinypkg" in manifest["installed"]
