r"""Exercises of the Data page (docs/data.md)."""

import numpy as np

from exercises import close, equal
from nima.data.dataset import token_dtype as nima_token_dtype
from nima.data.synthetic import char_entropy as nima_char_entropy
from nima.data.synthetic import generate_corpus


def token_dtype(vocab_size: int) -> np.dtype:
    r"""The dtype of a `.bin` file.

    Return the smallest unsigned NumPy dtype that holds every id of a vocabulary of
    `vocab_size` tokens (ids $0 \dots V - 1$): `uint16` or `uint32`. Mind the boundary.
    """
    raise NotImplementedError


def check_token_dtype(token_dtype) -> None:
    """Compares with `nima.data.dataset.token_dtype` around the boundary and for the
    vocabularies on the page."""
    for V in (65, 256, 50257, 65535, 65536, 65537, 100_000):
        equal(np.dtype(token_dtype(V)), nima_token_dtype(V), f"the dtype for V = {V}")


def char_entropy(text: str, order: int) -> float:
    r"""How predictable is the next character?

    Return the empirical conditional entropy in nats of the next character given the `order`
    characters before it, $H_k = -\sum_{c,x} p(c, x) \ln p(x \mid c)$, with every probability
    counted on `text` itself over the positions that have `order` characters before them.
    """
    raise NotImplementedError


def check_char_entropy(char_entropy) -> None:
    """Compares with `nima.data.synthetic.char_entropy` on `"abab"` and on a synthetic corpus
    for orders 0 to 3."""
    text = generate_corpus(20, seed=0)
    for sample, order in [("abab", 0), ("abab", 1), (text, 0), (text, 1), (text, 2), (text, 3)]:
        close(char_entropy(sample, order), nima_char_entropy(sample, order),
              f"H_{order} of a text of {len(sample)} characters", rtol=1e-9, atol=1e-12)
