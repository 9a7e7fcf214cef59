"""worker-faster_whisper's jobs read as transcribe jobs; everything else keeps its task.

The inputs in ``tests/fixtures/peers/worker_faster_whisper/`` are that worker's own
files, copied unchanged (its README there names the commit).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from errors import InvalidInput
from models import dialects, jobs, registry
from models.contract import Timings, result_dict
from models.tasks.transcribe import TranscribeResult
from runners import whisper

PEER = Path(__file__).resolve().parents[1] / "fixtures" / "peers" / "worker_faster_whisper"
URL = "https://example.com/speech.wav"


def _peer_input(name: str) -> dict:
    return json.loads((PEER / name).read_text())["input"]


def test_their_test_input_is_a_transcribe_job_with_every_option_kept():
    job = jobs.parse_job(_peer_input("test_input.json"))
    assert job.task == "transcribe"
    assert job.model == "large-v3-turbo"  # their "turbo"
    assert job.audio.endswith("/audio/gettysburg.wav")
    assert job.faster_whisper.transcription == "plain_text"  # their "plain text"
    assert job.faster_whisper.translation is None and job.translate is False
    assert (job.temperature, job.temperature_increment_on_fallback) == (0, 0.2)
    assert (job.best_of, job.beam_size, job.suppress_tokens) == (5, 5, [-1])
    assert job.condition_on_previous_text is False
    assert (job.compression_ratio_threshold, job.logprob_threshold) == (2.4, -1)
    assert job.no_speech_threshold == 0.6
    spec = registry.resolve(job)
    assert spec.model == "large-v3-turbo"


def test_their_readme_example_gets_their_defaults():
    job = jobs.parse_job(_peer_input("readme_example.json"))
    assert job.model == "large-v3-turbo"
    # rp_schema.py's defaults where this worker's differ: no length penalty; the
    # ladder 0, 0.2, ... 1.0 (this worker's default too).
    assert job.length_penalty == 0
    assert whisper.temperatures(job.temperature, job.temperature_increment_on_fallback) == [
        0.0,
        0.2,
        0.4,
        0.6,
        0.8,
        1.0,
    ]
    assert (job.vad, job.timestamps, job.initial_prompt, job.language) == (
        False,
        False,
        None,
        None,
    )


def test_their_default_model_is_base():
    assert jobs.parse_job({"audio": URL}).model == "base"
    assert jobs.parse_job({"audio": URL, "model": None}).model == "base"


def test_their_renamed_fields_and_a_translation_pass():
    job = jobs.parse_job(
        {
            "audio": URL,
            "enable_vad": True,
            "word_timestamps": True,
            "translate": True,
            "translation": "srt",
            "transcription": "Formatted-Text",
            "temperature": 0.4,
        }
    )
    assert (job.vad, job.timestamps, job.translate) == (True, True, False)
    assert job.faster_whisper.model_dump() == {
        "transcription": "formatted_text",
        "translation": "srt",
    }
    # One temperature and no increment given: their increment, 0.2, is not assumed.
    assert job.temperature == 0.4 and job.temperature_increment_on_fallback is None


def test_audio_base64_becomes_a_data_uri_of_the_same_bytes():
    raw = b"RIFF\x00\x01 not really a wav"
    job = jobs.parse_job({"audio_base64": base64.b64encode(raw).decode()})
    header, _, payload = job.audio.partition(",")
    assert header == "data:application/octet-stream;base64"
    assert base64.b64decode(payload) == raw


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"audio": URL, "audio_base64": "UklGRg=="}, "audio", "not both"),
        ({"audio": "", "model": "base"}, "audio", "neither"),
        ({"audio_base64": "not base64!"}, "audio_base64", "not valid base64"),
        ({"audio_base64": 12}, "audio_base64", "base64 string"),
        ({"audio": URL, "transcription": "docx"}, "transcription", "plain_text"),
        ({"audio": URL, "translation": "pdf"}, "translation", "formatted_text"),
        ({"audio": URL, "translate": "yes"}, "translate", "true or false"),
        # Errors name the field as the caller wrote it.
        ({"audio": URL, "enable_vad": "maybe"}, "enable_vad", "boolean"),
        ({"audio": URL, "word_timestamps": []}, "word_timestamps", "boolean"),
        ({"audio": "http://example.com/a.wav"}, "audio", "https://"),
        ({"audio": URL, "beam_size": 0}, "beam_size", "greater than or equal to 1"),
        # Not theirs, not ours: refused naming task, and the field that is not theirs.
        ({"audio": URL, "text": "Hello"}, "task", "'text'"),
        ({"audio": URL, "formats": ["srt"]}, "task", "'formats'"),
        ({"text": "Hello"}, "task", "`audio` or `audio_base64`"),
        ({}, "task", "required"),
    ],
)
def test_bad_or_ambiguous_jobs_name_the_field(raw, field, fragment):
    with pytest.raises(InvalidInput) as refused:
        jobs.parse_job(raw)
    assert refused.value.field == field
    assert fragment in refused.value.message


def test_a_job_with_a_task_is_this_workers_own():
    job = {"task": "transcribe", "audio": URL}
    assert dialects.read(job).job is job
    with pytest.raises(InvalidInput) as refused:
        jobs.parse_job({**job, "transcription": "srt"})
    assert refused.value.field == "transcription"
    assert "unknown field" in refused.value.message


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "large-v1"}, "model"),
        ({"model": "distil-large-v3", "translate": True}, "translate"),
        ({"model": "distil-large-v3", "language": "de"}, "language"),
    ],
)
def test_what_this_worker_does_not_serve_is_refused_before_any_work(fields, field):
    with pytest.raises(InvalidInput) as refused:
        registry.resolve(jobs.parse_job({"audio": URL, **fields}))
    assert refused.value.field == field


def test_spellings_of_their_text_formats():
    for spelled in ("plain text", "PLAIN_TEXT", " plain-text "):
        assert dialects.text_format(spelled, "transcription") == "plain_text"
    for fmt in dialects.TEXT_FORMATS:
        assert dialects.text_format(fmt, "translation") == fmt


def _result(**fields) -> dict:
    base = {
        "task": "transcribe",
        "model": "base",
        "outputs": [],
        "timings": Timings(),
        "cold": False,
        "language": "en",
        "language_probability": 0.9,
        "duration_s": 1.0,
        "text": "Hi.",
        "segments": [{"start_s": 0.0, "end_s": 1.0, "text": "Hi."}],
    }
    return result_dict(TranscribeResult(**{**base, **fields}))


def test_their_result_keys_come_only_with_the_dialect_and_as_a_set():
    plain = _result()
    assert not {"transcription", "translation", "device", "detected_language"} & set(plain)
    assert set(plain["segments"][0]) == {"start_s", "end_s", "text", "words"}

    details = {
        "id": 1,
        "seek": 0,
        "start": 0.0,
        "end": 1.0,
        "tokens": [50364, 2421],
        "temperature": 0.0,
        "avg_logprob": -0.3,
        "compression_ratio": 0.6,
        "no_speech_prob": 0.01,
    }
    theirs = _result(
        transcription="Hi.",
        detected_language="en",
        device="cpu",
        segments=[{"start_s": 0.0, "end_s": 1.0, "text": "Hi.", **details}],
    )
    assert theirs["translation"] is None  # as that worker gives it when not asked
    assert "word_timestamps" not in theirs
    assert theirs["segments"][0] == {
        "start_s": 0.0,
        "end_s": 1.0,
        "text": "Hi.",
        "words": None,
        **details,
    }
