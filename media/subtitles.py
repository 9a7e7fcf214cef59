"""Captions: timed words -> readable caption events -> SRT, WebVTT or karaoke ASS files.

Shared by `transcribe` (Whisper's words) and by `tts`/`clone` jobs that ask for
timestamps (the synthesizer's words). Stdlib only at import time: pysubs2 is imported
inside `write_captions`, so a profile whose runner writes captions pins pysubs2 and
the handler never needs it.

    words --segments_from_words()--> [Segment(text="line one\\nline two", words=...)]
          --write_captions(fmt)--> captions.srt | captions.vtt | captions.ass

A Segment's `text` carries its line layout: lines are separated by "\\n". Its words
(when present) are the same words in the same order; the ASS writer turns them into
karaoke `\\k` tags so the highlight follows the speech.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runtime import atomic

__all__ = [
    "CAPTION_CONTENT_TYPES",
    "CAPTION_FORMATS",
    "Segment",
    "Word",
    "ass_karaoke_text",
    "join_words",
    "segments_from_words",
    "wrap_segments",
    "write_captions",
]

CaptionFormat = Literal["srt", "vtt", "ass"]
CAPTION_FORMATS: tuple[CaptionFormat, ...] = ("srt", "vtt", "ass")
# The content types caption outputs are published with (SubRip has no registered type;
# application/x-subrip is what browsers and S3 consoles recognise).
CAPTION_CONTENT_TYPES: dict[CaptionFormat, str] = {
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "ass": "text/x-ssa",
}

DEFAULT_MAX_CHARS_PER_LINE = 42  # Netflix/BBC guideline for Latin scripts
DEFAULT_MAX_LINES = 2
DEFAULT_MAX_GAP_S = 0.8  # a pause longer than this starts a new caption
DEFAULT_MAX_DURATION_S = 7.0  # longest a caption stays up (reading-speed guidelines)
DEFAULT_MIN_DURATION_S = 0.7  # shortest, extended into the following silence only

_SENTENCE_END = frozenset(".!?…。！？")
_CLAUSE_END = frozenset(",;:—–、，；：")
# Characters that attach to the previous word without a space.
_NO_SPACE_BEFORE = frozenset(".,!?;:…%)]}”’»。！？、，；：")
_WORD_JOINER = "\u2060"  # invisible; breaks an accidental ASS escape like "\N"


@dataclass(frozen=True)
class Word:
    """One spoken word with its time span (seconds from the start of the audio)."""

    text: str
    start_s: float
    end_s: float
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    """One caption event: lines separated by "\\n", and the words it shows."""

    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()


# --- joining and measuring ------------------------------------------------------------


def _is_spaceless_script(char: str) -> bool:
    # CJK, kana, Thai, Lao, Khmer, Myanmar are written without spaces between words.
    name = unicodedata.name(char, "")
    return name.startswith(("CJK ", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR"))


def _needs_space(left: str, right: str) -> bool:
    if not left or not right:
        return False
    if right[0] in _NO_SPACE_BEFORE:
        return False
    return not (_is_spaceless_script(left[-1]) and _is_spaceless_script(right[0]))


def join_words(texts: Iterable[str]) -> str:
    """Join word texts the way they are written: spaces between words, none before
    closing punctuation or between words of scripts written without spaces.

    Whisper's words carry their own leading space (" Hello"); surrounding whitespace
    is stripped first, so words from any source join the same way.
    """
    out = ""
    for raw in texts:
        text = raw.strip()
        if not text:
            continue
        out = out + " " + text if _needs_space(out, text) else out + text
    return out


def _ends_with(text: str, marks: frozenset[str]) -> bool:
    stripped = text.rstrip("\"'”’»)]")
    return bool(stripped) and stripped[-1] in marks


# --- line layout ----------------------------------------------------------------------


def _layout(texts: Sequence[str], max_chars: int, max_lines: int) -> list[int] | None:
    """Best line breaks for these words, or None when they do not fit.

    Returns the word indices that start lines 2..n. Among layouts whose lines all fit
    `max_chars`, prefers fewer lines, then the shortest longest line (balanced lines
    read better), then breaks after punctuation. A single word longer than a line is
    allowed on a line of its own: a word is never cut.
    """
    n = len(texts)
    if n == 0:
        return []

    def width(i: int, j: int) -> int:
        return len(join_words(texts[i:j]))

    best: tuple[tuple[int, int, int], list[int]] | None = None

    def search(start: int, breaks: list[int], longest: int, unpunctuated: int) -> None:
        nonlocal best
        lines_used = len(breaks) + 1
        for end in range(start + 1, n + 1):
            w = width(start, end)
            if w > max_chars and end > start + 1:
                break
            longest_here = max(longest, w)
            if end == n:
                key = (lines_used, longest_here, unpunctuated)
                if best is None or key < best[0]:
                    best = (key, list(breaks))
            elif lines_used < max_lines:
                punct = _ends_with(texts[end - 1], _SENTENCE_END | _CLAUSE_END)
                search(end, [*breaks, end], longest_here, unpunctuated + (not punct))

    search(0, [], 0, 0)
    return None if best is None else best[1]


def _lines(texts: Sequence[str], breaks: Sequence[int]) -> list[str]:
    bounds = [0, *breaks, len(texts)]
    return [join_words(texts[a:b]) for a, b in itertools.pairwise(bounds)]


# --- words -> caption events ----------------------------------------------------------


def segments_from_words(
    words: Iterable[Word],
    *,
    max_chars_per_line: int = DEFAULT_MAX_CHARS_PER_LINE,
    max_lines: int = DEFAULT_MAX_LINES,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
) -> list[Segment]:
    """Group timed words into caption events that read well.

    A new event starts after a sentence ends, at a pause longer than `max_gap_s`, when
    the event would last longer than `max_duration_s`, or when the words no longer fit
    in `max_lines` lines of `max_chars_per_line`; in that last case the event is cut
    after its last clause punctuation (",", ";", ":") when it has one. An event shorter
    than `min_duration_s` is held on screen into the following silence, never past the
    next event's start.

    Args:
        words: in spoken order; empty texts are skipped.
        max_chars_per_line: longest line in characters (a longer single word gets a
            line of its own).
        max_lines: most lines per event.
        max_gap_s: a pause longer than this between two words starts a new event.
        max_duration_s: longest event.
        min_duration_s: shortest event, where the following silence allows.

    Returns:
        Events in time order, each with lines joined by "\\n" and its words.

    Raises:
        ValueError: a limit below 1 (lines, characters) or a negative time limit.
    """
    if max_chars_per_line < 1 or max_lines < 1:
        raise ValueError("max_chars_per_line and max_lines must be at least 1")
    if max_gap_s < 0 or max_duration_s <= 0 or min_duration_s < 0:
        raise ValueError("max_gap_s, max_duration_s and min_duration_s must be positive")

    groups: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if not word.text.strip():
            continue
        if current and _starts_new_event(current, word, max_gap_s, max_duration_s):
            groups.append(current)
            current = []
        candidate = [*current, word]
        if current and _layout(_texts(candidate), max_chars_per_line, max_lines) is None:
            cut = _clause_cut(current)
            groups.append(current[:cut])
            current = current[cut:]
            candidate = [*current, word]
            if current and _layout(_texts(candidate), max_chars_per_line, max_lines) is None:
                groups.append(current)
                candidate = [word]
        current = candidate
    if current:
        groups.append(current)

    segments = []
    for group in groups:
        texts = _texts(group)
        breaks = _layout(texts, max_chars_per_line, max_lines) or []
        segments.append(
            Segment(
                start_s=group[0].start_s,
                end_s=max(group[-1].end_s, group[0].start_s),
                text="\n".join(_lines(texts, breaks)),
                words=tuple(group),
            )
        )
    return _hold_short_events(segments, min_duration_s)


def _texts(words: Sequence[Word]) -> list[str]:
    return [w.text.strip() for w in words]


def _starts_new_event(current: list[Word], word: Word, max_gap_s: float, max_dur: float) -> bool:
    last = current[-1]
    return (
        _ends_with(last.text, _SENTENCE_END)
        or word.start_s - last.end_s > max_gap_s
        or word.end_s - current[0].start_s > max_dur
    )


def _clause_cut(words: list[Word]) -> int:
    """Where to cut a full event: after its last clause punctuation, else at its end."""
    for i in range(len(words) - 1, 0, -1):
        if _ends_with(words[i - 1].text, _CLAUSE_END):
            return i
    return len(words)


def _hold_short_events(segments: list[Segment], min_duration_s: float) -> list[Segment]:
    held = []
    for i, seg in enumerate(segments):
        limit = segments[i + 1].start_s if i + 1 < len(segments) else float("inf")
        end = max(seg.end_s, min(seg.start_s + min_duration_s, limit))
        held.append(Segment(seg.start_s, end, seg.text, seg.words))
    return held


def wrap_segments(
    segments: Iterable[Segment],
    *,
    max_chars_per_line: int = DEFAULT_MAX_CHARS_PER_LINE,
    max_lines: int = DEFAULT_MAX_LINES,
) -> list[Segment]:
    """Make caption events from segments that have text but no words.

    Each segment's text is wrapped into lines of `max_chars_per_line`; a text longer
    than `max_lines` lines becomes several events that share the segment's time span
    in proportion to their characters (an estimate: without words there is no finer
    timing). Segments with words go through `segments_from_words` instead.
    """
    out: list[Segment] = []
    for seg in segments:
        tokens = seg.text.split()
        if not tokens:
            continue
        lines = _greedy_lines(tokens, max_chars_per_line)
        chunks = ["\n".join(lines[i : i + max_lines]) for i in range(0, len(lines), max_lines)]
        total = sum(len(c) for c in chunks)
        start = seg.start_s
        for chunk in chunks:
            end = start + (seg.end_s - seg.start_s) * len(chunk) / total
            out.append(Segment(start, end, chunk))
            start = end
    return out


def _greedy_lines(tokens: Sequence[str], max_chars: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for token in tokens:
        joined = join_words([line, token])
        if line and len(joined) > max_chars:
            lines.append(line)
            line = token
        else:
            line = joined
    if line:
        lines.append(line)
    return lines


# --- text escaping per format ---------------------------------------------------------


def _protect_backslashes(line: str) -> str:
    # ASS readers (libass, and pysubs2 when it writes SRT/VTT) turn "\N", "\n", "\h"
    # into line breaks or spaces and "\{" "\}" into braces; no format has an escape for
    # the backslash itself, so an invisible word joiner keeps the pair apart.
    out = []
    for i, ch in enumerate(line):
        out.append(ch)
        if ch == "\\" and line[i + 1 : i + 2] in ("N", "n", "h", "{", "}"):
            out.append(_WORD_JOINER)
    return "".join(out)


def _escape_ass(line: str) -> str:
    # "{" opens an override block; libass reads "\{" and "\}" as literal braces (the
    # escaping FFmpeg's ASS muxer uses too).
    return _protect_backslashes(line).replace("{", r"\{").replace("}", r"\}")


def _escape_vtt(line: str) -> str:
    # WebVTT cue text is HTML-like: "&" and "<" must be escaped, and ">" is, so that
    # "-->" never appears in a cue (W3C WebVTT, "cue text").
    line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _protect_backslashes(line)


def _escape_srt(line: str) -> str:
    # SRT has no escape mechanism: text is written as spoken (backslash pairs aside).
    return _protect_backslashes(line)


_ESCAPE = {"srt": _escape_srt, "vtt": _escape_vtt, "ass": _escape_ass}


# --- karaoke --------------------------------------------------------------------------


def _cs(seconds: float) -> int:
    return max(0, round(seconds * 100))


def ass_karaoke_text(segment: Segment) -> str:
    """The ASS text of one event: its words with `\\k` tags (centiseconds).

    Tags are computed on a centisecond grid anchored at the event's start and end (ASS
    times are centiseconds), so they sum exactly to the event's duration: a silence
    before a word gets an empty `{\\kN}`, and the time after the last word a trailing
    one. Line breaks fall where `segment.text` breaks its lines. An event without
    word timings (Whisper can give one) is highlighted whole, with one tag.
    """
    start, end = _cs(segment.start_s), _cs(segment.end_s)
    if not segment.words:
        text = r"\N".join(_escape_ass(line) for line in segment.text.split("\n"))
        return f"{{\\k{end - start}}}{text}"
    line_breaks = _line_break_positions(segment)
    parts: list[str] = []
    cursor = start
    previous = ""
    for i, word in enumerate(segment.words):
        w_start = min(max(_cs(word.start_s), cursor), end)
        w_end = min(max(_cs(word.end_s), w_start), end)
        if w_start > cursor:
            parts.append(f"{{\\k{w_start - cursor}}}")
        text = word.text.strip()
        if i in line_breaks:
            sep = r"\N"
        elif _needs_space(previous, text):
            sep = " "
        else:
            sep = ""
        parts.append(f"{sep}{{\\k{w_end - w_start}}}{_escape_ass(text)}")
        cursor = w_end
        previous = text
    if end > cursor:
        parts.append(f"{{\\k{end - cursor}}}")
    return "".join(parts)


def _line_break_positions(segment: Segment) -> set[int]:
    """Indices of the words that start lines 2..n of `segment.text`.

    Matched by counting non-space characters, so it holds for any text that is the
    join of the words; for other text no break is placed.
    """
    targets, total = [], 0
    for line in segment.text.split("\n")[:-1]:
        total += sum(not c.isspace() for c in line)
        targets.append(total)
    breaks, seen = set(), 0
    for i, word in enumerate(segment.words):
        if seen in targets and i > 0:
            breaks.add(i)
        seen += sum(not c.isspace() for c in word.text)
    return breaks


# --- writing --------------------------------------------------------------------------

_ASS_STYLE = {
    # Karaoke: the sung-over colour (primary) fills from the secondary colour.
    "fontname": "Arial",
    "fontsize": 56,
    "outline": 3,
    "shadow": 1,
    "marginv": 48,
}


def write_captions(segments: Iterable[Segment], path: Path, fmt: CaptionFormat) -> Path:
    """Write caption events to `path` as SRT, WebVTT or ASS (karaoke `\\k` per word).

    The file appears complete or not at all (``runtime.atomic``).

    Args:
        segments: caption events (see `segments_from_words`, `wrap_segments`).
        path: the file to write.
        fmt: "srt", "vtt" or "ass".

    Returns:
        `path`.

    Raises:
        ValueError: an unknown format.
    """
    subs = _caption_file(segments, fmt)
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        subs.save(str(tmp), format_=fmt, encoding="utf-8", **_save_options(fmt))
    return path


def captions_text(segments: Iterable[Segment], fmt: CaptionFormat) -> str:
    """The file `write_captions` would write, as a string (for a result that carries
    its captions inline)."""
    return _caption_file(segments, fmt).to_string(fmt, **_save_options(fmt))


def _save_options(fmt: CaptionFormat) -> dict[str, bool]:
    # keep_ssa_tags: pysubs2 would otherwise read "{...}" in plain SRT/VTT text as
    # override tags and drop it; our text has no tags to convert.
    return {} if fmt == "ass" else {"keep_ssa_tags": True}


def _caption_file(segments: Iterable[Segment], fmt: CaptionFormat) -> Any:
    """A pysubs2 SSAFile of the caption events."""
    import pysubs2  # lazily: profiles that write captions pin it, the handler does not

    if fmt not in _ESCAPE:
        raise ValueError(f"caption format {fmt!r} is not one of {', '.join(CAPTION_FORMATS)}")
    subs = pysubs2.SSAFile()
    if fmt == "ass":
        subs.info["PlayResX"], subs.info["PlayResY"] = "1920", "1080"
        subs.info["WrapStyle"] = "2"  # only our own \N breaks lines: the layout is ours
        subs.styles["Default"] = pysubs2.SSAStyle(
            primarycolor=pysubs2.Color(255, 220, 0),
            secondarycolor=pysubs2.Color(255, 255, 255),
            alignment=pysubs2.Alignment.BOTTOM_CENTER,
            **_ASS_STYLE,
        )
    for seg in segments:
        if fmt == "ass":
            start, end = _cs(seg.start_s) * 10, _cs(seg.end_s) * 10
            text = ass_karaoke_text(seg)
        else:
            start, end = round(seg.start_s * 1000), round(seg.end_s * 1000)
            text = r"\N".join(_ESCAPE[fmt](line) for line in seg.text.split("\n"))
        subs.append(pysubs2.SSAEvent(start=start, end=max(start, end), text=text))
    return subs
