"""The video writer with the real PyAV: NVENC is tried once per process."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from media.video import _encode
from media.video._encode import EncodeSettings, VideoWriter


def _write(path, encoder):
    with VideoWriter(
        path,
        width=64,
        height=48,
        rate=Fraction(24),
        time_base=Fraction(1, 24),
        settings=EncodeSettings(encoder, 18),
        audio_source=None,
    ) as writer:
        writer.write(np.zeros((2, 48, 64, 3), np.uint8), [(0, 1), (1, 1)])
        writer.close()
        writer.publish()
    return writer.encoder


@pytest.mark.skipif("h264_nvenc" not in av.codecs_available, reason="PyAV without NVENC")
def test_nvenc_that_cannot_open_is_tried_once_per_process(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(_encode, "_UNOPENABLE", set())
    caplog.set_level(logging.WARNING, logger="media.video._encode")
    # No NVIDIA GPU here: NVENC fails to open, as on an H100 or H200, which lack it.
    assert _write(tmp_path / "a.mp4", "h264_nvenc") == "libx264"
    assert _write(tmp_path / "b.mp4", "h264_nvenc") == "libx264"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not trying h264_nvenc again in this process" in warnings[0]
    with av.open(str(tmp_path / "b.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].frames == 2


def test_libx264_preset_is_the_measured_one():
    assert EncodeSettings("libx264", 18).preset == _encode.X264_PRESET == "veryfast"
    assert _encode._codec_options(EncodeSettings("libx264", 18))["preset"] == "veryfast"
