"""Split long text for speech: sentences first, then clauses, then words.

A TTS model takes a bounded input per call (Kokoro: 510 phoneme tokens; Piper
slows down and drifts on very long sentences), and a streaming job wants audio
per sentence. ``split_text`` cuts at the most natural boundary that makes each
piece fit, where "fit" is the caller's callback (a character count for Piper,
a phoneme count from the runner's own G2P for Kokoro), so this module needs no
model library. Stdlib only: it runs in profile environments.

Why hand-written: the libraries that segment sentences well (spaCy, pysbd,
nltk) are heavy or need data downloads, and the callback-bounded packing below
is the part no library offers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A sentence ends at . ! ? … (possibly repeated) plus closing quotes/brackets,
# followed by whitespace; a blank line ends one too.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+|\n\s*\n")
# Words whose final period does not end a sentence (English; other languages
# at worst get a pause there).
_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e|approx|No|Fig)\.$"
)
# A clause ends after , ; : or a dash, followed by whitespace.
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+|\s+(?=[—–]\s)")


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` cut after each match of ``pattern``, keeping the punctuation."""
    out: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        piece = text[start : match.start()].strip()
        if piece:
            out.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def _join_abbreviations(sentences: list[str]) -> list[str]:
    """Undo cuts after a title or a short abbreviation (``Dr. Smith``, ``e.g. this``)."""
    out: list[str] = []
    for sentence in sentences:
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] = f"{out[-1]} {sentence}"
        else:
            out.append(sentence)
    return out


def _pack(pieces: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Join neighbouring ``pieces`` with spaces while the joined text still fits."""
    out: list[str] = []
    for piece in pieces:
        if out and fits(joined := f"{out[-1]} {piece}"):
            out[-1] = joined
        else:
            out.append(piece)
    return out


def _hard_split(word: str, fits: Callable[[str], bool]) -> list[str]:
    """The longest fitting prefixes of a single word that fits nowhere whole."""
    out: list[str] = []
    rest = word
    while rest:
        end = len(rest)
        while end > 1 and not fits(rest[:end]):
            end -= 1
        out.append(rest[:end])
        rest = rest[end:]
    return out


def _split_to_fit(text: str, fits: Callable[[str], bool]) -> list[str]:
    if fits(text):
        return [text]
    clauses = _pieces(text, _CLAUSE_END)
    if len(clauses) > 1:
        parts = [p for clause in clauses for p in _split_to_fit(clause, fits)]
        return _pack(parts, fits)
    words = text.split()
    if len(words) > 1:
        parts = [p for word in words for p in _split_to_fit(word, fits)]
        return _pack(parts, fits)
    return _hard_split(text, fits)


def split_text(text: str, fits: Callable[[str], bool], *, pack: bool = False) -> list[str]:
    """``text`` as an ordered list of pieces, each one sentence or part of one.

    Each sentence becomes its own piece (so streaming has one chunk per
    sentence), or with ``pack`` whole sentences are joined while they fit (fewer,
    longer model calls when nobody waits for the first chunk); a sentence
    that does not fit is cut at clause boundaries, then
    at word boundaries, and neighbouring parts of it are packed back together
    while they fit. A single word that fits nowhere is cut by characters.
    Whitespace inside a piece is kept as written; nothing is dropped except
    whitespace at the cuts.

    Args:
        text: the input text.
        fits: True when a piece is short enough for one model call.
        pack: join neighbouring whole sentences while the result fits.

    Returns:
        The pieces, in order; empty when ``text`` is only whitespace.
    """
    cut = sentences(text)
    if pack:
        cut = _pack(cut, fits)
    return [part for sentence in cut for part in _split_to_fit(sentence, fits)]


def sentences(text: str) -> list[str]:
    """``text``'s sentences as :func:`split_text` cuts them, before any ``fits``.

    With :func:`fit_sentence`, a runner whose ``fits`` costs real work (Kokoro
    counts phonemes with its G2P) can check each sentence just before it speaks it,
    so its first audio waits for one sentence's check, not the whole text's.
    """
    return _join_abbreviations(_pieces(text, _SENTENCE_END))


def fit_sentence(sentence: str, fits: Callable[[str], bool]) -> list[str]:
    """One of :func:`sentences` cut as :func:`split_text` cuts it (unpacked)."""
    return _split_to_fit(sentence, fits)


def max_chars(limit: int) -> Callable[[str], bool]:
    """A ``fits`` callback: at most ``limit`` characters."""
    return lambda piece: len(piece) <= limit
