"""SpeechAssembler: seams without clicks, chunks that add up to the output, captions."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pysubs2
import pytest
import soundfile

from media import speech as _audio
from runtime.protocol import Chunk
from runtime.runner import RunContext


def _ctx(tmp_path) -> tuple[RunContext, list[Chunk]]:
    sent: list[Chunk] = []
    return RunContext("j1", tmp_path, lambda m, f=None: None, send_chunk=sent.append), sent


def _read(path) -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(path, dtype="float32")
    return audio, rate


def test_piece_edges_fade_to_zero_so_seams_do_not_click(tmp_path):
    ctx, _ = _ctx(tmp_path)
    speech = _audio.SpeechAssembler(ctx, rate=24000, out_rate=None, fmt="wav", stream=False)
    speech.add(np.full(2400, 0.8, np.float32))
    speech.add(np.full(2400, -0.8, np.float32))  # a hard jump without the fades
    (out,) = speech.finish()
    audio, rate = _read(out.path)
    assert rate == 24000 and len(audio) == 4800
    seam = audio[2395:2405]
    assert np.max(np.abs(np.diff(seam))) < 0.05  # no step of 1.6 at the seam
    assert abs(audio[1200] - 0.8) < 1e-3 and abs(audio[3600] + 0.8) < 1e-3


@pytest.mark.parametrize(
    ("job", "rate", "fmt", "streamed"),
    [
        ({}, 24000, "wav", False),  # the model's rate, wav, one file at the end
        ({"sample_rate": 16000, "format": "flac", "stream": True}, 16000, "flac", True),
    ],
)
def test_a_jobs_rate_format_and_stream_decide_what_the_assembler_writes(
    tmp_path, job, rate, fmt, streamed
):
    ctx, sent = _ctx(tmp_path)
    speech = _audio.SpeechAssembler.for_job(ctx, {"text": "Hi.", **job}, rate=24000)
    speech.add(np.zeros(24000, np.float32))
    (out,) = speech.finish()
    info = soundfile.info(out.path)
    assert (info.samplerate, info.format) == (rate, fmt.upper())
    assert info.frames == rate and bool(sent) is streamed


@pytest.mark.parametrize(
    ("fmt", "model_rate", "asked", "written"),
    [
        ("wav", 22050, None, 22050),
        ("wav", 22050, 16000, 16000),
        ("opus", 22050, None, 24000),  # Piper's rate: the next one Opus carries
        ("opus", 24000, None, 24000),  # Kokoro's: carried as it is
        ("opus", 44100, None, 48000),
        ("opus", 22050, 16000, 16000),
    ],
)
def test_the_output_rate_is_asked_or_the_models_or_the_nearest_opus_rate(
    fmt, model_rate, asked, written
):
    assert _audio.output_rate(fmt, model_rate, asked) == written


def test_opus_and_pcm_are_written_at_their_rates_and_say_so(tmp_path):
    ctx, _ = _ctx(tmp_path)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(22050) / 22050)).astype(np.float32)
    speech = _audio.SpeechAssembler.for_job(ctx, {"format": "opus"}, rate=22050)
    speech.add(tone)
    (opus,) = speech.finish(name="a")
    info = soundfile.info(opus.path)
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 24000)
    assert opus.content_type == "audio/ogg; codecs=opus" and opus.path.endswith(".opus")
    speech = _audio.SpeechAssembler.for_job(ctx, {"format": "pcm"}, rate=22050)
    speech.add(tone)
    (pcm,) = speech.finish(name="b")
    raw = np.frombuffer(Path(pcm.path).read_bytes(), dtype="<i2")
    assert len(raw) == 22050 and pcm.content_type == "audio/pcm;rate=22050;channels=1;format=s16le"
    assert np.allclose(raw[5000:5100] / 32767, tone[5000:5100], atol=2e-3)  # no header


@pytest.mark.parametrize(("out_rate", "fmt"), [(None, "wav"), (16000, "wav"), (44100, "flac")])
def test_streamed_chunks_add_up_to_the_full_output(tmp_path, out_rate, fmt):
    ctx, sent = _ctx(tmp_path)
    speech = _audio.SpeechAssembler(ctx, rate=24000, out_rate=out_rate, fmt=fmt, stream=True)
    rng = np.random.default_rng(0)
    for n in (12000, 7000, 30000):
        speech.add(rng.uniform(-0.5, 0.5, n).astype(np.float32))
    (out,) = speech.finish()
    full, rate = _read(out.path)
    assert rate == (out_rate or 24000)
    assert [c.index for c in sent] == list(range(len(sent)))
    joined = np.concatenate([_read(c.path)[0] for c in sent])
    assert np.array_equal(joined, full)
    offsets = [c.offset_s for c in sent]
    assert offsets == sorted(offsets) and offsets[0] == 0.0
    assert all(c.sample_rate == rate and c.format == fmt for c in sent)
    assert abs(sum(c.duration_s for c in sent) - len(full) / rate) < 1e-3


def test_a_long_piece_is_split_into_chunks_under_the_item_budget(tmp_path):
    ctx, sent = _ctx(tmp_path)
    speech = _audio.SpeechAssembler(ctx, rate=24000, out_rate=48000, fmt="wav", stream=True)
    speech.add(np.zeros(24000 * 20, np.float32))  # 20 s at 48 kHz > one item
    speech.finish()
    assert len(sent) >= 3
    for chunk in sent:
        data = Path(chunk.path).read_bytes()
        assert len(data) * 4 / 3 < 1_000_000
        assert soundfile.info(io.BytesIO(data)).samplerate == 48000


def test_word_times_shift_by_the_piece_offset_and_make_captions(tmp_path):
    ctx, sent = _ctx(tmp_path)
    speech = _audio.SpeechAssembler(ctx, rate=24000, out_rate=None, fmt="wav", stream=True)
    speech.add(np.zeros(24000), [{"word": "Hello", "start_s": 0.1, "end_s": 0.5}])
    speech.add(np.zeros(12000), [{"word": "world.", "start_s": 0.05, "end_s": 0.4}])
    outputs = speech.finish(captions=True)
    assert speech.words == [
        {"word": "Hello", "start_s": 0.1, "end_s": 0.5},
        {"word": "world.", "start_s": 1.05, "end_s": 1.4},
    ]
    assert [c.words for c in sent] == [[speech.words[0]], [speech.words[1]]]
    srt, vtt, ass = outputs[1:]
    assert [o.content_type for o in (srt, vtt, ass)] == [
        "application/x-subrip",
        "text/vtt",
        "text/x-ssa",
    ]
    assert "Hello world." in Path(srt.path).read_text()
    assert Path(vtt.path).read_text().startswith("WEBVTT")
    for caption in (srt, vtt, ass):  # every format reads back with the words in order
        events = pysubs2.load(caption.path)
        assert [e.plaintext.split() for e in events] == [["Hello", "world."]]
        assert (events[0].start, events[0].end) == (100, 1400)
    karaoke = pysubs2.load(ass.path)[0].text  # a {\k<centiseconds>} per word and pause
    tags = [int(cs) for cs in re.findall(r"\\k(\d+)", karaoke)]
    assert sum(tags) * 10 == 1400 - 100  # the highlight spans the whole event
    assert re.findall(r"\\k\d+\}([^{\s]+)", karaoke) == ["Hello", "world."]


def test_aac_is_adts_that_pyav_decodes_at_every_rate_a_job_may_ask_for(tmp_path):
    import av

    from models.tasks._speech import AAC_RATES

    ctx, _ = _ctx(tmp_path)
    for rate in AAC_RATES:
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
        speech = _audio.SpeechAssembler.for_job(ctx, {"format": "aac"}, rate=rate)
        speech.add(tone)
        (aac,) = speech.finish(name=f"tone-{rate}")
        assert aac.content_type == "audio/aac" and aac.path.endswith(".aac")
        assert Path(aac.path).read_bytes()[:2] == b"\xff\xf1"  # an ADTS frame, MPEG-4
        with av.open(aac.path) as container:
            (stream,) = container.streams.audio
            assert (stream.codec_context.name, stream.codec_context.sample_rate) == ("aac", rate)
            decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
        # The encoder's priming and padding: at most two 1024-sample frames more.
        assert rate <= len(decoded) <= rate + 2048
        assert 0.15 < np.sqrt(np.mean(decoded**2)) < 0.25  # the tone's level (0.3 / sqrt 2)
