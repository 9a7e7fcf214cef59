"""Whisper speech to text with faster-whisper (CTranslate2): transcripts and subtitles.

Models, each pinned to a commit of its CTranslate2 conversion on the hub (MIT, like
OpenAI's weights): tiny, base, small, medium, large-v2, large-v3 and
large-v3-turbo. float16 on a GPU, int8 on a CPU. Each model is its own profile
(``whisper_<model>``), so a worker downloads only the model it serves.

Memory: faster-whisper's ``transcribe(path)`` decodes the whole file into one array
(and its BytesIO, and a float copy) before computing the whole log-mel spectrogram,
about 2 GB for four hours of audio. The runner instead decodes with PyAV as a stream
and hands faster-whisper windows of ``WINDOW_S`` seconds, cut at the quietest moment
near each window's end so no word is split; timestamps are shifted back to the
whole input. Peak memory stays that of one window, whatever the input's length.

With ``MEDIA_WORKER_WHISPER_BATCH_SIZE`` set, each window goes through faster-whisper's
``BatchedInferencePipeline`` instead: cut into clips of up to 30 s at quiet moments
(the job's ``vad`` lets Silero choose the clips instead), decoded that many at once.
Clips are not conditioned on the text before them, the price of the batch.

``check_job`` runs in the handler process and imports nothing heavy;
``WhisperRunner`` imports faster-whisper, PyAV and numpy inside setup()/run().
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import config
from errors import InvalidInput, UnsupportedMedia
from runtime import atomic, machine
from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

if TYPE_CHECKING:
    from media.subtitles import Segment

logger = logging.getLogger(__name__)

# model -> (hub repo of the CTranslate2 conversion, pinned commit). Commits checked
# against public projects that pin the same ones; large-v3-turbo's is the one
# faster-whisper's own "large-v3-turbo" alias resolves to.
MODELS: dict[str, tuple[str, str]] = {
    "tiny": ("Systran/faster-whisper-tiny", "d90ca5fe260221311c53c58e660288d3deb8d356"),
    "base": ("Systran/faster-whisper-base", "ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66"),
    "small": ("Systran/faster-whisper-small", "536b0662742c02347bc0e980a01041f333bce120"),
    "medium": ("Systran/faster-whisper-medium", "08e178d48790749d25932bbc082711ddcfdfbc4f"),
    "large-v2": ("Systran/faster-whisper-large-v2", "f0fe81560cb8b68660e564f55dd99207059c092e"),
    "large-v3": ("Systran/faster-whisper-large-v3", "edaa852ec7e145841d8ffdb056a99866b5f0a478"),
    "large-v3-turbo": (
        "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
        "0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf",
    ),
    # Distil-Whisper's CTranslate2 conversions, the repositories faster-whisper's own
    # "distil-*" aliases name; each commit is the one several public projects pin.
    "distil-small.en": (
        "Systran/faster-distil-whisper-small.en",
        "ef77d90526ccd62cde3808ee70626a01e5cf83e4",
    ),
    "distil-medium.en": (
        "Systran/faster-distil-whisper-medium.en",
        "80ddfce281f77766d8943d63109199fc8145dfa5",
    ),
    "distil-large-v2": (
        "Systran/faster-distil-whisper-large-v2",
        "fe9b404fc56de3f7c38606ef9ba6fd83526d05e4",
    ),
    "distil-large-v3": (
        "Systran/faster-distil-whisper-large-v3",
        "c3058b475261292e64a0412df1d2681c06260fab",
    ),
    "distil-large-v3.5": (
        "distil-whisper/distil-large-v3.5-ct2",
        "9793ccc07920e0f830e1dba0343efcdf0ef8c903",
    ),
}
# Distil-Whisper was distilled on English speech only: these models neither detect
# nor translate other languages.
ENGLISH_ONLY = frozenset(m for m in MODELS if m.startswith("distil-"))
# The files faster-whisper cannot load a model directory without (tokenizer.json:
# without it faster-whisper would download openai/whisper-tiny's tokenizer at load
# time), and those it reads only when present: preprocessor_config.json came with the
# large-v3 conversions (faster-whisper PR #578; tiny to large-v2 have none), and the
# vocabulary is .txt or .json by converter version (PR #311).
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
MODEL_FILES_OPTIONAL = ("preprocessor_config.json", "vocabulary.*")

# large-v3-turbo: near large-v3 accuracy at several times its speed on a GPU. small:
# the largest that transcribes faster than real time in int8 on a few CPU cores.
GPU_DEFAULT_MODEL = "large-v3-turbo"
CPU_DEFAULT_MODEL = "small"

# Whisper's language codes (openai/whisper tokenizer.py LANGUAGES; "yue" is
# large-v3's addition).
LANGUAGES = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "yue",
        "zh",
    ]
)

# The one setting only this runner reads.
BATCH_SIZE = config.declare(
    "MEDIA_WORKER_WHISPER_BATCH_SIZE",
    0,
    config.count(0, 256),
    "Clips of up to 30 s that faster-whisper's batched pipeline decodes at once; 0 "
    "decodes one clip after another, each conditioned on the text before it. Batching "
    "fills a GPU (and drops that conditioning).",
    owner=__name__,
)

SAMPLE_RATE = 16_000
WINDOW_S = 600.0  # audio handed to faster-whisper at once (~40 MB of float32)
CUT_SEARCH_S = 10.0  # a window ends at the quietest 0.1 s within its last 10 s
CLIP_S = 30.0  # Whisper's input: a batched clip is at most this long
CLIP_CUT_SEARCH_S = 3.0  # and ends at the quietest 0.1 s within its last 3 s
BLOCK_S = 0.1  # the loudness resolution of every cut
SILENCE_PEAK = 10 ** (-70 / 20)  # -70 dBFS: below this a window is not transcribed
INLINE_SEGMENTS_MAX_BYTES = 256 * 1024  # larger segments go to transcript.json only
PROGRESS_EVERY_S = 2.0
# Conditioning across windows, as faster-whisper does within one: the end of the
# previous window's text becomes the next window's prompt.
PROMPT_TAIL_CHARS = 200

CONTENT_TYPES = {"json": "application/json", "txt": "text/plain; charset=utf-8"}  # captions:
# media.subtitles.CAPTION_CONTENT_TYPES


def profile_name(model: str) -> str:
    """The profile that serves ``model``: ``large-v3-turbo`` -> ``whisper_large_v3_turbo``,
    ``distil-large-v3.5`` -> ``whisper_distil_large_v3_5``."""
    return "whisper_" + model.replace("-", "_").replace(".", "_")


def check_job(job: Any, model: str) -> None:
    """Pre-flight check in the handler: the language is one Whisper knows, and one
    ``model`` (the one serving the job, named or the default) speaks."""
    if job.language is not None and job.language not in LANGUAGES:
        raise InvalidInput(
            f"language: {job.language!r} is not a Whisper language code (e.g. en, de, fr, "
            "zh, yue); leave it out to detect the language",
            field="language",
        )
    if model in ENGLISH_ONLY:
        if job.language not in (None, "en"):
            raise InvalidInput(
                f"language: model {model!r} transcribes English only; use a "
                f"multilingual model (large-v3-turbo, small...) for {job.language!r}",
                field="language",
            )
        reply = getattr(job, "faster_whisper", None)
        if job.translate or (reply is not None and reply.translation is not None):
            raise InvalidInput(
                f"translate: model {model!r} is English only and cannot translate; use "
                "a multilingual model (large-v3-turbo, small...)",
                field="translate",
            )


# GPU memory each model needs, declared for the runner host's eviction (not measured
# on a GPU yet): float16 weights (2 bytes per parameter: 39 M, 74 M, 244 M, 769 M,
# 1,550 M, 809 M) plus about 1 GB for CTranslate2's context and decoding buffers.
VRAM_MB: dict[str, int] = {
    "tiny": 1100,
    "base": 1200,
    "small": 1500,
    "medium": 2600,
    "large-v2": 4100,
    "large-v3": 4100,
    "large-v3-turbo": 2700,
    # distil: 166 M, 394 M, 756 M (v2, v3, v3.5) parameters, the same allowance
    "distil-small.en": 1400,
    "distil-medium.en": 1800,
    "distil-large-v2": 2600,
    "distil-large-v3": 2600,
    "distil-large-v3.5": 2600,
}

SPECS = tuple(
    RunnerSpec(
        "transcribe",
        model,
        "runners.whisper:WhisperRunner",
        profile=profile_name(model),
        check=functools.partial(check_job, model=model),
        vram_mb=VRAM_MB[model],
        default={GPU_DEFAULT_MODEL: "gpu", CPU_DEFAULT_MODEL: "cpu"}.get(model, ""),
    )
    for model in MODELS
)


# --- pure decisions ----------------------------------------------------------------


def find_cut(levels: Any, *, search: int) -> int:
    """Where to end a window: the index of the quietest block among the last ``search``.

    ``levels`` holds one loudness value per block (e.g. RMS per 0.1 s) of the window
    plus what follows; the cut is placed at the start of the quietest block in
    ``levels[-search:]``, the latest one on ties so windows stay long.
    """
    n = len(levels)
    start = max(0, n - search)
    best = start
    for i in range(start, n):
        if levels[i] <= levels[best]:
            best = i
    return best


def clip_bounds(levels: Any, *, clip: int, search: int) -> list[tuple[int, int]]:
    """Blocks ``[start, end)`` covering all of ``levels``, each at most ``clip`` blocks,
    each (but the last) ending at the quietest of its last ``search`` blocks (find_cut).
    """
    bounds: list[tuple[int, int]] = []
    start, n = 0, len(levels)
    while n - start > clip:
        cut = start + (find_cut(levels[start : start + clip + 1], search=search) or clip)
        bounds.append((start, cut))
        start = cut
    if start < n:
        bounds.append((start, n))
    return bounds


def _levels(samples: Any, block: int) -> Any:
    """RMS loudness of each ``block`` samples (the last block may be shorter)."""
    import numpy as np

    padded = np.zeros(-(-len(samples) // block) * block, dtype=np.float64)
    padded[: len(samples)] = samples
    return np.sqrt((padded.reshape(-1, block) ** 2).mean(axis=1))


def quiet_clips(samples: Any) -> list[dict[str, float]]:
    """``clip_timestamps`` for the batched pipeline: seconds, cut at quiet moments."""
    block = int(BLOCK_S * SAMPLE_RATE)
    bounds = clip_bounds(_levels(samples, block), clip=int(CLIP_S / BLOCK_S),
                         search=int(CLIP_CUT_SEARCH_S / BLOCK_S))  # fmt: skip
    return [
        {"start": a * block / SAMPLE_RATE, "end": min(b * block, len(samples)) / SAMPLE_RATE}
        for a, b in bounds
    ]


def time_key(segment: Segment) -> tuple[float, float]:
    """The order :func:`tidy_segments` puts segments in (a stable sort by it)."""
    return (segment.start_s, segment.end_s)


def in_time_order(segments: list[Segment], items: list[Any]) -> list[Any]:
    """``items`` (one per segment) in the order :func:`tidy_segments` puts ``segments``
    in. Pure."""
    order = sorted(range(len(segments)), key=lambda i: time_key(segments[i]))
    return [items[i] for i in order]


def tidy_segments(segments: list[Segment], duration_s: float) -> list[Segment]:
    """Segments in time order, inside [0, duration], each spanning its words.

    Whisper's timestamps can run past the audio's end, overlap or come out of order
    (long hallucinated loops do all three); captions need none of that.
    """

    from media.subtitles import Segment, Word

    def clamp(t: float) -> float:
        return min(max(t, 0.0), duration_s)

    out = []
    for seg in sorted(segments, key=time_key):
        words = tuple(
            Word(w.text, clamp(w.start_s), max(clamp(w.start_s), clamp(w.end_s)), w.probability)
            for w in sorted(seg.words, key=lambda w: w.start_s)
        )
        start, end = clamp(seg.start_s), clamp(seg.end_s)
        if words:
            start, end = min(start, words[0].start_s), max(end, words[-1].end_s)
        out.append(Segment(start, max(start, end), seg.text.strip(), words))
    return out


def captions_from(
    segments: list[Segment], *, max_chars_per_line: int, max_lines: int
) -> list[Segment]:
    """Caption events: re-cut from the words when every segment has them, else wrapped."""
    from media.subtitles import segments_from_words, wrap_segments

    if segments and all(s.words for s in segments):
        words = [w for s in segments for w in s.words]
        return segments_from_words(
            words, max_chars_per_line=max_chars_per_line, max_lines=max_lines
        )
    return wrap_segments(segments, max_chars_per_line=max_chars_per_line, max_lines=max_lines)


def segment_dicts(
    segments: list[Segment], *, with_words: bool, details: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The contract's TranscriptSegment shape; with ``details`` (one per segment, in the
    same order), also worker-faster_whisper's fields."""
    out = []
    for i, seg in enumerate(segments):
        item: dict[str, Any] = {
            "start_s": round(seg.start_s, 3),
            "end_s": round(seg.end_s, 3),
            "text": seg.text,
        }
        if details is not None:
            item.update(id=i + 1, start=item["start_s"], end=item["end_s"], **details[i])
        if with_words:
            item["words"] = [
                {
                    "word": w.text.strip(),
                    "start_s": round(w.start_s, 3),
                    "end_s": round(w.end_s, 3),
                    "probability": None if w.probability is None else round(w.probability, 4),
                }
                for w in seg.words
            ]
        out.append(item)
    return out


# --- audio in ------------------------------------------------------------------------


@functools.cache
def _decoder() -> dict[str, str]:
    """PyAV's decoder options for audio input."""
    from media import image_header

    # Opening a file makes FFmpeg decode a picture of each video stream (or of an image
    # sent as audio: a 1.9 MB PNG bomb decoded to 2 GB before issue 20); bound it.
    return image_header.decoder_options(image_header.AUDIO_MAX_PIXELS)


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float | None  # from the container; None when it does not say
    codec: str


def probe(path: Path) -> AudioInfo:
    """The input's first audio stream, or a clear error.

    Raises:
        UnsupportedMedia: the file is not media PyAV can open, or has no audio stream.
    """
    import av

    from media import image_header

    image_header.refuse_as_audio(path, field="audio")
    try:
        with av.open(str(path), metadata_errors="ignore", options=_decoder()) as container:
            if not container.streams.audio:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                raise UnsupportedMedia(
                    f"audio: the input has no audio stream (streams: {kinds})", field="audio"
                )
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # a codec FFmpeg does not know
                raise UnsupportedMedia(
                    "audio: the audio stream's codec has no decoder here", field="audio"
                )
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            return AudioInfo(duration, stream.codec_context.name)
    except av.FFmpegError as exc:
        raise UnsupportedMedia(
            f"audio: cannot decode the input as audio or video ({type(exc).__name__}: "
            f"{exc.strerror or exc})",
            field="audio",
        ) from None


def decode_windows(path: Path, *, max_s: float) -> Iterator[tuple[float, Any]]:
    """``(offset_s, mono float32 at 16 kHz)`` windows of the first audio stream, in order.

    Decodes as a stream: at most one window plus one decoded frame is in memory.

    Raises:
        UnsupportedMedia: the audio cannot be decoded.
        InvalidInput: the audio runs longer than ``max_s`` (field ``audio``).
    """
    import av
    import numpy as np

    window = int(WINDOW_S * SAMPLE_RATE)
    block = SAMPLE_RATE // 10
    search_blocks = int(CUT_SEARCH_S * SAMPLE_RATE) // block
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    pending: list[Any] = []
    pending_n = 0
    offset = 0
    try:
        with av.open(str(path), metadata_errors="ignore", options=_decoder()) as container:
            for frame in container.decode(audio=0):
                frame.pts = None  # resample by count; broken timestamps do not matter
                for out in _resampled(resampler, frame, "audio", offset + pending_n):
                    pending.append(out.to_ndarray().reshape(-1))
                    pending_n += out.samples
                if (offset + pending_n) / SAMPLE_RATE > max_s:
                    raise _too_long(max_s)
                while pending_n >= window + block:
                    samples = np.concatenate(pending)
                    levels = _levels(samples[: window - window % block], block)
                    cut = find_cut(levels, search=search_blocks) * block or window
                    yield offset / SAMPLE_RATE, samples[:cut]
                    offset += cut
                    pending, pending_n = [samples[cut:]], len(samples) - cut
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
                pending_n += out.samples
    except av.FFmpegError as exc:
        raise UnsupportedMedia(
            f"audio: decoding failed after {offset / SAMPLE_RATE:.1f} s "
            f"({type(exc).__name__}: {exc.strerror or exc})",
            field="audio",
        ) from None
    if (offset + pending_n) / SAMPLE_RATE > max_s:
        raise _too_long(max_s)
    if pending_n:
        yield offset / SAMPLE_RATE, np.concatenate(pending)


def _resampled(resampler: Any, frame: Any, field: str, at_samples: int) -> list[Any]:
    """``resampler.resample(frame)``, or a clear error when the stream changed format.

    PyAV's resampler is set up by the first frame and raises ValueError for a frame
    of another rate or layout; a damaged file can switch mid-stream (fuzz pass).

    Raises:
        UnsupportedMedia: the frame's format differs from the first's (field ``field``).
    """
    try:
        return resampler.resample(frame)
    except ValueError:
        raise UnsupportedMedia(
            f"{field}: the audio changes format (rate or channels) mid-stream after "
            f"{at_samples / SAMPLE_RATE:.1f} s; re-encode it at one format",
            field=field,
        ) from None


def _too_long(max_s: float) -> InvalidInput:
    return InvalidInput(
        f"audio: longer than {max_s:.0f} s, this worker's limit (MEDIA_WORKER_MAX_AUDIO_S); "
        "split the audio or raise the limit",
        field="audio",
    )


# --- the runner ----------------------------------------------------------------------


def _preload_cublas() -> None:
    # CTranslate2 dlopens libcublas.so.12 by name; the profile installs it as the
    # nvidia-cublas-cu12 wheel, outside the loader's search path. Loading it first
    # by full path makes that dlopen find it already loaded.
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("nvidia.cublas")
    if spec is None or not spec.submodule_search_locations:
        return
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    for name in ("libcublasLt.so.12", "libcublas.so.12"):
        if (lib / name).exists():
            ctypes.CDLL(str(lib / name), mode=ctypes.RTLD_GLOBAL)


def cpu_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class WhisperRunner(Runner):
    """Transcribes with one faster-whisper model, loaded once."""

    def setup(self, weights: dict[str, str]) -> None:
        from faster_whisper import WhisperModel

        if len(weights) != 1:
            raise RuntimeError(f"expected one Whisper model in the profile, got {sorted(weights)}")
        (path,) = weights.values()
        # The same fact the worker chose this profile's pins by (cuBLAS or not).
        gpu = machine.probe().has_gpu
        if gpu:
            _preload_cublas()
        self.device, self.compute_type = ("cuda", "float16") if gpu else ("cpu", "int8")
        self.model = WhisperModel(
            path,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=cpu_threads(),
            local_files_only=True,
        )
        self.batch_size = BATCH_SIZE.get()
        self.batched = None
        if self.batch_size:
            from faster_whisper import BatchedInferencePipeline

            self.batched = BatchedInferencePipeline(model=self.model)
        logger.info(
            "whisper loaded %s device=%s compute=%s batch=%d",
            path,
            self.device,
            self.compute_type,
            self.batch_size,
        )

    def run(self, job: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        from media.subtitles import CAPTION_CONTENT_TYPES, write_captions

        path = ctx.inputs["audio"]
        info = probe(path)
        max_s = config.MAX_AUDIO_S.get()
        if info.duration_s is not None and info.duration_s > max_s:
            raise _too_long(max_s)
        formats = job.get("formats") or ["json"]
        captions = [f for f in formats if f in ("srt", "vtt", "ass")]
        with_words = bool(job.get("timestamps"))
        transcript = self._transcribe(
            path,
            job,
            ctx,
            total_s=info.duration_s,
            max_s=max_s,
            words=with_words or bool(captions),  # karaoke and caption cuts need them
        )
        segments = tidy_segments(transcript.segments, transcript.duration_s)
        text = " ".join(s.text for s in segments if s.text)
        listed = segment_dicts(segments, with_words=with_words, details=transcript.details)
        inline = len(json.dumps(listed)) <= INLINE_SEGMENTS_MAX_BYTES
        ctx.result.update(
            language=transcript.language,
            language_probability=transcript.language_probability,
            duration_s=round(transcript.duration_s, 3),
            text=text,
            segments=listed if inline else None,
        )
        if reply := job.get("faster_whisper"):
            ctx.result.update(
                self._faster_whisper_keys(path, job, ctx, reply, transcript, segments, info)
            )

        outputs = []
        if "json" in formats or not inline:
            document = {
                "language": transcript.language,
                "language_probability": transcript.language_probability,
                "duration_s": round(transcript.duration_s, 3),
                "text": text,
                "segments": listed,
            }
            outputs.append(_write(ctx.scratch / "transcript.json", json.dumps(document), "json"))
        if "txt" in formats:
            body = "".join(f"{s.text}\n" for s in segments if s.text)
            outputs.append(_write(ctx.scratch / "transcript.txt", body, "txt"))
        events = captions_from(
            segments,
            max_chars_per_line=job.get("max_chars_per_line", 42),
            max_lines=job.get("max_lines", 2),
        )
        for fmt in captions:
            file = write_captions(events, ctx.scratch / f"captions.{fmt}", fmt)  # type: ignore[arg-type]
            outputs.append(OutputFile(str(file), CAPTION_CONTENT_TYPES[fmt]))
        return outputs

    def _faster_whisper_keys(
        self,
        path: Path,
        job: dict[str, Any],
        ctx: RunContext,
        reply: dict[str, Any],
        transcript: _Transcript,
        segments: list[Segment],
        info: AudioInfo,
    ) -> dict[str, Any]:
        """worker-faster_whisper's result keys; its ``translation`` is a second pass
        over the audio with ``task="translate"``, as that worker makes it."""
        translation = None
        if reply.get("translation"):
            again = {**job, "translate": True, "language": transcript.language}
            translated = self._transcribe(
                path,
                again,
                ctx,
                total_s=info.duration_s,
                max_s=config.MAX_AUDIO_S.get(),
                words=False,
            )
            translation = inline_text(
                tidy_segments(translated.segments, translated.duration_s),
                reply["translation"],
            )
        keys: dict[str, Any] = {
            "transcription": inline_text(segments, reply.get("transcription", "plain_text")),
            "translation": translation,
            "detected_language": transcript.language,
            "device": self.device,
        }
        if job.get("timestamps"):
            keys["word_timestamps"] = [
                {"word": w.text, "start": round(w.start_s, 3), "end": round(w.end_s, 3)}
                for seg in segments
                for w in seg.words
            ]
        return keys

    def _transcribe(
        self,
        path: Path,
        job: dict[str, Any],
        ctx: RunContext,
        *,
        total_s: float | None,
        max_s: float,
        words: bool,
    ) -> _Transcript:
        import numpy as np

        from media.subtitles import Segment, Word

        language = job.get("language")
        probability = 1.0 if language else None
        prompt = job.get("initial_prompt")
        segments: list[Segment] = []
        details: list[dict[str, Any]] | None = [] if job.get("faster_whisper") else None
        done_s = 0.0
        last_report = 0.0
        for offset, samples in decode_windows(path, max_s=max_s):
            done_s = offset + len(samples) / SAMPLE_RATE
            if not samples.size or float(np.abs(samples).max()) < SILENCE_PEAK:
                continue  # Whisper invents text on silence; there is nothing to hear
            options = transcribe_options(job, language=language, words=words, prompt=prompt)
            if self.batched is None:
                found, info = self.model.transcribe(samples, **options)
            else:
                clips = None if job.get("vad") else quiet_clips(samples)
                found, info = self.batched.transcribe(
                    samples, batch_size=self.batch_size, clip_timestamps=clips, **options
                )
            if language is None:  # detected on the first window that has sound
                language, probability = info.language, round(info.language_probability, 4)
            for seg in found:
                segments.append(
                    Segment(
                        offset + seg.start,
                        offset + seg.end,
                        seg.text,
                        tuple(
                            Word(w.word, offset + w.start, offset + w.end, w.probability)
                            for w in (seg.words or ())
                        ),
                    )
                )
                if details is not None:
                    details.append(decoder_details(seg, offset))
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY_S:
                    last_report = now
                    _report(ctx, offset + seg.end, total_s)
            prompt = next_prompt(job, segments, prompt)
        _report(ctx, done_s, total_s or done_s)
        if details is not None:
            details = in_time_order(segments, details)
        return _Transcript(segments, language, probability, total_s or done_s, details)


def transcribe_options(
    job: dict[str, Any], *, language: str | None, words: bool, prompt: str | None
) -> dict[str, Any]:
    """faster-whisper's ``transcribe`` arguments for one window of ``job``. Pure.

    ``language`` is the job's, or the one detected on an earlier window; ``prompt``
    the job's initial prompt, or the previous windows' text.
    """
    return {
        "language": language,
        "task": "translate" if job.get("translate") else "transcribe",
        "word_timestamps": words,
        "vad_filter": bool(job.get("vad")),
        "initial_prompt": prompt,
        "beam_size": job.get("beam_size", 5),
        "best_of": job.get("best_of", 5),
        "patience": job.get("patience", 1.0),
        "length_penalty": job.get("length_penalty", 1.0),
        "temperature": temperatures(
            job.get("temperature"), job.get("temperature_increment_on_fallback")
        ),
        "compression_ratio_threshold": job.get("compression_ratio_threshold", 2.4),
        "log_prob_threshold": job.get("logprob_threshold", -1.0),
        "no_speech_threshold": job.get("no_speech_threshold", 0.6),
        "condition_on_previous_text": job.get("condition_on_previous_text", True),
        "suppress_tokens": job.get("suppress_tokens", [-1]),
    }


def next_prompt(job: dict[str, Any], segments: list[Segment], prompt: str | None) -> str | None:
    """The prompt for the window after ``segments``: the tail of the text heard so far
    (faster-whisper conditions on it within a window; this carries it across windows),
    or ``prompt`` unchanged when nothing was heard or the job sets
    ``condition_on_previous_text`` to false. Pure."""
    if segments and job.get("condition_on_previous_text", True):
        return " ".join(s.text for s in segments[-8:])[-PROMPT_TAIL_CHARS:]
    return prompt


# faster-whisper's (and openai-whisper's) fallback ladder.
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def temperatures(temperature: float | list[float] | None, step: float | None) -> list[float]:
    """The temperatures faster-whisper tries in turn for a window. Pure.

    None: the default ladder. A list: as given. One number: alone, or with ``step``
    the ladder from it up to 1.0 (as openai-whisper's CLI and worker-faster_whisper
    build it from ``temperature_increment_on_fallback``).
    """
    if temperature is None:
        return list(DEFAULT_TEMPERATURES)
    if isinstance(temperature, list):
        return list(temperature)
    if not step:
        return [temperature]
    ladder = [temperature]
    while (nxt := round(ladder[-1] + step, 6)) <= 1.0:
        ladder.append(nxt)
    return ladder


@dataclass(frozen=True)
class _Transcript:
    segments: list[Segment]
    language: str | None
    language_probability: float | None
    duration_s: float
    # worker-faster_whisper's per-segment fields, in tidy_segments' order.
    details: list[dict[str, Any]] | None = None


def decoder_details(segment: Any, offset_s: float) -> dict[str, Any]:
    """A faster-whisper segment's decoder fields, ``seek`` counted from the start of
    the audio (a window decoded from ``offset_s`` counts its own from 0). Pure."""
    return {
        "seek": int(segment.seek) + round(offset_s * 100),  # 10 ms mel frames
        "tokens": [int(t) for t in segment.tokens],
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def inline_text(segments: list[Segment], fmt: str) -> str:
    """The transcript as worker-faster_whisper's ``transcription`` carries it: plain_text
    (segments joined by spaces), formatted_text (one per line), srt or vtt (one cue per
    segment). Pure."""
    from media.subtitles import captions_text

    if fmt in ("srt", "vtt"):
        return captions_text(segments, fmt)  # type: ignore[arg-type]
    spoken = [s.text for s in segments if s.text]
    return ("\n" if fmt == "formatted_text" else " ").join(spoken)


def _report(ctx: RunContext, done_s: float, total_s: float | None) -> None:
    if total_s:
        ctx.progress(f"transcribed {done_s:.0f} s of {total_s:.0f} s", min(done_s / total_s, 1.0))
    else:
        ctx.progress(f"transcribed {done_s:.0f} s", None)


def _write(path: Path, body: str, fmt: str) -> OutputFile:
    # Written beside the final name and renamed: nothing half-written looks finished.
    atomic.write_bytes(path, body.encode("utf-8"))
    return OutputFile(str(path), CONTENT_TYPES[fmt])
