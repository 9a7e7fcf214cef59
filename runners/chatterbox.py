"""Chatterbox (Resemble AI, MIT): zero-shot cloning, the default ``clone`` model.

Reads the English model (``ChatterboxTTS``) from a snapshot of
``ResembleAI/chatterbox``. Without ``reference_audio`` or ``voice`` it speaks with
the model's built-in voice (``conds.pt``). Knobs: ``exaggeration``, ``cfg_weight``,
``temperature``, ``seed``. The library watermarks every output with Resemble AI's
Perth implicit watermark; this runner keeps it (docs/tasks/clone.md).

``check_job`` runs in the handler (no torch); ``ChatterboxRunner`` runs in the
``chatterbox`` profile's environment and imports torch and chatterbox in ``setup()``.
"""

from __future__ import annotations

from typing import Any

import config
from errors import InvalidInput
from runtime.device import torch_device
from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

REPO = "ResembleAI/chatterbox"
LANGUAGES = ("en",)  # the English model; the multilingual one is not wired yet
# chatterbox.tts: the speaker conditioning reads 10 s at 24 kHz (DEC_COND_LEN) and
# 6 s at 16 kHz for the speech-token prompt (ENC_COND_LEN); more is never used.
REFERENCE = {"sample_rate": 24_000, "min_s": 2.0, "max_s": 10.0}  # a ReferenceSpec's
# T3 stops after 1000 speech tokens (25 tokens/s: 40 s); a sentence of up to 300
# characters stays well inside that.
MAX_CHARS_PER_CALL = 300
DEFAULTS = {"exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8}


def check_job(job: Any) -> None:
    """Pre-flight in the handler: a language this model speaks."""
    if job.language is not None and job.language not in LANGUAGES:
        raise InvalidInput(
            f"language: chatterbox speaks {', '.join(LANGUAGES)} here, not {job.language!r}",
            field="language",
        )


class ChatterboxRunner(Runner):
    """Loads ChatterboxTTS once; caches each reference's conditionals by its sha256."""

    def setup(self, weights: dict[str, str]) -> None:
        import torch
        from chatterbox.tts import ChatterboxTTS

        from media.cloning import ConditioningCache
        from media.reference_audio import ReferenceSpec

        self._reference = ReferenceSpec("chatterbox", **REFERENCE)
        device = torch_device()
        self._torch = torch
        self._model = ChatterboxTTS.from_local(weights[REPO], device)
        self._builtin = self._model.conds  # None when the snapshot has no conds.pt
        self._cache: ConditioningCache[Any] = ConditioningCache(config.VOICES_CACHE_ITEMS.get())

    def _conditionals(self, job: dict[str, Any], ctx: RunContext) -> Any:
        if "reference_audio" not in ctx.inputs:
            if self._builtin is None:
                raise InvalidInput(
                    "reference_audio: this chatterbox snapshot has no built-in voice; send "
                    "reference_audio or voice",
                    field="reference_audio",
                )
            return self._builtin

        from media.cloning import prepared_reference, reference_key

        def make() -> Any:
            ref = prepared_reference(ctx, self._reference, ctx.scratch / "reference.wav")
            self._model.prepare_conditionals(str(ref.path), exaggeration=DEFAULTS["exaggeration"])
            ctx.progress(f"conditioned on {ref.duration_s:.1f} s of reference", None)
            return self._model.conds

        return self._cache.get_or_make(reference_key(ctx), make)

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        from media.cloning import speak_by_sentence

        conds = self._conditionals(job, ctx)
        knobs = {k: job[k] if job.get(k) is not None else v for k, v in DEFAULTS.items()}
        if job.get("seed") is not None:
            self._torch.manual_seed(job["seed"])

        def synthesize(n: int, piece: str) -> Any:
            self._model.conds = conds
            return self._model.generate(piece, **knobs).squeeze(0).cpu().numpy()

        return speak_by_sentence(
            job,
            ctx,
            rate=self._model.sr,
            max_chars_per_call=MAX_CHARS_PER_CALL,
            synthesize=synthesize,
        )


SPECS = (
    RunnerSpec(
        "clone",
        "chatterbox",
        "runners.chatterbox:ChatterboxRunner",
        profile="chatterbox",
        check=check_job,
        knobs=("exaggeration", "cfg_weight", "temperature", "language", "seed"),
        # Declared, not measured on a GPU yet: the 0.5 B-parameter T3 model, S3Gen and
        # the voice encoder in fp32 with activations, plus the CUDA context; bench/gpu.py
        # prints the peak to replace it with.
        vram_mb=6144,
        # MIT weights; f5tts is never a default (its weights are CC-BY-NC).
        default="always",
    ),
)
