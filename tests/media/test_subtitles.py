"""Caption layout and the SRT/VTT/ASS writers (media/subtitles.py)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pysubs2
import pytest

from media.subtitles import (
    CAPTION_FORMATS,
    Segment,
    Word,
    ass_karaoke_text,
    join_words,
    segments_from_words,
    wrap_segments,
    write_captions,
)


def words_at(text: str, *, step_s: float = 0.4, dur_s: float = 0.3, start_s: float = 0.0):
    """Evenly spaced words: word i spans [start + i*step, start + i*step + dur]."""
    return [
        Word(w, start_s + i * step_s, start_s + i * step_s + dur_s)
        for i, w in enumerate(text.split())
    ]


def texts(segments):
    return [s.text for s in segments]


# --- joining ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "joined"),
    [
        (["Hello", "world"], "Hello world"),
        ([" Hello", " world", "."], "Hello world."),  # Whisper's leading spaces
        (["Yes", ",", "sir", "!"], "Yes, sir!"),
        (["你好", "世界"], "你好世界"),  # no spaces between CJK words
        (["こんにちは", "World"], "こんにちは World"),
        (["", "  ", "a"], "a"),
    ],
)
def test_join_words(words, joined):
    assert join_words(words) == joined


# --- splitting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        # Fits one line: one event, one line.
        ("Hello there my friend", {}, ["Hello there my friend"]),
        # A sentence end always closes the event.
        ("Hi. How are you?", {}, ["Hi.", "How are you?"]),
        # Two lines, balanced rather than greedy.
        (
            "one two three four five six seven eight",
            {"max_chars_per_line": 20},
            ["one two three four\nfive six seven eight"],
        ),
        # Overflow of two lines: cut after the clause punctuation, not mid-clause.
        (
            "alpha beta, gamma delta epsilon zeta eta",
            {"max_chars_per_line": 12},
            ["alpha beta,", "gamma delta\nepsilon zeta", "eta"],
        ),
        # At most max_lines lines.
        (
            "aa bb cc dd ee ff",
            {"max_chars_per_line": 5, "max_lines": 1},
            ["aa bb", "cc dd", "ee ff"],
        ),
        (
            "aa bb cc dd ee ff",
            {"max_chars_per_line": 5, "max_lines": 3},
            ["aa bb\ncc dd\nee ff"],
        ),
        # A word longer than a line gets a line of its own, never cut.
        (
            "a supercalifragilistic b",
            {"max_chars_per_line": 8},
            ["a\nsupercalifragilistic", "b"],
        ),
    ],
)
def test_segments_from_words_splits_lines(text, kwargs, expected):
    segments = segments_from_words(words_at(text), **kwargs)
    assert texts(segments) == expected
    limit = kwargs.get("max_chars_per_line", 42)
    for seg in segments:
        lines = seg.text.split("\n")
        assert len(lines) <= kwargs.get("max_lines", 2)
        assert all(len(line) <= limit or " " not in line for line in lines)


def test_a_pause_starts_a_new_event():
    words = [*words_at("before the pause"), *words_at("after it", start_s=3.0)]
    segments = segments_from_words(words, max_gap_s=0.8)
    assert texts(segments) == ["before the pause", "after it"]
    assert segments_from_words(words, max_gap_s=5.0)[0].text == "before the pause after it"


def test_a_long_event_is_cut_at_max_duration():
    words = words_at("a b c d e f g h i j", step_s=1.0, dur_s=0.9)
    segments = segments_from_words(words, max_duration_s=3.0)
    assert all(s.end_s - s.start_s <= 3.0 for s in segments)
    assert join_words(texts(segments)) == "a b c d e f g h i j"


def test_timing_follows_the_words_and_short_events_are_held():
    words = [Word("Hi.", 1.0, 1.2), Word("Next", 1.5, 1.8), Word("one.", 1.8, 2.3)]
    first, second = segments_from_words(words, min_duration_s=0.7)
    # Held past its last word into the silence, but never past the next start.
    assert (first.start_s, first.end_s) == (1.0, 1.5)
    assert (second.start_s, second.end_s) == (1.5, 2.3)
    assert first.words == (words[0],)
    assert second.words == tuple(words[1:])


def test_every_word_lands_in_exactly_one_event_in_order():
    text = (
        "It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness. It was the epoch of belief!"
    )
    words = words_at(text, step_s=0.31, dur_s=0.25)
    segments = segments_from_words(words, max_chars_per_line=30)
    assert [w for s in segments for w in s.words] == words
    assert join_words(texts(segments)).replace("\n", " ") == text
    for a, b in itertools.pairwise(segments):
        assert a.end_s <= b.start_s
    for seg in segments:
        assert seg.start_s <= seg.words[0].start_s and seg.words[-1].end_s <= seg.end_s


@pytest.mark.parametrize(
    "kwargs", [{"max_chars_per_line": 0}, {"max_lines": 0}, {"max_duration_s": 0}]
)
def test_segments_from_words_rejects_bad_limits(kwargs):
    with pytest.raises(ValueError, match="must be"):
        segments_from_words(words_at("a b"), **kwargs)


def test_wrap_segments_without_words_shares_time_by_characters():
    seg = Segment(0.0, 10.0, "aaaa bbbb cccc dddd eeee ffff gggg hhhh")
    out = wrap_segments([seg], max_chars_per_line=9, max_lines=2)
    assert texts(out) == ["aaaa bbbb\ncccc dddd", "eeee ffff\ngggg hhhh"]
    assert out[0].start_s == 0.0 and out[-1].end_s == pytest.approx(10.0)
    assert out[0].end_s == pytest.approx(5.0) and out[1].start_s == out[0].end_s


# --- karaoke ------------------------------------------------------------------------

_K = re.compile(r"\{\\k(\d+)\}")


@pytest.mark.parametrize(
    "words",
    [
        [Word("one", 0.0, 0.5), Word("two", 0.5, 1.0)],
        [Word("late", 0.333, 0.777), Word("start", 0.901, 1.456)],  # gaps, odd times
        [Word("overlap", 1.0, 1.6), Word("words", 1.4, 2.0)],  # Whisper can overlap
        [Word("solo.", 12.345, 12.349)],  # shorter than a centisecond, then held
    ],
)
def test_karaoke_tags_sum_to_the_event_duration(words):
    for seg in segments_from_words(words):
        text = ass_karaoke_text(seg)
        duration_cs = round(seg.end_s * 100) - round(seg.start_s * 100)
        assert sum(int(k) for k in _K.findall(text)) == duration_cs
        assert _K.sub("", text).replace(r"\N", " ") == seg.text.replace("\n", " ")


def test_karaoke_covers_an_event_without_word_timings():
    seg = Segment(0.94, 2.5, "no word\ntimings")
    text = ass_karaoke_text(seg)
    assert sum(int(k) for k in _K.findall(text)) == 250 - 94
    assert _K.sub("", text) == r"no word\Ntimings"


def test_karaoke_places_gaps_and_line_breaks():
    seg = Segment(
        0.0,
        1.5,
        "Hello\nworld",
        (Word("Hello", 0.1, 0.5), Word("world", 0.7, 1.2)),
    )
    assert ass_karaoke_text(seg) == r"{\k10}{\k40}Hello{\k20}\N{\k50}world{\k30}"


# --- escaping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "text", "written"),
    [
        ("vtt", "R&D <b> --> x", "R&amp;D &lt;b&gt; --&gt; x"),
        ("ass", "set {x} here", r"set \{x\} here"),
        ("ass", r"C:\new\Name", "C:\\\u2060new\\\u2060Name"),
        ("srt", "a {b} <c>", "a {b} <c>"),
        ("srt", r"path\n", "path\\\u2060n"),
    ],
)
def test_special_characters_are_escaped_per_format(tmp_path: Path, fmt, text, written):
    path = write_captions([Segment(0.0, 1.0, text)], tmp_path / f"c.{fmt}", fmt)
    body = path.read_text(encoding="utf-8")
    assert written in body
    # One event: the special characters never broke it in two or added lines.
    assert len(pysubs2.load(str(path)).events) == 1


# --- round trip through pysubs2 -----------------------------------------------------


@pytest.mark.parametrize("fmt", CAPTION_FORMATS)
def test_pysubs2_reads_back_the_same_events(tmp_path: Path, fmt):
    words = words_at(
        "The quick brown fox jumps over the lazy dog, while the cat sleeps. "
        "Then everyone went home, tired but happy."
    )
    segments = segments_from_words(words, max_chars_per_line=24)
    path = write_captions(segments, tmp_path / f"captions.{fmt}", fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"captions.{fmt}"]  # no temp left

    subs = pysubs2.load(str(path), encoding="utf-8")
    assert subs.format == fmt
    assert len(subs.events) == len(segments)
    step_ms = 10 if fmt == "ass" else 1
    for event, seg in zip(subs.events, segments, strict=True):
        assert abs(event.start - seg.start_s * 1000) <= step_ms / 2
        assert abs(event.end - seg.end_s * 1000) <= step_ms / 2
        assert event.plaintext == seg.text
        if fmt == "ass":
            assert sum(int(k) for k in _K.findall(event.text)) * 10 == event.end - event.start


def test_write_captions_rejects_an_unknown_format(tmp_path: Path):
    with pytest.raises(ValueError, match="'sub'"):
        write_captions([], tmp_path / "x.sub", "sub")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
