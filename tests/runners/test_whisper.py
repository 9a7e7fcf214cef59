"""The transcribe task: Whisper decisions (fast) and real faster-whisper jobs (slow).

The slow tests build a micro Whisper checkpoint (real architecture, random weights,
converted by CTranslate2's own converter: ``tests/fixtures/make_whisper.py``), serve
it from the local hub, let the bootstrapper build the whisper profile with uv, and
run jobs through ``handler.handler``. Random weights make random words, so they
check structure: order, bounds, every format parsed back, and the errors.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import itertools
import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pysubs2
import pytest
import soundfile

import handler
from bootstrap import Weights
from bootstrap._spec import current_target, spec_hash
from media.subtitles import Segment, Word
from models import jobs, profiles, registry
from runners import whisper
from runtime import machine
from runtime.machine import CPU, Machine
from tests.fixtures import hostile

SR = 16_000


# --- fast: pure decisions and pre-flight ---------------------------------------------


@pytest.mark.parametrize(
    ("levels", "search", "cut"),
    [
        ([5, 5, 1, 5, 5], 3, 2),  # the quiet block inside the search range
        ([1, 5, 5, 5, 5], 3, 4),  # quiet block before the range: ignored; latest tie wins
        ([3, 3, 3], 10, 2),  # search longer than the window: whole window, latest tie
        ([2, 0, 0, 2], 4, 2),  # ties: the later one keeps the window long
    ],
)
def test_find_cut_takes_the_quietest_block_near_the_end(levels, search, cut):
    assert whisper.find_cut(levels, search=search) == cut


@pytest.mark.parametrize(
    ("levels", "clip", "search", "bounds"),
    [
        ([1, 1, 1], 4, 2, [(0, 3)]),  # shorter than a clip: one clip
        ([1, 1, 1, 1], 4, 2, [(0, 4)]),  # exactly a clip
        ([5, 5, 0, 5, 5, 5, 5], 4, 3, [(0, 2), (2, 6), (6, 7)]),  # quiet block, then ties
        ([0, 5, 5, 5, 5, 5], 4, 2, [(0, 4), (4, 6)]),  # quiet block outside the search
    ],
)
def test_clip_bounds_cover_everything_in_clips_cut_at_quiet_blocks(levels, clip, search, bounds):
    assert whisper.clip_bounds(levels, clip=clip, search=search) == bounds


def test_quiet_clips_cut_long_audio_where_the_tone_is_off():
    samples = _bursts(95.0)  # a 1 s tone every 2 s
    clips = whisper.quiet_clips(samples)
    assert clips[0]["start"] == 0 and clips[-1]["end"] == pytest.approx(95.0)
    for clip, following in itertools.pairwise(clips):
        assert clip["end"] == following["start"]
        length = clip["end"] - clip["start"]
        assert whisper.CLIP_S - whisper.CLIP_CUT_SEARCH_S <= length <= whisper.CLIP_S + 1e-9
        assert clip["end"] % 2.0 >= 1.0 - 0.1  # inside a gap, not through the tone


def test_tidy_segments_orders_clamps_and_spans_words():
    segments = [
        Segment(5.0, 7.0, " later ", (Word(" b", 5.5, 6.0),)),
        Segment(1.0, 2.0, "first", (Word("a", 0.5, 2.4, 0.9),)),  # words outside the segment
        Segment(9.0, 12.5, "past the end"),  # runs past the audio
    ]
    tidy = whisper.tidy_segments(segments, duration_s=10.0)
    assert [(s.start_s, s.end_s, s.text) for s in tidy] == [
        (0.5, 2.4, "first"),
        (5.0, 7.0, "later"),
        (9.0, 10.0, "past the end"),
    ]


def test_worker_faster_whisper_text_formats_are_one_per_segment():
    segments = [Segment(0.11, 3.11, "Hello and welcome!"), Segment(4.0, 5.5, "Bye {now}.")]
    assert whisper.inline_text(segments, "plain_text") == "Hello and welcome! Bye {now}."
    assert whisper.inline_text(segments, "formatted_text") == "Hello and welcome!\nBye {now}."
    for fmt in ("srt", "vtt"):
        cues = pysubs2.SSAFile.from_string(whisper.inline_text(segments, fmt), keep_ssa_tags=True)
        assert cues.format == fmt
        assert [(c.start, c.end, c.text) for c in cues] == [
            (110, 3110, "Hello and welcome!"),
            (4000, 5500, "Bye {now}."),
        ]


def test_decoder_details_count_seek_from_the_start_of_the_audio():
    found = type(
        "FoundSegment",
        (),
        {
            "seek": 300,
            "tokens": (50364, 2421, 50414),
            "temperature": 0.2,
            "avg_logprob": -0.5,
            "compression_ratio": 1.1,
            "no_speech_prob": 0.02,
        },
    )()
    details = whisper.decoder_details(found, offset_s=600.0)
    assert details == {
        "seek": 60_300,
        "tokens": [50364, 2421, 50414],
        "temperature": 0.2,
        "avg_logprob": -0.5,
        "compression_ratio": 1.1,
        "no_speech_prob": 0.02,
    }


def test_segment_details_follow_their_segments_into_time_order():
    later, first = Segment(5.0, 6.0, "later"), Segment(1.0, 2.0, "first")
    tidy = whisper.tidy_segments([later, first], duration_s=10.0)
    details = whisper.in_time_order([later, first], [{"seek": 500}, {"seek": 100}])
    listed = whisper.segment_dicts(tidy, with_words=False, details=details)
    assert [(s["id"], s["text"], s["seek"], s["start"]) for s in listed] == [
        (1, "first", 100, 1.0),
        (2, "later", 500, 5.0),
    ]


def test_captions_come_from_words_when_every_segment_has_them():
    words = (Word("Hello", 0.0, 0.4), Word("there.", 0.5, 0.9), Word("Bye.", 3.0, 3.4))
    segments = [Segment(0.0, 3.4, "Hello there. Bye.", words)]
    events = whisper.captions_from(segments, max_chars_per_line=42, max_lines=2)
    assert [e.text for e in events] == ["Hello there.", "Bye."]
    plain = [Segment(0.0, 4.0, "aaaa bbbb cccc dddd")]
    wrapped = whisper.captions_from(plain, max_chars_per_line=9, max_lines=1)
    assert [e.text for e in wrapped] == ["aaaa bbbb", "cccc dddd"]


def test_every_model_has_a_pinned_profile_and_a_spec():
    for model, (repo, revision) in whisper.MODELS.items():
        profile = registry.get_profile(whisper.profile_name(model))
        assert [(w.repo_id, w.revision) for w in profile.weights] == [(repo, revision)]
        assert re.fullmatch(r"[0-9a-f]{40}", revision)
    served = {s.model for s in registry.RUNNERS if s.task == "transcribe"}
    assert served == set(whisper.MODELS)


A100 = Machine(gpu="NVIDIA A100", gpu_count=1, driver="550.54.15", driver_cuda="12.4")


@pytest.mark.parametrize("facts", [CPU, A100])
def test_whisper_profiles_differ_only_by_the_cuda_libraries(facts):
    profile = profiles.whisper_profile("tiny", facts)
    other = profiles.whisper_profile("tiny", A100 if facts is CPU else CPU)
    assert ("nvidia-cublas-cu12" in profile.pins) is facts.has_gpu
    assert set(profile.pins) - {"nvidia-cublas-cu12"} == set(other.pins) - {"nvidia-cublas-cu12"}


@pytest.mark.parametrize(
    ("setting", "facts", "model"),
    [("", A100, "large-v3-turbo"), ("", CPU, "small"), ("medium", A100, "medium")],
)
def test_default_model_follows_the_hardware_unless_set(monkeypatch, setting, facts, model):
    monkeypatch.setenv("MEDIA_WORKER_DEFAULT_TRANSCRIBE_MODEL", setting)
    monkeypatch.setattr(machine, "probe", lambda: facts)
    assert registry.default_model("transcribe") == model


@pytest.mark.parametrize(
    ("hidden", "model", "cublas"), [(False, "large-v3-turbo", True), (True, "small", False)]
)
def test_default_model_profile_and_spec_hash_agree_on_one_gpu_fact(
    gpu_machine, monkeypatch, hidden, model, cublas
):
    # A GPU machine (a real nvidia-smi read), with CUDA_VISIBLE_DEVICES="" hiding it or
    # not: the default model, its profile's cuBLAS and its spec hash follow the one fact.
    # The runner process decides its device by the same probe (WhisperRunner.setup).
    if hidden:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert registry.default_model("transcribe") == model
    profile = registry.get_profile(whisper.profile_name(model))
    assert ("nvidia-cublas-cu12" in profile.pins) is cublas
    target = current_target()
    on_a_cpu_machine = spec_hash(profiles.whisper_profile(model, CPU), target)
    assert (spec_hash(profile, target) == on_a_cpu_machine) is hidden


# The decoding options a job sets, by faster-whisper's names.
DECODING = (
    "beam_size",
    "best_of",
    "patience",
    "length_penalty",
    "temperature",
    "compression_ratio_threshold",
    "log_prob_threshold",
    "no_speech_threshold",
    "condition_on_previous_text",
    "suppress_tokens",
)


def _transcribe_job(job_id: str = "tr", **fields) -> dict:
    return {"id": job_id, "input": {"task": "transcribe", "audio": "https://x/a.wav", **fields}}


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"language": "xx"}, "language", "not a Whisper language code"),
        ({"language": "English"}, "language", "at most 3 characters"),
        ({"formats": ["srt", "docx"]}, "formats.1", "'json', 'txt', 'srt', 'vtt' or 'ass'"),
        ({"formats": []}, "formats", "at least 1 item"),
        ({"model": "huge"}, "model", "unknown model 'huge' for task 'transcribe'"),
        ({"max_lines": 4}, "max_lines", "less than or equal to 3"),
        ({"beam_size": 0}, "beam_size", "greater than or equal to 1"),
        ({"temperature": 1.5}, "temperature", "between 0 and 1"),
        ({"temperature": [0.0, -0.2]}, "temperature", "between 0 and 1"),
        ({"temperature": []}, "temperature", "1 to 10 temperatures"),
        ({"no_speech_threshold": 2}, "no_speech_threshold", "less than or equal to 1"),
        ({"logprob_threshold": 0.5}, "logprob_threshold", "less than or equal to 0"),
        ({"suppress_tokens": "-1,x"}, "suppress_tokens", "comma-separated list of token ids"),
    ],
)
def test_bad_transcribe_jobs_fail_before_any_work(fields, field, fragment):
    result = handler.handler(_transcribe_job(**fields))
    assert result["error_code"] == "invalid_input", result
    assert result["details"][0]["field"] == field
    assert fragment in result["error"]


def test_english_only_models_refuse_other_languages_and_translation(monkeypatch):
    for fields, field in (({"language": "de"}, "language"), ({"translate": True}, "translate")):
        result = handler.handler(_transcribe_job(model="distil-large-v3", **fields))
        assert result["error_code"] == "invalid_input", result
        assert result["details"][0]["field"] == field
        assert "English only" in result["error"] and "large-v3-turbo" in result["error"]
    # the same for a job that names no model, where the default is a distil model
    monkeypatch.setenv("MEDIA_WORKER_DEFAULT_TRANSCRIBE_MODEL", "distil-small.en")
    result = handler.handler(_transcribe_job(language="fr"))
    assert result["details"][0]["field"] == "language", result
    assert registry.resolve(jobs.parse_job(_transcribe_job(language="en")["input"])).model == (
        "distil-small.en"
    )


def test_distil_profiles_are_named_within_the_profile_rules():
    assert whisper.profile_name("distil-large-v3.5") == "whisper_distil_large_v3_5"
    for model in whisper.ENGLISH_ONLY:
        assert registry.get_profile(whisper.profile_name(model)).name == whisper.profile_name(model)


@pytest.mark.parametrize("name", ["timestamps", "word_timestamps"])
def test_timestamps_is_one_name_and_the_old_one_still_works(name):
    job = jobs.parse_job(_transcribe_job(**{name: True})["input"])
    assert job.timestamps is True
    assert job.model_dump(mode="json")["timestamps"] is True  # what the runner reads
    assert "word_timestamps" not in job.model_dump(mode="json")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"task": "transcribe", "vad_filter": False, "word_timestamps": False}),
        ({"translate": True}, {"task": "translate"}),
        ({"vad": True}, {"vad_filter": True}),
        ({"timestamps": True}, {"word_timestamps": True}),
        ({"language": "de", "initial_prompt": "Hallo"}, {"language": "de"}),
    ],
)
def test_transcribe_options_name_the_job_in_faster_whispers_terms(fields, expected):
    # What the runner passes on; the call itself: the slow test of the same claim below.
    job = jobs.parse_job(_transcribe_job(**fields)["input"]).model_dump(mode="json")
    options = whisper.transcribe_options(
        job, language=job["language"], words=job["timestamps"], prompt=job["initial_prompt"]
    )
    assert options.items() >= expected.items()


def test_decoding_options_default_to_faster_whispers_and_take_every_name():
    plain = jobs.parse_job(_transcribe_job()["input"]).model_dump(mode="json")
    options = whisper.transcribe_options(plain, language=None, words=False, prompt=None)
    # faster-whisper 1.2.1's own defaults (WhisperModel.transcribe's signature)
    assert {k: options[k] for k in DECODING} == {
        "beam_size": 5,
        "best_of": 5,
        "patience": 1.0,
        "length_penalty": 1.0,
        "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "compression_ratio_threshold": 2.4,
        "log_prob_threshold": -1.0,
        "no_speech_threshold": 0.6,
        "condition_on_previous_text": True,
        "suppress_tokens": [-1],
    }
    tuned = jobs.parse_job(
        _transcribe_job(
            beam_size=1, best_of=2, patience=2, length_penalty=0.5, temperature=0.2,
            temperature_increment_on_fallback=0.3, compression_ratio_threshold=None,
            log_prob_threshold=-2, no_speech_threshold=None, condition_on_previous_text=False,
            suppress_tokens="-1, 50364",
        )["input"]
    ).model_dump(mode="json")  # fmt: skip
    options = whisper.transcribe_options(tuned, language=None, words=False, prompt=None)
    assert {k: options[k] for k in DECODING} == {
        "beam_size": 1,
        "best_of": 2,
        "patience": 2.0,
        "length_penalty": 0.5,
        "temperature": [0.2, 0.5, 0.8],
        "compression_ratio_threshold": None,
        "log_prob_threshold": -2.0,
        "no_speech_threshold": None,
        "condition_on_previous_text": False,
        "suppress_tokens": [-1, 50364],
    }


@pytest.mark.parametrize(
    ("temperature", "step", "ladder"),
    [
        (None, None, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.0, None, [0.0]),
        ([0.0, 0.5], 0.1, [0.0, 0.5]),  # a list is taken as given
        (0.0, 0.2, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),  # no 0.6000000000000001
        (0.5, 0.3, [0.5, 0.8]),
        (1.0, 0.2, [1.0]),
    ],
)
def test_temperature_ladders(temperature, step, ladder):
    assert whisper.temperatures(temperature, step) == ladder


def test_formats_are_deduplicated_in_order():
    job = jobs.parse_job(_transcribe_job(formats=["srt", "json", "srt"])["input"])
    assert job.formats == ["srt", "json"]


# --- slow: real faster-whisper through the handler -----------------------------------

REPO = "tests/faster-whisper-micro"


@pytest.fixture(scope="module")
def whisper_env(hub_server, whisper_checkpoint, tmp_path_factory):
    """The whisper_tiny profile, pointed at the micro checkpoint, built by bootstrap."""
    commit = hub_server.add_repo(REPO, whisper_checkpoint)
    real = registry.get_profile("whisper_tiny")
    (weights,) = real.weights
    profile = dataclasses.replace(real, weights=(Weights(REPO, commit, weights.patterns),))
    home = tmp_path_factory.mktemp("whisper-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(profiles.PROFILES, "whisper_tiny", profile)
        mp.setenv("HF_ENDPOINT", hub_server.endpoint)
        mp.setenv("MEDIA_WORKER_HOME", str(home))
        mp.setenv("MEDIA_WORKER_ENVS_DIR", str(home / "local-envs"))
        # A worker of this module's own: the patched profile's environment is never
        # remembered past it.
        with handler.Worker().installed() as worker:
            env, _ = worker.environments.get("whisper_tiny", lambda *a: None)
            yield env


def _bursts(seconds: float, *, gaps: bool = True) -> np.ndarray:
    """A 220 Hz tone, on for a second and off for a second when ``gaps``."""
    t = np.arange(int(SR * seconds)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    if gaps:
        tone *= np.sin(2 * np.pi * 0.5 * t) > 0
    return tone.astype(np.float32)


def _data_uri(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _wav_uri(samples: np.ndarray) -> str:
    buf = io.BytesIO()
    soundfile.write(buf, samples, SR, format="WAV", subtype="PCM_16")
    return _data_uri(buf.getvalue(), "audio/wav")


def _local(output: dict) -> Path:
    url = urlparse(output["url"])
    assert url.scheme == "file"
    return Path(urllib.request.url2pathname(url.path))


def _make_media(env, path: Path, *, audio_s: float, video: bool) -> Path:
    """An MP4 written by PyAV in the profile's environment (the tests' own has none)."""
    script = f"""
import fractions
import av, numpy as np
out = av.open({str(path)!r}, "w")
if {video}:
    v = out.add_stream("mpeg4", rate=10); v.width = v.height = 64; v.pix_fmt = "yuv420p"
if {audio_s} > 0:
    a = out.add_stream("aac", rate=16000); a.layout = "mono"
if {video}:
    for i in range(20):
        img = np.full((64, 64, 3), i * 10, dtype=np.uint8)
        for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")): out.mux(p)
    for p in v.encode(): out.mux(p)
if {audio_s} > 0:
    t = np.arange(int(16000 * {audio_s})) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None, :]
    for i in range(0, x.shape[1], 1024):
        f = av.AudioFrame.from_ndarray(x[:, i:i + 1024], format="flt", layout="mono")
        f.sample_rate, f.pts, f.time_base = 16000, i, fractions.Fraction(1, 16000)
        for p in a.encode(f): out.mux(p)
    for p in a.encode(): out.mux(p)
out.close()
"""
    subprocess.run([str(env.python), "-c", script], check=True, timeout=120)
    return path


def _visible(text: str) -> list[str]:
    """The characters of ``text`` a caption shows, sorted: no spaces, no controls."""
    return sorted(ch for ch in text if ch.isprintable() and not ch.isspace())


def _assert_transcript_shape(result: dict, duration_s: float, *, words: bool) -> None:
    assert result["duration_s"] == pytest.approx(duration_s, abs=0.05)
    segments = result["segments"]
    starts = [s["start_s"] for s in segments]
    assert starts == sorted(starts)
    for seg in segments:
        assert 0 <= seg["start_s"] <= seg["end_s"] <= result["duration_s"]
        assert (seg["words"] is not None) is words
        for w in seg["words"] or []:
            assert seg["start_s"] <= w["start_s"] <= w["end_s"] <= seg["end_s"]
            assert 0 <= w["probability"] <= 1
    assert result["text"] == " ".join(s["text"] for s in segments if s["text"])


@pytest.mark.slow
def test_transcribe_job_publishes_json_txt_srt_vtt_and_ass(whisper_env, caplog):
    caplog.set_level("INFO")
    audio = _bursts(12.0)
    job = _transcribe_job(
        "tr-all",
        model="tiny",
        audio=_wav_uri(audio),
        formats=["json", "txt", "srt", "vtt", "ass"],
        timestamps=True,
        max_chars_per_line=20,
        initial_prompt="Glossary: media-worker, RunPod.",
    )
    result = handler.handler(job)
    assert "error" not in result, result
    assert result["task"] == "transcribe" and result["model"] == "tiny"
    assert result["language"] in whisper.LANGUAGES
    assert 0 < result["language_probability"] <= 1
    _assert_transcript_shape(result, 12.0, words=True)
    assert result["segments"], "the micro model always says something on a tone"
    assert re.search(r"job=tr-all progress transcribed 12 s of 12 s", caplog.text)

    files = {Path(o["key"]).suffix: (o, _local(o)) for o in result["outputs"]}
    assert sorted(files) == [".ass", ".json", ".srt", ".txt", ".vtt"]
    assert files[".srt"][0]["content_type"] == "application/x-subrip"
    assert files[".vtt"][0]["content_type"] == "text/vtt"
    document = json.loads(files[".json"][1].read_text(encoding="utf-8"))
    assert document["segments"] == result["segments"]
    assert document["language"] == result["language"]
    lines = files[".txt"][1].read_text(encoding="utf-8").splitlines()
    assert lines == [s["text"] for s in result["segments"] if s["text"]]

    spoken = [w["word"] for s in result["segments"] for w in s["words"]]
    parsed = {fmt: pysubs2.load(str(files[f".{fmt}"][1])) for fmt in ("srt", "vtt", "ass")}
    assert {subs.format for subs in parsed.values()} == {"srt", "vtt", "ass"}
    srt, vtt, ass = parsed["srt"].events, parsed["vtt"].events, parsed["ass"].events
    assert len(srt) == len(vtt) == len(ass) > 0
    for a, b, c in zip(srt, vtt, ass, strict=True):
        assert (a.start, a.end) == (b.start, b.end)
        assert abs(a.start - c.start) <= 5 and abs(a.end - c.end) <= 5
        assert a.plaintext == b.plaintext == c.plaintext
        assert all(len(line) <= 20 or " " not in line for line in a.plaintext.split("\n"))
        k = sum(int(x) for x in re.findall(r"\\k(\d+)", c.text))
        assert k * 10 == c.end - c.start  # karaoke covers the event exactly
    # The captions say the recognised words, all of them: the same characters, spaces
    # and control characters aside. Not compared in order, nor word by word: the
    # random-weight micro model can time a word before the one it follows (captions
    # are in time order), emit a control-character token (seen once in CI: "\x01")
    # that pysubs2 reads back as a word of its own, and a word ending in a partial
    # UTF-8 token ("w39072\ufffd", seen once in CI) that came back as two.
    said = " ".join(e.plaintext for e in srt)
    assert _visible(said) == _visible("".join(spoken))


@pytest.mark.slow
def test_a_video_is_accepted_and_its_audio_track_transcribed_with_vad_and_translate(
    whisper_env, tmp_path
):
    video = _make_media(whisper_env, tmp_path / "clip.mp4", audio_s=4.0, video=True)
    job = _transcribe_job(
        "tr-video",
        model="tiny",
        audio=_data_uri(video.read_bytes(), "video/mp4"),
        language="en",
        translate=True,  # task "translate"; English in, English out
        vad=True,  # Silero VAD from faster-whisper's bundled asset, on onnxruntime
        formats=["json"],
    )
    result = handler.handler(job)
    assert "error" not in result, result
    assert (result["language"], result["language_probability"]) == ("en", 1.0)
    _assert_transcript_shape(result, 4.0, words=False)


def _model_dir(checkpoint: dict[str, bytes], root: Path) -> Path:
    model = root / "model"
    model.mkdir()
    for name, data in checkpoint.items():
        (model / name).write_bytes(data)
    return model


# Runs in the profile's interpreter: the runner as its process sets it up, with a spy
# on the faster-whisper object it calls (the model, or the batched pipeline), which
# records each call's keyword arguments and forwards them to the real method.
_SPY_SCRIPT = """
import json, os, sys
from pathlib import Path
from runners import whisper
from runtime.runner import RunContext
model, audio, scratch, jobs = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
if "SPY_WINDOW_S" in os.environ:  # short windows, so a few seconds make several
    whisper.WINDOW_S, whisper.CUT_SEARCH_S = float(os.environ["SPY_WINDOW_S"]), 1.0
runner = whisper.WhisperRunner()
runner.setup({"micro": model})
target = runner.batched if runner.batched is not None else runner.model
real = target.transcribe
calls = []
def spy(samples, **kwargs):
    calls[-1].append({k: v for k, v in kwargs.items() if k != "clip_timestamps"})
    return real(samples, **kwargs)
target.transcribe = spy
for n, job in enumerate(json.loads(jobs)):
    calls.append([])
    (scratch / str(n)).mkdir()
    runner.run(job, RunContext(f"spy-{n}", scratch / str(n), lambda m, f: None,
                               inputs={"audio": audio}))
print(json.dumps(calls))
"""


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", ["0", "4"], ids=["model", "batched"])
def test_the_job_reaches_faster_whisper_as_its_own_arguments(
    whisper_env, whisper_checkpoint, tmp_path, batch_size
):
    model = _model_dir(whisper_checkpoint, tmp_path)
    audio = tmp_path / "tone.flac"
    soundfile.write(audio, _bursts(4.0), SR)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fields = [
        {},
        {
            "translate": True,
            "vad": True,
            "timestamps": True,
            "language": "en",
            "initial_prompt": "Glossary: RunPod.",
            "beam_size": 2,
            "best_of": 3,
            "patience": 1.5,
            "length_penalty": 0.8,
            "temperature": 0.2,
            "temperature_increment_on_fallback": 0.4,
            "compression_ratio_threshold": 2.0,
            "logprob_threshold": -0.5,
            "no_speech_threshold": 0.3,
            "condition_on_previous_text": False,
            "suppress_tokens": "-1,50364",
        },
    ]
    runner_inputs = [
        jobs.parse_job(_transcribe_job(**f)["input"]).model_dump(mode="json") for f in fields
    ]
    done = subprocess.run(
        [str(whisper_env.python), "-c", _SPY_SCRIPT, str(model), str(audio), str(scratch),
         json.dumps(runner_inputs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "MEDIA_WORKER_WHISPER_BATCH_SIZE": batch_size},
    )  # fmt: skip
    plain, everything = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(plain) == len(everything) == 1  # 4 s: one window, one call each
    for (call,) in (plain, everything):
        assert call.pop("batch_size", None) == (int(batch_size) or None)
    assert plain[0] == {
        "language": None,
        "task": "transcribe",
        "word_timestamps": False,
        "vad_filter": False,
        "initial_prompt": None,
        "beam_size": 5,
        "best_of": 5,
        "patience": 1.0,
        "length_penalty": 1.0,
        "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "compression_ratio_threshold": 2.4,
        "log_prob_threshold": -1.0,
        "no_speech_threshold": 0.6,
        "condition_on_previous_text": True,
        "suppress_tokens": [-1],
    }
    assert everything[0] == {
        "language": "en",
        "task": "translate",
        "word_timestamps": True,
        "vad_filter": True,
        "initial_prompt": "Glossary: RunPod.",
        "beam_size": 2,
        "best_of": 3,
        "patience": 1.5,
        "length_penalty": 0.8,
        "temperature": [0.2, 0.6, 1.0],
        "compression_ratio_threshold": 2.0,
        "log_prob_threshold": -0.5,
        "no_speech_threshold": 0.3,
        "condition_on_previous_text": False,
        "suppress_tokens": [-1, 50364],
    }


@pytest.mark.slow
def test_condition_on_previous_text_decides_what_the_next_window_is_prompted_with(
    whisper_env, whisper_checkpoint, tmp_path
):
    model = _model_dir(whisper_checkpoint, tmp_path)
    audio = tmp_path / "bursts.flac"
    soundfile.write(audio, _bursts(12.0), SR)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    runner_inputs = [
        jobs.parse_job(
            _transcribe_job(initial_prompt="Glossary.", condition_on_previous_text=c)["input"]
        ).model_dump(mode="json")
        for c in (True, False)
    ]
    done = subprocess.run(
        [str(whisper_env.python), "-c", _SPY_SCRIPT, str(model), str(audio), str(scratch),
         json.dumps(runner_inputs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "MEDIA_WORKER_WHISPER_BATCH_SIZE": "0", "SPY_WINDOW_S": "4.0"},
    )  # fmt: skip
    carried, fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(carried) == len(fresh) >= 3  # 12 s in windows of at most 4 s
    # the first window of both: the job's prompt
    assert carried[0]["initial_prompt"] == fresh[0]["initial_prompt"] == "Glossary."
    # later windows: the text heard so far, or the job's prompt again
    assert all(call["initial_prompt"] == "Glossary." for call in fresh)
    assert all(call["condition_on_previous_text"] is False for call in fresh)
    assert all(call["condition_on_previous_text"] is True for call in carried)
    # What the carried windows were prompted with depends on what the random model
    # heard (often nothing on a tone); next_prompt's own test pins the rule.


def test_the_next_window_is_prompted_with_the_text_so_far_unless_the_job_says_not():
    heard = [Segment(0.0, 1.0, " Hello"), Segment(1.0, 2.0, " there.")]
    assert whisper.next_prompt({}, heard, "Glossary.") == " Hello  there."
    assert whisper.next_prompt({"condition_on_previous_text": False}, heard, "Glossary.") == (
        "Glossary."
    )
    assert whisper.next_prompt({}, [], "Glossary.") == "Glossary."  # nothing heard yet
    long = [Segment(0.0, 1.0, "x" * 300)] * 9
    assert len(whisper.next_prompt({}, long, None)) == whisper.PROMPT_TAIL_CHARS


@pytest.mark.slow
def test_batched_runner_decodes_quiet_cut_clips_across_the_whole_audio(
    whisper_env, whisper_checkpoint, tmp_path
):
    model = _model_dir(whisper_checkpoint, tmp_path)
    audio = tmp_path / "long.flac"
    soundfile.write(audio, _bursts(75.0), SR)
    (tmp_path / "scratch").mkdir()
    script = f"""
import json
from pathlib import Path
from runners import whisper
from runtime.runner import RunContext
runner = whisper.WhisperRunner()
runner.setup({{"micro": {str(model)!r}}})
ctx = RunContext("tr-batched", Path({str(tmp_path / "scratch")!r}), lambda m, f: None,
                 inputs={{"audio": Path({str(audio)!r})}})
runner.run({{"audio": "long.flac", "language": "en", "formats": ["json"]}}, ctx)
print(json.dumps({{"batched": runner.batched is not None, **ctx.result}}))
"""
    done = subprocess.run(
        [str(whisper_env.python), "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "MEDIA_WORKER_WHISPER_BATCH_SIZE": "4"},
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["batched"] is True
    assert result["duration_s"] == pytest.approx(75.0)
    starts = [s["start_s"] for s in result["segments"]]
    assert starts == sorted(starts) and max(starts) > 30.0  # later clips were decoded too
    assert all(s["end_s"] <= 75.0 for s in result["segments"])


@pytest.mark.slow
def test_silence_is_a_result_with_no_segments(whisper_env):
    job = _transcribe_job(
        "tr-silence", model="tiny", audio=_wav_uri(np.zeros(SR * 5, np.float32)), formats=["txt"]
    )
    result = handler.handler(job)
    assert "error" not in result, result
    assert result["segments"] == [] and result["text"] == ""
    assert result["language"] is None and result["duration_s"] == pytest.approx(5.0)
    (output,) = result["outputs"]
    assert _local(output).read_text(encoding="utf-8") == ""


@pytest.mark.slow
def test_media_without_audio_or_that_does_not_decode_is_unsupported(whisper_env, tmp_path):
    mute = _make_media(whisper_env, tmp_path / "mute.mp4", audio_s=0, video=True)
    for job_id, uri, fragment in [
        ("tr-mute", _data_uri(mute.read_bytes(), "video/mp4"), "no audio stream"),
        ("tr-junk", _data_uri(b"\x00not media\xff" * 512, "audio/wav"), "cannot decode"),
        # issue 20: a PNG bomb sent as audio was decoded to 2 GB by the probe
        (
            "tr-bomb",
            _data_uri(hostile.png_bomb(tmp_path / "bomb.png").read_bytes(), "audio/wav"),
            "the file is a png image (16000x16000), not audio",
        ),
    ]:
        result = handler.handler(_transcribe_job(job_id, model="tiny", audio=uri))
        assert result["error_code"] == "unsupported_media", result
        assert result["details"][0]["field"] == "audio"
        assert fragment in result["error"]


@pytest.mark.slow
def test_audio_over_the_cap_is_invalid_input(whisper_env, monkeypatch):
    monkeypatch.setenv("MEDIA_WORKER_MAX_AUDIO_S", "3")
    # The cap is read by the runner process, from its start: a worker of its own
    # starts one with it (and stops it before the next test).
    with handler.Worker(handler.current().environments).installed():
        result = handler.handler(
            _transcribe_job("tr-long", model="tiny", audio=_wav_uri(_bursts(6)))
        )
    assert result["error_code"] == "invalid_input", result
    assert result["details"][0]["field"] == "audio"
    assert "MEDIA_WORKER_MAX_AUDIO_S" in result["error"]


@pytest.mark.slow
def test_long_audio_is_decoded_in_windows_cut_at_quiet_moments(whisper_env, tmp_path):
    # 7 s: sound with a silent gap around 1.5 s into each 2 s window.
    samples = _bursts(7.0)
    path = tmp_path / "long.flac"
    soundfile.write(path, samples, SR)
    script = f"""
import json
from pathlib import Path
from runners import whisper
whisper.WINDOW_S, whisper.CUT_SEARCH_S = 2.0, 1.0
print(json.dumps([(o, len(x)) for o, x in whisper.decode_windows(Path({str(path)!r}), max_s=60)]))
"""
    done = subprocess.run(
        [str(whisper_env.python), "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    windows = json.loads(done.stdout)
    assert sum(n for _, n in windows) == len(samples)
    offsets = [o for o, _ in windows]
    assert offsets == sorted(offsets) and offsets[0] == 0
    for (offset, n), (following, _) in itertools.pairwise(windows):
        assert following == pytest.approx(offset + n / SR)
        assert 1.0 <= n / SR <= 2.0
        # Each cut lands where the tone is off (the second half of each 2 s period).
        assert (following % 2.0) >= 1.0 - 0.1


@pytest.mark.slow
def test_transcribe_bench_runs_small(whisper_env, whisper_checkpoint, tmp_path):
    """bench/transcribe.py with the suite's micro checkpoint and this module's env."""
    from tests.test_bench import last_ratio, run_bench

    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    for name, data in whisper_checkpoint.items():
        (checkpoint / name).write_bytes(data)
    lines = run_bench(
        [
            *("transcribe.py", "--runs", "1", "--seconds", "4", "--memory-minutes", "0.1"),
            *("--checkpoint", str(checkpoint), "--whisper-python", str(whisper_env.python)),
            *("--cache", str(tmp_path / "cache")),
        ]
    )
    assert any(line.startswith("ours: transcribe job") for line in lines), lines
    assert any(line.startswith("memory, 0 min") for line in lines), lines
    last_ratio(lines, "overhead_ratio")
