"""Solutions of exercises/data.py."""

import math
from collections import Counter

import numpy as np


def token_dtype(vocab_size):
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)  # ids < V


def char_entropy(text, order):
    joint = Counter(text[i - order:i + 1] for i in range(order, len(text)))  # (context, next)
    context = Counter()
    for gram, count in joint.items():
        context[gram[:-1]] += count
    n = sum(joint.values())
    return -sum(c / n * math.log(c / context[g[:-1]]) for g, c in joint.items())


def _char_entropy_joint(text, order):
    """The entropy of the whole (context, next) gram instead of the next given the context."""
    joint = Counter(text[i - order:i + 1] for i in range(order, len(text)))
    n = sum(joint.values())
    return -sum(c / n * math.log(c / n) for c in joint.values())


WRONG = {
    "token_dtype": [lambda V: np.dtype(np.uint16) if V < 2**16 else np.dtype(np.uint32)],
    "char_entropy": [_char_entropy_joint,
                     lambda text, order: _char_entropy_joint(text, order) / math.log(2)],
}
