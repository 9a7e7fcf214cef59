"""Temp-then-rename: one temp-name style, nothing visible until complete, no leftovers."""

from __future__ import annotations

import os
import re

import pytest

from bootstrap._layout import tmp_pid
from runtime import atomic


@pytest.mark.parametrize(
    ("name", "rest"),
    [
        ("restored.mp4", ".mp4"),
        ("piper-0123.tar.zst", ".tar.zst"),
        ("voice", ""),
        ("a.json", ".json"),
    ],
)
def test_a_temp_name_is_hidden_owned_and_keeps_the_suffix(name, rest):
    temp = atomic.temp_name(name)
    base = name.partition(".")[0]
    assert re.fullmatch(
        rf"\.tmp-{re.escape(base)}-[\w.]+-{os.getpid()}-[0-9a-f]{{8}}{re.escape(rest)}", temp
    )
    assert atomic.temp_name(name) != temp
    # bootstrap's gc reads the owner of a temp on the shared volume from its name
    assert tmp_pid(temp, base)[1] == os.getpid()


def test_nothing_is_visible_until_the_block_ends_and_a_failure_leaves_nothing(tmp_path):
    final = tmp_path / "out.wav"
    with atomic.atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        assert not final.exists() and tmp.parent == tmp_path
    assert final.read_bytes() == b"half"
    with pytest.raises(RuntimeError), atomic.atomic_path(final) as tmp:
        tmp.write_bytes(b"broken")
        raise RuntimeError("the writer failed")
    assert final.read_bytes() == b"half"  # the old content stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


def test_write_json_and_copy(tmp_path):
    atomic.write_json(tmp_path / "m.json", {"b": 1, "a": [2]})
    assert (tmp_path / "m.json").read_text() == '{\n "a": [\n  2\n ],\n "b": 1\n}'
    atomic.copy(tmp_path / "m.json", tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_bytes() == (tmp_path / "m.json").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(atomic.TEMP_PREFIX)]
