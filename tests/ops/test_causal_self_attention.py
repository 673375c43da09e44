"""`F.causal_self_attention`: the fused causal attention from the packed projection `(B, T, 3C)`.

Oracles: the unfused composition (split the heads, `scaled_dot_product_attention(is_causal=True)`,
merge) in float64; float64 central differences (hypothesis over shapes); the NumPy reference
kernels against the numba ones; NaN placement against the unfused path. Also: which path
`MultiHeadAttention` takes, autocast, and the one-line errors.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
import nima.functional as F
from nima import gradcheck, kernels, nn
from nima.kernels import causal_attention as ca
from nima.nn import attention as attention_module


def unfused(qkv: nima.Tensor, n_head: int, rope: nn.RotaryEmbedding | None = None) -> nima.Tensor:
    """The same attention composed from the general ops (RoPE through its own module)."""
    b, t, width = qkv.shape
    d = width // (3 * n_head)
    heads = qkv.view(b, t, 3 * n_head, d).transpose(1, 2)
    q, k, v = heads[:, :n_head], heads[:, n_head:2 * n_head], heads[:, 2 * n_head:]
    if rope is not None:
        q, k = rope(q), rope(k)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2).reshape(b, t, n_head * d)


def no_tables(dtype: type) -> np.ndarray:
    return np.empty((0, 0), dtype)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 3), st.integers(1, 5))


@settings(max_examples=30, deadline=None)
@given(shapes, st.integers(0, 2**16), st.sampled_from(["numba", "numpy"]), st.booleans())
def test_equals_the_unfused_composition_with_its_gradient(shape, seed: int, backend: str,
                                                          rotary: bool) -> None:
    b, t, n_head, d = shape
    d += d % 2 if rotary else 0  # RoPE rotates pairs of dims
    rope = nn.RotaryEmbedding(d, 16) if rotary else None
    tables = rope.tables(t) if rotary else None
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((b, t, 3 * n_head * d)) * 2
    dy = rng.standard_normal((b, t, n_head * d))
    results = []
    with kernels.backend(backend):
        for fn in (lambda x: F.causal_self_attention(x, n_head, rotary=tables),
                   lambda x: unfused(x, n_head, rope)):
            x = nima.Tensor(data, requires_grad=True)
            y = fn(x)
            y.backward(dy)
            results.append((y.data, x.grad))
    (y1, g1), (y2, g2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(shapes, st.integers(0, 2**16), st.sampled_from([None, 0.7]), st.booleans())
def test_gradcheck(shape, seed: int, scale: float | None, rotary: bool) -> None:
    b, t, n_head, d = shape
    d += d % 2 if rotary else 0
    tables = nn.RotaryEmbedding(d, 16).tables(t) if rotary else None
    x = nima.Tensor(np.random.default_rng(seed).standard_normal((b, t, 3 * n_head * d)), True)
    assert gradcheck(lambda x: F.causal_self_attention(x, n_head, scale, tables), [x])


@settings(max_examples=25, deadline=None)
@given(shapes, st.integers(0, 2**16), st.sampled_from([np.float32, np.float64]))
def test_numba_kernels_match_the_numpy_reference(shape, seed: int, dtype: type) -> None:
    b, t, n_head, d = shape
    rng = np.random.default_rng(seed)
    qkv = (rng.standard_normal((b, t, 3 * n_head * d)) * 3).astype(dtype)
    dy = rng.standard_normal((b, t, n_head * d)).astype(dtype)
    scale = 1 / np.sqrt(d)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    tables = no_tables(dtype), no_tables(dtype)
    y0, p0 = ca.causal_attention_forward_numpy(qkv, n_head, scale, *tables)
    y1, p1 = ca.causal_attention_forward_numba(qkv, n_head, scale, *tables)
    assert y1.dtype == p1.dtype == dtype
    np.testing.assert_allclose(y1, y0, **tol)
    np.testing.assert_allclose(p1, p0, **tol)
    assert np.all(np.triu(p1, 1) == 0)  # nothing after the diagonal
    g0 = ca.causal_attention_backward_numpy(qkv, p0, dy, n_head, scale, *tables)
    g1 = ca.causal_attention_backward_numba(qkv, p1, dy, n_head, scale, *tables)
    np.testing.assert_allclose(g1, g0, **tol)


def test_a_nan_reaches_the_outputs_and_gradients_that_depend_on_it() -> None:
    b, t, n_head, d = 2, 6, 2, 3
    c = n_head * d
    data = np.random.default_rng(0).standard_normal((b, t, 3 * c))
    data[0, 2, 1] = np.nan  # a query of head 0: its own output row only
    data[1, 3, c + d + 1] = np.nan  # a key of head 1: every query of that head from 3 on
    for backend in ("numba", "numpy"):
        with kernels.backend(backend):
            x = nima.Tensor(data, requires_grad=True)
            fused = F.causal_self_attention(x, n_head)
            fused.backward(np.ones(fused.shape))
            x2 = nima.Tensor(data, requires_grad=True)
            ref = unfused(x2, n_head)
            ref.backward(np.ones(ref.shape))
        np.testing.assert_array_equal(np.isnan(fused.data), np.isnan(ref.data))
        nan = np.isnan(fused.data)
        assert nan[0, 2, :d].all() and nan.sum() == d + (t - 3) * d
        # full products also spread a NaN query through the zero weights after the diagonal
        # (0 * NaN) to keys it never saw; the numba kernel walks only the triangle
        assert not (np.isnan(x.grad) & ~np.isnan(x2.grad)).any()
        both = ~np.isnan(x.grad) & ~np.isnan(x2.grad)
        np.testing.assert_allclose(x.grad[both], x2.grad[both], rtol=1e-10, atol=1e-12)
        assert np.isnan(x.grad[0, 2]).any() and np.isnan(x.grad[1, :4]).any()
        if backend == "numba":  # keys after the NaN query (rows 3.., head 0) do not see it
            assert np.isfinite(x.grad[0, 3:, c : c + d]).all()


def test_the_module_takes_the_fused_path_only_for_plain_causal_attention(monkeypatch) -> None:
    calls = []
    real = attention_module.causal_self_attention
    monkeypatch.setattr(attention_module, "causal_self_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    nima.manual_seed(0)
    m = nn.MultiHeadAttention(8, 2, causal=True).double()
    x = nima.Tensor(np.random.default_rng(1).standard_normal((2, 5, 8)))
    fused = m(x)
    assert calls == [1]
    general = m(x, key_padding_mask=np.zeros((2, 5), bool))  # a mask: the general path
    assert calls == [1]
    np.testing.assert_allclose(fused.data, general.data, rtol=1e-12, atol=1e-12)
    m(x, need_weights=True)
    nima.manual_seed(0)
    dropping = nn.MultiHeadAttention(8, 2, causal=True, dropout=0.5).double()
    dropping(x)  # training with dropout: the general path
    dropping.eval()
    dropping(x)  # evaluation: no dropout, fused
    nn.MultiHeadAttention(8, 2, causal=False).double()(x)
    nn.MultiHeadAttention(8, 2, causal=True, alibi=nn.ALiBi(2)).double()(x)
    assert calls == [1, 1]
    nima.manual_seed(0)
    rotary = nn.MultiHeadAttention(8, 2, causal=True, rope=nn.RotaryEmbedding(4, 16)).double()
    fused = rotary(x)  # RoPE rides along in the fused op
    assert calls == [1, 1, 1]
    general = rotary(x, key_padding_mask=np.zeros((2, 5), bool))
    np.testing.assert_allclose(fused.data, general.data, rtol=1e-12, atol=1e-12)


def test_autocast_computes_in_float32_and_returns_float16_gradients() -> None:
    x = nima.Tensor(np.random.default_rng(0).standard_normal((2, 4, 12)).astype(np.float16),
                    requires_grad=True)
    with nima.autocast():
        y = F.causal_self_attention(x, 2)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float16 and np.isfinite(x.grad).all()


def test_errors_name_the_op_and_the_value() -> None:
    op = "causal_self_attention"
    with pytest.raises(ValueError, match=re.escape(
            f"{op}: expected qkv of shape (B, T, 3 C) with C divisible by n_head=2, got "
            f"(2, 4, 9)")):
        F.causal_self_attention(nima.zeros(2, 4, 9), 2)
    with pytest.raises(ValueError, match=re.escape(f"{op}: n_head must be a positive int, got 0")):
        F.causal_self_attention(nima.zeros(2, 4, 6), 0)
    with pytest.raises(ValueError, match=f"{op}: n_head must be a positive int, got True"):
        F.causal_self_attention(nima.zeros(2, 4, 6), True)
    with pytest.raises(TypeError, match=f"{op}: qkv must be a float Tensor, got ndarray"):
        F.causal_self_attention(np.zeros((2, 4, 6)), 1)
    with pytest.raises(TypeError, match=f"{op}: float16 qkv outside nima.autocast"):
        F.causal_self_attention(nima.zeros(2, 4, 6).to(np.float16), 1)
    with pytest.raises(ValueError, match=re.escape(
            "causal_attention_backward: qkv (1, 3, 6) needs weights (1, 1, 3, 3) and a gradient "
            "(1, 3, 2), got (1, 1, 3, 2) and (1, 3, 2)")):
        kernels.causal_attention_backward(np.zeros((1, 3, 6)), np.zeros((1, 1, 3, 2)),
                                          np.zeros((1, 3, 2)), 1, 1.0)
    with pytest.raises(TypeError, match="causal_attention_forward: expected float32 or float64"):
        kernels.causal_attention_forward(np.zeros((1, 3, 6), np.int64), 1, 1.0)
    with pytest.raises(ValueError, match=re.escape(
            "causal_attention_forward: rotary tables for 3 positions of head size 2 must be "
            "(cos, sin) of shape (3, 1), got (4, 1) and (4, 1)")):
        kernels.causal_attention_forward(np.zeros((1, 3, 6)), 1, 1.0,
                                         (np.ones((4, 1)), np.zeros((4, 1))))
