"""Kokoro-82M (Apache-2.0): fast GPU speech, blended voices, word timestamps, streaming.

``check_job`` runs in the handler process (no torch): the voice (a name or a
weighted blend such as ``af_bella:0.7,af_sky:0.3``) is parsed and checked
against Kokoro's published voices before any model loads. ``KokoroRunner``
runs in the runner process with the ``kokoro`` profile's interpreter and
imports torch, kokoro and misaki there.

A voice name's first letter is its language, which picks misaki's G2P:
``a`` American English and ``b`` British English (misaki's lexicon + spaCy,
the pipeline installed at build time as a profile artifact), and ``e``
Spanish, ``f`` French, ``h`` Hindi, ``i`` Italian, ``p`` Brazilian Portuguese
(espeak-ng from the espeakng-loader wheel). Japanese and Mandarin are left out:
their G2P downloads dictionaries at run time. Only English gets timestamps
(Kokoro aligns misaki's English tokens; espeak gives no word boundaries).

Long text is cut by ``media.text.split_text`` at sentence, then clause
boundaries so each piece stays within Kokoro's 510 phoneme tokens, counted
with the same G2P that then speaks it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from errors import InvalidInput
from runtime.checks import check_text_length
from runtime.device import torch_device
from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

logger = logging.getLogger(__name__)

REPO_ID = "hexgrad/Kokoro-82M"
SAMPLE_RATE = 24_000
MAX_PHONEMES = 510  # Kokoro's context: 512 positions less the two boundary tokens
DEFAULT_VOICE = "af_heart"
# Voice-name prefix -> (misaki / KPipeline lang_code, language) for the languages
# whose G2P needs no run-time download.
LANGUAGES: dict[str, str] = {
    "a": "American English",
    "b": "British English",
    "e": "Spanish",
    "f": "French",
    "h": "Hindi",
    "i": "Italian",
    "p": "Brazilian Portuguese",
}
ALIGNED_LANGUAGES = frozenset("ab")
# The voices hexgrad/Kokoro-82M publishes (voices/<name>.pt) in those languages.
VOICES: tuple[str, ...] = (
    "af_alloy",
    "af_aoede",
    "af_bella",
    "af_heart",
    "af_jessica",
    "af_kore",
    "af_nicole",
    "af_nova",
    "af_river",
    "af_sarah",
    "af_sky",
    "am_adam",
    "am_echo",
    "am_eric",
    "am_fenrir",
    "am_liam",
    "am_michael",
    "am_onyx",
    "am_puck",
    "am_santa",
    "bf_alice",
    "bf_emma",
    "bf_isabella",
    "bf_lily",
    "bm_daniel",
    "bm_fable",
    "bm_george",
    "bm_lewis",
    "ef_dora",
    "em_alex",
    "em_santa",
    "ff_siwis",
    "hf_alpha",
    "hf_beta",
    "hm_omega",
    "hm_psi",
    "if_sara",
    "im_nicola",
    "pf_dora",
    "pm_alex",
    "pm_santa",
)
_BLEND_PART = re.compile(r"^\s*([a-z]{2}_[a-z]+)\s*(?::\s*([0-9]*\.?[0-9]+)\s*)?$")
# Kokoro-FastAPI's blend form: "af_bella+af_sky" or "af_bella(2)+af_sky(1)".
_PLUS_PART = re.compile(r"^\s*([a-z]{2}_[a-z]+|[a-z]+)\s*(?:\(\s*([0-9]*\.?[0-9]+)\s*\))?\s*$")
# OpenAI's speech voices that Kokoro publishes under the same name. The others
# (ash, ballad, coral, sage, shimmer, verse) have no Kokoro voice and are refused with
# the list, rather than mapped to a voice that does not sound like them.
OPENAI_VOICES = {
    "alloy": "af_alloy",
    "echo": "am_echo",
    "fable": "bm_fable",
    "nova": "af_nova",
    "onyx": "am_onyx",
}
_OPENAI_UNMATCHED = ("ash", "ballad", "coral", "sage", "shimmer", "verse")


def canonical_voice(spec: str) -> str:
    """``spec`` in this worker's blend form (``a:w,b:w``): OpenAI's voice names become
    Kokoro's (``alloy`` -> ``af_alloy``) and Kokoro-FastAPI's ``a(2)+b(1)`` becomes
    ``a:2,b:1``. Anything else is returned as it is, for :func:`parse_voice` to judge.

    Raises:
        InvalidInput: an OpenAI voice Kokoro has no counterpart for (field ``voice``).
    """
    if spec.strip() in _OPENAI_UNMATCHED:
        raise InvalidInput(
            f"voice: OpenAI's {spec.strip()!r} has no Kokoro voice; Kokoro has "
            f"{', '.join(OPENAI_VOICES)} under OpenAI's names, and these: {', '.join(VOICES)}",
            field="voice",
        )
    parts = spec.split("+") if "+" in spec else [spec]
    out = []
    for raw in parts:
        match = _PLUS_PART.match(raw) if "+" in spec or "(" in raw else None
        if match is None:
            out.append(OPENAI_VOICES.get(raw.strip(), raw))
            continue
        name = OPENAI_VOICES.get(match.group(1), match.group(1))
        out.append(f"{name}:{match.group(2)}" if match.group(2) else name)
    return ",".join(out)


def parse_voice(spec: str | None, known: tuple[str, ...] = VOICES) -> list[tuple[str, float]]:
    """``[(voice, weight), ...]`` with weights summing to 1, from a name or a blend.

    ``af_bella`` -> ``[("af_bella", 1.0)]``; ``af_bella:0.7,af_sky:0.3`` keeps the
    weights (normalised); ``af_bella,af_sky`` weighs them equally. Kokoro-FastAPI's
    ``af_bella(7)+af_sky(3)`` and OpenAI's names (``nova``) are read as well
    (:func:`canonical_voice`).

    Raises:
        InvalidInput: malformed, an unknown voice (the message lists the valid
            ones), a zero weight, a repeated voice, or voices of two languages
            (field ``voice``).
    """
    if spec is None:
        return [(DEFAULT_VOICE, 1.0)]
    parts: list[tuple[str, float]] = []
    for raw in canonical_voice(spec).split(","):
        match = _BLEND_PART.match(raw)
        if match is None:
            raise InvalidInput(
                f"voice: {raw.strip()!r} is not a voice name or name:weight "
                "(e.g. af_bella:0.7,af_sky:0.3)",
                field="voice",
            )
        name, weight = match.group(1), float(match.group(2) or 1.0)
        if name not in known:
            raise InvalidInput(
                f"voice: unknown Kokoro voice {name!r} (available: {', '.join(known)})",
                field="voice",
            )
        if weight <= 0:
            raise InvalidInput(f"voice: {name} has weight {weight:g}; use > 0", field="voice")
        if any(name == n for n, _ in parts):
            raise InvalidInput(f"voice: {name} is named twice in the blend", field="voice")
        parts.append((name, weight))
    languages = {n[0] for n, _ in parts}
    if len(languages) > 1:
        raise InvalidInput(
            f"voice: a blend must stay in one language; got {', '.join(sorted(languages))} "
            "(the first letter of a voice name is its language)",
            field="voice",
        )
    total = sum(w for _, w in parts)
    return [(n, w / total) for n, w in parts]


def check_job(job: Any) -> None:
    """Pre-flight check in the handler: text length, voice, timestamps language."""
    check_text_length(job.text)
    blend = parse_voice(job.voice)
    if job.timestamps and blend[0][0][0] not in ALIGNED_LANGUAGES:
        raise InvalidInput(
            f"timestamps: Kokoro gives word timings for English voices only "
            f"({blend[0][0]} is {LANGUAGES[blend[0][0][0]]})",
            field="timestamps",
        )


def _words(tokens: list[Any]) -> list[dict[str, Any]]:
    """Word timings from misaki tokens that Kokoro timed; punctuation joins its word."""
    words: list[dict[str, Any]] = []
    for token in tokens or ():
        if token.start_ts is None or token.end_ts is None:
            continue
        if not any(c.isalnum() for c in token.text):
            if words:
                words[-1]["word"] += token.text
            continue
        words.append({"word": token.text, "start_s": token.start_ts, "end_s": token.end_ts})
    return words


class KokoroRunner(Runner):
    """One KModel on the best device, one KPipeline (G2P) per language, voices cached."""

    def setup(self, weights: dict[str, str]) -> None:
        from kokoro import KModel

        root = Path(weights[REPO_ID])
        self.root = root
        self.device = torch_device()
        self.model = (
            KModel(
                repo_id=REPO_ID,
                config=str(root / "config.json"),
                model=str(root / "kokoro-v1_0.pth"),
            )
            .to(self.device)
            .eval()
        )
        self._pipelines: dict[str, Any] = {}
        self._packs: dict[str, Any] = {}
        # The default voice's G2P (misaki + spaCy) loads now, once per runner, and
        # makes its first call: loading spaCy's English pipeline took 6.5 s on this
        # project's busy 2-core machine, a warm sentence 6 ms. Loaded by the first
        # job instead, it held that job's first audio back by those seconds.
        self._pipeline(DEFAULT_VOICE[0]).g2p("Ready.")
        logger.info("kokoro loaded device=%s weights=%s", self.device, root)

    def _pipeline(self, lang: str) -> Any:
        if lang not in self._pipelines:
            from kokoro import KPipeline

            self._pipelines[lang] = KPipeline(lang_code=lang, repo_id=REPO_ID, model=self.model)
        return self._pipelines[lang]

    def _pack(self, spec: str | None) -> tuple[Any, str]:
        """The voice pack (a CPU float tensor) for a name or blend, and its language."""
        import torch

        installed = tuple(sorted(p.stem for p in (self.root / "voices").glob("*.pt")))
        blend = parse_voice(spec, tuple(v for v in VOICES if v in installed) or installed)
        key = ",".join(f"{n}:{w:.6f}" for n, w in blend)
        if key not in self._packs:
            packs = [
                torch.load(self.root / "voices" / f"{n}.pt", weights_only=True) * w
                for n, w in blend
            ]
            self._packs[key] = torch.stack(packs).sum(dim=0).float()
        return self._packs[key], blend[0][0][0]

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        import torch
        from kokoro import KPipeline

        from media.speech import SpeechAssembler
        from media.text import fit_sentence, sentences, split_text

        check_text_length(job["text"])
        pack, lang = self._pack(job.get("voice"))
        pipeline = self._pipeline(lang)
        english = lang in ALIGNED_LANGUAGES
        g2p_cache: dict[str, Any] = {}

        def phonemes(piece: str) -> Any:
            if piece not in g2p_cache:
                if english:
                    _, tokens = pipeline.g2p(piece)
                    g2p_cache[piece] = tokens
                else:
                    g2p_cache[piece] = pipeline.g2p(piece)[0]
            return g2p_cache[piece]

        def fits(piece: str) -> bool:
            found = phonemes(piece)
            ps = KPipeline.tokens_to_ps(found) if english else found
            return len(ps) <= MAX_PHONEMES

        if job.get("seed") is not None:
            torch.manual_seed(int(job["seed"]))  # the vocoder's noise source
        speech = SpeechAssembler.for_job(ctx, job, rate=SAMPLE_RATE)
        speed = float(job.get("speed", 1.0))
        spoken = 0

        def speak(piece: str) -> None:
            nonlocal spoken
            for result in pipeline.generate_from_tokens(
                phonemes(piece), voice=pack, speed=speed, model=self.model
            ):
                if result.audio is None or result.audio.numel() == 0:
                    continue
                spoken += 1
                speech.add(result.audio.numpy(), _words(result.tokens) if english else None)

        if job.get("stream"):
            # Sentence by sentence, each one's G2P run just before it is spoken: the
            # first chunk waits for one sentence's G2P (about 6 ms on a CPU), not the
            # whole text's (20000 characters would hold it back by seconds).
            parts = sentences(job["text"])
            for n, sentence in enumerate(parts, start=1):
                for piece in fit_sentence(sentence, fits):
                    speak(piece)
                speech.spoke(n, len(parts))
        else:  # sentences packed into fewer, longer model calls
            pieces = split_text(job["text"], fits, pack=True)
            for n, piece in enumerate(pieces, start=1):
                speak(piece)
                speech.spoke(n, len(pieces))
        if spoken == 0:
            raise InvalidInput("text: nothing speakable in the text", field="text")
        timestamps = bool(job.get("timestamps"))
        if timestamps:
            ctx.result["words"] = speech.words
        return speech.finish(captions=timestamps)


SPECS = (
    RunnerSpec(
        task="tts",
        model="kokoro",
        runner_ref="runners.kokoro:KokoroRunner",
        profile="kokoro",
        check=check_job,
        knobs=("voice", "speed", "timestamps", "seed"),
        # Declared, not measured on a GPU yet: 82 M parameters and activations (about
        # 0.5 GB) plus the CUDA context; bench/gpu.py prints the peak to replace it with.
        vram_mb=1024,
        default="gpu",
        # Eight jobs at once on one GPU, each in a process of its own: on an H200
        # (bench/results), 8 processes spoke 246.6x real time in aggregate, 4.2x one
        # stream (58.2x), where 8 threads in one process reached 75.6x.
        max_jobs=8,
    ),
)
