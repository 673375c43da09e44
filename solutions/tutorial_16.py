"""Solutions of exercises/tutorial_16.py."""

import numpy as np


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _read(layer, x, t, level):
    """The vectors query t reads at `level`: tokens (level 0) or means of sibling chunks."""
    b = layer.chunk_size
    if level == 0:
        return x[t // b * b:t + 1]
    span = b**level
    first = t // (span * b) * b  # the first level-l chunk of t's level-(l+1) chunk
    return np.array([x[j * span:(j + 1) * span].mean(0) for j in range(first, t // span)]
                    ).reshape(-1, x.shape[1])


def _heads(layer, x, levels_of):
    """Projects and attends, one softmax per group of levels `levels_of` gives."""
    T, d = x.shape
    nh = layer.n_head
    hd = d // nh
    W, bias = layer.qkv.weight.data, layer.qkv.bias.data  # (3d, d), (3d,)
    gates = 1 / (1 + np.exp(-layer.gate_logit.data))  # (nh, L + 1)
    out = np.zeros((T, d))
    for t in range(T):
        y = np.zeros(d)
        for h in range(nh):
            rows = slice(h * hd, (h + 1) * hd)
            q = W[:d][rows] @ x[t] + bias[:d][rows]
            for group, gate in levels_of(t, gates[h]):
                vectors = np.concatenate([_read(layer, x, t, level) for level in group])
                if len(vectors) == 0:
                    continue  # no keys at this level
                k = vectors @ W[d:2 * d][rows].T + bias[d:2 * d][rows]
                v = vectors @ W[2 * d:][rows].T + bias[2 * d:][rows]
                y[rows] += gate * _softmax(k @ q / np.sqrt(hd)) @ v
        out[t] = layer.proj.weight.data @ y + layer.proj.bias.data
    return out


def tree_attention_by_hand(layer, x):
    levels = range(layer.levels + 1)
    return _heads(layer, x, lambda t, gates: [([level], gates[level]) for level in levels])


def _tree_attention_ungated(layer, x):
    """Adds the levels' outputs without their branch gates."""
    levels = range(layer.levels + 1)
    return _heads(layer, x, lambda t, gates: [([level], 1.0) for level in levels])


def _tree_attention_one_softmax(layer, x):
    """One softmax over the keys of every level, as if the tree were one dense attention."""
    levels = list(range(layer.levels + 1))
    return _heads(layer, x, lambda t, gates: [(levels, 1.0)])


def cache_sizes(t, b, L):
    # the base-b digits of t: level l holds the completed children of its open chunk; the
    # top level pools nothing, so it keeps every summary it has received
    return [t // b**level % b for level in range(L)] + [t // b**L]


def summary_readers(j, level, b, T):
    span = b**level
    if (j + 1) * span > T:
        return []  # the chunk is not complete within the sequence
    parent_end = (j // b + 1) * span * b  # the end of its level-(l+1) chunk
    return list(range((j + 1) * span, min(parent_end, T)))


WRONG = {
    "tree_attention_by_hand": [_tree_attention_ungated, _tree_attention_one_softmax],
    "cache_sizes": [
        lambda t, b, L: [t // b**level % b for level in range(L + 1)],  # the top wraps too
        lambda t, b, L: [t // b**level for level in range(L + 1)],  # nothing ever pooled
    ],
    "summary_readers": [
        # from the chunk's own first position: reads a summary before its chunk is complete
        lambda j, level, b, T: [] if (j + 1) * b**level > T else
        list(range(j * b**level, min((j // b + 1) * b**(level + 1), T))),
        # every later query: forgets that a summary is read only within its parent chunk
        lambda j, level, b, T: [] if (j + 1) * b**level > T else
        list(range((j + 1) * b**level, T)),
    ],
}

