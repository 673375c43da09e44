"""Solutions of exercises/tutorial_08.py."""

from itertools import pairwise


def pair_counts(ids):
    counts = {}
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _pair_counts_disjoint(ids):
    """Counts non-overlapping pairs only (0-1, 2-3, ...)."""
    counts = {}
    for i in range(0, len(ids) - 1, 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def decode(ids, vocab):
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def _decode_each_token(ids, vocab):
    """Decodes token by token: a character split across two tokens becomes two U+FFFD."""
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


WRONG = {
    "pair_counts": [_pair_counts_disjoint],
    "decode": [_decode_each_token],
}
