"""worker-faster_whisper's own jobs through ``handler.handler``, unchanged (slow tier).

The micro Whisper checkpoint (``tests/fixtures/whisper.py``) stands in for the models
those jobs name; their audio URL's host (github.com) is served on loopback
(``tests.fixtures.origin``). Random weights say random words, so these tests check
the keys that worker's README documents and that every key agrees with the rest of
the result. What real weights hear is in ``test_whisper_real.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pysubs2
import pytest
import soundfile

import handler
from bootstrap import Weights
from models import profiles, registry
from tests.fixtures.origin import hosted

pytestmark = pytest.mark.slow

PEER = Path(__file__).resolve().parents[1] / "fixtures" / "peers" / "worker_faster_whisper"
REPO = "tests/faster-whisper-micro"
SR = 16_000
# worker-faster_whisper's README, "Example": the keys of its output.
THEIR_KEYS = {"segments", "detected_language", "transcription", "translation", "device", "model"}
THEIR_SEGMENT_KEYS = {
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}


@pytest.fixture(scope="module")
def micro_worker(hub_server, whisper_checkpoint, tmp_path_factory):
    """A worker whose base and large-v3-turbo profiles load the micro checkpoint (the
    models a worker-faster_whisper job names by default and in its test_input.json)."""
    commit = hub_server.add_repo(REPO, whisper_checkpoint)
    home = tmp_path_factory.mktemp("dialect-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("whisper_base", "whisper_large_v3_turbo"):
            real = registry.get_profile(name)
            (weights,) = real.weights
            micro = Weights(REPO, commit, weights.patterns)
            mp.setitem(profiles.PROFILES, name, dataclasses.replace(real, weights=(micro,)))
        mp.setenv("HF_ENDPOINT", hub_server.endpoint)
        mp.setenv("MEDIA_WORKER_HOME", str(home))
        mp.setenv("MEDIA_WORKER_ENVS_DIR", str(home / "local-envs"))
        with handler.Worker().installed() as worker:
            for name in ("whisper_base", "whisper_large_v3_turbo"):
                worker.environments.get(name, lambda *a: None)
            yield worker


def _tone_wav(seconds: float) -> bytes:
    t = np.arange(int(SR * seconds)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(
        np.float32
    )
    buf = io.BytesIO()
    soundfile.write(buf, tone, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _assert_their_shape(result: dict) -> None:
    assert "error" not in result, result
    assert set(result) >= THEIR_KEYS
    assert result["device"] == "cpu"
    assert result["detected_language"] == result["language"]
    segments = result["segments"]
    assert segments, "the micro model always says something on a tone"
    for i, seg in enumerate(segments, start=1):
        assert set(seg) >= THEIR_SEGMENT_KEYS
        assert seg["id"] == i
        assert (seg["start"], seg["end"]) == (seg["start_s"], seg["end_s"])
        assert seg["tokens"] and all(isinstance(t, int) for t in seg["tokens"])
        assert seg["temperature"] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        assert seg["avg_logprob"] <= 0 and 0 <= seg["no_speech_prob"] <= 1
        assert seg["compression_ratio"] > 0
    seeks = [s["seek"] for s in segments]
    assert seeks == sorted(seeks) and seeks[0] >= 0


def test_their_test_input_json_runs_unchanged(micro_worker, tmp_path, monkeypatch):
    job = json.loads((PEER / "test_input.json").read_text())
    with hosted(job["input"]["audio"], tmp_path, monkeypatch) as origin:
        origin.body, origin.content_type = _tone_wav(6.0), "audio/wav"
        result = handler.handler({"id": "fw-test-input", **job})
    assert origin.requests == ["/runpod-workers/sample-inputs/raw/main/audio/gettysburg.wav"]
    _assert_their_shape(result)
    assert result["model"] == "large-v3-turbo"  # their "turbo"
    assert result["translation"] is None and "word_timestamps" not in result
    # "plain text": the segments' text joined by spaces, as that worker joins it.
    assert result["transcription"] == " ".join(s["text"] for s in result["segments"] if s["text"])
    assert result["transcription"] == result["text"]


def test_base64_audio_with_words_subtitles_and_a_translation(micro_worker):
    job = {
        "id": "fw-base64",
        "input": {
            "audio_base64": base64.b64encode(_tone_wav(6.0)).decode(),
            "transcription": "srt",
            "translate": True,
            "translation": "vtt",
            "word_timestamps": True,
            "enable_vad": False,
        },
    }
    result = handler.handler(job)
    _assert_their_shape(result)
    assert result["model"] == "base"  # their default model
    cues = pysubs2.SSAFile.from_string(result["transcription"], keep_ssa_tags=True)
    assert cues.format == "srt"
    assert [(c.start, c.end) for c in cues] == [
        (round(s["start"] * 1000), round(s["end"] * 1000)) for s in result["segments"] if s["text"]
    ]
    translation = pysubs2.SSAFile.from_string(result["translation"], keep_ssa_tags=True)
    assert translation.format == "vtt" and len(translation) > 0
    words = [w for s in result["segments"] for w in s["words"]]
    assert [(w["start"], w["end"]) for w in result["word_timestamps"]] == [
        (w["start_s"], w["end_s"]) for w in words
    ]
    assert [w["word"].strip() for w in result["word_timestamps"]] == [w["word"] for w in words]


def test_their_fields_that_this_worker_cannot_serve_are_refused_by_name(micro_worker):
    job = {"audio_base64": base64.b64encode(_tone_wav(1.0)).decode()}
    result = handler.handler({"id": "fw-bad", "input": {**job, "transcription": "docx"}})
    assert result["error_code"] == "invalid_input"
    assert result["details"][0]["field"] == "transcription"
    result = handler.handler({"id": "fw-ambiguous", "input": {**job, "voice": "af_bella"}})
    assert result["error_code"] == "invalid_input"
    assert result["details"][0]["field"] == "task" and "'voice'" in result["error"]
