"""Piper's word timestamps: alignment to words (fast) and real Piper jobs (slow).

The slow tests run the embedded default voice through ``handler.handler``; how well
its timings agree with what a real Whisper hears is measured in
``tests/runners/test_whisper_real.py``.
"""

from __future__ import annotations

import base64
import io
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pysubs2
import pytest
import soundfile

import handler
from runners.piper import token_groups, word_spans


def _aligned(text: str, samples: int = 100) -> list[tuple[str, int]]:
    """An alignment as Piper gives one: ``^``, the phonemes, ``$``."""
    return [("^", samples), *((c, samples) for c in text), ("$", samples)]


def test_word_spans_are_the_runs_between_spaces_ending_at_their_last_sound():
    # "ðə kwɪk." -> two words; the "." is the pause after the second, not part of it
    spans = word_spans(_aligned("ðə kwɪk."))
    assert spans == [(100, 300), (400, 800)]


def test_punctuation_alone_is_no_word_and_empty_alignments_have_none():
    assert word_spans(_aligned("a , b")) == [(100, 200), (500, 600)]
    assert word_spans(_aligned("“a”")) == [(200, 300)]  # quotes are pauses around it
    assert word_spans([]) == []
    assert word_spans([("^", 10), ("$", 10)]) == []


@pytest.mark.parametrize(
    ("counts", "spans", "groups"),
    [
        ([1, 1, 1], 3, [range(0, 1), range(1, 2), range(2, 3)]),
        ([1, 2, 0, 1], 4, [range(0, 1), range(1, 3), range(3, 3), range(3, 4)]),  # "$5", "-"
        # espeak read a token differently in context: shares, in order, none left out
        ([1, 1, 1], 4, [range(0, 1), range(1, 2), range(2, 4)]),
        ([1, 1, 1, 1], 2, [range(0, 1), range(0, 1), range(1, 2), range(1, 2)]),
        ([1, 1], 0, [range(0, 0), range(0, 0)]),
    ],
)
def test_token_groups_follow_the_counts_and_share_in_order_when_they_do_not_add_up(
    counts, spans, groups
):
    assert token_groups(counts, spans) == groups


# --- slow: the real runner ------------------------------------------------------------

TEXT = "Dr. Smith paid $5 for 3 apples. Then he walked home - slowly!"


def _local(output: dict) -> Path:
    url = urlparse(output["url"])
    assert url.scheme == "file"
    return Path(urllib.request.url2pathname(url.path))


@pytest.mark.slow
@pytest.mark.usefixtures("handler_worker")
def test_a_timestamped_job_gives_each_word_of_the_text_in_order_and_captions():
    result = handler.handler(
        {"id": "piper-ts", "input": {"task": "tts", "text": TEXT, "timestamps": True}}
    )
    assert "error" not in result, result
    words = result["words"]
    # every token of the text that is spoken, in the text's spelling ("-" is silent)
    assert [w["word"] for w in words] == [t for t in TEXT.split() if t != "-"]
    starts = [w["start_s"] for w in words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    for w in words:
        assert 0 <= w["start_s"] < w["end_s"] <= result["outputs"][0]["duration_s"]
    files = {Path(o["key"]).suffix: _local(o) for o in result["outputs"]}
    assert sorted(files) == [".ass", ".srt", ".vtt", ".wav"]
    srt = pysubs2.load(str(files[".srt"]))
    assert " ".join(e.plaintext.replace("\n", " ") for e in srt.events).split() == [
        w["word"] for w in words
    ]


@pytest.mark.slow
@pytest.mark.usefixtures("handler_worker")
def test_streamed_chunks_carry_the_words_inside_them():
    job = {"id": "piper-ts-stream", "input": {"task": "tts", "text": TEXT, "timestamps": True,
                                              "stream": True}}  # fmt: skip
    *chunks, final = handler.stream_handler(job)
    assert "error" not in final, final
    assert len(chunks) >= 2
    seen = []
    for chunk in chunks:
        audio, rate = soundfile.read(io.BytesIO(base64.b64decode(chunk["audio_base64"])))
        end = chunk["offset_s"] + len(audio) / rate
        for w in chunk["words"]:
            assert chunk["offset_s"] <= w["start_s"] < end
        seen += chunk["words"]
    assert seen == final["words"]


@pytest.mark.slow
@pytest.mark.usefixtures("handler_worker")
def test_a_job_without_timestamps_has_no_words():
    result = handler.handler({"id": "piper-plain", "input": {"task": "tts", "text": "Hello."}})
    assert "error" not in result, result
    assert result.get("words") is None
    assert [Path(o["key"]).suffix for o in result["outputs"]] == [".wav"]


@pytest.mark.slow
def test_without_onnx_timestamps_fail_naming_the_field_and_plain_jobs_still_work(
    tmp_path, monkeypatch
):
    """piper-tts logs and speaks untimed when it cannot patch the graph: the job must
    say so instead of returning no words."""
    blocked = tmp_path / "blocked"
    (blocked / "onnx").mkdir(parents=True)
    (blocked / "onnx" / "__init__.py").write_text("raise ImportError('onnx blocked by a test')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocked))
    with handler.Worker().installed():
        timed = handler.handler(
            {"id": "piper-no-onnx", "input": {"task": "tts", "text": "Hi.", "timestamps": True}}
        )
        plain = handler.handler({"id": "piper-plain-2", "input": {"task": "tts", "text": "Hi."}})
    assert timed["error_code"] == "invalid_input", timed
    assert timed["details"][0]["field"] == "timestamps"
    assert "onnx" in timed["error"]
    assert "error" not in plain, plain


@pytest.mark.slow
@pytest.mark.usefixtures("handler_worker")
@pytest.mark.parametrize(
    ("fmt", "codec", "rate"),
    # FFmpeg decodes mp3 with its float decoder, and Opus always at 48 kHz (the
    # stream's own rate, 24 kHz here, is in its header: soundfile reads it below).
    [("wav", "pcm_s16le", 22050), ("flac", "flac", 22050), ("ogg", "vorbis", 22050),
     ("mp3", "mp3float", 22050), ("opus", "opus", 48000), ("aac", "aac", 22050)],
)  # fmt: skip
def test_every_format_decodes_with_pyav_to_its_rate_and_duration(fmt, codec, rate):
    """An OpenAI speech body with the task added; pcm, headerless, is the next test."""
    import av

    body = {"input": "One two three.", "response_format": fmt, "speed": 1.0}
    result = handler.handler({"id": f"piper-{fmt}", "input": {"task": "tts", **body}})
    assert "error" not in result, result
    (output,) = result["outputs"]
    with av.open(str(_local(output))) as container:
        (stream,) = container.streams.audio
        assert (stream.codec_context.name, stream.codec_context.sample_rate) == (codec, rate)
        samples = sum(frame.samples for frame in container.decode(stream))
    # mp3, opus and aac decoders add their priming/padding samples (AAC: up to 2048)
    assert abs(samples / rate - output["duration_s"]) < 0.1, (samples / rate, output)
    if fmt == "aac":
        assert output["content_type"] == "audio/aac"
    if fmt == "opus":
        assert soundfile.info(str(_local(output))).samplerate == 24000


@pytest.mark.slow
@pytest.mark.usefixtures("handler_worker")
def test_pcm_is_raw_little_endian_at_the_rate_its_type_names():
    result = handler.handler(
        {"id": "piper-pcm", "input": {"task": "tts", "text": "One two three.", "format": "pcm"}}
    )
    assert "error" not in result, result
    (output,) = result["outputs"]
    assert output["content_type"] == "audio/pcm;rate=22050;channels=1;format=s16le"
    data = _local(output).read_bytes()
    assert len(data) % 2 == 0
    assert abs(len(data) / 2 / 22050 - output["duration_s"]) < 1e-3
    import av

    # FFmpeg reads it given what the content type says (raw PCM has no header).
    options = {"sample_rate": "22050", "ch_layout": "mono"}
    with av.open(str(_local(output)), format="s16le", options=options) as container:
        (stream,) = container.streams.audio
        assert (stream.codec_context.name, stream.codec_context.sample_rate) == (
            "pcm_s16le",
            22050,
        )
        decoded = sum(frame.samples for frame in container.decode(stream))
    assert decoded == len(data) // 2
    wav = handler.handler(
        {"id": "piper-pcm-wav", "input": {"task": "tts", "text": "One two three."}}
    )  # Piper's noise is unseeded: compare lengths and loudness, not samples
    samples, _ = soundfile.read(_local(wav["outputs"][0]), dtype="int16")
    raw = np.frombuffer(data, "<i2")
    assert abs(len(raw) - len(samples)) < 22050 * 0.3
    assert 0.5 < np.abs(raw).mean() / np.abs(samples).mean() < 2  # not byte-swapped noise


@pytest.mark.slow
@pytest.mark.usefixtures("handler_worker")
def test_a_streamed_opus_job_yields_opus_chunks():
    job = {"id": "piper-opus-stream", "input": {"task": "tts", "text": TEXT, "format": "opus",
                                                "stream": True}}  # fmt: skip
    *chunks, final = handler.stream_handler(job)
    assert "error" not in final, final
    for chunk in chunks:
        assert (chunk["format"], chunk["sample_rate"]) == ("opus", 24000)
        info = soundfile.info(io.BytesIO(base64.b64decode(chunk["audio_base64"])))
        assert (info.subtype, info.samplerate) == ("OPUS", 24000)


@pytest.mark.slow
@pytest.mark.usefixtures("handler_worker")
def test_speed_covers_openais_range_and_scales_the_length():
    text = "The quick brown fox jumps over the lazy dog."
    seconds = {}
    for speed in (0.25, 1.0, 4.0):
        result = handler.handler(
            {"id": f"piper-speed-{speed}", "input": {"task": "tts", "text": text, "speed": speed}}
        )
        assert "error" not in result, result
        seconds[speed] = result["outputs"][0]["duration_s"]
    print(f"piper speed 0.25 / 1 / 4: {seconds}")
    # Piper's length scale divides every phoneme's duration, rounded up to whole
    # frames: slowing down scales nearly 4x, speeding up 4x only about 2x (measured
    # 2.1x: a phoneme lasts at least a frame). docs/tasks/tts.md says so.
    assert 3.0 < seconds[0.25] / seconds[1.0] < 4.5
    assert 1.8 < seconds[1.0] / seconds[4.0] < 4.5
