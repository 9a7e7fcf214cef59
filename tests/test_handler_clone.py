"""clone and voices jobs through the handler: pre-flight rules of the two cloning
models, saved voices, and the reference step in a real runner process.

The cloning libraries cannot run on this CPU machine (README, "Voice cloning": their
torchaudio wheels need CUDA torch), so the runner-process tests use a fixture runner
that runs the real reference step (media/reference_audio.py) and echoes the clip
the model would be given; nothing pretends to be Chatterbox or F5-TTS.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile
from pydantic import TypeAdapter

import handler
from models import contract, jobs, registry
from tests.fixtures import hostile
from tests.fixtures.cloning import reference_clip as _clip
from tests.media.test_reference_audio import voice_like

# Jobs run in runners of the module's own worker, stopped when it ends.
pytestmark = pytest.mark.usefixtures("handler_worker")


def _local_file(output: dict) -> Path:
    url = urlparse(output["url"])
    assert url.scheme == "file"
    return Path(urllib.request.url2pathname(url.path))


def _clone(job_id: str, **fields) -> dict:
    return {"id": job_id, "input": {"task": "clone", "text": "Hello there.", **fields}}


def _error(result: dict) -> tuple[str, str]:
    envelope = contract.ErrorEnvelope.model_validate(result)
    return envelope.error_code, envelope.details[0].field


# --- Pre-flight: no runner, no fetch ----------------------------------------------


def test_clone_defaults_to_chatterbox():
    job = jobs.parse_job(_clone("d")["input"])
    assert registry.resolve(job).model == "chatterbox"


@pytest.mark.parametrize(
    ("fields", "code", "field", "fragment"),
    [
        (
            {"model": "f5tts", "reference_audio": "s3://bucket/a.wav", "reference_text": "x"},
            "model_unavailable",
            "model",
            "MEDIA_WORKER_ALLOW_NONCOMMERCIAL=1",
        ),
        ({"nfe_step": 16}, "invalid_input", "nfe_step", "chatterbox' does not use"),
        ({"speed": 1.2}, "invalid_input", "speed", "chatterbox' does not use"),
        ({"language": "fr"}, "invalid_input", "language", "speaks en"),
        ({"voice": "nobody"}, "invalid_input", "voice", "no saved voice 'nobody'"),
    ],
)
def test_bad_clone_jobs_fail_before_any_runner(fields, code, field, fragment):
    result = handler.handler(_clone("pre", **fields))
    assert _error(result) == (code, field), result
    assert fragment in result["error"]


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"reference_audio": "s3://bucket/a.wav"}, "reference_text", "1.6 GB Whisper"),
        ({}, "reference_audio", "no built-in voice"),
        (
            {"reference_audio": "s3://bucket/a.wav", "reference_text": "x", "cfg_weight": 0.3},
            "cfg_weight",
            "f5tts' does not use",
        ),
    ],
)
def test_f5tts_when_opted_in_still_needs_its_inputs(monkeypatch, fields, field, fragment):
    monkeypatch.setenv("MEDIA_WORKER_ALLOW_NONCOMMERCIAL", "1")
    result = handler.handler(_clone("f5", model="f5tts", **fields))
    assert _error(result) == ("invalid_input", field), result
    assert fragment in result["error"]


def test_voices_list_is_empty_and_deleting_an_unknown_voice_names_the_field():
    assert handler.handler({"id": "v", "input": {"task": "voices"}}) == {
        "task": "voices",
        "action": "list",
        "voices": [],
    }
    result = handler.handler({"id": "v", "input": {"task": "voices", "action": "delete",
                                                   "name": "ghost"}})  # fmt: skip
    assert _error(result) == ("invalid_input", "name")


# --- The reference step in a real runner process -----------------------------------


@pytest.fixture
def reference_runner(monkeypatch):
    spec = registry.RunnerSpec(
        "clone", "refecho", "tests.models.fixture_runners:ReferenceRunner", "piper"
    )
    monkeypatch.setattr(registry, "RUNNERS", (*registry.RUNNERS, spec))
    return spec


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


@pytest.mark.slow
def test_saved_voice_round_trip_through_the_handler(tmp_path, reference_runner, caplog):
    caplog.set_level(logging.INFO, logger="handler")
    clip = _data_uri(_clip(tmp_path), "audio/mpeg")
    first = handler.handler(
        _clone("s1", model="refecho", reference_audio=clip, reference_text="Hi.", save_voice="ana")
    )
    assert "error" not in first, first
    assert first["saved_voice"] == "ana"
    audio, rate = soundfile.read(_local_file(first["outputs"][0]))
    assert rate == 24_000 and audio.ndim == 1
    assert 2.9 <= len(audio) / rate <= 3.4  # silence trimmed, downmixed, resampled

    listed = handler.handler({"id": "l", "input": {"task": "voices"}})
    assert [(v["name"], v["has_reference_text"]) for v in listed["voices"]] == [("ana", True)]

    caplog.clear()
    again = handler.handler(_clone("s2", model="refecho", voice="ana"))
    assert "error" not in again, again
    assert "saved_voice" not in again
    reused, _ = soundfile.read(_local_file(again["outputs"][0]))
    np.testing.assert_array_equal(reused, audio)
    # the saved transcript came along, and the repeated reference hit the cache
    assert "job=s2 progress cache hit text=Hi." in caplog.text

    deleted = handler.handler({"id": "d", "input": {"task": "voices", "action": "delete",
                                                    "name": "ana"}})  # fmt: skip
    assert deleted == {"task": "voices", "action": "delete", "voices": [], "deleted": "ana"}
    gone = handler.handler(_clone("s3", model="refecho", voice="ana"))
    assert _error(gone) == ("invalid_input", "voice")


@pytest.mark.slow
def test_the_reference_cache_is_keyed_by_the_recordings_content(tmp_path, reference_runner, caplog):
    caplog.set_level(logging.INFO, logger="handler")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    short = _data_uri(_clip(tmp_path / "a", seconds=3.0), "audio/mpeg")
    long = _data_uri(_clip(tmp_path / "b", seconds=4.5), "audio/mpeg")

    def duration_s(job_id: str, clip: str) -> float:
        result = handler.handler(_clone(job_id, model="refecho", reference_audio=clip))
        assert "error" not in result, result
        audio, rate = soundfile.read(_local_file(result["outputs"][0]))
        return len(audio) / rate

    assert 2.9 <= duration_s("k1", short) <= 3.4
    # another recording, fetched to the same place in its job: a miss, its own voice
    assert 4.4 <= duration_s("k2", long) <= 4.9
    assert "job=k2 progress cache miss" in caplog.text
    # the first recording again, fetched anew: the same content hits
    assert 2.9 <= duration_s("k3", short) <= 3.4
    assert "job=k3 progress cache hit" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "mime", "code", "fragment"),
    [
        (lambda p: soundfile.write(p, np.zeros(48_000, "float32"), 24_000), "audio/wav",
         "invalid_input", "silent"),
        (lambda p: soundfile.write(p, voice_like(0.3, 24_000), 24_000), "audio/wav",
         "invalid_input", "only 0."),
        (lambda p: p.write_bytes(b"RIFF" + b"\x00" * 400), "audio/wav", "unsupported_media",
         "not usable as audio"),
        # issue 20: decoded to 2 GB before it was refused
        (hostile.png_bomb, "audio/wav", "unsupported_media", "png image (16000x16000), not audio"),
    ],
    ids=["silence", "too-short", "not-audio", "png-bomb"],
)  # fmt: skip
def test_unusable_references_fail_in_the_runner_naming_the_field(
    tmp_path, reference_runner, make, mime, code, fragment
):
    path = tmp_path / "bad.wav"
    make(path)
    result = handler.handler(
        _clone("bad", model="refecho", reference_audio=_data_uri(path, mime), save_voice="bad")
    )
    assert _error(result) == (code, "reference_audio"), result
    assert fragment in result["error"]
    # a reference the model could not read is never saved
    assert handler.handler({"id": "l", "input": {"task": "voices"}})["voices"] == []


@pytest.mark.slow
def test_reference_by_https_url(reference_runner, https_origin):
    result = handler.handler(_clone("u1", model="refecho", reference_audio=https_origin))
    assert "error" not in result, result
    audio, rate = soundfile.read(_local_file(result["outputs"][0]))
    assert rate == 24_000 and 2.9 <= len(audio) / rate <= 3.4


@pytest.mark.slow
def test_a_streamed_clone_job_yields_chunks_that_add_up_to_its_output(tmp_path, reference_runner):
    clip = _data_uri(_clip(tmp_path), "audio/mpeg")
    items = list(
        handler.stream_handler(_clone("st", model="refecho", reference_audio=clip, stream=True))
    )
    *chunks, final = items
    assert final["type"] == "result" and "error" not in final, final
    TypeAdapter(jobs.StreamFinal).validate_python(final)
    assert [c["index"] for c in chunks] == [0, 1]
    decoded = [
        soundfile.read(io.BytesIO(base64.b64decode(c["audio_base64"])), dtype="int16")[0]
        for c in chunks
    ]
    full, rate = soundfile.read(_local_file(final["outputs"][0]), dtype="int16")
    assert rate == 24_000 and chunks[1]["offset_s"] == pytest.approx(len(decoded[0]) / rate)
    assert np.array_equal(np.concatenate(decoded), full)


@pytest.mark.slow
def test_saved_voices_live_in_the_jobs_bucket_under_its_prefix(
    tmp_path, reference_runner, s3_server, monkeypatch
):
    monkeypatch.setenv("MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS", "1")  # SeaweedFS: loopback
    bucket = "voices-" + os.urandom(4).hex()
    s3_server.client().create_bucket(Bucket=bucket)
    s3_config = {
        "accessId": s3_server.access_key,
        "accessSecret": s3_server.secret_key,
        "bucketName": bucket,
        "endpointUrl": s3_server.endpoint_url,
    }

    def run(job_id: str, **fields) -> dict:
        job = {"id": job_id, "input": fields, "s3Config": s3_config}
        job["input"].setdefault("output", {"prefix": "tenant-a"})
        return handler.handler(job)

    clip = _data_uri(_clip(tmp_path), "audio/mpeg")
    saved = run("b1", task="clone", model="refecho", text="Hi.", reference_audio=clip,
                save_voice="ana")  # fmt: skip
    assert saved.get("saved_voice") == "ana", saved
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert "tenant-a/voices/clone/ana/voice.json" in keys
    assert run("b2", task="voices")["voices"][0]["name"] == "ana"
    assert run("b3", task="voices", output={})["voices"] == []  # another prefix: not there
    reused = run("b4", task="clone", model="refecho", text="Hi.", voice="ana")
    assert "error" not in reused, reused
    assert s3_server.secret_key not in json.dumps([saved, reused])
    # nothing landed on the volume
    assert handler.handler({"id": "b5", "input": {"task": "voices"}})["voices"] == []
