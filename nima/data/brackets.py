r"""Nested brackets: lines of a Dyck language, where every closing bracket must match the
opening one that is still open — possibly far back.

A Dyck word over $k$ bracket pairs is a string in which brackets nest properly: `([]{<>})`.
Which *closing* bracket comes next is fully determined by the text so far — the innermost
bracket still open — however long ago it was opened; whether the next character opens or closes
is a coin flip. So a language model can at best guess the open/close decision, but should get
every closer right: **closing-bracket accuracy**, the share of closing positions where the
model's best closer is the right one, measures exactly the long-range matching (a stack), not the
coin flips. Dyck languages are the standard probe of whether a network can count and nest
(e.g. Hewitt et al., 2020; Ebrahimi et al., 2020).

Each line is drawn by a random walk on the depth: open with probability `p_open` (never beyond
`max_depth`, and only while the line can still close everything), else close. With
`p_open = 0.5` the distance between a bracket and its partner is heavy-tailed — most pairs are
short, the outer ones span most of the line — so lines of a few hundred characters hold pairs
further apart than a model's context window.

Example:
    >>> generate_brackets(n_lines=2, length=8, seed=0).splitlines()
    ['<{()}>()', '<>{}[<>]']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["CLOSE", "OPEN", "bracket_spans", "closing_bracket_accuracy", "generate_brackets",
           "is_dyck"]

OPEN, CLOSE = "([{<", ")]}>"
_PARTNER = dict(zip(CLOSE, OPEN, strict=True))


# --8<-- [start:generate_brackets]
def generate_brackets(n_lines: int = 200, length: int = 256, pairs: int = 4,
                      max_depth: int = 16, p_open: float = 0.5, seed: int = 0) -> str:
    """Draw `n_lines` Dyck words of exactly `length` brackets each, one per line.

    Args:
        n_lines: lines of text.
        length: brackets per line (even).
        pairs: how many bracket types, 1–4 (`()`, `[]`, `{}`, `<>`).
        max_depth: the deepest nesting allowed.
        p_open: the chance of opening when both opening and closing are allowed.
        seed: seeds a `np.random.default_rng`; the same seed gives the same text.

    Returns:
        The lines, each newline-terminated.
    """
    for key, value, low in (("n_lines", n_lines, 0), ("length", length, 2),
                            ("max_depth", max_depth, 1)):
        if value < low:
            raise ValueError(f"generate_brackets: {key} must be >= {low}, got {value}")
    if length % 2:
        raise ValueError(f"generate_brackets: length must be even, got {length}")
    if not 1 <= pairs <= len(OPEN):
        raise ValueError(f"generate_brackets: pairs must be in [1, {len(OPEN)}], got {pairs}")
    if not 0.0 < p_open < 1.0:
        raise ValueError(f"generate_brackets: p_open must be in (0, 1), got {p_open}")
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_lines):
        stack: list[int] = []  # the types still open, innermost last
        line = []
        for i in range(length):
            left = length - i  # characters still to write, this one included
            can_open = len(stack) < max_depth and len(stack) + 1 <= left - 1
            if not stack or (can_open and rng.random() < p_open):
                kind = int(rng.integers(pairs))
                stack.append(kind)
                line.append(OPEN[kind])
            else:
                line.append(CLOSE[stack.pop()])
        lines.append("".join(line) + "\n")
    return "".join(lines)
# --8<-- [end:generate_brackets]


def is_dyck(line: str) -> bool:
    """Whether `line` is a properly nested bracket string (other characters not allowed).

    Example:
        >>> is_dyck("([]{<>})"), is_dyck("([)]"), is_dyck("((")
        (True, False, False)
    """
    stack = []
    for c in line:
        if c in OPEN:
            stack.append(c)
        elif c not in CLOSE or not stack or stack.pop() != _PARTNER[c]:
            return False
    return not stack


def bracket_spans(text: str) -> np.ndarray:
    """For each position of `text`, the distance back to the opener a closing bracket matches
    (0 for other characters, -1 for a closer whose opener is not in `text`, e.g. a window that
    starts inside a line). Newlines end every open bracket.

    Example:
        >>> bracket_spans("(()))").tolist()
        [0, 0, 1, 3, -1]
    """
    spans = np.zeros(len(text), dtype=np.int64)
    stack: list[int] = []
    for i, c in enumerate(text):
        if c == "\n":
            stack.clear()
        elif c in OPEN:
            stack.append(i)
        elif c in CLOSE:
            spans[i] = i - stack.pop() if stack else -1
    return spans


# --8<-- [start:closing_bracket_accuracy]
def closing_bracket_accuracy(text: str, logits: np.ndarray, token_of: Mapping[str, int],
                             min_span: int = 0) -> float:
    """The share of closing brackets in `text` that the model predicts right, choosing among
    the closing brackets only (whether to close at all is a coin flip, not scored).

    Args:
        text: the characters predicted, position by position.
        logits: `(len(text), vocab)`; row `i` scores the token at position `i` of `text`, as
            predicted from what came before it.
        token_of: character -> token id (a char tokenizer's vocabulary).
        min_span: score only closers whose opener is at least this far back (`bracket_spans`),
            e.g. `block_size` for the pairs a window cannot hold whole.

    Returns:
        The accuracy in [0, 1]; NaN if no closer qualifies.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] != len(text):
        raise ValueError(f"closing_bracket_accuracy: expected logits of shape ({len(text)}, "
                         f"vocab), got {logits.shape}")
    closers = [c for c in CLOSE if c in token_of]
    ids = np.array([token_of[c] for c in closers])  # the closing brackets' token ids
    spans = bracket_spans(text)
    scored = [i for i, c in enumerate(text) if c in CLOSE and (min_span == 0 or
                                                               spans[i] >= min_span)]
    if not scored:
        return float("nan")
    best = ids[np.argmax(logits[scored][:, ids], axis=1)]  # the model's favourite closer
    return float(np.mean(best == np.array([token_of[text[i]] for i in scored])))
# --8<-- [end:closing_bracket_accuracy]
