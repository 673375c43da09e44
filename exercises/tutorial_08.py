r"""Exercises of tutorial 08, BPE from scratch."""

from exercises import equal
from nima.data import ByteBPETokenizer
from nima.data.tokenizers import get_stats


def pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    r"""Count adjacent pairs.

    Return how often each adjacent pair of `ids` occurs, overlapping pairs included:
    `[97, 97, 97]` has the pair `(97, 97)` twice.
    """
    raise NotImplementedError


def check_pair_counts(pair_counts) -> None:
    """Compares with `nima.data.tokenizers.get_stats` on short and repetitive sequences."""
    for ids in ([1, 2, 3, 1, 2], [97, 97, 97], [5], [], list(b"aaabdaaabac"), [7, 7, 7, 7]):
        equal(dict(pair_counts(list(ids))), get_stats(list(ids)), f"the counts of {ids}")


def decode(ids: list[int], vocab: dict[int, bytes]) -> str:
    r"""Decode byte-level tokens.

    `vocab` maps each id to the bytes it stands for. Join the bytes of all the ids *first*,
    then decode them as UTF-8 with `errors="replace"`: a character may be split across two
    tokens, and a model may emit half of one.
    """
    raise NotImplementedError


def check_decode(decode) -> None:
    """Compares with `ByteBPETokenizer.decode` on text whose multi-byte characters are split
    across tokens, and on a sequence that ends in the middle of an emoji."""
    tokenizer = ByteBPETokenizer.train("héllo wörld, héllo wörld 🙂🙂", 265)
    for text in ("héllo wörld", "🙂 é ö"):
        ids = tokenizer.encode(text)
        equal(decode(ids, dict(tokenizer.vocab)), tokenizer.decode(ids), f"the text of {text!r}")
    half = tokenizer.encode("ok ") + list("🙂".encode())[:2]  # byte ids: two of its four bytes
    equal(decode(half, dict(tokenizer.vocab)), tokenizer.decode(half), "half an emoji")
