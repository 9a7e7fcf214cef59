"""SeedVR2 glue: batch planning, memory policy and upstream argument mapping, as tables.

Upstream itself runs in ``test_seedvr2_e2e.py`` (real jobs through the handler).
"""

from __future__ import annotations

import pytest

from errors import InvalidInput, ModelUnavailable
from models import contract, registry
from models.runners import _seedvr2_plan as plan


@pytest.mark.parametrize(
    ("requested", "total", "expected"),
    [
        (None, 100, 5),  # upstream's default
        (1, 100, 1),
        (4, 100, 1),  # rounded down to 4n+1
        (5, 100, 5),
        (8, 100, 5),
        (9, 100, 9),
        (21, 100, 21),
        (33, 10, 13),  # no larger than the smallest 4n+1 holding the clip
        (33, 1, 1),  # a still image
        (0, 100, 1),
    ],
)
def test_batches_are_4n_plus_1(requested, total, expected):
    got = plan.batch_frames(requested, total)
    assert got == expected and got % 4 == 1


@pytest.mark.parametrize(
    ("requested", "batch", "expected"),
    [(None, 5, 0), (2, 5, 2), (9, 5, 4), (3, 1, 0)],
)
def test_overlap_stays_below_the_batch(requested, batch, expected):
    assert plan.overlap_frames(requested, batch) == expected


@pytest.mark.parametrize(
    ("size", "free_gb", "w", "h", "batch", "fp8", "precision", "swap", "tiled"),
    [
        # H100 80 GB: 7B fp16 at 1080p, batch 5, nothing to give up
        ("7b", 79.0, 1920, 1080, 5, True, "fp16", 0, False),
        # 24 GB: 3B fp16 at 1080p batch 5 untiled (the tier upstream names)
        ("3b", 23.0, 1920, 1080, 5, True, "fp16", 0, False),
        # 24 GB, 4K: VAE tiling first
        ("3b", 23.0, 3840, 2160, 5, True, "fp16", 0, True),
        # 12 GB: tiled, then 3B drops to fp8 on a GPU that has it
        ("3b", 11.0, 1920, 1080, 5, True, "fp8", 0, True),
        # 12 GB without fp8 (Ampere): BlockSwap instead, 6 of 32 blocks
        ("3b", 11.0, 1920, 1080, 5, False, "fp16", 6, True),
        # 7B on 24 GB fits fp16 once the VAE is tiled
        ("7b", 23.0, 1920, 1080, 5, True, "fp16", 0, True),
        # 7B on 16 GB: no fp8 file in the repo, so BlockSwap 16 of 36 blocks
        ("7b", 15.0, 1920, 1080, 5, True, "fp16", 16, True),
        # one frame (a still image) at 1080p on 12 GB: tiling alone is enough
        ("3b", 11.0, 1920, 1080, 1, False, "fp16", 0, True),
        # ... at 4K it also swaps 3 blocks
        ("3b", 11.0, 3840, 2160, 1, False, "fp16", 3, True),
    ],
)
def test_memory_plan_table(size, free_gb, w, h, batch, fp8, precision, swap, tiled):
    got = plan.plan_memory(size, free_vram_gb=free_gb, width=w, height=h, batch=batch, fp8_ok=fp8)
    assert (got.precision, got.blocks_to_swap, got.vae_tiled) == (precision, swap, tiled)
    assert got.dit_file == plan.DIT_FILES[(size, precision)][0]
    assert got.offload_device == ("cpu" if swap else "none")
    assert 0 <= got.blocks_to_swap <= plan.BLOCKS[size]


def test_a_target_no_saving_can_fit_is_refused_on_resolution():
    with pytest.raises(InvalidInput) as info:
        plan.plan_memory("7b", free_vram_gb=4.0, width=3840, height=2160, batch=21, fp8_ok=True)
    assert info.value.field == "resolution" and "GB" in info.value.message


def test_upstream_arguments_map_the_plan():
    memory = plan.plan_memory(
        "3b", free_vram_gb=11.0, width=1920, height=1080, batch=5, fp8_ok=False
    )
    args = plan.upstream_arguments(
        memory, resolution=1080, batch=5, overlap=0, seed=7, device="cuda:0"
    )
    swap = args["prepare_runner"]["block_swap_config"]
    assert swap == {"blocks_to_swap": 6, "swap_io_components": False, "offload_device": "cpu"}
    assert args["prepare_runner"]["dit_model"] == "seedvr2_ema_3b_fp16.safetensors"
    assert args["prepare_runner"]["decode_tiled"] is True
    assert args["setup_generation_context"]["dit_offload_device"] == "cpu"
    assert args["encode_all_batches"] == {
        "batch_size": 5,
        "seed": 7,
        "temporal_overlap": 0,
        "resolution": 1080,
        "color_correction": "none",
    }


def test_both_sizes_are_registered_with_the_seedvr2_profile():
    specs = {s.model: s for s in registry.RUNNERS if s.task == "restore"}
    assert specs["seedvr2-3b"].profile == specs["seedvr2-7b"].profile == "seedvr2"
    job = contract.parse_job(
        {"task": "restore", "model": "seedvr2-7b", "video": "s3://b/k.mp4", "batch_size": 8}
    )
    assert registry.resolve(job) is specs["seedvr2-7b"]
    bad = contract.parse_job(
        {"task": "restore", "model": "seedvr2-3b", "video": "s3://b/k.mp4",
         "batch_size": 8, "temporal_overlap": 5}
    )  # fmt: skip
    with pytest.raises(InvalidInput, match="4n\\+1"):
        registry.resolve(bad)


def test_seedvr2_weights_are_pinned_by_upstreams_digests_without_a_setting(monkeypatch):
    from models.profiles import SEEDVR2_WEIGHTS, get_profile

    profile = get_profile("seedvr2")
    (source,) = profile.artifacts
    assert (source.kind, source.name, source.digest) == ("source", "seedvr2", "tree")
    assert profile.pins["torch"] == "2.13.0" and "torchvision" in profile.pins
    (weights,) = profile.weights
    assert (weights.repo_id, weights.revision) == ("numz/SeedVR2_comfyUI", None)
    assert dict(weights.sha256) == dict(SEEDVR2_WEIGHTS)
    files = {plan.VAE_FILE, *(f for f, _ in plan.DIT_FILES.values())}
    assert set(weights.patterns) == files == set(dict(SEEDVR2_WEIGHTS))
    # a commit of upstream's repo keeps the digests; an operator's mirror has its own files
    monkeypatch.setenv("MEDIA_WORKER_SEEDVR2_REVISION", "a" * 39 + "b")
    (pinned,) = get_profile("seedvr2").weights
    assert (pinned.revision, pinned.sha256) == ("a" * 39 + "b", weights.sha256)
    monkeypatch.setenv("MEDIA_WORKER_SEEDVR2_REPO", "me/seedvr2-mirror")
    (mirror,) = get_profile("seedvr2").weights
    assert (mirror.repo_id, mirror.sha256, set(mirror.patterns)) == ("me/seedvr2-mirror", (), files)
    monkeypatch.delenv("MEDIA_WORKER_SEEDVR2_REVISION")
    with pytest.raises(ModelUnavailable, match="MEDIA_WORKER_SEEDVR2_REVISION") as unpinned:
        get_profile("seedvr2")
    assert unpinned.value.field == "model"


def test_restore_defaults_to_the_fast_tier():
    job = contract.parse_job({"task": "restore", "video": "s3://b/k.mp4"})
    assert registry.resolve(job).model == "upscale"
