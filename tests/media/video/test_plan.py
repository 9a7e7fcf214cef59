"""The restore pipeline's pure decisions, as tables."""

from __future__ import annotations

import pytest

from errors import InvalidInput, UnsupportedMedia
from media.video._pipeline import batched_with_context
from media.video._plan import (
    Limits,
    SourceInfo,
    check_source,
    choose_encoder,
    eta_s,
    progress_message,
    target_size,
)
from runners.upscale import tiles

LIMITS = Limits(
    max_input_bytes=1000,
    max_duration_s=10.0,
    max_source_side=1920,
    max_target_side=3840,
    max_frames=300,
)


def _info(**changes) -> SourceInfo:
    base = dict(
        kind="video", width=640, height=360, fps=30.0, frames=90, duration_s=3.0,
        codec="h264", has_audio=True, bytes=500,
    )  # fmt: skip
    return SourceInfo(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"bytes": 1001}, "MEDIA_WORKER_RESTORE_MAX_INPUT_BYTES"),
        ({"duration_s": 10.5}, "MEDIA_WORKER_RESTORE_MAX_DURATION_S"),
        ({"width": 1921}, "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE"),
        ({"height": 2000, "width": 100}, "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE"),
        ({"frames": 301}, "MEDIA_WORKER_RESTORE_MAX_FRAMES"),
    ],
)
def test_inputs_over_a_cap_are_refused_naming_the_setting(changes, setting):
    with pytest.raises(InvalidInput) as info:
        check_source(_info(**changes), LIMITS)
    assert setting in info.value.message and info.value.field == "video"


def test_inputs_at_the_caps_pass():
    check_source(_info(bytes=1000, duration_s=10.0, width=1920, frames=300), LIMITS)


def test_a_one_pixel_input_is_unsupported():
    with pytest.raises(UnsupportedMedia):
        check_source(_info(width=1, height=1), LIMITS)


@pytest.mark.parametrize(
    ("src", "short_side", "scale", "even", "expected"),
    [
        ((640, 360), None, 4.0, True, (2560, 1440)),  # the model's own scale
        ((640, 360), 1080, 4.0, True, (1920, 1080)),  # overshoot: resized down to 1080p
        ((360, 640), 1080, 4.0, True, (1080, 1920)),  # portrait: short side is the width
        ((63, 45), None, 4.0, True, (252, 180)),  # odd source, even output
        ((63, 45), 144, 4.0, True, (202, 144)),  # 201.6 rounds to the even 202
        ((33, 21), None, 4.0, False, (132, 84)),  # an image keeps exact sizes
        ((640, 360), 360, 4.0, True, (640, 360)),  # same size: the model still restores
        ((640, 360), 180, 4.0, True, (320, 180)),  # smaller than the source is allowed
        ((854, 480), 720, 2.0, True, (1280, 720)),  # 1281 -> 1280 (half to even)
    ],
)
def test_target_size(src, short_side, scale, even, expected):
    got = target_size(*src, short_side=short_side, max_scale=scale, max_target_side=3840, even=even)
    assert got == expected


def test_a_backend_that_sizes_down_to_even_gets_its_own_size():
    # 854x480 at 1080: 1921.5 wide; upstream SeedVR2 gives 1920 (an H200 run showed
    # the nearest even, 1922, against upstream's 1920).
    args = {"short_side": 1080, "max_scale": 4.0, "max_target_side": 4096}
    assert target_size(854, 480, **args) == (1922, 1080)
    assert target_size(854, 480, even_down=True, **args) == (1920, 1080)
    assert target_size(63, 45, short_side=144, max_scale=4.0, max_target_side=4096,
                       even_down=True) == (200, 144)  # fmt: skip


def test_a_resolution_beyond_the_model_scale_is_unreachable():
    with pytest.raises(InvalidInput) as info:
        target_size(640, 360, short_side=2160, max_scale=4.0, max_target_side=8000)
    assert info.value.field == "resolution" and "1440" in info.value.message


def test_a_target_over_the_cap_names_the_setting():
    with pytest.raises(InvalidInput) as info:
        target_size(1920, 1080, short_side=None, max_scale=4.0, max_target_side=3840)
    assert "MEDIA_WORKER_RESTORE_MAX_TARGET_SIDE" in info.value.message


@pytest.mark.parametrize(
    ("total", "size", "overlap", "expected"),
    [
        (0, 4, 0, []),
        (3, 4, 0, [([0, 1, 2], 0)]),
        (8, 4, 0, [([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0)]),
        (9, 4, 1, [([0, 1, 2, 3], 0), ([3, 4, 5, 6], 1), ([6, 7, 8], 1)]),
        (10, 5, 2, [([0, 1, 2, 3, 4], 0), ([3, 4, 5, 6, 7], 2), ([6, 7, 8, 9], 2)]),
        (7, 4, 1, [([0, 1, 2, 3], 0), ([3, 4, 5, 6], 1)]),  # no batch of context only
        (5, 1, 0, [([0], 0), ([1], 0), ([2], 0), ([3], 0), ([4], 0)]),
    ],
)
def test_batches_with_temporal_context(total, size, overlap, expected):
    batches = list(batched_with_context(range(total), size, overlap))
    assert batches == expected
    # Every frame is new in exactly one batch, in order.
    assert [i for batch, ctx in batches for i in batch[ctx:]] == list(range(total))


@pytest.mark.parametrize(("size", "overlap"), [(4, 4), (0, 0), (3, -1)])
def test_an_overlap_that_leaves_no_new_frame_is_refused(size, overlap):
    with pytest.raises(ValueError):
        list(batched_with_context(range(5), size, overlap))


@pytest.mark.parametrize(
    ("available", "gpu", "forced", "expected"),
    [
        ({"libx264", "h264_nvenc"}, True, "", "h264_nvenc"),
        ({"libx264", "h264_nvenc"}, False, "", "libx264"),
        ({"libx264"}, True, "", "libx264"),
        ({"libx264", "h264_nvenc"}, True, "libx264", "libx264"),
    ],
)
def test_encoder_choice(available, gpu, forced, expected):
    assert choose_encoder(available, has_nvidia_gpu=gpu, forced=forced) == expected


def test_a_forced_encoder_missing_from_the_build_is_an_error():
    with pytest.raises(ValueError, match="h264_nvenc"):
        choose_encoder({"libx264"}, has_nvidia_gpu=True, forced="h264_nvenc")


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "eta", "message"),
    [
        (0, 100, 5.0, None, "frames 0/100"),
        (25, 100, 5.0, 15.0, "frames 25/100 eta_s=15"),
        (100, 100, 9.0, 0.0, "frames 100/100 eta_s=0"),
    ],
)
def test_eta_and_progress_message(done, total, elapsed, eta, message):
    assert eta_s(done, total, elapsed) == eta
    assert progress_message(done, total, elapsed) == message


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        (100, 0, 8, [(0, 100, 0, 100)]),
        (100, 128, 8, [(0, 100, 0, 100)]),
        (100, 40, 8, [(0, 48, 0, 40), (32, 88, 40, 80), (72, 100, 80, 100)]),
        (80, 40, 0, [(0, 40, 0, 40), (40, 80, 40, 80)]),
    ],
)
def test_tiles_cover_every_pixel_once_with_context(length, tile, overlap, expected):
    got = tiles(length, tile, overlap)
    assert got == expected
    kept = [i for _, _, k0, k1 in got for i in range(k0, k1)]
    assert kept == list(range(length))
