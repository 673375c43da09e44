r"""Exercises of the Tokenizers page (docs/tokenizers.md)."""

from exercises import equal
from nima.data import ByteBPETokenizer

TEXTS = ["aaabdaaabac", "the cat sat on the mat; the hat", "To be, or not to be: that is"]


def bpe_merges(text: str, n: int) -> list[tuple[tuple[int, int], int]]:
    r"""Train byte-pair encoding by hand.

    Start from the UTF-8 bytes of `text` (ids 0–255), with no pre-split. `n` times: count the
    adjacent pairs, take the most frequent — ties broken by the *lowest* pair (smallest first
    id, then second) — and replace every occurrence, left to right, by the next new id (256,
    257, ...). Return the merges in order, `[((a, b), new_id), ...]` (stop early if no pair is
    left).
    """
    raise NotImplementedError


def check_bpe_merges(bpe_merges) -> None:
    """Compares with the merges `ByteBPETokenizer.train(text, 256 + n)` learns, on Wikipedia's
    `aaabdaaabac` and two sentences."""
    for text, n in zip(TEXTS, (3, 8, 10), strict=True):
        expected = list(ByteBPETokenizer.train(text, 256 + n).merges.items())
        equal([(tuple(p), int(i)) for p, i in bpe_merges(text, n)], expected,
              f"the merges of {text!r}")


def bpe_encode(text: str, merges: dict[tuple[int, int], int]) -> list[int]:
    r"""Encode with learned merges.

    `merges` maps a pair to its new id, in the order they were learned (a merge's rank is its
    position). Starting from the bytes of `text`, repeatedly merge every occurrence of the
    adjacent pair whose merge came *earliest*, until no adjacent pair has a merge. Return the
    ids.
    """
    raise NotImplementedError


def check_bpe_encode(bpe_encode) -> None:
    """Trains a tokenizer on each sentence and compares with its `encode`, on the sentence and
    on new text."""
    for text in TEXTS:
        tokenizer = ByteBPETokenizer.train(text, 270)
        for probe in (text, "the bat ate that"):
            equal(list(bpe_encode(probe, dict(tokenizer.merges))), tokenizer.encode(probe),
                  f"the ids of {probe!r} (trained on {text!r})")
