"""Kokoro: voice parsing and the default model (fast); the real library on tiny weights (slow).

The slow tier builds the ``kokoro`` profile with the real bootstrapper (torch
from the wheels already on this machine, everything else from PyPI through uv's
cache), with the spaCy pipeline artifact replaced by a stand-in this module
builds (a real spaCy pipeline, packaged as ``en_core_web_sm`` 3.8.0) and served
from loopback through ``MEDIA_WORKER_ARTIFACT_OVERRIDES``. The weights are a
tiny checkpoint in Kokoro's own format (tests/fixtures/kokoro.py), published on
the local hub under the profile's pinned commit. Jobs then run through the
handler and a real runner process.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysubs2
import pytest
import requests
import soundfile

import bootstrap
import handler
from bootstrap._build import check_cuda, uv_binary
from errors import BootstrapFailed, InvalidInput
from models import jobs, registry
from models.profiles import KOKORO
from runners import kokoro
from runtime.machine import CPU, Machine
from tests.fixtures.files import make_wheel, serve_directory
from tests.test_handler import _free_port, _local_file, _serve_api

ROOT = Path(__file__).resolve().parents[2]


# --- fast: pure decisions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [("af_heart", 1.0)]),
        ("af_bella", [("af_bella", 1.0)]),
        ("af_bella:0.7,af_sky:0.3", [("af_bella", 0.7), ("af_sky", 0.3)]),
        ("af_bella:3, af_sky:1", [("af_bella", 0.75), ("af_sky", 0.25)]),
        ("af_bella,af_sky", [("af_bella", 0.5), ("af_sky", 0.5)]),
        ("bm_george", [("bm_george", 1.0)]),
        # Kokoro-FastAPI's blends and OpenAI's names read as this worker's own forms
        ("af_bella(7)+af_sky(3)", [("af_bella", 0.7), ("af_sky", 0.3)]),
        ("af_bella+af_sky", [("af_bella", 0.5), ("af_sky", 0.5)]),
        ("nova", [("af_nova", 1.0)]),
        ("alloy(1)+nova(3)", [("af_alloy", 0.25), ("af_nova", 0.75)]),
    ],
)
def test_parse_voice(spec, expected):
    got = kokoro.parse_voice(spec)
    assert [n for n, _ in got] == [n for n, _ in expected]
    assert [round(w, 6) for _, w in got] == [round(w, 6) for _, w in expected]


def test_an_openai_speech_body_is_a_kokoro_tts_job():
    body = {"task": "tts", "model": "kokoro", "input": "Hello there.", "voice": "nova",
            "response_format": "opus", "return_timestamps": True}  # fmt: skip
    job = jobs.parse_job(body)
    assert (job.text, job.format, job.timestamps, job.voice) == (
        "Hello there.",
        "opus",
        True,
        "nova",
    )
    assert kokoro.parse_voice(job.voice) == [("af_nova", 1.0)]
    dumped = job.model_dump(mode="json")  # what the runner reads: this worker's names
    assert dumped["text"] == "Hello there." and "input" not in dumped


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("af_nobody", "unknown Kokoro voice 'af_nobody' (available: af_alloy, af_aoede"),
        ("jf_alpha", "unknown Kokoro voice 'jf_alpha'"),  # Japanese: not served
        ("af_bella:0", "weight 0"),
        ("af_bella:-1", "not a voice name or name:weight"),
        ("af_bella;af_sky", "not a voice name or name:weight"),
        ("af_bella,af_bella", "named twice"),
        ("af_bella,bm_george", "one language"),
        ("coral", "OpenAI's 'coral' has no Kokoro voice; Kokoro has alloy, echo, fable, nova"),
        ("af_bella(0)+af_sky", "weight 0"),
        ("af_bella+", "not a voice name or name:weight"),
    ],
)
def test_bad_voices_are_invalid_input_naming_the_field(spec, fragment):
    with pytest.raises(InvalidInput, match=r"^voice: ") as info:
        kokoro.parse_voice(spec)
    assert fragment in info.value.message
    assert info.value.field == "voice"


@pytest.mark.parametrize(
    ("setting", "gpu", "expected"),
    [
        ("", True, "kokoro"),
        ("", False, "piper"),
        ("piper", True, "piper"),
        ("kokoro", False, "kokoro"),
    ],
)
def test_default_tts_choice(setting, gpu, expected):
    facts = Machine(gpu="NVIDIA L4", gpu_count=1) if gpu else CPU
    assert registry.choose_default("tts", registry.RUNNERS, setting, facts) == expected


def _job(job_id: str, **fields) -> dict:
    return {"id": job_id, "input": {"task": "tts", "model": "kokoro", "text": "Hi.", **fields}}


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"voice": "af_nobody"}, "voice", "unknown Kokoro voice"),
        ({"voice": "ef_dora", "timestamps": True}, "timestamps", "English voices only"),
        ({"text": "x" * 101}, "text", "101 characters is more than this worker takes"),
    ],
)
def test_bad_kokoro_jobs_fail_before_any_model_loads(monkeypatch, fields, field, fragment):
    monkeypatch.setenv("MEDIA_WORKER_MAX_TEXT_CHARS", "100")
    with handler.Worker().installed() as worker:
        result = handler.handler(_job("k-bad", **fields))
        assert "kokoro" not in worker.host.live  # decided before any runner started
    assert result["error_code"] == "invalid_input", result
    assert result["details"][0]["field"] == field
    assert fragment in result["error"]


# --- slow: the real library ---------------------------------------------------------


def _spacy_stand_in(work: Path) -> Path:
    """A real spaCy pipeline (tok2vec + tagger, what misaki enables), as the wheel
    ``en_core_web_sm-3.8.0-py3-none-any.whl``: made with ``spacy package`` in a
    throwaway venv (spaCy from uv's cache or PyPI), zipped into a wheel by hand."""
    uv = uv_binary()
    venv = work / "spacy-venv"
    run = {"check": True, "capture_output": True, "timeout": 600}
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], **run)
    python = str(venv / "bin" / "python")
    spacy_pin = next(r for r in KOKORO.requirements if r.startswith("spacy=="))
    subprocess.run([uv, "pip", "install", "-q", "--python", python, spacy_pin], **run)
    script = (
        "import spacy, sys\n"
        "nlp = spacy.blank('en'); nlp.add_pipe('tok2vec'); tagger = nlp.add_pipe('tagger')\n"
        "for t in ('NN','NNS','NNP','VB','VBD','VBZ','DT','JJ','IN','PRP','RB','CC','.',','):\n"
        "    tagger.add_label(t)\n"
        "nlp.initialize(); nlp.meta.update({'name': 'core_web_sm', 'version': '3.8.0'})\n"
        "nlp.to_disk(sys.argv[1])\n"
    )
    subprocess.run([python, "-c", script, str(work / "pipeline")], **run)
    (work / "pkg").mkdir()
    subprocess.run(
        [
            python,
            "-m",
            "spacy",
            "package",
            str(work / "pipeline"),
            str(work / "pkg"),
            "--build",
            "none",
        ],
        **run,
    )
    src = work / "pkg" / "en_core_web_sm-3.8.0"
    files = {
        p.relative_to(src).as_posix(): p.read_bytes()
        for p in (src / "en_core_web_sm").rglob("*")
        if p.is_file()
    }
    files["en_core_web_sm/meta.json"] = (src / "meta.json").read_bytes()  # setup.py copies it
    return make_wheel(work, "en_core_web_sm", "3.8.0", files, requires=("spacy>=3.8.0,<3.9.0",))


@pytest.fixture(scope="module")
def kokoro_volume(tmp_path_factory, hub_server):
    """The kokoro profile built and its tiny weights on the local hub; yields the env vars."""
    work = tmp_path_factory.mktemp("kokoro")
    home, envs = work / "home", work / "envs"
    wheel = _spacy_stand_in(work)
    env = {
        "MEDIA_WORKER_HOME": str(home),
        "MEDIA_WORKER_ENVS_DIR": str(envs),
        # torch from this machine's wheels (+cpu), everything else from PyPI
        "MEDIA_WORKER_EXTRA_INDEX_URLS": "https://pypi.org/simple",
        "UV_FIND_LINKS": "/opt/wheels",
        "HF_ENDPOINT": hub_server.endpoint,
    }
    mp = pytest.MonkeyPatch()
    try:
        (work / "served").mkdir()
        with serve_directory(work / "served") as srv:
            url, sha = srv.publish(wheel)
            env["MEDIA_WORKER_ARTIFACT_OVERRIDES"] = f"{wheel.name}={url}#sha256={sha}"
            for name, value in env.items():
                mp.setenv(name, value)
            built = bootstrap.ensure(dataclasses.replace(KOKORO, weights=()))
        assert built.source == "built"
        weights = work / "weights"
        subprocess.run(
            [str(built.python), "-m", "tests.fixtures.kokoro", str(weights), "--size", "tiny"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=600,
        )
        files = {
            p.relative_to(weights).as_posix(): p.read_bytes()
            for p in weights.rglob("*")
            if p.is_file()
        }
        (pin,) = KOKORO.weights
        hub_server.add_repo(pin.repo_id, files, commit=pin.revision)
    finally:
        mp.undo()
    yield {**env, "built_python": str(built.python), "weights_dir": str(weights)}


@pytest.fixture
def kokoro_env(kokoro_volume, monkeypatch):
    for name, value in kokoro_volume.items():
        if name.isupper():  # the env vars; not built_python or weights_dir
            monkeypatch.setenv(name, value)
    with handler.Worker().installed():
        yield kokoro_volume


def _audio(output: dict) -> tuple[np.ndarray, int]:
    return soundfile.read(_local_file(output), dtype="float32")


LONG_SENTENCE = (
    "When the worker receives a very long sentence, full of clauses, asides and lists "
    "of things, such as apples, pears, plums, cherries, grapes, lemons, limes, melons, "
    "figs, dates, peaches, apricots, oranges and bananas, it must cut the sentence at "
    "its commas, speak every piece in order, and join the pieces without a click, "
    "because a listener would hear the seam, and because the model itself cannot "
    "read more than five hundred and ten phonemes at once, whatever the text says."
)


@pytest.mark.slow
def test_plain_jobs_are_24khz_deterministic_with_a_seed_and_grow_with_text(kokoro_env):
    first = handler.handler(_job("k1", text="Hello there.", seed=7))
    assert "error" not in first, first
    again = handler.handler(_job("k2", text="Hello there.", seed=7))
    longer = handler.handler(_job("k3", text="Hello there. How are you today, my friend?", seed=7))
    audio1, rate = _audio(first["outputs"][0])
    audio2, _ = _audio(again["outputs"][0])
    audio3, _ = _audio(longer["outputs"][0])
    assert rate == 24_000 and first["model"] == "kokoro"
    assert np.array_equal(audio1, audio2)
    assert len(audio3) > 1.5 * len(audio1)
    assert first["cold"] is True and again["cold"] is False
    env_manifest = json.loads(
        next(Path(kokoro_env["MEDIA_WORKER_HOME"], "envs").glob("kokoro-*.json")).read_text()
    )
    (artifact,) = env_manifest["artifacts"]
    assert artifact["file"] == "en_core_web_sm-3.8.0-py3-none-any.whl"
    assert artifact["url"] == KOKORO.artifacts[0].url  # the pinned release, fetched from
    assert artifact["fetched_from"].startswith("http://127.0.0.1:")  # the operator's mirror


@pytest.mark.slow
def test_streamed_blend_with_timestamps_splits_long_text_and_publishes_captions(kokoro_env):
    text = f"{LONG_SENTENCE} Short one."
    items = list(
        handler.stream_handler(
            {
                "id": "k-stream",
                "input": {
                    "task": "tts",
                    "model": "kokoro",
                    "text": text,
                    "voice": "af_bella:0.7,af_sky:0.3",
                    "stream": True,
                    "timestamps": True,
                    "sample_rate": 16_000,
                    "seed": 1,
                },
            }
        )
    )
    *chunks, final = items
    assert final.get("type") == "result", final
    audio, rate = _audio(final["outputs"][0])
    duration = len(audio) / rate
    assert rate == 16_000
    # the long sentence alone exceeds 510 phonemes: at least 2 pieces, plus the short one
    assert len(chunks) >= 3
    assert all(len(c["audio_base64"]) < 1_000_000 for c in chunks)
    decoded = [
        soundfile.read(io.BytesIO(base64.b64decode(c["audio_base64"])), dtype="float32")[0]
        for c in chunks
    ]
    assert sum(len(d) for d in decoded) == len(audio)
    words = final["words"]
    assert [w["word"].strip(",.") for w in words][:4] == ["When", "the", "worker", "receives"]
    assert words[-1]["word"] == "one."
    starts = [w["start_s"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start_s"] <= w["end_s"] <= duration + 1e-3 for w in words)
    kinds = {o["content_type"]: o for o in final["outputs"]}
    srt = _local_file(kinds["application/x-subrip"]).read_text()
    vtt = _local_file(kinds["text/vtt"]).read_text()
    assert "When the worker" in srt and vtt.startswith("WEBVTT")
    for fmt in ("application/x-subrip", "text/vtt", "text/x-ssa"):  # all three read back
        events = pysubs2.load(str(_local_file(kinds[fmt])))
        spoken = [w.strip(",.") for e in events for w in e.plaintext.split()]
        assert spoken == [w["word"].strip(",.") for w in words]
    chunk_words = [w for c in chunks for w in c.get("words", [])]
    assert chunk_words == words


@pytest.mark.slow
def test_rp_serve_api_streams_kokoro(kokoro_env, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_WEBHOOK")}
    env.update(MEDIA_WORKER_STREAMING="1", MEDIA_WORKER_OUTPUT_DIR=str(tmp_path / "out"))
    port, log = _free_port(), tmp_path / "server.log"
    server = _serve_api(env, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        body = {"input": {"task": "tts", "model": "kokoro", "text": "One. Two.", "stream": True}}
        run = requests.post(f"{base}/run", json=body, timeout=30).json()
        stream = requests.post(f"{base}/stream/{run['id']}", timeout=600).json()
    finally:
        server.terminate()
        server.wait(timeout=60)
    outputs = [item["output"] for item in stream["stream"]]
    *chunks, final = outputs
    assert final["type"] == "result" and final["model"] == "kokoro", outputs[-1]
    assert [c["index"] for c in chunks] == list(range(len(chunks))) and len(chunks) >= 2
    assert {c["sample_rate"] for c in chunks} == {24_000}


@pytest.mark.slow
def test_gpu_bench_cpu_path_runs_with_the_profile_interpreter(kokoro_volume):
    out = subprocess.run(
        [
            kokoro_volume["built_python"],
            "bench/gpu.py",
            "--device",
            "cpu",
            "--small",
            "--only",
            "kokoro",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout.splitlines()
    assert table[0].startswith("device=cpu")
    rows = [line for line in table if line.startswith("kokoro")]
    assert len(rows) >= 2 and not any("failed" in r for r in rows)  # streams rows too


@pytest.mark.slow
def test_g2p_bench_runs_with_the_profile_interpreter(kokoro_volume):
    """bench/g2p.py with the built kokoro environment (its stand-in spaCy pipeline)."""
    from tests.test_bench import last_ratio, run_bench

    lines = run_bench(["g2p.py", "--runs", "1"], python=kokoro_volume["built_python"])
    assert any(line.startswith("KPipeline(a, model=False): spaCy loads") for line in lines)
    last_ratio(lines, "g2p_sentence_ms")


@pytest.mark.slow
def test_voices_bench_runs_kokoro_with_the_profile_interpreter(kokoro_volume):
    """bench/voices.py's Kokoro rows (raw KPipeline vs the worker), on the tiny weights."""
    from tests.test_bench import last_ratio, run_bench

    lines = run_bench(
        [
            *("voices.py", "--runs", "1", "--no-piper"),  # Piper: tests/test_bench.py
            *("--kokoro-python", kokoro_volume["built_python"]),
            *("--kokoro-weights", kokoro_volume["weights_dir"]),
        ],
        env={k: v for k, v in kokoro_volume.items() if k.isupper()},
    )
    rows = [line.split() for line in lines if line.startswith(("piper", "kokoro"))]
    assert [(r[0], r[1]) for r in rows] == [
        ("kokoro", "first_ms"),
        ("kokoro", "total_ms"),
        ("kokoro", "rtf_x"),
    ], lines
    last_ratio(lines, "worst_overhead_ratio")


@pytest.mark.slow
def test_cuda_profile_build_fails_in_words_when_a_visible_driver_meets_cpu_torch(
    kokoro_volume, gpu_machine
):
    # A machine with a visible GPU (nvidia-smi answers), and a CPU-only torch built.
    with pytest.raises(BootstrapFailed, match=r"CPU-only build.*driver \(580\.159\.04\)"):
        check_cuda(KOKORO, Path(kokoro_volume["built_python"]))


@pytest.mark.slow
def test_kokoro_fastapi_blends_speak_exactly_as_this_workers_own_form(kokoro_env):
    """Same blend, same seed: the same samples, so the same voice tensor was used;
    OpenAI's speech body (input, response_format, speed 4.0) reaches Kokoro too."""
    spoken = {}
    for voice in ("af_bella:0.7,af_sky:0.3", "af_bella(7)+af_sky(3)", "af_bella:0.5,af_sky:0.5",
                  "af_bella+af_sky"):  # fmt: skip
        result = handler.handler(_job(f"k-blend-{len(spoken)}", voice=voice, seed=3))
        assert "error" not in result, result
        spoken[voice] = result["outputs"][0]["sha256"]
    assert spoken["af_bella:0.7,af_sky:0.3"] == spoken["af_bella(7)+af_sky(3)"]
    assert spoken["af_bella:0.5,af_sky:0.5"] == spoken["af_bella+af_sky"]
    assert spoken["af_bella:0.7,af_sky:0.3"] != spoken["af_bella+af_sky"]

    # The test volume has six voices, not af_nova: OpenAI's names are in test_parse_voice.
    body = {"input": "Hello there.", "voice": "af_sky", "response_format": "aac", "speed": 4.0}
    job = {"task": "tts", "model": "kokoro", **body}
    result = handler.handler({"id": "k-openai", "input": job})
    assert "error" not in result, result
    assert result["outputs"][0]["content_type"] == "audio/aac"
