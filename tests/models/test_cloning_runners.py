"""The cloning runners' own logic: the conditioning cache, knobs and seeds, one model
call per sentence, the built-in voice, f5tts's prepared clips outliving a job.

Chatterbox and F5-TTS cannot be imported on this CPU machine (their torchaudio wheels
need CUDA torch; see README "Voice cloning"), so these tests give the runners a
recording stand-in in place of the loaded model and check what the runner asks of
it. They test this project's code around the library, not the library; the reference
step inside them is the real one (PyAV, soundfile).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from errors import InvalidInput
from models.runners import chatterbox, f5tts
from models.runners._cloning import ConditioningCache
from models.runners.base import RunContext
from tests.models.test_reference_audio import voice_like


class _Wav:
    def __init__(self, samples):
        self.samples = samples

    def squeeze(self, _):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.samples


class StandInChatterbox:
    """Records what ChatterboxRunner asks of a ChatterboxTTS."""

    sr = 24_000

    def __init__(self):
        self.conds = "builtin-conds"
        self.prepared: list[str] = []
        self.calls: list[tuple[str, object, dict]] = []

    def prepare_conditionals(self, path, exaggeration):
        audio, rate = soundfile.read(path)
        assert rate == 24_000 and audio.ndim == 1  # the reference step ran first
        self.prepared.append(path)
        self.conds = f"conds-{len(self.prepared)}"

    def generate(self, text, **knobs):
        self.calls.append((text, self.conds, knobs))
        return _Wav(np.full(2400, 0.1, np.float32))


class _Seeds:
    def __init__(self):
        self.seeds: list[int] = []

    def manual_seed(self, seed):
        self.seeds.append(seed)


def _ctx(tmp_path: Path, name: str, reference: Path | None = None, chunks=None) -> RunContext:
    scratch = tmp_path / name
    scratch.mkdir()
    sent = chunks if chunks is not None else []
    ctx = RunContext(
        name,
        scratch,
        lambda message, fraction: None,
        {"reference_audio": reference} if reference else {},
    )
    object.__setattr__(ctx, "emit_chunk", lambda path, **kw: sent.append(kw))
    return ctx


def _reference(tmp_path: Path, name: str, seconds: float = 3.0) -> Path:
    path = tmp_path / name
    soundfile.write(path, voice_like(seconds, 16_000), 16_000)
    return path


def _chatterbox_runner(max_items: int = 4):
    runner = chatterbox.ChatterboxRunner()
    runner._model = StandInChatterbox()
    runner._builtin = runner._model.conds
    runner._torch = _Seeds()
    runner._cache = ConditioningCache(max_items)
    return runner


def _job(**fields):
    return {"text": "First sentence. Second one!", "format": "wav", **fields}


def test_chatterbox_conditions_once_per_reference_and_reuses_it(tmp_path):
    runner = _chatterbox_runner()
    ref = _reference(tmp_path, "a.wav")
    copy = tmp_path / "same-bytes.wav"
    copy.write_bytes(ref.read_bytes())
    runner.run(_job(), _ctx(tmp_path, "j1", ref))
    runner.run(_job(), _ctx(tmp_path, "j2", copy))  # same sha256: a saved voice, say
    assert len(runner._model.prepared) == 1
    assert runner._cache.hits == 1 and runner._cache.misses == 1
    runner.run(_job(), _ctx(tmp_path, "j3", _reference(tmp_path, "b.wav", 4.0)))
    assert len(runner._model.prepared) == 2
    # every sentence is generated with the job's own speaker, never a leftover one
    assert [c[1] for c in runner._model.calls] == ["conds-1"] * 4 + ["conds-2"] * 2


def test_chatterbox_one_call_per_sentence_with_knobs_and_seed(tmp_path):
    runner = _chatterbox_runner()
    chunks: list[dict] = []
    outputs = runner.run(
        _job(exaggeration=0.9, seed=7, stream=True), _ctx(tmp_path, "j", chunks=chunks)
    )
    texts = [c[0] for c in runner._model.calls]
    assert texts == ["First sentence.", "Second one!"]
    assert all(
        c[2] == {"exaggeration": 0.9, "cfg_weight": 0.5, "temperature": 0.8}
        for c in runner._model.calls
    )
    assert runner._torch.seeds == [7]
    assert [c[1] for c in runner._model.calls] == ["builtin-conds"] * 2  # no reference
    assert len(chunks) == 2  # one streamed chunk per sentence
    audio, rate = soundfile.read(outputs[0].path)
    assert rate == 24_000 and len(audio) == 2 * 2400


def test_chatterbox_without_a_built_in_voice_asks_for_a_reference(tmp_path):
    runner = _chatterbox_runner()
    runner._builtin = None
    with pytest.raises(InvalidInput, match=r"reference_audio: .*no built-in voice"):
        runner.run(_job(), _ctx(tmp_path, "j"))


def test_chatterbox_cache_error_caches_nothing(tmp_path):
    runner = _chatterbox_runner()
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(48_000, np.float32), 24_000)
    for name in ("j1", "j2"):
        with pytest.raises(InvalidInput, match="silent"):
            runner.run(_job(), _ctx(tmp_path, name, silent))
    assert len(runner._cache) == 0 and runner._cache.misses == 2


class StandInF5:
    target_sample_rate = 24_000

    def __init__(self):
        self.calls: list[dict] = []

    def infer(self, **kw):
        assert Path(kw["ref_file"]).is_file()
        self.calls.append(kw)
        return np.full(1200, 0.1, np.float32), 24_000, None


def _f5_runner(tmp_path, max_items=4):
    runner = f5tts.F5Runner()
    runner._tts = StandInF5()
    runner._refs = tmp_path / "refs"
    runner._refs.mkdir()
    runner._cache = ConditioningCache(max_items, on_evict=lambda r: r.path.unlink())
    return runner


def test_f5_prepared_clip_outlives_the_job_and_leaves_with_the_cache(tmp_path):
    runner = _f5_runner(tmp_path, max_items=1)
    a, b = _reference(tmp_path, "a.wav"), _reference(tmp_path, "b.wav", 4.0)
    job = _job(reference_text="Hello.", seed=3, nfe_step=16, speed=1.2)
    runner.run(job, _ctx(tmp_path, "j1", a))
    runner.run(job, _ctx(tmp_path, "j2", a))
    calls = runner._tts.calls
    assert calls[0]["ref_file"] == calls[2]["ref_file"]  # the cached clip, reused
    assert [c["seed"] for c in calls] == [3, 4, 3, 4]  # per sentence, reproducible
    assert {(c["nfe_step"], c["speed"], c["ref_text"]) for c in calls} == {(16, 1.2, "Hello.")}
    assert [c["gen_text"] for c in calls[:2]] == ["First sentence.", "Second one!"]
    first_clip = Path(calls[0]["ref_file"])
    runner.run(job, _ctx(tmp_path, "j3", b))  # evicts a's clip
    assert not first_clip.exists() and len(list(runner._refs.iterdir())) == 1


def test_f5_refuses_a_saved_voice_without_transcript(tmp_path):
    runner = _f5_runner(tmp_path)
    with pytest.raises(InvalidInput, match=r"reference_text: .*saved without one"):
        runner.run(_job(reference_text=None), _ctx(tmp_path, "j", _reference(tmp_path, "a.wav")))
    assert runner._tts.calls == []


def test_f5_refuses_a_reference_longer_than_its_transcript_can_match(tmp_path):
    runner = _f5_runner(tmp_path)
    long = _reference(tmp_path, "long.wav", 20.0)
    with pytest.raises(InvalidInput, match="f5tts uses at most 12 s"):
        runner.run(_job(reference_text="Hi."), _ctx(tmp_path, "j", long))


def test_the_cache_is_bounded_and_least_recently_used_goes_first():
    evicted = []
    cache = ConditioningCache(2, on_evict=evicted.append)
    for key in ("a", "b", "a", "c"):
        cache.get_or_make(key, lambda k=key: k.upper())
    assert evicted == ["B"] and "a" in cache and "c" in cache and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 3)
    with pytest.raises(ValueError):
        ConditioningCache(0)


@pytest.mark.slow
def test_runner_modules_import_no_model_library():
    # the handler imports these modules for their pre-flight checks
    code = (
        "import sys, models.runners.chatterbox, models.runners.f5tts, models.registry; "
        "print(sorted({'torch', 'chatterbox', 'f5_tts', 'av', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
