"""scratch(): per-job directories, removed on exit; untrusted job ids."""

from __future__ import annotations

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
    ("job_id", "expected"),
    [
        ("sync-12ab-cd", "sync-12ab-cd"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "job"),
        ("", "job"),
        ("a/b\\c\x00d e", "a_b_c_d_e"),
        ("x" * 500, "x" * 128),
    ],
)
def test_safe_job_id(job_id: str, expected: str) -> None:
    assert safe_job_id(job_id) == expected


def test_hostile_job_id_stays_inside_base(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(tmp_path))
    with scratch("../../../tmp/evil") as path:
        assert path.parent == tmp_path
