"""What ``python -m models`` prints, from its pure parts and from commands that need
no build (the commands on a real, prepared volume: tests/models/test_cli.py)."""

from __future__ import annotations

import re

from models import cli


def _profile(env: str, spec: str, **changes) -> dict:
    p = {
        "env": env,
        "python": None,
        "spec_hash": spec,
        "archive": None,
        "archive_mb": None,
        "unpacked_mb": None,
        "layers": [],
        "attention": None,
        "lease": "free",
        "problems": [],
        "weights": {},
    }
    p.update(changes)
    return p


def test_status_shows_the_archive_sizes_columns_and_shared_specs():
    status = {
        "home": "/v/media-worker",
        "envs": "/local",
        "profiles": {
            "piper": _profile(
                "in-place",
                "b131583e231f6bc6",
                python="/venv/bin/python",
                archive="/v/media-worker/envs/piper-b131583e231f6bc6-0123456789ab.tar.zst",
                archive_mb=131.2,
                unpacked_mb=402.5,
                attention="none",
            ),
            "whisper_base": _profile("missing", "0d455932c3e324de"),
            "whisper_distil_large_v3_5": _profile(
                "missing", "0d455932c3e324de", weights={"o/large": "missing"}
            ),
        },
        "unavailable": {"seedvr2": "set MEDIA_WORKER_SEEDVR2_REVISION"},
        "leftovers": ["envs/.tmp-x"],
    }
    lines = cli._status_lines(status, "mw")
    width = len("whisper_distil_large_v3_5")
    assert lines == [
        "home /v/media-worker  local envs /local",
        f"{'piper':{width}} env=in-place spec=b131583e231f6bc6 served in place by this "
        "interpreter (/venv/bin/python) archive=131.2MB unpacked=402.5MB attention=none "
        "lease=free",
        f"{'':{width}} archive /v/media-worker/envs/piper-b131583e231f6bc6-0123456789ab.tar.zst",
        f"{'whisper_base':{width}} env=missing  spec=0d455932c3e324de lease=free",
        "whisper_distil_large_v3_5 env=missing  spec=0d455932c3e324de lease=free",
        f"{'':{width}} same packages as whisper_base (each profile has its own archive)",
        f"{'':{width}} weights o/large: missing  fix: mw prepare whisper_distil_large_v3_5",
        f"{'seedvr2':{width}} unavailable: set MEDIA_WORKER_SEEDVR2_REVISION",
        "leftover /v/media-worker/envs/.tmp-x  fix: mw gc",
    ]
    # one spelling: an unknown attention (no environment yet) is not printed at all
    assert not any("attention=None" in line for line in lines)


def test_status_reads_the_volume_and_never_prints_attention_none(tmp_path, capsys):
    assert cli.main(["--volume", str(tmp_path / "vol"), "status"]) == 0
    out = capsys.readouterr().out
    assert "attention=None" not in out
    names = re.findall(r"^(\w+) +env=", out, re.M)
    assert "piper" in names and "whisper_tiny" in names
    # every env= starts in one column, however long the longest name
    columns = {line.index(" env=") for line in out.splitlines() if " env=" in line}
    assert columns == {max(len(n) for n in names)}, out


def test_prepare_without_a_profile_lists_them_and_fails(capsys):
    assert cli.main(["prepare"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m models prepare ")
    assert "prepare: name at least one profile:" in err
    listed = err.split("prepare: name at least one profile:\n", 1)[1].split()
    assert {"piper", "kokoro", "whisper_tiny", "upscale"} <= set(listed)


def test_prepare_usage_names_what_these_settings_cannot_make():
    text = cli._prepare_usage("usage: x\n", ["a", "b"], {"c": "set C"})
    assert text == (
        "usage: x\nprepare: name at least one profile:\n  a b\n"
        "  (c: cannot be prepared with these settings: set C)"
    )


def test_verify_says_what_it_read():
    assert cli._verify_summary(2, 1, 3, 12, 3 * 2**30, 0) == (
        "verify: ok: 2 archives of 1 profile, 3 weights snapshots (12 files, 3072.0 MB) re-hashed"
    )
    assert cli._verify_summary(1, 1, 0, 0, 0, 1) == (
        "verify: 1 problem in 1 archive of 1 profile, 0 weights snapshots (0 files, 0.0 MB)"
    )


def test_verify_on_an_empty_volume_says_there_was_nothing_to_read(tmp_path, capsys):
    assert cli.main(["--volume", str(tmp_path / "vol"), "verify"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("no archive on the volume (nothing to verify): chatterbox, ")
    assert out[-1] == (
        "verify: ok: 0 archives of 0 profiles, 0 weights snapshots (0 files, 0.0 MB) re-hashed"
    )
