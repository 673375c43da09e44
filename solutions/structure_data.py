"""Solutions of exercises/structure_data.py."""

import numpy as np

PARTNER = {")": "(", "]": "[", "}": "{", ">": "<"}


def bracket_spans(text):
    spans, stack = np.zeros(len(text), dtype=np.int64), []
    for i, c in enumerate(text):
        if c == "\n":
            stack.clear()  # a new line: nothing stays open
        elif c in "([{<":
            stack.append(i)
        elif c in PARTNER:
            spans[i] = i - stack.pop() if stack else -1
    return spans


def _bracket_spans_across_lines(text):
    """Lets brackets stay open across a newline."""
    return bracket_spans(text.replace("\n", " "))


def _bracket_spans_first_opener(text):
    """Matches the oldest open bracket instead of the innermost."""
    spans, queue = np.zeros(len(text), dtype=np.int64), []
    for i, c in enumerate(text):
        if c == "\n":
            queue.clear()
        elif c in "([{<":
            queue.append(i)
        elif c in PARTNER:
            spans[i] = i - queue.pop(0) if queue else -1
    return spans


def window_probabilities(losses, seen, alpha, eps):
    top = losses[seen].max() if seen.any() else 1.0
    w = (np.where(seen, losses, top) + eps) ** alpha
    return w / w.sum()


def _window_probabilities_unseen_zero(losses, seen, alpha, eps):
    """Gives unseen windows a loss of 0: they are almost never visited."""
    w = (np.where(seen, losses, 0.0) + eps) ** alpha
    return w / w.sum()


WRONG = {
    "bracket_spans": [_bracket_spans_across_lines, _bracket_spans_first_opener],
    "window_probabilities": [_window_probabilities_unseen_zero],
}
