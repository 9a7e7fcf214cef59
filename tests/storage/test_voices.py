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
from runtime import atomic
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
    assert not [n for n in leftovers if n.startswith(atomic.TEMP_PREFIX)]


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


# --- Races, as a running worker was attacked (issue 16) -----------------------------


def _outcome(call) -> str:
    """What one storage call ended with: ok, a contract error by field, or anything else."""
    try:
        call()
    except InvalidInput as exc:
        return f"invalid_input:{exc.field}"
    except Exception as exc:  # the test reports whatever escaped
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@pytest.mark.slow
def test_two_deletes_of_one_name_at_once_one_deletes_the_other_names_the_field(tmp_path):
    src = _clip(tmp_path, "a.wav", b"x" * 4096)

    def delete(start: threading.Barrier, outcomes: list[str]) -> None:
        start.wait()
        outcomes.append(_outcome(lambda: storage.delete_voice("ana", s3=None)))

    for _ in range(40):
        storage.save_voice("ana", src, None, s3=None)
        start = threading.Barrier(2)
        outcomes: list[str] = []
        threads = [threading.Thread(target=delete, args=(start, outcomes)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["invalid_input:name", "ok"]
    assert list(_voices.voices_root().iterdir()) == []  # each delete cleaned up after itself


def _save_and_delete(home: str, source: str, rounds: int, results) -> None:
    os.environ["MEDIA_WORKER_HOME"] = home
    seen: dict[str, int] = {}
    for _ in range(rounds):
        for what, call in (
            ("save", lambda: storage.save_voice("shared", Path(source), None, s3=None)),
            ("delete", lambda: storage.delete_voice("shared", s3=None)),
        ):
            key = f"{what} {_outcome(call)}"
            seen[key] = seen.get(key, 0) + 1
    results.put(seen)


@pytest.mark.slow
def test_racing_saves_and_deletes_leave_no_deleted_folders_and_list_none(tmp_path):
    """Three processes save and delete one name in a loop while this one lists and loads."""
    home = os.environ["MEDIA_WORKER_HOME"]
    sources = [_clip(tmp_path, f"src{i}.wav", bytes([i]) * 200_000) for i in range(3)]
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_save_and_delete, args=(home, str(s), 25, results)) for s in sources
    ]
    for p in procs:
        p.start()
    listed: set[str] = set()
    errors: set[str] = set()
    dest = tmp_path / "job"
    dest.mkdir()
    while any(p.is_alive() for p in procs):
        listed.update(v.name for v in storage.list_voices(s3=None))
        errors.add(_outcome(lambda: storage.load_voice("shared", dest, s3=None)))
    outcomes: dict[str, int] = {}
    for _ in procs:
        for key, n in results.get(timeout=60).items():
            outcomes[key] = outcomes.get(key, 0) + n
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    # every save lands; a delete either deletes or finds the name already gone
    assert outcomes["save ok"] == 75, outcomes
    assert set(outcomes) <= {"save ok", "delete ok", "delete invalid_input:name"}
    assert listed <= {"shared"}  # never a '.deleted-*' folder
    assert errors <= {"ok", "invalid_input:voice"}, errors
    assert [p.name for p in _voices.voices_root().iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
@pytest.mark.parametrize("store", ["volume", "bucket"])
def test_a_voice_deleted_while_a_job_reads_it_names_the_field(tmp_path, store, request):
    """A real delete runs, on another thread, right after the job has read voice.json."""
    s3 = request.getfixturevalue("s3_bucket") if store == "bucket" else None
    storage.save_voice("ana", _clip(tmp_path, "a.wav", b"x" * 4096), "Hi.", s3=s3)
    real = _voices._read_manifest
    reads: list[str] = []

    def read_then_delete(where, *, s3):
        manifest = real(where, s3=s3)
        if not reads:  # the job's read; the delete's own read is the next one
            reads.append(where.name)
            deleting = threading.Thread(target=storage.delete_voice, args=("ana",),
                                        kwargs={"s3": s3})  # fmt: skip
            deleting.start()
            deleting.join(30)
        return manifest

    _voices._read_manifest = read_then_delete
    try:
        with pytest.raises(InvalidInput, match="was deleted while this job read it") as exc:
            storage.load_voice("ana", tmp_path, s3=s3)
    finally:
        _voices._read_manifest = real
    assert exc.value.field == "voice"
    assert storage.list_voices(s3=s3) == []
