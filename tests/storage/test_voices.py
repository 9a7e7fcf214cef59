"""Saved cloning voices on the volume and in a bucket: round trip, list, delete,
unknown names, damaged files, and concurrent saves of one name (real processes)."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

import storage
from errors import InvalidInput
from storage import _voices
from storage._s3 import make_client as s3_bucket_client


def _clip(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def test_a_saved_voice_round_trips_with_its_transcript(tmp_path):
    src = _clip(tmp_path, "ref.flac", b"fLaC" + os.urandom(5000))
    info = storage.save_voice("ana", src, "Hello there.", s3=None)
    assert info.bytes == 5004 and info.has_reference_text
    dest = tmp_path / "job"
    dest.mkdir()
    loaded = storage.load_voice("ana", dest, s3=None)
    assert loaded.audio.read_bytes() == src.read_bytes()
    assert loaded.audio.suffix == ".flac" and loaded.audio.parent == dest
    assert loaded.reference_text == "Hello there."
    assert loaded.sha256 == info.sha256
    assert [v.name for v in storage.list_voices(s3=None)] == ["ana"]


def test_saving_a_name_again_replaces_the_voice(tmp_path):
    storage.save_voice("ana", _clip(tmp_path, "a.wav", b"first"), None, s3=None)
    storage.save_voice("ana", _clip(tmp_path, "b.wav", b"second"), "Text.", s3=None)
    loaded = storage.load_voice("ana", tmp_path, s3=None)
    assert loaded.audio.read_bytes() == b"second" and loaded.reference_text == "Text."


def test_a_superseded_clip_is_removed_only_after_the_grace_period(tmp_path):
    old = storage.save_voice("ana", _clip(tmp_path, "a.wav", b"first"), None, s3=None)
    storage.save_voice("ana", _clip(tmp_path, "b.wav", b"second"), None, s3=None)
    folder = _voices.voices_root() / "ana"
    superseded = folder / f"{old.sha256}.wav"
    assert superseded.exists()  # a concurrent save might still be about to commit it
    past = superseded.stat().st_mtime - _voices._ORPHAN_GRACE_S - 1
    os.utime(superseded, (past, past))
    storage.save_voice("ana", _clip(tmp_path, "c.wav", b"third"), None, s3=None)
    assert not superseded.exists()


@pytest.mark.parametrize("prefix", ["tenant-a", "a/b"])
def test_a_prefix_keeps_voices_apart(tmp_path, prefix):
    storage.save_voice("ana", _clip(tmp_path, "a.wav", b"plain"), None, s3=None)
    storage.save_voice("ana", _clip(tmp_path, "b.wav", b"tenant"), None, s3=None, prefix=prefix)
    assert [v.name for v in storage.list_voices(s3=None)] == ["ana"]
    assert [v.name for v in storage.list_voices(s3=None, prefix=prefix)] == ["ana"]
    loaded = storage.load_voice("ana", tmp_path, s3=None, prefix=prefix)
    assert loaded.audio.read_bytes() == b"tenant"
    storage.delete_voice("ana", s3=None, prefix=prefix)
    assert storage.list_voices(s3=None, prefix=prefix) == []
    assert storage.load_voice("ana", tmp_path, s3=None).audio.read_bytes() == b"plain"


def test_unknown_voice_names_the_field_and_lists_the_saved_ones(tmp_path):
    storage.save_voice("bob", _clip(tmp_path, "a.wav", b"x"), None, s3=None)
    with pytest.raises(InvalidInput, match=r"voice: no saved voice 'ana' \(saved: bob\)") as exc:
        storage.load_voice("ana", tmp_path, s3=None)
    assert exc.value.field == "voice"
    with pytest.raises(InvalidInput, match="name: no saved voice 'ana'"):
        storage.delete_voice("ana", s3=None)


def test_delete_removes_the_voice(tmp_path):
    storage.save_voice("ana", _clip(tmp_path, "a.wav", b"x"), None, s3=None)
    storage.save_voice("bob", _clip(tmp_path, "b.wav", b"y"), None, s3=None)
    storage.delete_voice("ana", s3=None)
    assert [v.name for v in storage.list_voices(s3=None)] == ["bob"]
    assert sorted(p.name for p in _voices.voices_root().iterdir()) == ["bob"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "voice.json").write_text("{not json"),
        lambda folder: (folder / "voice.json").write_text(json.dumps({"version": 99})),
        lambda folder: (folder / "voice.json").unlink(),
    ],
    ids=["garbled", "unknown-version", "missing"],
)
def test_an_unreadable_manifest_counts_as_no_voice(tmp_path, damage):
    storage.save_voice("ana", _clip(tmp_path, "a.wav", b"x"), None, s3=None)
    damage(_voices.voices_root() / "ana")
    assert storage.list_voices(s3=None) == []
    with pytest.raises(InvalidInput, match="no saved voice 'ana'"):
        storage.load_voice("ana", tmp_path, s3=None)


def test_damaged_audio_is_refused_not_used(tmp_path):
    info = storage.save_voice("ana", _clip(tmp_path, "a.wav", b"good audio"), None, s3=None)
    (_voices.voices_root() / "ana" / f"{info.sha256}.wav").write_bytes(b"bit rot")
    with pytest.raises(InvalidInput, match="damaged"):
        storage.load_voice("ana", tmp_path, s3=None)


def _save_many(home: str, source: str, rounds: int) -> None:
    os.environ["MEDIA_WORKER_HOME"] = home
    for _ in range(rounds):
        storage.save_voice("shared", Path(source), Path(source).name, s3=None)


@pytest.mark.slow
def test_concurrent_saves_of_one_name_never_leave_a_half_written_voice(tmp_path):
    """Four processes save different 2 MB clips as one name while a thread reads it."""
    home = os.environ["MEDIA_WORKER_HOME"]
    sources = [_clip(tmp_path, f"src{i}.wav", bytes([i]) * 2_000_000) for i in range(4)]
    contents = {s.name: s.read_bytes() for s in sources}
    storage.save_voice("shared", sources[0], sources[0].name, s3=None)
    stop = threading.Event()
    seen: list[str] = []
    problems: list[str] = []

    def read() -> None:
        n = 0
        while not stop.is_set():
            dest = tmp_path / f"read{n % 2}"
            dest.mkdir(exist_ok=True)
            try:
                voice = storage.load_voice("shared", dest, s3=None)
            except InvalidInput as exc:  # damaged or missing would both be a bug here
                problems.append(exc.message)
                continue
            # the audio always belongs with its transcript: a whole voice, never a mix
            if voice.audio.read_bytes() != contents[voice.reference_text]:
                problems.append(f"audio does not match {voice.reference_text}")
            seen.append(voice.reference_text)
            n += 1

    reader = threading.Thread(target=read)
    reader.start()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_save_many, args=(home, str(s), 15)) for s in sources]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    stop.set()
    reader.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert problems == []
    assert len(seen) > 0
    final = storage.load_voice("shared", tmp_path, s3=None)
    assert final.audio.read_bytes() == contents[final.reference_text]
    leftovers = [p.name for p in (_voices.voices_root() / "shared").iterdir()]
    assert not [n for n in leftovers if n.endswith(".partial")]


@pytest.mark.slow
def test_voices_live_in_the_bucket_when_one_is_configured(tmp_path, s3_bucket):
    src = _clip(tmp_path, "ref.m4a", os.urandom(3000))
    storage.save_voice("ana", src, "Hi.", s3=s3_bucket)
    storage.save_voice("bob", src, None, s3=s3_bucket)
    assert [v.name for v in storage.list_voices(s3=s3_bucket)] == ["ana", "bob"]
    assert storage.list_voices(s3=None) == []  # nothing on the volume
    loaded = storage.load_voice("ana", tmp_path, s3=s3_bucket)
    assert loaded.audio.read_bytes() == src.read_bytes() and loaded.reference_text == "Hi."
    storage.delete_voice("ana", s3=s3_bucket)
    assert [v.name for v in storage.list_voices(s3=s3_bucket)] == ["bob"]
    with pytest.raises(InvalidInput, match="voice: no saved voice 'ana'"):
        storage.load_voice("ana", tmp_path, s3=s3_bucket)
    # a job prefix namespaces voices in the bucket as it does outputs
    storage.save_voice("bob", _clip(tmp_path, "t.wav", b"tenant"), None, s3=s3_bucket,
                       prefix="tenant-a")  # fmt: skip
    assert [v.name for v in storage.list_voices(s3=s3_bucket, prefix="tenant-a")] == ["bob"]
    assert storage.load_voice("bob", tmp_path, s3=s3_bucket).audio.read_bytes() == src.read_bytes()
    keys = {o["Key"] for o in s3_bucket_client(s3_bucket).list_objects_v2(
        Bucket=s3_bucket.bucket)["Contents"]}  # fmt: skip
    assert "tenant-a/voices/clone/bob/voice.json" in keys
