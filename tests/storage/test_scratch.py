"""scratch(): per-job directories, removed on exit; untrusted job ids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storage import scratch
from storage._scratch import current_job_id, safe_job_id


def test_scratch_is_made_under_setting_and_removed(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(tmp_path / "scr"))
    with scratch("job-1") as path:
        assert path.is_dir()
        assert path.parent == tmp_path / "scr"
        assert path.name.startswith("mw-job-1-")
        (path / "sub").mkdir()
        (path / "sub" / "f.wav").write_bytes(b"x")
        assert current_job_id() == "job-1"
    assert not path.exists()
    assert current_job_id() == "-"


def test_scratch_removed_on_failure(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(tmp_path))
    with pytest.raises(RuntimeError), scratch("j") as path:
        (path / "f").write_bytes(b"x")
        raise RuntimeError("boom")
    assert not path.exists()


def test_scratch_defaults_to_system_temp(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with scratch("j") as path:
        assert path.parent == tmp_path


def test_same_job_id_twice_gets_two_dirs(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(tmp_path))
    with scratch("same") as a, scratch("same") as b:
        assert a != b


@pytest.mark.parametrize(
    "job_id",
    ["sync-12ab-cd-u1", "local_test", "a_b", "3f1c9e2a-7b7d-4c43-a3b1-0c7d1f0e5a1b", "x" * 128],
)
def test_safe_job_ids_are_used_as_they_are(job_id: str) -> None:
    assert safe_job_id(job_id) == job_id


@pytest.mark.parametrize(
    ("job_id", "readable"),
    [
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "job"),
        ("", "job"),
        (".hidden", "hidden"),
        ("a/b\\c\x00d e", "a_b_c_d_e"),
        ("x" * 500, "x" * 103),
    ],
)
def test_unsafe_job_ids_keep_a_readable_part_and_a_digest(job_id: str, readable: str) -> None:
    safe = safe_job_id(job_id)
    assert safe.startswith(f"{readable}~")
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._~-]{0,127}", safe)
    assert "/" not in safe and not safe.startswith(".")


def test_safe_job_id_is_one_to_one() -> None:
    # The pairs that met before: each unsafe character became "_", and long ids
    # were cut at 128 characters.
    ids = ["a/b", "a_b", "a b", "a\\b", "a:b", "x" * 128, "x" * 129, "x" * 130, "..a", "a"]
    ids += [safe_job_id("a/b")]  # an id spelled like another id's safe form
    assert len({safe_job_id(i) for i in ids}) == len(ids)


def test_hostile_job_id_stays_inside_base(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(tmp_path))
    with scratch("../../../tmp/evil") as path:
        assert path.parent == tmp_path
