"""media.restore's decisions that need no model: the overlap against the batch used."""

from __future__ import annotations

import pytest

from errors import InvalidInput
from media.restore import check_overlap


@pytest.mark.parametrize(
    ("overlap", "batch", "frames"), [(None, 4, 100), (0, 1, 1), (3, 4, 100), (4, 5, 5)]
)
def test_an_overlap_under_the_batch_used_passes(overlap, batch, frames):
    check_overlap(overlap, batch, frames)


@pytest.mark.parametrize(
    ("overlap", "batch", "frames", "says"),
    [
        (8, 4, 100, "must be smaller than the batch this job uses (4 frames)"),
        (8, 5, 5, "(5 frames; the clip has 5 frames)"),
        (4, 4, None, "(4 frames)"),
    ],
)
def test_an_overlap_at_or_over_the_batch_used_names_the_field(overlap, batch, frames, says):
    with pytest.raises(InvalidInput) as refused:
        check_overlap(overlap, batch, frames)
    assert refused.value.field == "temporal_overlap" and says in refused.value.message
