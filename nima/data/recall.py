r"""Key–value recall across long distances: `set QX 47` early in the text, filler, then
`get QX 47` — and the model must produce `47` though the definition is far back.

The text is lines of three kinds:

    set QX 47          a definition: key QX (two capitals) now holds value 47
    every fox hides ...  filler: words of the synthetic corpus (no capitals, no digits)
    get QX 47          a query: the value is the one QX was last set to

Every query comes at least `min_distance` characters after its definition (and about
`max_distance` at most), with no other definition of that key in between. With a character
tokenizer, characters are tokens: `min_distance = block_size + 1` puts every definition outside
the context window of a model predicting the query's value — dense attention cannot see it, so
only a memory that outlives the window (an echo state, a memory bank) can recall it. The metric is
**recall accuracy by distance**: a query counts as recalled when the model's best guess for
both value digits is right (teacher-forced), grouped into bins of definition-to-query distance.

Example:
    >>> text = generate_recall(n_queries=3, min_distance=40, max_distance=60, seed=0)
    >>> [(q.key, q.value, q.distance >= 40) for q in parse_recall(text)]
    [('KZ', '00', True), ('KC', '57', True), ('YH', '67', True)]
"""

from __future__ import annotations

import heapq
import itertools
import string
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from nima.data.synthetic import valid_words

__all__ = ["RecallBin", "RecallQuery", "generate_recall", "parse_recall", "recall_accuracy"]

VALUE_AT = len("get QX ")  # where the value starts in a `set` or `get` line


class RecallQuery(NamedTuple):
    """A `get` line: its key and value, where its value starts in the text, and how far back
    (in characters) the definition's value starts."""

    key: str
    value: str
    position: int
    distance: int


class RecallBin(NamedTuple):
    """Queries whose distance is in `[low, high)`: how many, and the share recalled."""

    low: int
    high: int
    count: int
    accuracy: float


# --8<-- [start:generate_recall]
def generate_recall(n_queries: int = 200, min_distance: int = 257, max_distance: int = 512,
                    concurrent: int = 4, seed: int = 0) -> str:
    """Draw a text with `n_queries` definitions, each queried once, far away.

    Args:
        n_queries: definitions (and queries) in the text.
        min_distance: the fewest characters from a definition's value to its query's value.
        max_distance: each query is due at a distance drawn uniformly from
            `[min_distance, max_distance]` and comes at the first line start after that.
        concurrent: the most keys defined and not yet queried at any time.
        seed: seeds a `np.random.default_rng`; the same seed gives the same text.

    Returns:
        The text, newline-terminated lines.
    """
    if n_queries < 0 or concurrent < 1:
        raise ValueError(f"generate_recall: n_queries must be >= 0 and concurrent >= 1, got "
                         f"n_queries={n_queries}, concurrent={concurrent}")
    if not 1 <= min_distance <= max_distance:
        raise ValueError(f"generate_recall: expected 1 <= min_distance <= max_distance, got "
                         f"min_distance={min_distance}, max_distance={max_distance}")
    rng = np.random.default_rng(seed)
    words = sorted(valid_words())
    keys = [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]
    lines: list[str] = []
    pending: list[tuple[int, str, str]] = []  # heap of (due position, key, value)
    position = made = asked = 0
    while asked < n_queries:
        if pending and pending[0][0] <= position:  # the oldest due definition: ask for it
            _, key, value = heapq.heappop(pending)
            line = f"get {key} {value}\n"
            asked += 1
        elif made < n_queries and len(pending) < concurrent and rng.random() < 0.5:
            busy = {key for _, key, _ in pending}
            key = str(rng.choice([k for k in keys if k not in busy]))
            value = f"{int(rng.integers(100)):02d}"
            due = position + int(rng.integers(min_distance, max_distance + 1))
            heapq.heappush(pending, (due, key, value))
            line = f"set {key} {value}\n"
            made += 1
        else:  # filler the model can learn, but which says nothing about the keys
            line = " ".join(rng.choice(words, size=int(rng.integers(4, 10)))) + "\n"
        lines.append(line)
        position += len(line)
    return "".join(lines)
# --8<-- [end:generate_recall]


def parse_recall(text: str) -> list[RecallQuery]:
    """The queries of `text` whose definition is in it too, in order.

    Raises:
        ValueError: a query whose value is not the one its key was last set to.
    """
    defined: dict[str, tuple[str, int]] = {}  # key -> (value, where the value starts)
    queries, position = [], 0
    for line in text.splitlines(keepends=True):
        kind, _, rest = line.partition(" ")
        key, value = rest[:2], rest[3:5]
        if kind == "set" and len(line.rstrip("\n")) == VALUE_AT + 2:
            defined[key] = (value, position + VALUE_AT)
        elif kind == "get" and key in defined:
            expected, at = defined[key]
            if value != expected:
                raise ValueError(f"parse_recall: line {line.rstrip()!r} at character {position} "
                                 f"asks for {value}, but {key} was set to {expected}")
            queries.append(RecallQuery(key, value, position + VALUE_AT,
                                       position + VALUE_AT - at))
        position += len(line)
    return queries


# --8<-- [start:recall_accuracy]
def recall_accuracy(text: str, logits: np.ndarray, token_of: Mapping[str, int],
                    edges: list[int]) -> list[RecallBin]:
    """Recall accuracy by distance: for each bin `[edges[i], edges[i+1])`, the share of the
    queries at that distance whose two value digits are both the model's top choice.

    Args:
        text: the characters predicted.
        logits: `(len(text), vocab)`; row `i` scores the token at position `i` of `text`, as
            predicted from what came before it.
        token_of: character -> token id (a char tokenizer's vocabulary).
        edges: increasing bin edges, e.g. `[0, 256, 512, 1024]`.

    Returns:
        One `RecallBin` per bin (accuracy NaN for an empty bin).
    """
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] != len(text):
        raise ValueError(f"recall_accuracy: expected logits of shape ({len(text)}, vocab), got "
                         f"{logits.shape}")
    if len(edges) < 2 or any(a >= b for a, b in itertools.pairwise(edges)):
        raise ValueError(f"recall_accuracy: edges must be increasing, at least two, got {edges}")
    best = logits.argmax(axis=1)  # (len(text),) the model's top token at every position
    hits: list[list[bool]] = [[] for _ in edges[1:]]
    for q in parse_recall(text):
        b = int(np.searchsorted(edges, q.distance, side="right")) - 1
        if 0 <= b < len(hits):
            digits = range(q.position, q.position + 2)
            hits[b].append(all(best[i] == token_of[text[i]] for i in digits))
    return [RecallBin(lo, hi, len(h), float(np.mean(h)) if h else float("nan"))
            for (lo, hi), h in zip(itertools.pairwise(edges), hits, strict=True)]
# --8<-- [end:recall_accuracy]
