r"""Exercises of tutorial 17, memory beyond the context window."""

import numpy as np

import nima
from exercises import close, equal
from nima.models import GPT, GPTConfig
from nima.nn import MemoryAttention
from nima.training.tasks import stream_logits


def dense_sees(d: int, p: int, T: int) -> bool:
    r"""What a dense GPT can see.

    A plain GPT of context `T` reads a long text the way `stream_logits` reads it: in
    segments of `T` tokens, its window emptied after each. Return whether its logits at
    position `p` (predicting token $p + 1$) can depend on the token at position `d`.
    """
    raise NotImplementedError


def memory_sees(d: int, p: int, T: int, capacity: int) -> bool:
    r"""What a memory layer can see.

    The same reading, by a GPT of two blocks whose second block's attention is a
    `MemoryAttention` with a bank of `capacity` entries (all read, no top-$k$). After each
    segment the layer writes its $T$ keys and values to the bank, which keeps the last
    `capacity` of them. Return whether the logits at `p` can depend on the token at `d`. Mind
    what a stored key was computed from: the second block's input at that position, which the
    first block mixed from its segment so far.
    """
    raise NotImplementedError


def _dependence(parts: dict, T: int, n: int) -> np.ndarray:
    """`(n, n)` bools: whether the logits at p (row) move when the token at d (column)
    changes, for a small random GPT with `parts` read by `stream_logits`."""
    nima.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=T, n_layer=2, n_head=2, n_embd=16,
                          **parts)).double()
    ids = np.random.default_rng(0).integers(0, 7, (1, n))
    base = stream_logits(model, ids)[0]
    moved = np.zeros((n, n), dtype=bool)
    for d in range(n):
        changed = ids.copy()
        changed[0, d] = (changed[0, d] + 1) % 7
        moved[:, d] = np.abs(stream_logits(model, changed)[0] - base).max(-1) > 0
    return moved


def _compare(sees, moved: np.ndarray, what: str) -> None:
    n = moved.shape[0]
    got = np.array([[bool(sees(d, p)) for d in range(n)] for p in range(n)])
    wrong = np.argwhere(got != moved)
    if wrong.size:
        p, d = (int(i) for i in wrong[0])
        raise AssertionError(f"{what}: the logits at position {p} "
                             f"{'do' if moved[p, d] else 'do not'} depend on token {d}, you said "
                             f"{'yes' if got[p, d] else 'no'} ({len(wrong)} of {n * n} pairs "
                             f"wrong)")


def check_dense_sees(dense_sees) -> None:
    """Changes each token of a 22-token text in turn and sees which logits of a small random
    dense GPT (context 4, float64) move, read by `stream_logits`."""
    _compare(lambda d, p: dense_sees(d, p, 4), _dependence({}, 4, 22), "dense, T=4")


def check_memory_sees(memory_sees) -> None:
    """The same, for a GPT whose block 1 is a memory layer, with capacities of 4, 6 and 3
    entries."""
    for capacity in (4, 6, 3):
        moved = _dependence(dict(memory_layers=(1,), memory_capacity=capacity), 4, 22)
        _compare(lambda d, p, c=capacity: memory_sees(d, p, 4, c), moved,
                 f"memory in block 1, T=4, capacity={capacity}")


def memory_read(q: np.ndarray, mem_k: np.ndarray, mem_v: np.ndarray,
                top_k: int | None) -> np.ndarray:
    r"""The memory read of one head.

    `q` `(T, d)` are a segment's queries, `mem_k` and `mem_v` `(M, d)` the bank's keys and
    values. Return `(T, d)`: for each query, a softmax of $q m_j^\top/\sqrt d$ over the
    `top_k` entries with the highest scores (every entry if `top_k` is None or at least $M$),
    and the weighted sum of their values.
    """
    raise NotImplementedError


def check_memory_read(memory_read) -> None:
    """Fills the bank of a one-head `MemoryAttention` whose queries are its input, whose
    output projection is the identity and whose gate is 1, and compares with its output for
    top-k = 1, 3, all (None) and more than the bank holds."""
    rng = np.random.default_rng(2)
    d, M, T = 6, 10, 5
    for top_k in (1, 3, None, 12):
        layer = MemoryAttention(d, 1, block_size=T, capacity=M, top_k=top_k).double().eval()
        layer.qkv.weight.data[...] = np.vstack([np.eye(d), np.zeros((2 * d, d))])  # q = x
        layer.qkv.bias.data[...] = 0.0
        layer.proj.weight.data[...] = np.eye(d)
        layer.proj.bias.data[...] = 0.0
        layer.gate_logit.data[...] = 40.0  # sigmoid(40) is 1.0 in float64: all memory
        layer.write_memory = False
        mem_k, mem_v = 2 * rng.standard_normal((M, d)), rng.standard_normal((M, d))
        layer.memory.write(mem_k[None, None], mem_v[None, None])
        q = rng.standard_normal((T, d))
        with nima.no_grad():
            expected = layer(nima.tensor(q[None])).data[0]
        got = memory_read(q.copy(), mem_k.copy(), mem_v.copy(), top_k)
        equal(np.shape(got), (T, d), f"the shape of the read (top_k={top_k})")
        close(got, expected, f"the read with top_k={top_k}", rtol=1e-9, atol=1e-12)
