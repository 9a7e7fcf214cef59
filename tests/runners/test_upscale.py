"""The `upscale` restore end to end through the handler: a real profile build (uv),
real spandrel loading and inference on the CPU with a tiny random-weight RRDBNet
saved as RealESRGAN_x4plus.pth is laid out, served by the local hub, and the
outputs checked with PyAV.

The profile is built once per module with the same pins as on a GPU worker; the
wheels come from where this machine's pip is configured to find them
(``tests.fixtures.wheels``: a local CPU torch here), else from the profile's own
indexes (torch from PyTorch's CUDA index, about 3 GB).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

import bootstrap
import handler
from models.profiles import upscale_profile
from tests.fixtures import hostile, sr_models
from tests.fixtures.clips import make_clip, make_image, read_back
from tests.fixtures.wheels import local_package_sources

pytestmark = pytest.mark.slow

REPO = "tests/tiny-realesrgan"
FILE = "RealESRGAN_x4plus.pth"  # RRDBNet, laid out as Real-ESRGAN publishes it
COMPACT_REPO = "tests/tiny-realesr-general"
COMPACT = "realesr-general-x4v3.safetensors"  # SRVGGNetCompact: cheap, for long clips


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, hub_server) -> dict[str, str]:
    """Build the upscale environment once; publish the tiny checkpoint on the hub."""
    home = tmp_path_factory.mktemp("upscale-home")
    env = {
        "MEDIA_WORKER_HOME": str(home),
        "MEDIA_WORKER_ENVS_DIR": str(home / "local-envs"),
        **local_package_sources(),
        "HF_ENDPOINT": hub_server.endpoint,
        "MEDIA_WORKER_UPSCALE_REPO": REPO,
        "MEDIA_WORKER_UPSCALE_FILE": FILE,
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        profile = bootstrap._profile.with_index_overrides(upscale_profile())
        built = bootstrap.ensure(dataclasses.replace(profile, weights=()), in_place=False)
        checkpoint = sr_models.pth_bytes(
            sr_models.rrdbnet(features=8, blocks=1),
            python=built.python,
            work=home,
            key="params_ema",
        )
    env["built_python"] = str(built.python)
    env["MEDIA_WORKER_UPSCALE_REVISION"] = hub_server.add_repo(REPO, {FILE: checkpoint})
    compact = sr_models.safetensors_bytes(sr_models.compact(features=8, convs=2))
    env["compact_revision"] = hub_server.add_repo(COMPACT_REPO, {COMPACT: compact})
    yield env


@pytest.fixture
def worker(world, clean_environ, monkeypatch, tmp_path, handler_worker) -> Path:
    """The world's settings for a test whose jobs run in the module's worker; yields
    where outputs are published."""
    for name, value in world.items():
        if name.isupper():
            monkeypatch.setenv(name, value)
    out = tmp_path / "store"
    monkeypatch.setenv("MEDIA_WORKER_OUTPUT_DIR", str(out))
    return out


def _job(job_id: str, path: Path, mime: str, **fields) -> dict:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return {
        "id": job_id,
        "input": {"task": "restore", "video": f"data:{mime};base64,{encoded}", **fields},
    }


def _local(output: dict) -> Path:
    return Path(urllib.request.url2pathname(urlparse(output["url"]).path))


CLIPS = [
    ("h264-aac.mp4", "video/mp4", {}),
    ("mpeg4-mp2-odd.mkv", "video/x-matroska",
     {"codec": "mpeg4", "audio": "mp2", "width": 63, "height": 45}),
    ("vp9-opus.webm", "video/webm", {"codec": "libvpx-vp9", "audio": "libopus"}),
    ("vfr.mp4", "video/mp4", {"vfr": True}),
    ("mjpeg-silent.mov", "video/quicktime",
     {"codec": "mjpeg", "pix_fmt": "yuvj420p", "audio": None}),
    ("mpeg4-pcm.avi", "video/x-msvideo", {"codec": "mpeg4", "audio": "pcm_s16le"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "mime", "clip"), CLIPS, ids=[c[0] for c in CLIPS])
def test_upscale_restores_a_clip_with_its_audio(worker, tmp_path, name, mime, clip):
    src = make_clip(tmp_path / name, frames=10, **clip)
    source = read_back(src)
    result = handler.handler(_job(f"up-{name}", src, mime, batch_size=4, temporal_overlap=1))
    assert "error" not in result, result
    (output,) = result["outputs"]
    assert output["content_type"] == "video/mp4"
    got = read_back(_local(output))
    # x4 from the model, rounded to even sides for yuv420p.
    assert (got.width, got.height) == (source.width * 4 // 2 * 2, source.height * 4 // 2 * 2)
    assert (got.video_codec, got.pix_fmt) == ("h264", "yuv420p")
    assert got.frames == source.frames == 10
    media = result["media"]
    assert media["frames"] == 10 and media["encoder"] == "libx264"
    assert (media["width"], media["height"]) == (got.width, got.height)
    if clip.get("audio", "aac") is None:
        assert got.audio_codec is None and media["audio"] == "none"
    elif clip.get("audio", "aac") in ("aac", "libopus"):
        assert media["audio"] == "copy" and got.audio_codec == source.audio_codec
    else:
        assert media["audio"] == "aac" and got.audio_codec == "aac"
    if not clip.get("vfr"):
        assert got.fps == pytest.approx(source.fps, rel=0.01)
        assert got.duration_s == pytest.approx(10 / source.fps, abs=1.01 / source.fps)
    timings = result["timings"]
    assert all(timings[k] > 0 for k in ("decode_s", "compute_s", "encode_s"))


def test_vfr_clip_keeps_every_timestamp(worker, tmp_path):
    import av

    src = make_clip(tmp_path / "vfr.mp4", frames=9, vfr=True)
    result = handler.handler(_job("up-vfr", src, "video/mp4"))
    assert "error" not in result, result

    def stamps(path: Path) -> list[float]:
        with av.open(str(path)) as c:
            return [round(float(f.time), 4) for f in c.decode(video=0)]

    assert stamps(_local(result["outputs"][0])) == stamps(src)


@pytest.mark.parametrize(
    ("codec", "mime"), [("png", "image/png"), ("mjpeg", "image/jpeg"), ("libwebp", "image/webp")]
)
def test_still_image_comes_back_as_an_upscaled_png(worker, tmp_path, codec, mime):
    src = make_image(tmp_path / f"still.{codec}", width=33, height=21, codec=codec)
    result = handler.handler(_job(f"img-{codec}", src, mime))
    assert "error" not in result, result
    (output,) = result["outputs"]
    assert output["content_type"] == "image/png"
    got = read_back(_local(output))
    assert (got.width, got.height, got.frames) == (132, 84, 1)
    assert result["media"]["kind"] == "image"


def test_resolution_below_the_model_scale_is_reached_by_a_final_resize(worker, tmp_path):
    src = make_clip(tmp_path / "c.mp4", frames=3, width=64, height=48)
    result = handler.handler(
        _job("up-res", src, "video/mp4", resolution=144, color_correction="wavelet")
    )
    assert "error" not in result, result
    got = read_back(_local(result["outputs"][0]))
    assert (got.width, got.height) == (192, 144)


@pytest.mark.parametrize(
    ("fields", "env", "code", "field", "fragment"),
    [
        ({"resolution": 480}, {}, "invalid_input", "resolution", "at most x4"),
        ({}, {"MEDIA_WORKER_RESTORE_MAX_FRAMES": "5"}, "invalid_input", "video",
         "MEDIA_WORKER_RESTORE_MAX_FRAMES"),
        ({}, {"MEDIA_WORKER_RESTORE_MAX_TARGET_SIDE": "200"}, "invalid_input", "resolution", "cap"),
        ({"temporal_overlap": 4, "batch_size": 4}, {}, "invalid_input", "temporal_overlap",
         "smaller"),
        # Against the default batch of 4: a runner_crashed before (issue 33).
        ({"temporal_overlap": 8}, {}, "invalid_input", "temporal_overlap",
         "MEDIA_WORKER_UPSCALE_BATCH_FRAMES"),
    ],
)  # fmt: skip
def test_limits_and_unreachable_targets_fail_with_the_field(
    worker, tmp_path, monkeypatch, fields, env, code, field, fragment
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    src = make_clip(tmp_path / "c.mp4", frames=8)
    # Runners read their settings when they start: a job under settings of its own
    # runs in a worker of its own, whose runner stops before the next test.
    with handler.Worker().installed() if env else contextlib.nullcontext():
        result = handler.handler(_job("up-bad", src, "video/mp4", **fields))
    assert result["error_code"] == code, result
    assert result["details"][0]["field"] == field
    assert fragment in result["error"]
    assert not worker.exists() or not any(worker.rglob("*.mp4"))


def test_audio_only_input_has_no_video_stream(worker, tmp_path):
    import av

    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    result = handler.handler(_job("up-wav", wav, "audio/wav"))
    assert result["error_code"] == "unsupported_media"
    assert "no video stream" in result["error"]


HOSTILE = [
    ("switch.h264", "video/h264", hostile.resolution_switch, "unsupported_media",
     "frame 5 is 1920x1088, but the video starts at 64x48"),
    ("cut.mp4", "video/mp4", hostile.cut_mp4, "unsupported_media", "no frame could be decoded"),
    ("bomb.png", "image/png", hostile.png_bomb, "invalid_input", "png image of 16000x16000"),
    ("lie.png", "image/png", lambda p: hostile.png_claiming(p, 30_000, 30_000), "invalid_input",
     "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "mime", "make", "code", "fragment"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])  # fmt: skip
def test_hostile_inputs_fail_naming_the_field_and_leave_nothing(
    worker, tmp_path, monkeypatch, name, mime, make, code, fragment
):
    # issue 20: these were runner_crashed (a ValueError from np.stack; a
    # FileNotFoundError naming the scratch's partial file), a 2 GB decode, and
    # "0x0 is too small to restore" without a field.
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(scratch))
    result = handler.handler(_job(f"hostile-{name}", make(tmp_path / name), mime))
    assert result["error_code"] == code, result
    assert result["details"][0]["field"] == "video"
    assert fragment in result["error"]
    assert "partial" not in result["error"] and str(tmp_path) not in result["error"]
    assert list(scratch.iterdir()) == [], "the job's scratch dir was left"
    assert not worker.exists() or not any(worker.rglob("*.*")), "something was published"


def _runner_hwm_kb() -> int:
    pid = handler.current().host.live["upscale"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
def compact_worker(world, worker, monkeypatch) -> Path:
    """The worker serving the Compact model from its .safetensors file: a worker of
    its own, whose environments fetch these weights and whose runner loads them."""
    monkeypatch.setenv("MEDIA_WORKER_UPSCALE_REPO", COMPACT_REPO)
    monkeypatch.setenv("MEDIA_WORKER_UPSCALE_REVISION", world["compact_revision"])
    monkeypatch.setenv("MEDIA_WORKER_UPSCALE_FILE", COMPACT)
    with handler.Worker().installed():
        yield worker


def test_runner_peak_memory_stays_flat_as_the_clip_gets_ten_times_longer(compact_worker, tmp_path):
    # 96x64 -> 384x256: 0.3 MB per output frame, so holding the long clip's 480
    # frames would add ~140 MB (~30%) to the runner's peak; streaming adds nothing.
    # The short clip is longer than x264's 40-frame lookahead, a bounded buffer
    # that both clips fill.
    short = make_clip(tmp_path / "short.mp4", frames=48, width=96, height=64, fps=24)
    long = make_clip(tmp_path / "long.mp4", frames=480, width=96, height=64, fps=24)
    first = handler.handler(_job("mem-short", short, "video/mp4", batch_size=4))
    assert "error" not in first, first
    after_short = _runner_hwm_kb()
    second = handler.handler(_job("mem-long", long, "video/mp4", batch_size=4))
    assert "error" not in second, second
    assert second["media"]["frames"] == 480
    after_long = _runner_hwm_kb()
    assert (after_long - after_short) / after_short < 0.10, (after_short, after_long)


def test_job_killed_mid_encode_publishes_nothing(compact_worker, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("MEDIA_WORKER_SCRATCH_DIR", str(scratch))
    src = make_clip(tmp_path / "long.mp4", frames=120, width=160, height=120, fps=30)
    handler.handler(_job("warm", make_clip(tmp_path / "w.mp4", frames=2), "video/mp4"))
    killed = threading.Event()

    def kill_when_encoding() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            partial = [p for p in scratch.rglob(".tmp-restored-*.mp4") if p.stat().st_size]
            if partial:
                os.kill(handler.current().host.live["upscale"], signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_when_encoding)
    watcher.start()
    result = handler.handler(_job("killed", src, "video/mp4", batch_size=2))
    watcher.join()
    assert killed.is_set()
    assert result["error_code"] == "runner_crashed", result
    store = compact_worker
    published = [p for p in store.rglob("*") if p.is_file()] if store.exists() else []
    assert not [p for p in published if "jobs/killed" in p.as_posix()], published
    assert not list(scratch.rglob("restored.mp4"))


def test_gpu_bench_upscale_rows_run_on_the_cpu_with_the_profile_interpreter(world):
    out = subprocess.run(
        [world["built_python"], "bench/gpu.py", "--device", "cpu", "--small",
         "--only", "upscale"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("upscale")]
    # The runner's row beside the model alone, both at the small output size.
    assert [r.split("|")[1].split()[-1] for r in rows] == ["worker", "raw"], out.stdout
    assert all("128x96" in r and "failed" not in r for r in rows), out.stdout


def test_restore_bench_runs_small(world):
    from tests.test_bench import last_ratio, run_bench

    lines = run_bench(
        ["restore.py", "--heights", "270", "--frames", "2", "--upscale-frames", "1"],
        python=world["built_python"],
    )
    assert any(line.startswith("270p identity pipeline") for line in lines), lines
    last_ratio(lines, "pipeline_overhead")


def test_restore_bench_without_torch_says_to_use_ensure():
    """From the repo's own venv (no torch), as a new user first runs it."""
    done = subprocess.run(
        [sys.executable, "bench/restore.py"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "torch" in done.stderr and "hint: add --ensure" in done.stderr
    assert "Traceback" not in done.stderr
