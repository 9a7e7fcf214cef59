"""F5-TTS 1.1.22 for real: the reference-text rule (fast); clone jobs through
handler.py on a CPU, and the entry point the runner calls (slow).

The ``f5tts`` profile is built from PyPI once per session (tests/fixtures/cloning.py)
and the project's fixture checkpoints (the full-size DiT, a tiny Vocos) are served by
the local hub. Jobs run with ``nfe_step`` 4 and a transcript long beside the text to
speak, so F5's duration estimate, and so its work, stays small on a CPU.

This machine has no FFmpeg libraries or executable, so torchcodec (torchaudio.load)
and pydub cannot read a file here: every job below passing is itself the proof that
the runner hands F5 decoded samples.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import subprocess

import numpy as np
import pytest
import soundfile
from pydantic import TypeAdapter

import bootstrap
import handler
import storage
from models import jobs
from models.profiles import F5TTS
from runners import f5tts
from tests.fixtures.cloning import ROOT
from tests.fixtures.cloning import reference_clip as _clip
from tests.media.test_reference_audio import voice_like
from tests.test_handler_clone import _clone, _data_uri, _error, _local_file

RATE = 24_000
# Long beside TEXT, so F5's duration estimate (reference frames per transcript byte)
# gives a short output.
TRANSCRIPT = "This is the voice of the reference recording, read slowly and clearly."
TEXT = "Hello there."
FAST = {"model": "f5tts", "nfe_step": 4, "speed": 2.0, "reference_text": TRANSCRIPT}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there", "Hello there. "),
        ("Hello there.", "Hello there. "),
        ("Hello there. ", "Hello there. "),
        ("Really?", "Really?. "),  # F5's own rule: anything but '.' gets '. '
        ("你好。", "你好。"),
    ],
)
def test_reference_text_ends_as_f5_expects(text, expected):
    assert f5tts.reference_text(text) == expected


@pytest.fixture
def f5_env(f5tts_volume, monkeypatch, handler_worker):
    for name, value in f5tts_volume.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEDIA_WORKER_ALLOW_NONCOMMERCIAL", "1")
    return f5tts_volume


def _sha256(result: dict) -> str:
    assert "error" not in result, result
    return hashlib.sha256(_local_file(result["outputs"][0]).read_bytes()).hexdigest()


def _f5(job_id: str, **fields) -> dict:
    job = _clone(job_id, **{**FAST, **fields})
    job["input"]["text"] = fields.get("text", TEXT)
    return handler.handler(job)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first also builds the profile (session fixture)
def test_saved_voice_round_trip_and_a_fixed_seed_repeats_the_bytes(f5_env, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="handler")
    clip = _data_uri(_clip(tmp_path), "audio/mpeg")
    first = _f5("f1", reference_audio=clip, save_voice="bea", seed=4)
    audio, rate = soundfile.read(_local_file(first["outputs"][0]), dtype="float32")
    assert rate == RATE and audio.ndim == 1 and len(audio) > 0
    assert first["model"] == "f5tts" and first["saved_voice"] == "bea"
    assert "job=f1 progress reference of 3.2 s decoded" in caplog.text  # silence trimmed

    listed = handler.handler({"id": "l", "input": {"task": "voices"}})
    assert [(v["name"], v["has_reference_text"]) for v in listed["voices"]] == [("bea", True)]

    caplog.clear()
    # the saved voice brings its transcript; its clip is the same bytes: a cache hit
    again = _f5("f2", voice="bea", seed=4, reference_text=None)
    assert "progress reference of" not in caplog.text
    assert _sha256(again) == _sha256(first)
    assert _sha256(_f5("f3", voice="bea", seed=5, reference_text=None)) != _sha256(first)

    deleted = handler.handler(
        {"id": "d", "input": {"task": "voices", "action": "delete", "name": "bea"}}
    )
    assert deleted["deleted"] == "bea"
    assert _error(_f5("f4", voice="bea")) == ("invalid_input", "voice")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first also builds the profile (session fixture)
def test_reference_by_https_url_in_a_streamed_job(f5_env, https_origin):
    job = _clone("fs", **FAST, reference_audio=https_origin, stream=True, seed=2)
    job["input"]["text"] = "Hello there. How are you?"
    *chunks, final = list(handler.stream_handler(job))
    assert final["type"] == "result" and "error" not in final, final
    TypeAdapter(jobs.StreamFinal).validate_python(final)
    assert [c["index"] for c in chunks] == [0, 1]
    decoded = [
        soundfile.read(io.BytesIO(base64.b64decode(c["audio_base64"])), dtype="int16")[0]
        for c in chunks
    ]
    full, rate = soundfile.read(_local_file(final["outputs"][0]), dtype="int16")
    assert rate == RATE and np.array_equal(np.concatenate(decoded), full)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first also builds the profile (session fixture)
def test_bad_inputs_in_the_runner_name_their_field(f5_env, tmp_path):
    long_ref = tmp_path / "long.wav"
    soundfile.write(long_ref, voice_like(14.0, RATE), RATE)
    result = _f5("b1", reference_audio=_data_uri(long_ref, "audio/wav"))
    assert _error(result) == ("invalid_input", "reference_audio"), result
    assert "f5tts uses at most 12 s" in result["error"]

    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(48_000, "float32"), RATE)
    result = _f5("b2", reference_audio=_data_uri(silent, "audio/wav"))
    assert _error(result) == ("invalid_input", "reference_audio") and "silent" in result["error"]

    # a voice saved without a transcript (say, by a chatterbox job) cannot drive F5
    storage.save_voice("mute", _clip(tmp_path), None, s3=None)
    result = _f5("b3", voice="mute", reference_text=None)
    assert _error(result) == ("invalid_input", "reference_text"), result
    assert "saved without one" in result["error"]


# Runs in the profile's interpreter: the runner's setup + run with a RunContext, while
# torchaudio.load and pydub refuse to work, so neither can be on the path. It also pins
# the entry point the runner calls in place of F5TTS.infer.
_PINNED = r"""
import inspect, json, sys
from pathlib import Path
import pydub, torchaudio
from f5_tts.infer import utils_infer

def refuse(*a, **k):
    raise AssertionError("a file was handed to F5")

torchaudio.load = utils_infer.torchaudio.load = refuse
pydub.AudioSegment.from_file = refuse

from runtime.runner import RunContext
from runners.f5tts import F5Runner

weights, reference, scratch = sys.argv[1:4]
params = inspect.signature(utils_infer.infer_batch_process).parameters
runner = F5Runner()
runner.setup(json.loads(weights))
ctx = RunContext("pin", Path(scratch), lambda message, fraction: None,
                 {"reference_audio": Path(reference)})
job = {"text": "Hello there.", "format": "wav", "reference_text": sys.argv[4],
       "nfe_step": 4, "speed": 2.0, "seed": 1}
outputs = runner.run(job, ctx)
print(json.dumps({"params": list(params), "outputs": [o.path for o in outputs]}))
"""


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first also builds the profile (session fixture)
def test_the_runner_hands_f5_samples_through_infer_batch_process(f5_env, tmp_path):
    # the built profile, and its weights from the hub
    weights = {repo: str(path) for repo, path in bootstrap.ensure(F5TTS).weights.items()}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        [str(f5_env.python), "-c", _PINNED, json.dumps(weights), str(_clip(tmp_path)),
         str(scratch), TRANSCRIPT],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["params"][:5] == ["ref_audio", "ref_text", "gen_text_batches", "model_obj",
                                   "vocoder"]  # fmt: skip
    assert {"mel_spec_type", "progress", "nfe_step", "speed", "device"} <= set(found["params"])
    audio, rate = soundfile.read(found["outputs"][0])
    assert rate == RATE and len(audio) > 0
