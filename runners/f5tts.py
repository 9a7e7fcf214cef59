"""F5-TTS (code MIT, weights CC-BY-NC-4.0): zero-shot cloning, opt-in only.

The weights forbid commercial use, so the model answers ``model_unavailable`` unless
the operator sets ``MEDIA_WORKER_ALLOW_NONCOMMERCIAL=1``; it is never a default.
Reads ``F5TTS_v1_Base`` from a snapshot of ``SWivid/F5-TTS`` and the Vocos vocoder
from a snapshot of ``charactr/vocos-mel-24khz`` on the volume (``vocoder_local_path``:
the library would otherwise download it at load). Knobs: ``nfe_step``, ``speed``,
``seed``.

``reference_text`` is required: with an empty one the library transcribes the
reference with Whisper large-v3-turbo, a 1.6 GB download nobody asked for.

The reference reaches F5 as samples, never as a file: ``F5TTS.infer`` reads its
``ref_file`` with pydub (an ``ffmpeg`` executable) and ``torchaudio.load`` (torchcodec,
which needs FFmpeg's shared libraries), neither of which a worker has. The runner
decodes the clip with PyAV (media/reference_audio.py) and calls the function
``infer`` ends in, ``f5_tts.infer.utils_infer.infer_batch_process``, with
``(samples, rate)``; tests/runners/test_f5tts.py pins that entry point.

``check_job`` runs in the handler (no torch); ``F5Runner`` runs in the ``f5tts``
profile's environment and imports torch and f5_tts in ``setup()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import config
from errors import InvalidInput, ModelUnavailable
from runtime.device import torch_device
from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

REPO = "SWivid/F5-TTS"
VOCODER_REPO = "charactr/vocos-mel-24khz"
MODEL = "F5TTS_v1_Base"
CHECKPOINT = f"{MODEL}/model_1250000.safetensors"
VOCAB = f"{MODEL}/vocab.txt"
LICENSE = "CC-BY-NC-4.0"
# F5 reads its reference at 24 kHz and clips a longer one to about 12 s itself
# (preprocess_ref_audio_text); a cut clip would no longer match reference_text,
# so a longer one is refused instead.
REFERENCE = {"sample_rate": 24_000, "min_s": 2.0, "max_s": 12.0, "cut_long": False}
DEFAULT_NFE_STEP = 32
# One infer() call per sentence, so a streaming job gets a chunk per sentence; F5
# batches a longer text itself, so this only bounds how long a first chunk waits.
MAX_CHARS_PER_CALL = 250


def check_job(job: Any, *, voice_has_text: bool | None = None) -> None:
    """Pre-flight in the handler: the operator opted in, the transcript is there.

    Raises:
        ModelUnavailable: ``MEDIA_WORKER_ALLOW_NONCOMMERCIAL`` is not set (names the license).
        InvalidInput: no ``reference_text`` (and no saved voice to bring one), or no
            reference at all.
    """
    if not config.ALLOW_NONCOMMERCIAL.get():
        raise ModelUnavailable(
            f"model 'f5tts' is off: its weights are licensed {LICENSE} (no commercial use); "
            f"the operator may enable it with {config.ALLOW_NONCOMMERCIAL.name}=1",
            field="model",
        )
    if job.reference_audio is None and job.voice is None:
        raise InvalidInput(
            "reference_audio: f5tts has no built-in voice; send reference_audio or voice",
            field="reference_audio",
        )
    if job.reference_text is None and job.voice is None:
        raise InvalidInput(
            "reference_text: f5tts needs the transcript of reference_audio (without it the "
            "library would download and run a 1.6 GB Whisper model to guess it)",
            field="reference_text",
        )


def reference_text(text: str) -> str:
    """``text`` ending the way F5 expects its transcript to end.

    F5 joins the transcript and the text to speak into one character sequence, and
    its own reference step (``preprocess_ref_audio_text``) ends the transcript with a
    sentence stop and a space, so the two never run together; this does the same.
    """
    text = text.rstrip()
    if text.endswith("。"):
        return text
    return f"{text} " if text.endswith(".") else f"{text}. "


class F5Runner(Runner):
    """Loads F5TTS once; caches each reference's decoded samples by the file's sha256."""

    def setup(self, weights: dict[str, str]) -> None:
        import soundfile
        import torch
        from f5_tts.api import F5TTS
        from f5_tts.infer.utils_infer import infer_batch_process
        from f5_tts.model.utils import seed_everything

        from media.cloning import ConditioningCache
        from media.reference_audio import ReferenceSpec

        self._reference_spec = ReferenceSpec("f5tts", **REFERENCE)
        snapshot = Path(weights[REPO])
        self._tts = F5TTS(
            model=MODEL,
            ckpt_file=str(snapshot / CHECKPOINT),
            vocab_file=str(snapshot / VOCAB),
            vocoder_local_path=weights[VOCODER_REPO],
            device=torch_device(),
        )
        self._infer = infer_batch_process
        self._seed = seed_everything
        self._torch, self._soundfile = torch, soundfile
        self._cache: ConditioningCache[Any] = ConditioningCache(config.VOICES_CACHE_ITEMS.get())

    def _reference(self, ctx: RunContext) -> Any:
        from media.cloning import prepared_reference, reference_key

        def make() -> Any:
            ref = prepared_reference(ctx, self._reference_spec, ctx.scratch / "reference.wav")
            samples, _ = self._soundfile.read(ref.path, dtype="float32")
            ctx.progress(f"reference of {ref.duration_s:.1f} s decoded", None)
            return self._torch.from_numpy(samples).unsqueeze(0)  # (channels, samples)

        return self._cache.get_or_make(reference_key(ctx), make)

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        from media.cloning import speak_by_sentence

        if not job.get("reference_text"):
            # a saved voice without a transcript reaches here; never let F5 guess one
            raise InvalidInput(
                "reference_text: f5tts needs the transcript of the reference; this voice "
                "was saved without one, so send reference_text",
                field="reference_text",
            )
        samples = self._reference(ctx)
        ref_text = reference_text(job["reference_text"])
        tts = self._tts

        def synthesize(n: int, piece: str) -> Any:
            if job.get("seed") is not None:
                # a fixed job seed gives each sentence its own fixed seed, so the job is
                # reproducible as a whole (F5TTS.infer seeds each of its calls too)
                self._seed(job["seed"] + n - 1)
            wave, _, _ = next(
                self._infer(
                    (samples, REFERENCE["sample_rate"]),
                    ref_text,
                    [piece],
                    tts.ema_model,
                    tts.vocoder,
                    mel_spec_type=tts.mel_spec_type,
                    progress=None,
                    nfe_step=job.get("nfe_step") or DEFAULT_NFE_STEP,
                    speed=job.get("speed") or 1.0,
                    device=tts.device,
                )
            )
            return wave

        return speak_by_sentence(
            job,
            ctx,
            rate=tts.target_sample_rate,
            max_chars_per_call=MAX_CHARS_PER_CALL,
            synthesize=synthesize,
        )


SPECS = (
    RunnerSpec(
        "clone",
        "f5tts",
        "runners.f5tts:F5Runner",
        profile="f5tts",
        check=check_job,
        knobs=("nfe_step", "speed", "seed"),
        # Declared, not measured on a GPU yet: the 336 M-parameter DiT and the Vocos
        # vocoder in fp32 with activations, plus the CUDA context; bench/gpu.py prints
        # the peak to replace it with.
        vram_mb=3072,
    ),
)
