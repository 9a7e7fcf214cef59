"""The job contract: every field validated, errors name the field, schema in sync."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from errors import InvalidInput
from models import contract, jobs

ROOT = Path(__file__).resolve().parents[2]
TTS = {"task": "tts", "text": "Hello there."}


def test_minimal_tts_gets_documented_defaults():
    job = jobs.parse_job(dict(TTS))
    assert (job.task, job.model, job.format, job.speed, job.voice) == (
        "tts",
        None,
        "wav",
        1.0,
        None,
    )
    assert job.output.prefix is None and job.output.presign_seconds is None


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"text": "hi"}, "task", "required"),
        ({"task": "sing", "text": "hi"}, "task", "one of"),
        ({"task": 3, "text": "hi"}, "task", "one of"),
        ({"task": "tts"}, "text", "Field required"),
        ({"task": "tts", "text": ""}, "text", "at least 1 character"),
        ({"task": "tts", "text": "   "}, "text", "only whitespace"),
        ({"task": "tts", "text": "x" * 20_001}, "text", "at most 20000"),
        ({"task": "tts", "text": 5}, "text", "valid string"),
        ({**TTS, "speed": 0.2}, "speed", "greater than or equal to 0.25"),
        ({**TTS, "speed": 4.5}, "speed", "less than or equal to 4"),
        ({**TTS, "speed": "fast"}, "speed", "valid number"),
        ({**TTS, "format": "m4a"}, "format", "'mp3', 'opus', 'pcm' or 'aac'"),
        ({**TTS, "format": "opus", "sample_rate": 22050}, "sample_rate", "opus carries only"),
        ({**TTS, "format": "aac", "sample_rate": 23000}, "sample_rate", "aac carries only"),
        ({**TTS, "format": "mp4"}, "format", "'wav'"),
        ({**TTS, "sample_rate": 1000}, "sample_rate", "greater than or equal to 8000"),
        ({**TTS, "seed": -1}, "seed", "greater than or equal to 0"),
        ({**TTS, "voice": ""}, "voice", "at least 1 character"),
        ({**TTS, "model": ""}, "model", "at least 1 character"),
        ({**TTS, "colour": "red"}, "colour", "unknown field"),
        (
            {**TTS, "output": {"presign_seconds": 59}},
            "output.presign_seconds",
            "greater than or equal to 60",
        ),
        ({**TTS, "output": {"presign_seconds": 604_801}}, "output.presign_seconds", "604800"),
        ({**TTS, "output": {"bucket": "x"}}, "output.bucket", "unknown field"),
        ({**TTS, "output": "x"}, "output", "valid dictionary"),
        (
            {"task": "clone", "text": "hi", "reference_audio": "s3://b/k", "voice": "ana"},
            "voice",
            "not both",
        ),
        ({"task": "clone", "text": "hi", "save_voice": "ana"}, "save_voice", "needs reference"),
        ({"task": "clone", "text": "hi", "voice": "../etc"}, "voice", "match pattern"),
        (
            {"task": "clone", "text": "hi", "reference_audio": "s3://b/k", "save_voice": "A b"},
            "save_voice",
            "match pattern",
        ),
        ({"task": "clone", "text": "hi", "temperature": 0}, "temperature", "0.05"),
        ({"task": "clone", "text": "hi", "reference_text": ""}, "reference_text", "at least 1"),
        ({"task": "voices", "action": "delete"}, "name", "needs the voice's name"),
        ({"task": "voices", "action": "rename", "name": "a"}, "action", "'list' or 'delete'"),
        (
            {"task": "clone", "text": "hi", "reference_audio": "http://x/a.wav"},
            "reference_audio",
            "https:// URL",
        ),
        (
            {"task": "clone", "text": "hi", "reference_audio": "file:///etc/passwd"},
            "reference_audio",
            "https:// URL",
        ),
        (
            {"task": "clone", "text": "hi", "reference_audio": "s3://b/k", "cfg_weight": 2},
            "cfg_weight",
            "less than or equal to 1",
        ),
        ({"task": "restore"}, "video", "Field required"),
        ({"task": "restore", "video": "s3://b/v.mp4", "format": "wav"}, "format", "'mp4'"),
        ({"task": "restore", "video": "s3://b/v.mp4", "resolution": 10}, "resolution", "144"),
        ({"task": "restore", "video": "s3://b/v.mp4", "text": "x"}, "text", "unknown field"),
    ],
)
def test_bad_input_names_the_field(raw, field, fragment):
    with pytest.raises(InvalidInput) as info:
        jobs.parse_job(raw)
    err = info.value
    assert err.field == field
    assert err.message.startswith(f"{field}: ")
    assert fragment in err.message
    assert err.details[0]["field"] == field


def test_every_problem_is_listed_in_details():
    with pytest.raises(InvalidInput) as info:
        jobs.parse_job({"task": "tts", "text": "", "speed": 9, "extra": 1})
    fields = sorted(d["field"] for d in info.value.details)
    assert fields == ["extra", "speed", "text"]
    assert "(and 2 more)" in info.value.message


@pytest.mark.parametrize("raw", [None, [], "tts", 3])
def test_input_must_be_an_object(raw):
    with pytest.raises(InvalidInput, match=r"^input: must be a JSON object$"):
        jobs.parse_job(raw)


def test_committed_schema_matches_the_models():
    committed = (ROOT / "models" / "schema.json").read_text()
    assert committed == jobs.json_schema_text(), (
        "models/schema.json is stale: run `python -m models schema > models/schema.json`"
    )


def test_the_docs_state_the_contract_version_the_code_has():
    readme = (ROOT / "docs/reference/contract.md").read_text()
    stated = re.findall(r"^Version (\d+\.\d+)\. The reference is the JSON Schema", readme, re.M)
    assert stated == [contract.CONTRACT_VERSION]
    assert f"v{contract.CONTRACT_VERSION}" in jobs.json_schema()["title"]


def test_schema_cli_prints_a_valid_draft_2020_schema():
    from jsonschema import Draft202012Validator

    out = subprocess.run(
        [sys.executable, "-m", "models", "schema"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    schema = json.loads(out)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"task": "tts", "text": "Hello."})
    assert not validator.is_valid({"task": "tts", "text": "Hello.", "bogus": 1})
    assert validator.is_valid({"task": "clone", "text": "x", "voice": "ana"})
    # The other names a field is accepted under are in the schema too (OpenAI's body).
    openai = {"task": "tts", "input": "Hello.", "response_format": "aac", "speed": 4.0}
    assert validator.is_valid(openai) and jobs.parse_job(openai).text == "Hello."
    assert not validator.is_valid({"task": "tts", "response_format": "aac"})  # no text
    assert validator.is_valid({"task": "transcribe", "audio": "s3://b/k", "word_timestamps": True})
    # Each task's models are named, as the registry serves them.
    assert validator.is_valid({**TTS, "model": "kokoro"})
    assert not validator.is_valid({**TTS, "model": "tts-1"})
    assert validator.is_valid(
        {"task": "transcribe", "audio": "s3://b/k", "model": "distil-large-v3"}
    )
    assert not validator.is_valid({"task": "restore", "video": "s3://b/k", "model": "kokoro"})
    # Whisper's language codes are listed (a finite set).
    heard = {"task": "transcribe", "audio": "s3://b/k"}
    assert validator.is_valid({**heard, "language": "yue"})
    assert validator.is_valid({**heard, "language": None})
    assert not validator.is_valid({**heard, "language": "xx"})
    assert not validator.is_valid({"task": "clone", "text": "x", "voice": "Ana B"})
    assert set(schema["$defs"]) >= {
        "TtsJob",
        "CloneJob",
        "RestoreJob",
        "VoicesJob",
        "JobResult",
        "VoicesResult",
        "ErrorEnvelope",
    }


# --- Results: each task's own fields, nothing else -----------------------------------

_OUTPUT = {
    "url": "file:///o/x",
    "key": "jobs/j/x",
    "content_type": "audio/wav",
    "bytes": 1,
    "sha256": "0" * 64,
}
_TIMINGS = {"bootstrap_s": 0.0, "fetch_s": 0.0, "load_s": 0.1, "infer_s": 0.2,
            "publish_s": 0.0, "total_s": 0.3}  # fmt: skip
_COMMON = {"model": "m", "outputs": [_OUTPUT], "timings": _TIMINGS, "cold": False}
_MEDIA = {"kind": "video", "frames": 2, "fps": 25.0, "width": 64, "height": 48,
          "duration_s": 0.08, "codec": "h264", "encoder": "libx264", "audio": "none"}  # fmt: skip
_TRANSCRIPT = {"language": None, "language_probability": None, "duration_s": 1.0,
               "text": "", "segments": []}  # fmt: skip
_STAGES = {"decode_s": 0.1, "compute_s": 0.2, "encode_s": 0.1}


@pytest.mark.parametrize(
    ("fields", "keys"),
    [
        ({"task": "tts"}, set()),
        ({"task": "tts", "words": [{"word": "a", "start_s": 0, "end_s": 0.1}]}, {"words"}),
        ({"task": "clone"}, set()),
        ({"task": "clone", "saved_voice": "ana"}, {"saved_voice"}),
        ({"task": "restore", "media": _MEDIA, "timings": {**_TIMINGS, **_STAGES}}, {"media"}),
        # transcribe keeps its nulls: language null means silence
        ({"task": "transcribe", **_TRANSCRIPT}, set(_TRANSCRIPT)),
    ],
)
def test_a_result_carries_only_its_tasks_fields(fields, keys):
    result = contract.result_dict(jobs.job_result({**_COMMON, **fields}))
    assert set(result) == {"task", "model", "outputs", "timings", "cold"} | keys
    assert ("decode_s" in result["timings"]) == (fields["task"] == "restore")


@pytest.mark.parametrize(
    "fields",
    [
        {"task": "tts", "segments": None},
        {"task": "tts", "media": None},
        {"task": "clone", "language": "en"},
        {"task": "transcribe", **_TRANSCRIPT, "words": []},
        {"task": "tts", "timings": {**_TIMINGS, **_STAGES}},
        {"task": "restore", "media": _MEDIA},  # its stage timings are part of it
        {"task": "restore"},
    ],
)
def test_a_result_refuses_fields_of_another_task(fields):
    with pytest.raises(ValidationError):
        jobs.job_result({**_COMMON, **fields})


def test_the_schema_gives_each_task_its_own_closed_result():
    from jsonschema import Draft202012Validator

    schema = jobs.json_schema()
    defs = schema["$defs"]
    assert set(defs["JobResult"]["discriminator"]["mapping"]) == {
        "tts", "clone", "restore", "transcribe"
    }  # fmt: skip
    for name in ("TtsResult", "CloneResult", "RestoreResult", "TranscribeResult"):
        assert defs[name]["additionalProperties"] is False, name
    result = Draft202012Validator({"$defs": defs, "$ref": "#/$defs/JobResult"})
    assert result.is_valid({**_COMMON, "task": "tts"})
    assert not result.is_valid({**_COMMON, "task": "tts", "segments": None, "media": None})
    assert not result.is_valid({**_COMMON, "task": "restore", "media": _MEDIA})


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        ({**TTS, "vocie": "joe"}, "vocie", "did you mean `voice`?"),
        ({**TTS, "formt": "wav"}, "formt", "did you mean `format`?"),
        ({**TTS, "respose_format": "wav"}, "respose_format", "did you mean `response_format`?"),
        ({"task": "transcribe", "audio": "s3://b/k", "enable_vad": True}, "enable_vad", "`vad`"),
        ({"task": "transcribe", "audio_base64": "UklGRg=="}, "audio_base64", "data: URI"),
        ({"task": "clone", "text": "x", "ref_audio": "s3://b/k"}, "ref_audio", "`reference_audio`"),
        ({**TTS, "zzz": 1}, "zzz", "check the spelling"),
    ],
)
def test_an_unknown_field_gets_the_name_it_may_have_meant(raw, field, says):
    with pytest.raises(InvalidInput) as info:
        jobs.parse_job(raw)
    (detail,) = [d for d in info.value.details if d["field"] == field]
    assert says in detail["message"]


def test_the_error_line_names_the_unknown_field_that_explains_a_missing_one():
    with pytest.raises(InvalidInput) as info:
        jobs.parse_job({"task": "transcribe", "audio_base64": "UklGRg=="})
    assert info.value.message.startswith("audio_base64: unknown field; this worker's name")
    assert info.value.message.endswith("(and 1 more)")
    assert [d["field"] for d in info.value.details] == ["audio_base64", "audio"]
