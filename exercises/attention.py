r"""Exercises of the Attention page (docs/attention.md)."""

import numpy as np

import nima
import nima.functional as F
from exercises import close, equal
from nima.nn import MultiHeadAttention


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    r"""Scaled dot-product attention in NumPy.

    `q` is `(..., Tq, d)`, `k` `(..., Tk, d)`, `v` `(..., Tk, dv)`. Return
    $\operatorname{softmax}(QK^\top/\sqrt d + M)\,V$, `(..., Tq, dv)`. With `causal`, $M$ hides
    the future; when $T_q < T_k$ (new queries after cached keys) the queries are the *last*
    $T_q$ positions, so query $i$ sees keys $j \le T_k - T_q + i$.
    """
    raise NotImplementedError


def check_attention(attention) -> None:
    """Compares with `F.scaled_dot_product_attention` with and without `is_causal`, for
    $T_q = T_k$ and for 2 queries after 3 cached keys."""
    rng = np.random.default_rng(0)
    for tq, tk in [(4, 4), (2, 5)]:
        q, k = rng.standard_normal((2, 3, tq, 8)), rng.standard_normal((2, 3, tk, 8))
        v = rng.standard_normal((2, 3, tk, 5))
        for causal in (False, True):
            expected = F.scaled_dot_product_attention(nima.tensor(q), nima.tensor(k),
                                                      nima.tensor(v), is_causal=causal)
            close(attention(q, k, v, causal), expected,
                  f"the output at Tq={tq}, Tk={tk}, causal={causal}")


def attention_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                       grad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The backward of attention, by hand.

    For $S = QK^\top/\sqrt d$, $P = \operatorname{softmax}(S)$ (no mask) and $Y = PV$, with
    `q` `(T, d)`, `k` `(T, d)`, `v` `(T, dv)` and $\bar Y$ (`grad`, `(T, dv)`), return
    $(\bar Q, \bar K, \bar V)$. Go back one equation at a time: $\bar V$ and $\bar P$ from the
    product, $\bar S$ through the softmax (see [Kernels](kernels.md#the-backward-derived)),
    then $\bar Q$ and $\bar K$ from the scaled product.
    """
    raise NotImplementedError


def check_attention_backward(attention_backward) -> None:
    """Compares with the gradients Nima's autograd gives through
    `F.scaled_dot_product_attention`, for T = 5, d = 4, dv = 3."""
    rng = np.random.default_rng(1)
    q, k, v = (nima.tensor(rng.standard_normal(s), requires_grad=True)
               for s in [(5, 4), (5, 4), (5, 3)])
    grad = rng.standard_normal((5, 3))
    F.scaled_dot_product_attention(q, k, v).backward(gradient=grad)
    got = attention_backward(q.data.copy(), k.data.copy(), v.data.copy(), grad)
    for name, mine, expected in zip("QKV", got, (q.grad, k.grad, v.grad), strict=True):
        close(mine, expected, f"the gradient of {name}")


def gpt2_attention_weight_bytes() -> int:
    r"""Predict the memory of one layer's attention weights.

    GPT-2 small has 12 heads and a context of 1024 tokens. One `MultiHeadAttention` layer,
    run on a batch of one full-length sequence in float32, computes a weight for every query,
    key and head. How many bytes do those weights take? (Tip: write the product, not the
    number.)
    """
    raise NotImplementedError


def check_gpt2_attention_weight_bytes(gpt2_attention_weight_bytes) -> None:
    """Runs a `MultiHeadAttention(768, 12, causal=True)` on a `(1, 1024, 768)` float32 input
    with `need_weights=True` and reads `weights.nbytes`."""
    nima.manual_seed(0)
    layer = MultiHeadAttention(768, 12, causal=True)
    with nima.no_grad():
        _, weights = layer(nima.randn(1, 1024, 768), need_weights=True)
    equal(int(gpt2_attention_weight_bytes()), weights.data.nbytes, "bytes")
