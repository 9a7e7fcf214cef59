"""Hostile media through the restore pipeline, transcribe's probe and the reference-audio
path (issue 20): each is refused with the field named, within bounded memory, and
leaves nothing that looks like an output.

The pipeline runs with a numpy backend (pixel doubling), so no model environment is
needed; tests/runners/test_upscale.py runs the same files through the
handler and the real upscale runner.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from errors import InvalidInput, UnsupportedMedia
from media.restore import run_restore
from runtime.runner import RunContext
from tests.fixtures import hostile
from tests.fixtures.clips import make_clip

ROOT = Path(__file__).resolve().parents[3]


def _double(frames: np.ndarray) -> np.ndarray:
    return frames.repeat(2, axis=1).repeat(2, axis=2)


def restore(src: Path, scratch: Path) -> dict:
    """``run_restore`` on ``src`` with the doubling backend; returns the job's result."""
    scratch.mkdir(exist_ok=True)
    ctx = RunContext("hostile", scratch, lambda message, fraction: None, inputs={"video": src})
    run_restore({}, ctx, max_scale=2.0, make_backend=lambda size, n: _double, default_batch=4)
    return ctx.result


def _left(scratch: Path, src: Path) -> list[str]:
    return sorted(p.name for p in scratch.iterdir() if p != src)


def test_the_doubling_pipeline_restores_a_good_clip(tmp_path):
    # the control: the same path accepts a clip at one size
    (tmp_path / "scratch").mkdir()
    src = make_clip(tmp_path / "scratch" / "ok.mp4", frames=6, audio=None)
    result = restore(src, tmp_path / "scratch")
    assert result["media"]["frames"] == 6 and result["media"]["width"] == 128
    assert _left(tmp_path / "scratch", src) == ["restored.mp4"]


def test_a_stream_that_changes_resolution_mid_way_is_refused_naming_the_field(tmp_path):
    # Before: the caps saw the first frame (64x48) only, and np.stack crashed on the
    # 1920x1088 frames: "ValueError: all input arrays must have the same shape".
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = hostile.resolution_switch(scratch / "switch.h264")
    with pytest.raises(UnsupportedMedia) as info:
        restore(src, scratch)
    assert info.value.field == "video"
    assert "frame 5 is 1920x1088, but the video starts at 64x48" in info.value.message
    assert _left(scratch, src) == [], "a partial output was left"


def test_a_frame_over_the_cap_is_refused_by_the_decoder(tmp_path, monkeypatch):
    # 64x48 then 640x480 with a 256-pixel cap: over the decoder's max_pixels
    # (256²), so the frame is never allocated; the job fails on the field
    monkeypatch.setenv("MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE", "256")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = hostile.resolution_switch(scratch / "grow.h264", then=(640, 480))
    with pytest.raises(UnsupportedMedia) as info:
        restore(src, scratch)
    assert info.value.field == "video"
    assert "could not be decoded" in info.value.message and "grow" in info.value.message
    assert _left(scratch, src) == []


def test_a_video_whose_frames_do_not_decode_is_unsupported_without_internal_paths(tmp_path):
    # Before: probed as 10 frames, decoded none, failed with FileNotFoundError naming
    # the scratch's .restored.partial.mp4 (reported as runner_crashed).
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = hostile.cut_mp4(scratch / "cut.mp4")
    with pytest.raises(UnsupportedMedia) as info:
        restore(src, scratch)
    assert info.value.field == "video"
    assert info.value.message.startswith("video: no frame could be decoded; the file is cut")
    assert _left(scratch, src) == []


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: hostile.png_claiming(d / "lie.png", 30_000, 30_000), "png image of 30000x30000"),
        (lambda d: hostile.png_claiming(d / "wide.png", 3841, 2), "png image of 3841x2"),
        (lambda d: hostile.png_bomb(d / "bomb.png"), "png image of 16000x16000"),
    ],
    ids=["claims-30000", "one-over", "bomb"],
)
def test_an_image_header_over_the_cap_is_refused_naming_field_and_setting(tmp_path, make, fragment):
    # Before: "0x0 is too small to restore", no field (the decoder had refused it).
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = make(scratch)
    with pytest.raises(InvalidInput) as info:
        restore(src, scratch)
    assert info.value.field == "video"
    assert fragment in info.value.message
    assert "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE" in info.value.message
    assert _left(scratch, src) == []


def test_a_cut_image_header_is_unsupported_naming_the_field(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = scratch / "cut.png"
    src.write_bytes(hostile.png_claiming(tmp_path / "x.png", 64, 48).read_bytes()[:20])
    with pytest.raises(UnsupportedMedia) as info:
        restore(src, scratch)
    assert info.value.field == "video" and "png image's header is damaged" in info.value.message


# --- The PNG bomb: refused before it is decoded, wherever it is sent -------------------

_OPEN = {
    "restore": "from media.video import probe; probe(path)",
    "transcribe": "from runners.whisper import probe; probe(path)",
    "reference_audio": "from media.reference_audio import decode; decode(path, sample_rate=24000)",
}
_MEASURE = """
import json, sys
from pathlib import Path
path = Path(sys.argv[2])
try:
    exec(sys.argv[1])
    outcome = {"error": None}
except Exception as exc:
    outcome = {"error": type(exc).__name__, "field": getattr(exc, "field", None),
               "message": str(exc)}
# VmHWM, not ru_maxrss: the latter keeps the forking pytest process's size
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
outcome["peak_mb"] = int(hwm.split()[1]) // 1024
print(json.dumps(outcome))
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", list(_OPEN))
def test_a_png_bomb_is_refused_before_it_is_decoded(tmp_path, where):
    # Before: 2 GB resident (a 16000x16000 16-bit RGBA PNG of 2 MB decoded whole by
    # FFmpeg while opening it) in each of the three paths.
    bomb = hostile.png_bomb(tmp_path / "bomb.png")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, _OPEN[where], str(bomb)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    expected = {"restore": ("InvalidInput", "video"), "transcribe": ("UnsupportedMedia", "audio"),
                "reference_audio": ("UnsupportedMedia", "reference_audio")}[where]  # fmt: skip
    assert (outcome["error"], outcome["field"]) == expected, outcome
    assert "16000x16000" in outcome["message"]
    assert outcome["peak_mb"] < 300, outcome  # python, PyAV and numpy take ~100 MB


@pytest.mark.parametrize("where", ["transcribe", "reference_audio"])
def test_an_image_sent_as_audio_is_refused_naming_the_field(tmp_path, where):
    from media.reference_audio import decode
    from runners.whisper import probe

    png = hostile.png_claiming(tmp_path / "still.png", 64, 48)
    with pytest.raises(UnsupportedMedia) as info:
        probe(png) if where == "transcribe" else decode(png, sample_rate=24_000)
    assert info.value.field == {"transcribe": "audio"}.get(where, "reference_audio")
    assert "is a png image (64x48), not audio" in info.value.message
