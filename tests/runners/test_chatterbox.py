"""Chatterbox 0.1.7 for real: clone jobs through handler.py on a CPU.

The ``chatterbox`` profile is built from PyPI once per session (tests/fixtures/
cloning.py) and the project's full-size random checkpoint, made to stop after a few
speech tokens, is served by the local hub. Every job below runs the library's own
``ChatterboxTTS`` in a real runner process: the conditioning (voice encoder, speech
tokenizer, mel prompt), T3's sampling loop, S3Gen and the Perth watermark. The
runner stays up for the module, so the repeated reference shows the cache at work.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging

import numpy as np
import pytest
import soundfile
from pydantic import TypeAdapter

import handler
from models import jobs
from tests.fixtures.cloning import CHATTERBOX_STOP_AFTER
from tests.fixtures.cloning import reference_clip as _clip
from tests.media.test_reference_audio import voice_like
from tests.test_handler_clone import _clone, _data_uri, _error, _local_file

# the first test also builds the profile and makes the checkpoint (session fixture)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

RATE = 24_000
# S3Gen makes 40 ms of audio per speech token; the invalid ones T3 samples (ids past
# the 6561 speech codes) are dropped before it, so a sentence is at most this long.
MAX_SENTENCE_S = CHATTERBOX_STOP_AFTER * 0.04 + 0.05


@pytest.fixture
def chatterbox_env(chatterbox_volume, monkeypatch, handler_worker):
    for name, value in chatterbox_volume.env.items():
        monkeypatch.setenv(name, value)
    return chatterbox_volume


def _audio(result: dict) -> tuple[np.ndarray, int]:
    assert "error" not in result, result
    return soundfile.read(_local_file(result["outputs"][0]), dtype="float32")


def _sha256(result: dict) -> str:
    return hashlib.sha256(_local_file(result["outputs"][0]).read_bytes()).hexdigest()


def test_saved_voice_round_trip_and_a_fixed_seed_repeats_the_bytes(
    chatterbox_env, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="handler")
    clip = _data_uri(_clip(tmp_path), "audio/mpeg")
    first = handler.handler(
        _clone("cb1", reference_audio=clip, save_voice="ana", seed=11, exaggeration=0.7)
    )
    audio, rate = _audio(first)
    assert rate == RATE and audio.ndim == 1
    assert 0 < len(audio) / rate <= MAX_SENTENCE_S
    assert np.abs(audio).max() > 0
    assert first["model"] == "chatterbox" and first["saved_voice"] == "ana"
    assert "job=cb1 progress conditioned on" in caplog.text

    listed = handler.handler({"id": "l", "input": {"task": "voices"}})
    assert [v["name"] for v in listed["voices"]] == ["ana"]

    caplog.clear()
    again = handler.handler(_clone("cb2", voice="ana", seed=11, exaggeration=0.7))
    # the saved clip is the reference's bytes, so its conditioning came from the cache
    assert "progress conditioned on" not in caplog.text
    assert _sha256(again) == _sha256(first)  # same seed, same speaker: the same bytes

    other = handler.handler(_clone("cb3", voice="ana", seed=12, exaggeration=0.7))
    assert _sha256(other) != _sha256(first)

    deleted = handler.handler(
        {"id": "d", "input": {"task": "voices", "action": "delete", "name": "ana"}}
    )
    assert deleted["deleted"] == "ana" and deleted["voices"] == []
    assert _error(handler.handler(_clone("cb4", voice="ana"))) == ("invalid_input", "voice")


def test_reference_by_https_url_in_a_streamed_job(chatterbox_env, https_origin):
    job = _clone("cbs", reference_audio=https_origin, stream=True, seed=5)
    job["input"]["text"] = "Hello there. How are you?"
    *chunks, final = list(handler.stream_handler(job))
    assert final["type"] == "result" and "error" not in final, final
    TypeAdapter(jobs.StreamFinal).validate_python(final)
    assert [c["index"] for c in chunks] == [0, 1]  # one chunk per sentence
    decoded = [
        soundfile.read(io.BytesIO(base64.b64decode(c["audio_base64"])), dtype="int16")[0]
        for c in chunks
    ]
    full, rate = soundfile.read(_local_file(final["outputs"][0]), dtype="int16")
    assert rate == RATE and chunks[1]["offset_s"] == pytest.approx(len(decoded[0]) / rate)
    assert np.array_equal(np.concatenate(decoded), full)


def _wav_uri(tmp_path, samples: np.ndarray) -> str:
    path = tmp_path / "ref.wav"
    soundfile.write(path, samples, RATE)
    return _data_uri(path, "audio/wav")


BAD_INPUTS = {
    "no-built-in-voice": (
        lambda tmp: {},  # the fixture snapshot has no conds.pt
        ("invalid_input", "reference_audio", "no built-in voice"),
    ),
    "silence": (
        lambda tmp: {"reference_audio": _wav_uri(tmp, np.zeros(48_000, "float32"))},
        ("invalid_input", "reference_audio", "silent"),
    ),
    "too-short": (
        lambda tmp: {"reference_audio": _wav_uri(tmp, voice_like(0.3, RATE))},
        ("invalid_input", "reference_audio", "only 0."),
    ),
    "not-audio": (
        lambda tmp: {"reference_audio": "data:audio/wav;base64,"
                     + base64.b64encode(b"RIFF" + b"\x00" * 400).decode()},
        ("unsupported_media", "reference_audio", "not usable as audio"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_in_the_runner_name_their_field(chatterbox_env, tmp_path, case):
    make, (code, field, fragment) = BAD_INPUTS[case]
    result = handler.handler(_clone("bad", **make(tmp_path)))
    assert _error(result) == (code, field), result
    assert fragment in result["error"]
