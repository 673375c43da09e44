r"""Exercises of the Interoperability page (docs/interop.md)."""

import numpy as np

import nima
from exercises import close
from nima.nn import RotaryEmbedding


def rope_permutation(n_head: int, head_dim: int) -> np.ndarray:
    r"""From interleaved RoPE to rotate-half.

    Meta's LLaMA checkpoints rotate the neighbouring dimensions $(2i, 2i+1)$ of each head;
    Nima (and `transformers`) rotate $i$ with $i + d_h/2$. Return the permutation `perm` of
    the `n_head * head_dim` output rows of a query (or key) projection such that `W[perm]`,
    rotated the rotate-half way, gives every head the same attention scores as `W` rotated the
    interleaved way: within each head, row $2i$ goes to place $i$ and row $2i + 1$ to place
    $i + d_h/2$.
    """
    raise NotImplementedError


def _interleaved_rope(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Meta's rotation of `(T, hd)` rows: pairs (2i, 2i+1) turn by `p * 10000 ** (-2i/hd)`."""
    hd = x.shape[-1]
    angle = positions[:, None] * 10000.0 ** (-np.arange(0, hd, 2) / hd)  # (T, hd/2)
    even, odd = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = even * np.cos(angle) - odd * np.sin(angle)
    out[:, 1::2] = even * np.sin(angle) + odd * np.cos(angle)
    return out


def check_rope_permutation(rope_permutation) -> None:
    """Scores every query against every key of 6 positions, per head, with Meta's interleaved
    rotation on the original weights and with Nima's `RotaryEmbedding` on the permuted
    ones, and compares."""
    rng = np.random.default_rng(0)
    n_head, hd, d, T = 3, 8, 10, 6
    Wq, Wk = rng.standard_normal((n_head * hd, d)), rng.standard_normal((n_head * hd, d))
    x = rng.standard_normal((T, d))
    perm = np.asarray(rope_permutation(n_head, hd))
    rope = RotaryEmbedding(hd, 16)
    for h in range(n_head):
        rows = slice(h * hd, (h + 1) * hd)
        q, k = (_interleaved_rope(x @ W[rows].T, np.arange(T)) for W in (Wq, Wk))
        expected = q @ k.T
        qp, kp = ((x @ W[perm][rows].T)[None, None] for W in (Wq, Wk))
        got = rope(nima.tensor(qp)).data[0, 0] @ rope(nima.tensor(kp)).data[0, 0].T
        close(got, expected, f"head {h}'s scores")


def widen_bfloat16(bits: np.ndarray) -> np.ndarray:
    r"""Read bfloat16 exactly.

    `bits` is a `uint16` array of bfloat16 numbers — the top 16 bits of a float32 (sign, 8
    exponent bits, 7 mantissa bits). Return them as float32, exactly.
    """
    raise NotImplementedError


def check_widen_bfloat16(widen_bfloat16) -> None:
    """Makes float32 numbers that bfloat16 holds exactly (low 16 bits zero: ±0, ±∞, tiny and
    huge values included), hands you their top halves and compares bit for bit."""
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.standard_normal(50) * 10.0 ** rng.integers(-30, 30, 50),
                             [0.0, -0.0, np.inf, -np.inf, 1.0, -2.5, 3e38, 1e-38]])
    exact = (values.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    got = np.asarray(widen_bfloat16((exact.view(np.uint32) >> 16).astype(np.uint16)))
    close(got.view(np.uint32) if got.dtype == np.float32 else got, exact.view(np.uint32),
          "the bits of the widened numbers")
