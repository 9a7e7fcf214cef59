"""SeedVR2 glue: batch planning, memory policy and upstream argument mapping, as tables.

The runner's call into upstream is checked here against a stand-in module for the
argument contract only (names, order, keyword arguments, the context it keeps):
upstream itself needs torchvision, which does not import beside this machine's
CPU torch, so it never runs in these tests.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from errors import InvalidInput
from models import contract, registry
from models.runners import _seedvr2_plan as plan
from models.runners import seedvr2


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


class _StandIn:
    """Upstream's eight entry points with its signatures (v2.5.23), recording calls.

    Only the argument contract is checked: every call must bind to the signature
    upstream declares. No model runs.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.context_keys: list[set[str]] = []
        self.script_directory = "/upstream"

    def _record(self, name: str, signature: str, args: tuple, kwargs: dict) -> dict:
        namespace: dict = {}
        exec(f"def f({signature}): pass", namespace)  # the upstream signature, verbatim names
        bound = inspect.signature(namespace["f"]).bind(*args, **kwargs)
        self.calls.append((name, dict(bound.arguments)))
        return dict(bound.arguments)

    def Debug(self, enabled=False, show_timestamps=True):  # upstream's class name
        return SimpleNamespace(enabled=enabled)

    def setup_generation_context(self, *a, **k):
        self._record(
            "setup_generation_context",
            "dit_device=None, vae_device=None, dit_offload_device=None, "
            "vae_offload_device=None, tensor_offload_device=None, debug=None",
            a, k,
        )  # fmt: skip
        return {"dit_device": "cuda:0", "vae_device": "cuda:0", "compute_dtype": "bf16"}

    def prepare_runner(self, *a, **k):
        self.context_keys.append(set(k["ctx"]))  # what a batch starts from
        self._record(
            "prepare_runner",
            "dit_model, vae_model, model_dir, debug, ctx, dit_cache=False, vae_cache=False, "
            "dit_id=None, vae_id=None, block_swap_config=None, encode_tiled=False, "
            "encode_tile_size=None, encode_tile_overlap=None, decode_tiled=False, "
            "decode_tile_size=None, decode_tile_overlap=None, tile_debug='false', "
            "attention_mode='sdpa', torch_compile_args_dit=None, torch_compile_args_vae=None",
            a, k,
        )  # fmt: skip
        return "runner", {"cached": True}

    def load_text_embeddings(self, *a, **k):
        self._record("load_text_embeddings", "script_directory, device, dtype, debug=None", a, k)
        return {"texts_pos": [], "texts_neg": []}

    def compute_generation_info(self, *a, **k):
        got = self._record(
            "compute_generation_info",
            "ctx, images, resolution=1080, max_resolution=0, batch_size=5, "
            "uniform_batch_size=False, seed=42, prepend_frames=0, temporal_overlap=0, "
            "debug=None",
            a, k,
        )  # fmt: skip
        return got["images"], {}

    def encode_all_batches(self, *a, **k):
        got = self._record(
            "encode_all_batches",
            "runner, ctx=None, images=None, debug=None, batch_size=5, "
            "uniform_batch_size=False, seed=42, progress_callback=None, temporal_overlap=0, "
            "resolution=1080, max_resolution=0, input_noise_scale=0.0, "
            "color_correction='lab'",
            a, k,
        )  # fmt: skip
        got["ctx"]["images"] = got["images"]
        return got["ctx"]

    def upscale_all_batches(self, *a, **k):
        return self._record(
            "upscale_all_batches",
            "runner, ctx=None, debug=None, progress_callback=None, seed=42, "
            "latent_noise_scale=0.0, cache_model=False",
            a, k,
        )["ctx"]  # fmt: skip

    def decode_all_batches(self, *a, **k):
        return self._record(
            "decode_all_batches",
            "runner, ctx=None, debug=None, progress_callback=None, cache_model=False",
            a, k,
        )["ctx"]  # fmt: skip

    def postprocess_all_batches(self, *a, **k):
        got = self._record(
            "postprocess_all_batches",
            "ctx=None, debug=None, progress_callback=None, color_correction='lab', "
            "prepend_frames=0, temporal_overlap=0, batch_size=5",
            a, k,
        )  # fmt: skip
        got["ctx"]["final_video"] = ("restored", got["ctx"]["images"])
        return got["ctx"]


def test_the_call_into_upstream_binds_to_its_signatures_and_keeps_its_context():
    up = _StandIn()
    cache: dict = {}
    memory = plan.plan_memory("3b", free_vram_gb=23.0, width=1920, height=1080, batch=5,
                              fp8_ok=True)  # fmt: skip
    arguments = plan.upstream_arguments(
        memory, resolution=1080, batch=5, overlap=0, seed=3, device="cuda:0"
    )
    for frames in ("batch-1", "batch-2"):
        out = seedvr2.call_upstream(up, cache, frames, arguments=arguments, model_dir="/w")
        assert out == ("restored", frames)
    names = [name for name, _ in up.calls]
    # the context is made once; the models are prepared (cached upstream) per batch
    assert names.count("setup_generation_context") == 1
    assert names[-7:] == [
        "prepare_runner",
        "load_text_embeddings",
        "compute_generation_info",
        "encode_all_batches",
        "upscale_all_batches",
        "decode_all_batches",
        "postprocess_all_batches",
    ]
    calls = dict(up.calls)
    assert calls["prepare_runner"]["model_dir"] == "/w"
    assert calls["prepare_runner"]["dit_cache"] is True
    assert calls["encode_all_batches"]["seed"] == calls["upscale_all_batches"]["seed"] == 3
    assert calls["postprocess_all_batches"]["color_correction"] == "none"
    # only the device keys survive into the next batch's context: batch 2 starts from
    # what upstream keeps (keys_to_keep), not from batch 1's images and video
    first, second = up.context_keys
    assert second == first == {"dit_device", "vae_device", "compute_dtype"}
    assert "final_video" in cache["ctx"]


def test_seedvr2_profile_needs_a_pinned_weights_commit(monkeypatch):
    from errors import ModelUnavailable
    from models.profiles import get_profile

    with pytest.raises(ModelUnavailable, match="MEDIA_WORKER_SEEDVR2_REVISION"):
        get_profile("seedvr2")
    monkeypatch.setenv("MEDIA_WORKER_SEEDVR2_REVISION", "a" * 39 + "b")
    profile = get_profile("seedvr2")
    (source,) = profile.artifacts
    assert source.kind == "source" and source.name == "seedvr2"
    assert profile.pins["torch"] == "2.13.0" and "torchvision" in profile.pins
    files = set(profile.weights[0].patterns)
    assert {plan.VAE_FILE, *(f for f, _ in plan.DIT_FILES.values())} == files


def test_restore_defaults_to_the_fast_tier():
    job = contract.parse_job({"task": "restore", "video": "s3://b/k.mp4"})
    assert registry.resolve(job).model == "upscale"
