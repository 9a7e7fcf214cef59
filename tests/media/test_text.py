"""The text splitter: sentence, then clause, then word boundaries, within a callback."""

from __future__ import annotations

import pytest

from media.text import fit_sentence, max_chars, sentences, split_text


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("Hello there. How are you?", 100, ["Hello there.", "How are you?"]),
        ("Wait!  Really?! Yes…  ok", 100, ["Wait!", "Really?!", "Yes…", "ok"]),
        ('He said "stop." Then left.', 100, ['He said "stop."', "Then left."]),
        ("No end punctuation", 100, ["No end punctuation"]),
        ("Para one\n\nPara two", 100, ["Para one", "Para two"]),
        ("Dr. Smith came, e.g. today. Then", 100, ["Dr. Smith came, e.g. today.", "Then"]),
        ("   ", 10, []),
        # a long sentence is cut at clauses, and clauses pack back while they fit
        ("one two, three four; five six: seven.", 20, ["one two, three four;", "five six: seven."]),
        ("alpha beta gamma delta.", 11, ["alpha beta", "gamma", "delta."]),
        ("abcdefghij.", 4, ["abcd", "efgh", "ij."]),
        ("a — b — c", 5, ["a — b", "— c"]),
    ],
)
def test_split_text_table(text, limit, expected):
    assert split_text(text, max_chars(limit)) == expected


@pytest.mark.parametrize("limit", [1, 3, 7, 12, 40, 500])
def test_every_piece_fits_and_no_word_is_lost(limit):
    text = (
        "The quick brown fox, which was very quick indeed, jumped over the lazy dog; "
        "the dog did not care. Supercalifragilisticexpialidocious! Is that a word? "
        "Yes — it is, in a film."
    )
    pieces = split_text(text, max_chars(limit))
    assert all(len(p) <= limit for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())


def test_the_callback_decides_not_the_character_count():
    # a callback counting something else (here: vowels, like a phoneme budget)
    def few_vowels(piece: str) -> bool:
        return sum(c in "aeiou" for c in piece) <= 6

    pieces = split_text("a e i o u, a e i o u, a e i o u.", few_vowels)
    assert pieces == ["a e i o u,", "a e i o u,", "a e i o u."]


def test_pack_joins_whole_sentences_while_they_fit():
    text = "One. Two. Three is longer. Four."
    packed = split_text(text, max_chars(14), pack=True)
    assert packed == ["One. Two.", "Three is", "longer.", "Four."]
    assert split_text(text, max_chars(40), pack=True) == [text]
    assert split_text(text, max_chars(40)) == ["One.", "Two.", "Three is longer.", "Four."]


def test_sentences_then_fit_sentence_cut_as_split_text_does():
    asked: list[str] = []

    def fits(piece: str) -> bool:
        asked.append(piece)
        return len(piece) <= 12

    text = "One. Two is longer, with a clause. Dr. Who came."
    cut = sentences(text)
    assert cut == ["One.", "Two is longer, with a clause.", "Dr. Who came."]
    assert asked == []  # no fits asked: a streaming runner checks each one when it speaks it
    pieces = [piece for sentence in cut for piece in fit_sentence(sentence, fits)]
    assert pieces == split_text(text, fits)
