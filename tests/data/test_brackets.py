"""Dyck lines: valid, seeded, with long spans; bracket_spans against a hand-worked example;
closing-bracket accuracy against oracle predictions; errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nima.data.brackets import (
    CLOSE,
    OPEN,
    bracket_spans,
    closing_bracket_accuracy,
    generate_brackets,
    is_dyck,
)
from nima.data.tokenizers import CharTokenizer


@given(length=st.integers(1, 40).map(lambda n: 2 * n), pairs=st.integers(1, 4),
       depth=st.integers(1, 6), p=st.floats(0.05, 0.95), seed=st.integers(0, 999))
@settings(max_examples=40)
def test_every_line_is_a_dyck_word_of_the_asked_shape(length: int, pairs: int, depth: int,
                                                      p: float, seed: int) -> None:
    lines = generate_brackets(5, length, pairs, depth, p, seed).splitlines()
    assert len(lines) == 5
    for line in lines:
        assert len(line) == length and is_dyck(line)
        assert set(line) <= set(OPEN[:pairs] + CLOSE[:pairs])
        depth_now = np.cumsum([1 if c in OPEN else -1 for c in line])
        assert depth_now.max() <= depth


def test_seeded() -> None:
    assert generate_brackets(20, 64, seed=4) == generate_brackets(20, 64, seed=4)
    assert generate_brackets(20, 64, seed=4) != generate_brackets(20, 64, seed=5)


def test_pairs_reach_beyond_a_context_window() -> None:
    spans = bracket_spans(generate_brackets(100, 512, seed=1))
    closers = spans[spans > 0]
    assert (closers > 128).mean() > 0.02  # some matches are far apart ...
    assert np.median(closers) < 8  # ... most are close


def test_bracket_spans_hand_worked() -> None:
    assert bracket_spans("(()))").tolist() == [0, 0, 1, 3, -1]
    assert bracket_spans("([]\n)").tolist() == [0, 0, 1, 0, -1]  # a newline closes the line
    assert is_dyck("([]{<>})") and not is_dyck("([)]") and not is_dyck("((") and \
        not is_dyck("(a)")


def test_closing_bracket_accuracy_against_oracle_predictions() -> None:
    text = "([]{<>})\n"
    tok = CharTokenizer.train(text)
    token_of = {c: tok.encode(c)[0] for c in set(text)}
    right = np.zeros((len(text), tok.vocab_size))
    for i, c in enumerate(text):
        right[i, token_of[c]] = 5.0
    assert closing_bracket_accuracy(text, right, token_of) == 1.0
    wrong = right.copy()
    for i, c in enumerate(text):  # favour another closer at every closing position
        if c in CLOSE:
            other = CLOSE[(CLOSE.index(c) + 1) % 4]
            wrong[i, token_of[other]] = 9.0
    assert closing_bracket_accuracy(text, wrong, token_of) == 0.0
    wrong[7, token_of[")"]] = 20.0  # the outermost closer right again: 1 of 4
    assert closing_bracket_accuracy(text, wrong, token_of) == 0.25
    assert closing_bracket_accuracy(text, wrong, token_of, min_span=5) == 1.0  # ")" spans 7
    opener_favoured = right.copy()
    opener_favoured[:, token_of["("]] = 50.0  # open/close is not scored, only which closer
    assert closing_bracket_accuracy(text, opener_favoured, token_of) == 1.0
    assert np.isnan(closing_bracket_accuracy(text, right, token_of, min_span=100))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"length": 7}, "length must be even, got 7"),
    ({"length": 0}, "length must be >= 2, got 0"),
    ({"pairs": 5}, r"pairs must be in \[1, 4\], got 5"),
    ({"max_depth": 0}, "max_depth must be >= 1, got 0"),
    ({"p_open": 1.0}, r"p_open must be in \(0, 1\), got 1.0"),
    ({"n_lines": -1}, "n_lines must be >= 0, got -1"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_brackets(**kwargs)


def test_bad_logits() -> None:
    with pytest.raises(ValueError, match=r"expected logits of shape \(3, vocab\), got \(2, 5\)"):
        closing_bracket_accuracy("(()", np.zeros((2, 5)), {"(": 0, ")": 1})
