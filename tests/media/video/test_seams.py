"""Seams between batches: the frames two batches share are cross-faded, none dropped
or repeated. The model here is a function whose output says which batch made it;
the tiny SeedVR2 does the same in ``tests/runners/test_seedvr2.py``."""

from __future__ import annotations

import numpy as np
import pytest

from media.video import PipelineOptions, probe, restore_video
from media.video._pipeline import crossfade
from tests.fixtures.clips import make_clip


@pytest.mark.parametrize(
    ("held", "again", "expected"),
    [
        ([0], [90], [45]),  # one shared frame: half and half
        ([10, 10], [100, 100], [40, 70]),  # two: the later batch's weight 1/3, then 2/3
        ([200, 200, 200], [0, 0, 0], [150, 100, 50]),
    ],
)
def test_crossfade_table(held, again, expected):
    def frames(values: list[int]) -> np.ndarray:
        return np.stack([np.full((2, 3, 3), v, np.uint8) for v in values])

    got = crossfade(frames(held), frames(again))
    assert got.dtype == np.uint8 and [int(f[0, 0, 0]) for f in got] == expected


def _decoded(path) -> list[tuple[float, float]]:
    """(presentation time in seconds, mean grey) of every frame."""
    import av

    with av.open(str(path)) as container:
        return [(float(f.time), float(f.to_ndarray(format="rgb24").mean()))
                for f in container.decode(video=0)]  # fmt: skip


def test_batch_boundaries_blend_and_no_frame_is_dropped_or_repeated(tmp_path):
    """13 frames, batches of 5 sharing 2: the batches cover frames 0-4, 3-7, 6-10
    and 9-12; the model paints every frame of its n-th call with one grey."""
    src = make_clip(tmp_path / "in.mp4", frames=13, width=32, height=24, audio=None)
    greys = iter([10, 100, 190, 250])
    seen: list[int] = []

    def backend(images: np.ndarray) -> np.ndarray:
        seen.append(len(images))
        return np.full((len(images), 24, 32, 3), next(greys), np.uint8)

    result = restore_video(
        src,
        tmp_path / "out.mp4",
        backend,
        info=probe(src),
        size=(32, 24),
        options=PipelineOptions(batch_frames=5, overlap=2, crf=0),
        progress=lambda message, fraction: None,
    )
    assert seen == [5, 5, 5, 4] and result.frames == 13
    out, source = _decoded(tmp_path / "out.mp4"), _decoded(src)
    assert [t for t, _ in out] == [t for t, _ in source]  # every timestamp once, in order
    greys_out = [grey for _, grey in out]
    expected = [10, 10, 10, 40, 70, 100, 130, 160, 190, 210, 230, 250, 250]
    assert greys_out == pytest.approx(expected, abs=2.5)  # lossless H.264, YUV rounding
