"""SeedVR2 glue: batch planning, memory policy and upstream argument mapping, as tables.

Upstream itself runs in ``tests/runners/test_seedvr2.py`` (real jobs through the handler).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from errors import InvalidInput, ModelUnavailable
from models import jobs, registry
from runners import _seedvr2_plan as plan
from runners import seedvr2


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


# Free memory on the cards the plan covers (what NVML reports free on an idle card).
CARDS = {"24 GB": 23.0, "48 GB": 47.0, "80 GB": 79.0, "141 GB": 139.0}
FHD, UHD = (1920, 1080), (3840, 2160)


@pytest.mark.parametrize(
    ("size", "card", "out", "batch", "fp8", "chosen"),
    [
        # The measured row (GPU.md): 854x480 -> 1080p, 21 frames in one batch, untiled,
        # peaked at 36 GB on an H200 for 3B and 7B alike; the plan estimates 37.7 GB.
        ("3b", "141 GB", FHD, 21, True, ("fp16", False, 0, 21)),
        ("7b", "141 GB", FHD, 21, True, ("fp16", False, 0, 21)),
        ("3b", "80 GB", FHD, 21, True, ("fp16", False, 0, 21)),
        ("7b", "80 GB", FHD, 21, True, ("fp16", False, 0, 21)),
        ("7b", "48 GB", FHD, 21, False, ("fp16", False, 0, 21)),  # 36 GB fits in 47
        ("3b", "24 GB", FHD, 21, True, ("fp16", True, 0, 21)),  # the VAE tiled is enough
        ("7b", "24 GB", FHD, 21, True, ("fp16", True, 18, 21)),  # no 7B fp8: BlockSwap
        ("3b", "24 GB", FHD, 5, True, ("fp16", False, 0, 5)),  # upstream's batch: as is
        ("7b", "24 GB", FHD, 5, True, ("fp16", False, 0, 5)),
        ("3b", "24 GB", UHD, 5, True, ("fp16", True, 0, 5)),  # 4K: tiled
        ("7b", "24 GB", UHD, 5, True, ("fp16", True, 17, 5)),
        ("7b", "24 GB", UHD, 21, True, ("fp16", True, 17, 5)),  # last resort: a smaller batch
        # 4K x 21 frames: the DiT's activations (~52 GB) set the pace, tiling or not
        ("3b", "48 GB", UHD, 21, True, ("fp8", True, 2, 17)),
        ("7b", "80 GB", UHD, 21, True, ("fp16", True, 0, 21)),
        ("7b", "141 GB", UHD, 21, True, ("fp16", True, 0, 21)),  # untiled would be ~144 GB
    ],
)
def test_memory_plan_table(size, card, out, batch, fp8, chosen):
    got = plan.plan_memory(
        size, free_vram_gb=CARDS[card], width=out[0], height=out[1], batch=batch, fp8_ok=fp8
    )
    assert (got.precision, got.vae_tiled, got.blocks_to_swap, got.batch) == chosen, got.reason
    assert got.dit_file == plan.DIT_FILES[(size, got.precision)][0]
    assert got.offload_device == ("cpu" if got.blocks_to_swap else "none")
    assert got.peak_gb is not None and got.peak_gb <= CARDS[card]
    assert got.reason.startswith(got.precision) and f"batch {got.batch}" in got.reason


def test_the_measured_peak_is_within_the_plans_estimate():
    # 36 GB measured (H200, 1920x1080 x 21 frames, batch 21, untiled, 3B and 7B)
    for size in ("3b", "7b"):
        estimate = plan.peak_gb(size, "fp16", blocks=0, tiled=False, width=1920, height=1080,
                                batch=21)  # fmt: skip
        assert 36.0 <= estimate <= 36.0 * 1.1


def test_fp8_is_the_concession_before_blockswap_where_the_gpu_has_it():
    twelve = {"free_vram_gb": 11.0, "width": 1920, "height": 1080, "batch": 21}
    assert plan.plan_memory("3b", fp8_ok=True, **twelve).precision == "fp8"
    ampere = plan.plan_memory("3b", fp8_ok=False, **twelve)
    assert (ampere.precision, ampere.blocks_to_swap > 0) == ("fp16", True)


def test_the_cpu_gets_no_memory_plan():
    got = plan.plan_memory("3b", free_vram_gb=None, width=128, height=96, batch=5, fp8_ok=False)
    assert (got.blocks_to_swap, got.vae_tiled, got.batch, got.peak_gb) == (0, False, 5, None)


def test_a_target_not_even_one_frame_fits_is_refused_on_resolution():
    with pytest.raises(InvalidInput) as info:
        plan.plan_memory("7b", free_vram_gb=3.0, width=3840, height=2160, batch=21, fp8_ok=True)
    assert info.value.field == "resolution" and "one frame per batch" in info.value.message


def test_upstream_arguments_map_the_plan():
    memory = plan.plan_memory(
        "7b", free_vram_gb=23.0, width=1920, height=1080, batch=21, fp8_ok=True
    )
    args = plan.upstream_arguments(memory, resolution=1080, overlap=0, seed=7, device="cuda:0")
    swap = args["prepare_runner"]["block_swap_config"]
    assert swap == {"blocks_to_swap": 18, "swap_io_components": False, "offload_device": "cpu"}
    assert args["prepare_runner"]["dit_model"] == "seedvr2_ema_7b_fp16.safetensors"
    assert args["prepare_runner"]["decode_tiled"] is True
    assert args["setup_generation_context"]["dit_offload_device"] == "cpu"
    assert args["encode_all_batches"] == {
        "batch_size": 21,
        "seed": 7,
        "temporal_overlap": 0,
        "resolution": 1080,
        "color_correction": "none",
    }


def test_both_sizes_are_registered_with_the_seedvr2_profile():
    specs = {s.model: s for s in registry.RUNNERS if s.task == "restore"}
    assert specs["seedvr2-3b"].profile == specs["seedvr2-7b"].profile == "seedvr2"
    job = jobs.parse_job(
        {"task": "restore", "model": "seedvr2-7b", "video": "s3://b/k.mp4", "batch_size": 8}
    )
    assert registry.resolve(job) is specs["seedvr2-7b"]
    bad = jobs.parse_job(
        {"task": "restore", "model": "seedvr2-3b", "video": "s3://b/k.mp4",
         "batch_size": 8, "temporal_overlap": 5}
    )  # fmt: skip
    with pytest.raises(InvalidInput, match="4n\\+1"):
        registry.resolve(bad)


def test_seedvr2_weights_are_pinned_by_upstreams_digests_without_a_setting(monkeypatch):
    from models.profiles import SEEDVR2_WEIGHTS

    profile = registry.get_profile("seedvr2")
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
    (pinned,) = registry.get_profile("seedvr2").weights
    assert (pinned.revision, pinned.sha256) == ("a" * 39 + "b", weights.sha256)
    monkeypatch.setenv("MEDIA_WORKER_SEEDVR2_REPO", "me/seedvr2-mirror")
    (mirror,) = registry.get_profile("seedvr2").weights
    assert (mirror.repo_id, mirror.sha256, set(mirror.patterns)) == ("me/seedvr2-mirror", (), files)
    monkeypatch.delenv("MEDIA_WORKER_SEEDVR2_REVISION")
    with pytest.raises(ModelUnavailable, match="MEDIA_WORKER_SEEDVR2_REVISION") as unpinned:
        registry.get_profile("seedvr2")
    assert unpinned.value.field == "model"


def test_restore_defaults_to_the_fast_tier():
    job = jobs.parse_job({"task": "restore", "video": "s3://b/k.mp4"})
    assert registry.resolve(job).model == "upscale"


def test_call_upstream_keeps_only_the_device_context_between_batches():
    """The glue's own contract, where upstream's source is absent (it runs for real in
    tests/runners/test_seedvr2.py): whatever upstream's phases put in the context, only the
    device keys stay after the batch. Upstream's functions here only fill the context."""

    def phase(ctx, **_):
        ctx[f"batch-state-{len(ctx)}"] = object()
        return ctx

    def post(ctx, **_):
        ctx["final_video"] = "frames"
        return ctx

    keep = dict.fromkeys(seedvr2._KEEP, "device")
    up = SimpleNamespace(
        Debug=lambda enabled: None,
        setup_generation_context=lambda **_: dict(keep),
        prepare_runner=lambda **_: ("runner", {"cache": "context"}),
        load_text_embeddings=lambda *a: {"texts": []},
        compute_generation_info=lambda ctx, images, **_: (images, {}),
        encode_all_batches=lambda runner, ctx, **k: phase(ctx),
        upscale_all_batches=lambda runner, ctx, **k: phase(ctx),
        decode_all_batches=lambda runner, ctx, **k: phase(ctx),
        postprocess_all_batches=lambda ctx, **k: post(ctx),
        script_directory="/upstream",
    )
    memory = plan.plan_memory("3b", free_vram_gb=None, width=64, height=48, batch=5, fp8_ok=False)
    arguments = plan.upstream_arguments(memory, resolution=48, overlap=0, seed=1, device="cpu")
    cache: dict = {}
    for _ in range(2):
        out = seedvr2.call_upstream(up, cache, "frames", arguments=arguments, model_dir="/m")
        assert out == "frames" and set(cache["ctx"]) == set(seedvr2._KEEP)
