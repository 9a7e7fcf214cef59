"""Speech assembly shared by the TTS runners: join pieces, stream, encode, caption.

A runner synthesizes its text piece by piece (``media.text.split_text``) and
hands each piece to a :class:`SpeechAssembler`, which

- fades the piece's edges over a few milliseconds, so pieces join without a
  click whatever sample values they end on (and a streamed chunk can be played
  before the next piece exists, which a crossfade would not allow);
- resamples with one ``soxr.ResampleStream`` across pieces, so chunk seams are
  continuous and the chunks add up to exactly the full output;
- in a streaming job, encodes the piece at once and reports it with
  ``ctx.emit_chunk`` (split further when one file would exceed the stream
  item budget);
- at the end writes the full output (temp name, then rename) and, with word
  timings, ``.srt``, ``.vtt`` and ``.ass`` captions beside it.

numpy, soundfile, soxr (and pysubs2 for captions) are imported inside the
methods: this module is imported by runner modules the handler also imports.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

from errors import StorageFailed
from runtime import atomic
from runtime.protocol import OutputFile
from runtime.runner import RunContext

# soundfile format and subtype per output format; content types per RFC 3003/5334/2361
# and 7845 (Ogg Opus). Raw PCM is little-endian, as OpenAI's "pcm" format is, so it is
# not audio/L16 (big-endian by RFC 2586); its type carries the rate and sample layout.
ENCODINGS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg; codecs=opus"),
    "pcm": ("RAW", "PCM_16", "audio/pcm"),
    # libsndfile has no AAC: PyAV (FFmpeg's native encoder) writes it, as ADTS.
    "aac": ("ADTS", "AAC", "audio/aac"),
}
# The rates an Opus stream can carry (RFC 6716); libsndfile refuses any other.
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
FADE_S = 0.005
# Encoded bytes per streamed chunk: its base64 (4/3 larger) stays well under
# RunPod's 1 MB per stream item. Sized for 16-bit PCM, the largest format here.
MAX_CHUNK_FILE_BYTES = 700_000
_WAV_HEADER_BYTES = 1024  # header allowance, generous


def write_audio(path: Path, audio: Any, rate: int, fmt: str) -> None:
    """Encode ``audio`` (float mono) to ``path`` through a temp name and a rename.

    Raises:
        StorageFailed: the disk holding ``path`` is full; the message names the
            directory and the setting that moves it.
    """
    # Encode in memory, then write the bytes with Python's own I/O: libsndfile
    # reports a full disk as "System error.", Python as ENOSPC with the file name.
    encoded = _aac(audio, rate) if fmt == "aac" else _soundfile(audio, rate, fmt)
    try:
        atomic.write_bytes(path, encoded.getbuffer())
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StorageFailed(
            f"no space left on device: could not write {path.name} "
            f"({encoded.getbuffer().nbytes} bytes) into the job's scratch directory "
            f"{path.parent}; free space there, or set MEDIA_WORKER_SCRATCH_DIR to a "
            "larger disk"
        ) from None


def _soundfile(audio: Any, rate: int, fmt: str) -> io.BytesIO:
    import soundfile

    sf_format, subtype, _ = ENCODINGS[fmt]
    encoded = io.BytesIO()
    # Raw PCM has no header to say its byte order: little-endian, as audio/L16 users
    # (and every other output here) expect.
    endian = "LITTLE" if sf_format == "RAW" else "FILE"
    soundfile.write(encoded, audio, rate, format=sf_format, subtype=subtype, endian=endian)
    return encoded


def _aac(audio: Any, rate: int) -> io.BytesIO:
    """AAC-LC in ADTS frames (OpenAI's `aac`): each frame carries its own header, so
    a streamed chunk is a file that plays on its own."""
    import av
    import numpy as np

    encoded = io.BytesIO()
    with av.open(encoded, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.asarray(audio, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = rate
        # PyAV converts to the encoder's planar format and 1024-sample frames.
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    return encoded


def content_type(fmt: str, rate: int) -> str:
    """The output's media type; raw PCM names its rate and layout, having no header."""
    base = ENCODINGS[fmt][2]
    return f"{base};rate={rate};channels=1;format=s16le" if fmt == "pcm" else base


def output_rate(fmt: str, model_rate: int, asked: int | None) -> int:
    """The rate a job's audio is written at: the one it asked for, else the model's;
    for Opus, which carries only a few rates, the nearest one at or above the model's
    (22,050 Hz speech is written at 24,000 Hz)."""
    if asked:
        return asked
    if fmt == "opus" and model_rate not in OPUS_RATES:
        return next((r for r in OPUS_RATES if r >= model_rate), OPUS_RATES[-1])
    return model_rate


def max_chunk_samples(budget_bytes: int = MAX_CHUNK_FILE_BYTES) -> int:
    """Most samples one streamed chunk may hold (16-bit mono)."""
    return (budget_bytes - _WAV_HEADER_BYTES) // 2


class SpeechAssembler:
    """Collects one job's audio pieces in order; see the module docstring."""

    def spoke(self, n: int, total: int) -> None:
        """Report that part ``n`` of ``total`` of the text is spoken: the one wording
        every speech runner uses ("synthesized part 3/7"). A part is one sentence when
        streaming, a few packed sentences otherwise."""
        self._ctx.progress(f"synthesized part {n}/{total}", n / total)

    def __init__(
        self,
        ctx: RunContext,
        *,
        rate: int,
        out_rate: int | None,
        fmt: str,
        stream: bool,
        fade_s: float = FADE_S,
    ) -> None:
        import soxr

        self._ctx = ctx
        self.rate = rate
        self.out_rate = out_rate or rate
        self.fmt = fmt
        self.stream = stream
        self._fade = int(rate * fade_s)
        self._resampler = (
            soxr.ResampleStream(rate, self.out_rate, 1, dtype="float32")
            if self.out_rate != rate
            else None
        )
        self._pieces: list[Any] = []
        self._out_samples = 0
        self._in_samples = 0
        self.words: list[dict[str, Any]] = []

    @classmethod
    def for_job(cls, ctx: RunContext, job: dict[str, Any], *, rate: int) -> SpeechAssembler:
        """The assembler for a speech job: ``rate`` is the model's own sample rate;
        the job's ``sample_rate`` (else ``rate``), ``format`` (else wav) and ``stream``
        decide what is written and whether pieces are streamed."""
        fmt = job.get("format", "wav")
        return cls(
            ctx,
            rate=rate,
            out_rate=output_rate(fmt, rate, job.get("sample_rate")),
            fmt=fmt,
            stream=bool(job.get("stream")),
        )

    @property
    def duration_s(self) -> float:
        return self._out_samples / self.out_rate

    def add(self, audio: Any, words: list[dict[str, Any]] | None = None) -> None:
        """Append one piece (float mono at ``rate``); ``words`` relative to its start."""
        import numpy as np

        piece = np.asarray(audio, dtype=np.float32).reshape(-1).copy()
        offset_s = self._in_samples / self.rate
        self._in_samples += len(piece)
        n = min(self._fade, len(piece) // 2)
        if n > 0:
            ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32))).astype(
                np.float32
            )
            piece[:n] *= ramp
            piece[-n:] *= ramp[::-1]
        shifted = [
            {
                "word": w["word"],
                "start_s": round(w["start_s"] + offset_s, 3),
                "end_s": round(w["end_s"] + offset_s, 3),
            }
            for w in words or ()
        ]
        self.words.extend(shifted)
        if self._resampler is not None:
            piece = self._resampler.resample_chunk(piece, last=False)
        self._append(piece, shifted)

    def _append(self, piece: Any, words: list[dict[str, Any]]) -> None:
        if len(piece) == 0:
            return
        start = self._out_samples
        self._pieces.append(piece)
        self._out_samples += len(piece)
        if self.stream:
            self._emit(piece, start, words)

    def _emit(self, piece: Any, start: int, words: list[dict[str, Any]]) -> None:
        step = max_chunk_samples()
        for lo in range(0, len(piece), step):
            part = piece[lo : lo + step]
            offset_s = (start + lo) / self.out_rate
            end_s = offset_s + len(part) / self.out_rate
            index = self._ctx.chunks_sent
            path = self._ctx.scratch / f"chunk-{index:05d}.{self.fmt}"
            write_audio(path, part, self.out_rate, self.fmt)
            self._ctx.emit_chunk(
                path,
                content_type=content_type(self.fmt, self.out_rate),
                format=self.fmt,
                sample_rate=self.out_rate,
                offset_s=offset_s,
                duration_s=len(part) / self.out_rate,
                words=[w for w in words if offset_s <= w["start_s"] < end_s],
            )

    def finish(self, *, captions: bool = False, name: str = "speech") -> list[OutputFile]:
        """Write the full output (and captions); returns the output files."""
        import numpy as np

        if self._resampler is not None:
            self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True), [])
        audio = np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.float32)
        final = self._ctx.scratch / f"{name}.{self.fmt}"
        write_audio(final, audio, self.out_rate, self.fmt)
        outputs = [
            OutputFile(str(final), content_type(self.fmt, self.out_rate), round(self.duration_s, 3))
        ]
        if captions:
            outputs += _caption_files(self.words, self._ctx.scratch / name)
        return outputs


def _caption_files(words: list[dict[str, Any]], stem: Path) -> list[OutputFile]:
    """``<stem>.srt``, ``<stem>.vtt`` and ``<stem>.ass`` (karaoke) from word timings."""
    from media import subtitles

    timed = [subtitles.Word(w["word"], w["start_s"], w["end_s"]) for w in words]
    segments = subtitles.segments_from_words(timed)
    return [
        OutputFile(str(subtitles.write_captions(segments, stem.with_suffix(f".{fmt}"), fmt)), ctype)
        for fmt, ctype in subtitles.CAPTION_CONTENT_TYPES.items()
    ]
