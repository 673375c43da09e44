"""Attention: the fused causal softmax kernel against its NumPy reference (both backends, no-JIT
mode), `F.scaled_dot_product_attention` against a NumPy float64 reference (bool, additive and
causal masks, Tq < Tk alignment, fully masked rows), `MultiHeadAttention` against a per-head
NumPy loop, the causal property, KV-cache decoding equal to the full forward (no positions, RoPE,
ALiBi; cross-attention), key padding, combined masks, float64 gradchecks, and the errors."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
import nima.functional as F
from nima import gradcheck, kernels, nn
from nima.kernels import causal_softmax_forward
from nima.kernels.attention import causal_softmax_forward_numba, causal_softmax_forward_numpy
from nima.nn.attention import KVCache, MultiHeadAttention, causal_mask
from nima.ops.attention import causal_softmax

POSITIONS = ["none", "rope", "alibi"]


def f64(shape: tuple[int, ...], seed: int = 0, requires_grad: bool = True) -> nima.Tensor:
    return nima.Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad)


def sdpa_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, keep: np.ndarray | None = None,
                   bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """softmax(q k^T / sqrt(d) + bias) v in float64, hidden keys weight 0, empty rows 0."""
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if keep is None:
        keep = np.ones(scores.shape, dtype=bool)
    keep = np.broadcast_to(keep, scores.shape) & np.isfinite(scores)
    shifted = np.where(keep, scores, -np.inf)
    m = np.max(shifted, axis=-1, keepdims=True, initial=-np.inf)
    e = np.where(keep, np.exp(shifted - np.where(np.isfinite(m), m, 0)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = e / np.where(total == 0, 1.0, total)
    return weights @ v, weights


def make_mha(pos: str, d_model: int = 8, n_head: int = 2, max_len: int = 16, causal: bool = True,
             seed: int = 0, **kwargs) -> MultiHeadAttention:
    nima.manual_seed(seed)
    rope = nn.RotaryEmbedding(d_model // n_head, max_len) if pos == "rope" else None
    alibi = nn.ALiBi(n_head) if pos == "alibi" else None
    return MultiHeadAttention(d_model, n_head, causal=causal, rope=rope, alibi=alibi,
                              **kwargs).double()


# ------------------------------------------------------------------------------ the kernel
@settings(max_examples=30)
@given(st.integers(1, 6), st.integers(1, 70), st.integers(-8, 8), st.sampled_from(["f4", "f8"]),
       st.integers(0, 2**16))
def test_causal_softmax_kernel_matches_numpy_reference(t_q: int, t_k: int, shift: int,
                                                       dtype: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 3, t_q, t_k)) * 4).astype(dtype)
    x[0, 0, 0, ::3] = -np.inf  # masked entries inside the visible prefix
    x[1, 2, -1] = -np.inf  # a fully masked row
    fused = causal_softmax_forward_numba(x, shift)
    reference = causal_softmax_forward_numpy(x, shift)
    tolerance = 2e-6 if dtype == "f4" else 1e-13
    np.testing.assert_allclose(fused, reference, rtol=tolerance, atol=tolerance)
    visible = np.tri(t_q, t_k, shift, dtype=bool)
    assert (fused[..., ~visible] == 0).all() and np.isfinite(fused).all()
    sums = fused.sum(-1)
    assert np.allclose(sums[(sums > 0)], 1.0, atol=1e-5)


def test_causal_softmax_kernel_follows_the_backend_and_checks_arguments() -> None:
    x = np.random.default_rng(0).standard_normal((2, 4, 6))
    with kernels.backend("numpy"):
        reference = causal_softmax_forward(x)  # shift defaults to Tk - Tq = 2
    np.testing.assert_allclose(causal_softmax_forward(x), reference, rtol=1e-13)
    np.testing.assert_array_equal(reference[:, 0, 3:], 0.0)
    with pytest.raises(ValueError, match=re.escape(
            "causal_softmax_forward: expected scores (..., Tq, Tk), got shape (4,)")):
        causal_softmax_forward(np.zeros(4))
    with pytest.raises(TypeError, match="causal_softmax_forward: expected float32 or float64"):
        causal_softmax_forward(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="causal_softmax: expected float scores"):
        causal_softmax(nima.zeros(3))


def test_causal_softmax_op_equals_mask_then_softmax_with_gradient() -> None:
    s1, s2 = f64((2, 3, 5), 0), f64((2, 3, 5), 0)
    fused = causal_softmax(s1)
    composed = F.softmax(s2.masked_fill(~causal_mask(3, 5), -np.inf), dim=-1)
    np.testing.assert_allclose(fused.data, composed.data, rtol=1e-13, atol=1e-15)
    g = np.random.default_rng(1).standard_normal((2, 3, 5))
    fused.backward(g)
    composed.backward(g)
    np.testing.assert_allclose(s1.grad, s2.grad, rtol=1e-12, atol=1e-15)
    assert gradcheck(causal_softmax, [f64((2, 4, 3), 2)])


def test_causal_softmax_kernel_runs_without_jit() -> None:
    script = (
        "import numba, numpy as np\n"
        "from nima.kernels.attention import causal_softmax_forward_numba as f, "
        "causal_softmax_forward_numpy as r\n"
        "assert numba.config.DISABLE_JIT\n"
        "x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)\n"
        "x[0, 1] = -np.inf\n"
        "for shift in (-1, 0, 2, 9):\n"
        "    np.testing.assert_allclose(f(x, shift), r(x, shift), rtol=1e-5, atol=1e-6)\n"
        "print('ok')\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


# ------------------------------------------------------------------------------ SDPA
@st.composite
def sdpa_case(draw: st.DrawFn) -> dict:
    batch = draw(st.sampled_from([(), (2,), (2, 3), (1, 3)]))
    t_q, t_k = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    d, dv = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mask = draw(st.sampled_from(["none", "bool", "additive", "bool-broadcast"]))
    causal = draw(st.booleans())
    return {"batch": batch, "t_q": t_q, "t_k": t_k, "d": d, "dv": dv, "mask": mask,
            "causal": causal, "seed": draw(st.integers(0, 2**16))}


@settings(max_examples=40)
@given(sdpa_case())
def test_sdpa_matches_numpy_reference(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    batch, t_q, t_k = case["batch"], case["t_q"], case["t_k"]
    q = rng.standard_normal((*batch, t_q, case["d"]))
    k = rng.standard_normal((*batch, t_k, case["d"]))
    v = rng.standard_normal((*batch, t_k, case["dv"]))
    keep = np.tri(t_q, t_k, t_k - t_q, dtype=bool) if case["causal"] else None
    attn_mask, bias = None, None
    if case["mask"] in ("bool", "bool-broadcast"):
        shape = (*batch, t_q, t_k) if case["mask"] == "bool" else (t_k,)
        attn_mask = rng.random(shape) > 0.3
        keep = attn_mask if keep is None else keep & attn_mask
    elif case["mask"] == "additive":
        attn_mask = bias = rng.standard_normal((t_q, t_k))
    out, weights = F.scaled_dot_product_attention(
        nima.Tensor(q), nima.Tensor(k), nima.Tensor(v), attn_mask=attn_mask,
        is_causal=case["causal"], need_weights=True)
    expected, expected_weights = sdpa_reference(q, k, v, keep, bias)
    assert out.shape == (*batch, t_q, case["dv"]) and weights.shape == (*batch, t_q, t_k)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights.data, expected_weights, rtol=1e-12, atol=1e-12)


def test_sdpa_float32_close_to_float64_reference() -> None:
    q, k, v = (f64((2, 3, 6, 8), seed=s, requires_grad=False) for s in range(3))
    out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    expected, _ = sdpa_reference(q.data, k.data, v.data, np.tri(6, 6, dtype=bool))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)


def test_causal_mask_aligns_to_the_end_when_fewer_queries_than_keys() -> None:
    assert causal_mask(2, 3).tolist() == [[True, True, False], [True, True, True]]
    assert causal_mask(1, 4).tolist() == [[True] * 4]  # one new token sees the whole cache
    # more queries than keys: the first queries see nothing
    assert causal_mask(3, 2).tolist() == [[False, False], [True, False], [True, True]]


def test_sdpa_causal_with_fewer_queries_equals_last_rows_of_full() -> None:
    q, k, v = (f64((2, 5, 4), seed=s, requires_grad=False) for s in range(3))
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    last = F.scaled_dot_product_attention(q[:, 3:], k, v, is_causal=True)  # Tq=2 < Tk=5
    np.testing.assert_allclose(last.data, full.data[:, 3:], rtol=1e-13, atol=1e-13)


def test_fully_masked_query_gives_zero_output_and_zero_gradient_not_nan() -> None:
    q, k, v = f64((1, 3, 4), 0), f64((1, 5, 4), 1), f64((1, 5, 2), 2)
    keep = np.ones((3, 5), dtype=bool)
    keep[1] = False  # query 1 may see no key
    out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, need_weights=True)
    assert np.isfinite(out.data).all() and np.isfinite(weights.data).all()
    np.testing.assert_array_equal(out.data[0, 1], 0.0)
    np.testing.assert_array_equal(weights.data[0, 1], 0.0)
    out.sum().backward()
    assert np.isfinite(q.grad).all() and np.isfinite(k.grad).all()
    np.testing.assert_array_equal(q.grad[0, 1], 0.0)
    # additive -inf everywhere in a row behaves the same
    bias = np.where(keep, 0.0, -np.inf)
    out2 = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    np.testing.assert_allclose(out2.data, out.data, rtol=1e-13, atol=1e-13)


def test_sdpa_docstring_example() -> None:
    q, k = nima.Tensor([[1.0]]), nima.Tensor([[0.0], [math.log(3.0)]])
    out, weights = F.scaled_dot_product_attention(q, k, nima.Tensor([[0.0], [4.0]]),
                                                  need_weights=True)
    np.testing.assert_allclose(weights.data, [[0.25, 0.75]], rtol=1e-12)
    np.testing.assert_allclose(out.data, [[3.0]], rtol=1e-12)


def test_sdpa_scale_is_one_over_sqrt_d() -> None:
    # q = k = e_0 * a in d dims: the score is a^2 / sqrt(d) for every key
    d, a = 16, 3.0
    q = nima.Tensor(np.eye(d)[:1] * a)  # (1, d)
    k = nima.Tensor(np.stack([np.eye(d)[0] * a, np.zeros(d)]))  # (2, d): scores a^2/4 and 0
    v = nima.Tensor(np.array([[1.0], [0.0]]))
    out = F.scaled_dot_product_attention(q, k, v)
    s = a * a / math.sqrt(d)
    assert out.item() == pytest.approx(math.exp(s) / (math.exp(s) + 1.0), rel=1e-12)


@pytest.mark.parametrize("variant", ["plain", "causal", "bool", "additive-grad", "cross-shape"])
def test_sdpa_gradcheck(variant: str) -> None:
    t_k = 4 if variant == "cross-shape" else 3
    q, k, v = f64((2, 3, 3), 0), f64((2, t_k, 3), 1), f64((2, t_k, 2), 2)
    inputs = [q, k, v]
    if variant == "causal":
        def fn(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    elif variant == "bool":
        keep = np.array([[True, False, True], [True, True, False], [False, False, False]])

        def fn(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    elif variant == "additive-grad":  # a learned bias gets its gradient too
        inputs.append(f64((3, 3), 3))

        def fn(q, k, v, bias):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=True)
    else:
        def fn(q, k, v):
            return F.scaled_dot_product_attention(q, k, v)
    assert gradcheck(fn, inputs)


def test_sdpa_dropout_drops_weights_and_returns_undropped_weights() -> None:
    q, k, v = (f64((2, 6, 4), seed=s, requires_grad=False) for s in range(3))
    plain = F.scaled_dot_product_attention(q, k, v)
    nima.manual_seed(1)
    dropped, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, need_weights=True)
    assert not np.allclose(dropped.data, plain.data)
    np.testing.assert_allclose(weights.data.sum(-1), 1.0, rtol=1e-12)  # before dropout
    nima.manual_seed(1)
    again = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    np.testing.assert_array_equal(again.data, dropped.data)  # seeded
    zero = F.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
    np.testing.assert_array_equal(zero.data, 0.0)


def test_sdpa_errors_name_the_op_and_shapes() -> None:
    q, k, v = nima.zeros(2, 3, 4), nima.zeros(2, 5, 4), nima.zeros(2, 5, 6)
    op = "scaled_dot_product_attention"
    with pytest.raises(ValueError, match=re.escape(f"{op}: expected q (..., Tq, d), k (..., Tk, "
                                                   f"d), v (..., Tk, dv); got q (2, 3, 4), "
                                                   f"k (2, 5, 3)")):
        F.scaled_dot_product_attention(q, nima.zeros(2, 5, 3), v)
    with pytest.raises(ValueError, match=re.escape("v (2, 4, 6)")):
        F.scaled_dot_product_attention(q, k, nima.zeros(2, 4, 6))
    with pytest.raises(ValueError, match=re.escape(
            f"{op}: attn_mask of shape (3, 4) does not broadcast to the attention scores' "
            f"shape (2, 3, 5)")):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((3, 4), dtype=bool))
    with pytest.raises(TypeError, match=f"{op}: attn_mask must be bool"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((3, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=f"{op}: batch dimensions do not broadcast"):
        F.scaled_dot_product_attention(nima.zeros(3, 3, 4), k, v)
    with pytest.raises(ValueError, match=re.escape(f"{op}: q must be a float tensor (..., T, d)")):
        F.scaled_dot_product_attention(nima.zeros(4), k, v)


# ------------------------------------------------------------------------------ MHA: structure
def mha_reference(m: MultiHeadAttention, x: np.ndarray, context: np.ndarray | None = None,
                  keep: np.ndarray | None = None, bias: np.ndarray | None = None) -> np.ndarray:
    """Per-head NumPy loop: project, attend head by head, concatenate, project."""
    d, nh, hd = m.d_model, m.n_head, m.head_dim
    if m.cross:
        q_all = x @ m.q.weight.data.T + m.q.bias.data
        kv = context @ m.kv.weight.data.T + m.kv.bias.data
        k_all, v_all = kv[..., :d], kv[..., d:]
    else:
        qkv = x @ m.qkv.weight.data.T + m.qkv.bias.data
        q_all, k_all, v_all = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    heads = []
    for h in range(nh):
        cols = slice(h * hd, (h + 1) * hd)
        head_keep = None
        if keep is not None:  # (T, S), or (B, nh or 1, T, S)
            head_keep = keep if keep.ndim < 4 else keep[:, min(h, keep.shape[1] - 1)]
        head_bias = None if bias is None else bias[h]
        out, _ = sdpa_reference(q_all[..., cols], k_all[..., cols], v_all[..., cols],
                                head_keep, head_bias)
        heads.append(out)
    return np.concatenate(heads, axis=-1) @ m.proj.weight.data.T + m.proj.bias.data


def test_mha_parameters_follow_gpt2_names_and_shapes() -> None:
    m = MultiHeadAttention(16, 4)
    shapes = {name: p.shape for name, p in m.named_parameters()}
    assert shapes == {"qkv.weight": (48, 16), "qkv.bias": (48,), "proj.weight": (16, 16),
                      "proj.bias": (16,)}
    cross = MultiHeadAttention(16, 4, cross=True, bias=False)
    assert {name: p.shape for name, p in cross.named_parameters()} == {
        "q.weight": (16, 16), "kv.weight": (32, 16), "proj.weight": (16, 16)}
    assert m.num_parameters() == cross.num_parameters() + 3 * 16 + 16
    assert "MultiHeadAttention(d_model=16, n_head=4, causal=False" in repr(m)


@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_per_head_numpy_loop(causal: bool) -> None:
    m = make_mha("none", d_model=12, n_head=3, causal=causal)
    x = f64((2, 5, 12), requires_grad=False)
    keep = np.tri(5, 5, dtype=bool) if causal else None
    np.testing.assert_allclose(m(x).data, mha_reference(m, x.data, keep=keep), rtol=1e-12,
                               atol=1e-12)


def test_mha_alibi_matches_reference_bias() -> None:
    m = make_mha("alibi", d_model=12, n_head=3)
    x = f64((2, 5, 12), requires_grad=False)
    expected = mha_reference(m, x.data, keep=np.tri(5, 5, dtype=bool), bias=m.alibi.bias(5, 5))
    np.testing.assert_allclose(m(x).data, expected, rtol=1e-12, atol=1e-12)


def test_mha_cross_attention_matches_reference_and_returns_weights() -> None:
    m = make_mha("none", causal=False, cross=True)
    x, context = f64((2, 3, 8), 0, False), f64((2, 5, 8), 1, False)
    y, weights = m(x, context, need_weights=True)
    assert y.shape == (2, 3, 8) and weights.shape == (2, 2, 3, 5)
    np.testing.assert_allclose(y.data, mha_reference(m, x.data, context.data), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(weights.data.sum(-1), 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------ causality, cache
@settings(max_examples=15)
@given(st.sampled_from(POSITIONS), st.integers(0, 5), st.integers(0, 2**16))
def test_causal_outputs_at_t_ignore_inputs_after_t(pos: str, t: int, seed: int) -> None:
    m = make_mha(pos)
    x = f64((2, 6, 8), seed, requires_grad=False)
    changed = x.data.copy()
    changed[:, t + 1:] = np.random.default_rng(seed + 1).standard_normal(changed[:, t + 1:].shape)
    y1, y2 = m(x).data, m(nima.Tensor(changed)).data
    np.testing.assert_allclose(y1[:, :t + 1], y2[:, :t + 1], rtol=1e-12, atol=1e-12)
    if t < 5:
        assert not np.allclose(y1[:, t + 1:], y2[:, t + 1:])


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("prefill", [1, 3])
def test_kv_cache_decoding_equals_full_forward(pos: str, prefill: int) -> None:
    m = make_mha(pos, max_len=8).eval()
    x = f64((2, 7, 8), requires_grad=False)
    full = m(x).data
    cache = KVCache()
    steps = [m(x[:, :prefill], cache=cache).data]  # a prompt, then one token at a time
    for t in range(prefill, 7):
        assert cache.length == t
        steps.append(m(x[:, t:t + 1], cache=cache).data)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)
    assert cache.length == 7 and cache.k.shape == cache.v.shape  # (B, nkv, capacity, hd)
    assert cache.k.shape[:2] == (2, 2) and cache.k.shape[2] >= 7 and cache.k.shape[3] == 4
    cache.reset()
    assert cache.length == 0 and cache.k is None
    np.testing.assert_allclose(m(x[:, :2], cache=cache).data, full[:, :2], rtol=1e-12,
                               atol=1e-12)


def test_kv_cache_decoding_with_key_padding_mask() -> None:
    m = make_mha("rope").eval()
    x = f64((2, 5, 8), requires_grad=False)
    pad = np.zeros((2, 5), dtype=bool)
    pad[1, :2] = True  # sequence 1 is left-padded by two tokens
    full = m(x, key_padding_mask=pad).data
    cache = KVCache()
    steps = [m(x[:, t:t + 1], cache=cache, key_padding_mask=pad[:, :t + 1]).data
             for t in range(5)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)


def test_cross_attention_cache_computes_context_once() -> None:
    m = make_mha("none", causal=False, cross=True).eval()
    x, context = f64((2, 4, 8), 0, False), f64((2, 5, 8), 1, False)
    full = m(x, context).data
    cache = KVCache()
    first = m(x[:, :1], context, cache=cache).data
    assert cache.length == 5  # the context's keys and values
    rest = [m(x[:, t:t + 1], cache=cache).data for t in range(1, 4)]  # no context needed
    assert cache.length == 5
    np.testing.assert_allclose(np.concatenate([first, *rest], axis=1), full, rtol=1e-12,
                               atol=1e-12)


def test_kv_cache_rejects_mismatched_shapes() -> None:
    cache = KVCache()
    cache.append(nima.zeros(2, 2, 3, 4), nima.zeros(2, 2, 3, 4))
    with pytest.raises(ValueError, match=re.escape("KVCache: new keys float32 (1, 2, 1, 4) do not "
                                                   "match the cached float32 (2, 2, 3, 4)")):
        cache.append(nima.zeros(1, 2, 1, 4), nima.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match="new keys float64"):
        cache.append(nima.zeros(2, 2, 1, 4, dtype=nima.float64),
                     nima.zeros(2, 2, 1, 4, dtype=nima.float64))
    full = KVCache(capacity=4)
    full.append(nima.zeros(1, 2, 3, 4), nima.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="5 positions exceed its capacity of 4"):
        full.append(nima.zeros(1, 2, 2, 4), nima.zeros(1, 2, 2, 4))
    with pytest.raises(ValueError, match=r"KVCache\.capacity: must be >= 1, got 0"):
        KVCache(capacity=0)


def test_kv_cache_writes_in_place_and_grows() -> None:
    cache = KVCache()
    rng = np.random.default_rng(0)
    ks = [rng.standard_normal((1, 2, n, 4)) for n in (3, 1, 20)]
    with nima.no_grad():
        for k in ks:
            keys, values = cache.append(nima.Tensor(k), nima.Tensor(-k))
    np.testing.assert_array_equal(keys.data, np.concatenate(ks, axis=2))  # grew past 16
    np.testing.assert_array_equal(values.data, -np.concatenate(ks, axis=2))
    assert np.shares_memory(keys.data, cache.k)  # a view, not a copy
    cache.reorder(np.array([0, 0]))
    assert cache.length == 24 and cache.k.shape[0] == 2
    np.testing.assert_array_equal(cache.k[1, :, :24], np.concatenate(ks, axis=2)[0])


def test_kv_cache_gradient_reaches_the_new_keys() -> None:
    cache = KVCache()
    cache.append(f64((1, 1, 2, 3), 0, False), f64((1, 1, 2, 3), 1, False))
    k, v = f64((1, 1, 1, 3), 2), f64((1, 1, 1, 3), 3)
    k_all, v_all = cache.append(k, v)
    assert k_all.shape == (1, 1, 3, 3)
    (k_all * v_all).sum().backward()
    np.testing.assert_allclose(k.grad, v.data)


def test_rope_cache_past_max_len_names_the_positions() -> None:
    m = make_mha("rope", max_len=4).eval()
    cache = KVCache()
    m(f64((1, 4, 8), requires_grad=False), cache=cache)
    with pytest.raises(ValueError, match=re.escape("RotaryEmbedding: positions 4..4")):
        m(f64((1, 1, 8), requires_grad=False), cache=cache)


# ------------------------------------------------------------------------------ padding masks
@pytest.mark.parametrize("causal", [False, True])
def test_padded_keys_get_zero_weight_and_their_values_do_not_matter(causal: bool) -> None:
    m = make_mha("none", causal=causal)
    x = f64((2, 5, 8), requires_grad=False)
    pad = np.zeros((2, 5), dtype=bool)
    pad[0, 3:] = True  # sequence 0: right padding
    pad[1, 0] = True  # sequence 1: one left pad
    y, weights = m(x, key_padding_mask=pad, need_weights=True)
    np.testing.assert_array_equal(weights.data[0, :, :, 3:], 0.0)
    np.testing.assert_array_equal(weights.data[1, :, :, 0], 0.0)
    keep = ~pad[:, None, None, :] & (np.tri(5, 5, dtype=bool) if causal else True)
    np.testing.assert_allclose(y.data, mha_reference(m, x.data, keep=keep), rtol=1e-12,
                               atol=1e-12)
    changed = x.data.copy()
    changed[0, 3:] = 100.0  # new values at padded positions...
    changed[1, 0] = -50.0
    y2 = m(nima.Tensor(changed), key_padding_mask=pad).data
    # ...leave every non-padded query unchanged (padded queries' own outputs may change)
    np.testing.assert_allclose(y2[0, :3], y.data[0, :3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y2[1, 1:], y.data[1, 1:], rtol=1e-12, atol=1e-12)


def test_cross_attention_padding_ignores_padded_context() -> None:
    m = make_mha("none", causal=False, cross=True)
    x, context = f64((2, 3, 8), 0, False), f64((2, 5, 8), 1, False)
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    y = m(x, context, key_padding_mask=pad).data
    changed = context.data.copy()
    changed[1, 3:] = 7.0
    np.testing.assert_allclose(m(x, nima.Tensor(changed), key_padding_mask=pad).data, y,
                               rtol=1e-12, atol=1e-12)
    # the same as cutting the padding off
    short = m(x[1:], context[1:, :3]).data
    np.testing.assert_allclose(y[1:], short, rtol=1e-12, atol=1e-12)


def test_causal_plus_left_padding_fully_masked_query_outputs_proj_bias() -> None:
    m = make_mha("alibi")
    x = f64((1, 4, 8), requires_grad=True)
    pad = np.array([[True, True, False, False]])
    y, weights = m(x, key_padding_mask=pad, need_weights=True)
    # query 0 may see key 0 only (causal), which is padding: no key left, weights all 0
    np.testing.assert_array_equal(weights.data[0, :, :2], 0.0)
    np.testing.assert_allclose(weights.data[0, :, 2:].sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(y.data[0, 0], m.proj.bias.data, rtol=1e-12)  # proj(0) = bias
    y.sum().backward()
    assert np.isfinite(x.grad).all()


def test_user_attn_mask_combines_with_causal_padding_and_alibi() -> None:
    m = make_mha("alibi")
    x = f64((2, 4, 8), requires_grad=False)
    pad = np.array([[False, False, False, True], [False] * 4])
    user = np.ones((4, 4), dtype=bool)
    user[3, 1] = False  # True = may attend, as in scaled_dot_product_attention
    # MultiHeadAttention's bool mask is torch.nn.MultiheadAttention's: True = blocked
    y, weights = m(x, key_padding_mask=pad, attn_mask=~user, need_weights=True)
    keep = ~pad[:, None, None, :] & np.tri(4, 4, dtype=bool) & user
    expected = mha_reference(m, x.data, keep=keep, bias=m.alibi.bias(4, 4))
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    assert (weights.data[:, :, 3, 1] == 0).all() and (weights.data[0, :, :, 3] == 0).all()
    additive = np.where(user, 0.0, -np.inf)
    np.testing.assert_allclose(m(x, key_padding_mask=pad, attn_mask=additive).data, y.data,
                               rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ gradchecks
@pytest.mark.parametrize("variant", ["self", "causal", "rope", "alibi", "cross", "padding"])
def test_mha_gradcheck(variant: str) -> None:
    pos = variant if variant in ("rope", "alibi") else "none"
    m = make_mha(pos, causal=variant != "self" and variant != "cross",
                 cross=variant == "cross")
    x = f64((2, 3, 8), 0)
    context = f64((2, 4, 8), 1) if variant == "cross" else None
    pad = np.array([[False, False, True], [True, False, False]]) if variant == "padding" else None
    params = list(m.parameters())
    inputs = [x, *params] if context is None else [x, context, *params]

    def fn(x, *rest):
        ctx = rest[0] if context is not None else None
        return m(x, ctx, key_padding_mask=pad)

    assert gradcheck(fn, inputs)


# ------------------------------------------------------------------------------ modes, errors
def test_mha_dropout_only_in_training() -> None:
    m = make_mha("none", dropout=0.5)
    x = f64((2, 6, 8), requires_grad=False)
    nima.manual_seed(0)
    train = m(x).data
    m.eval()
    evaluated = m(x).data
    np.testing.assert_allclose(evaluated, mha_reference(m, x.data, keep=np.tri(6, 6, dtype=bool)),
                               rtol=1e-12, atol=1e-12)
    assert not np.allclose(train, evaluated)


def test_mha_constructor_errors() -> None:
    name = "MultiHeadAttention"
    with pytest.raises(ValueError, match=f"{name}: d_model=10 is not divisible by n_head=3"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: rope.head_dim=8 does not match d_model // n_head = 16 // 4 = 4")):
        MultiHeadAttention(16, 4, rope=nn.RotaryEmbedding(8, 10))
    with pytest.raises(ValueError, match=f"{name}: alibi.n_head=2 does not match n_head=4"):
        MultiHeadAttention(16, 4, alibi=nn.ALiBi(2))
    with pytest.raises(ValueError, match=f"{name}: cross-attention takes no causal mask"):
        MultiHeadAttention(16, 4, cross=True, causal=True)
    with pytest.raises(ValueError, match=re.escape(f"{name}: dropout must be in [0, 1]")):
        MultiHeadAttention(16, 4, dropout=1.5)


def test_mha_forward_errors_name_the_shapes() -> None:
    m, name = MultiHeadAttention(8, 2, causal=True), "MultiHeadAttention"
    with pytest.raises(ValueError, match=re.escape(f"{name}: expected x of shape (B, T, 8), "
                                                   f"got (2, 3, 6)")):
        m(nima.zeros(2, 3, 6))
    with pytest.raises(ValueError, match=f"{name}: context is for cross-attention"):
        m(nima.zeros(2, 3, 8), nima.zeros(2, 3, 8))
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: key_padding_mask must be bool of shape (B, S) = (2, 3) with True at "
            f"padding, got bool (2, 4)")):
        m(nima.zeros(2, 3, 8), key_padding_mask=np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: attn_mask of shape (4, 4) does not broadcast to the attention scores' "
            f"shape (2, 2, 3, 3)")):
        m(nima.zeros(2, 3, 8), attn_mask=np.ones((4, 4), dtype=bool))
    cross = MultiHeadAttention(8, 2, cross=True)
    with pytest.raises(ValueError, match=re.escape(f"{name}: cross-attention needs context of "
                                                   f"shape (2, S, 8), got None")):
        cross(nima.zeros(2, 3, 8))


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
       st.booleans())
@settings(max_examples=15)
def test_grouped_query_sdpa_equals_repeated_keys(kv_heads: int, group: int, t_q: int, t_k: int,
                                                 causal: bool) -> None:
    """Query heads h g .. h g + g - 1 reading key/value head h equal plain attention on keys
    and values repeated g times (Hugging Face's repeat_kv); gradients by central differences."""
    q, k, v = f64((2, kv_heads * group, t_q, 3), 0), f64((2, kv_heads, t_k, 3), 1), \
        f64((2, kv_heads, t_k, 2), 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    repeated = [nima.Tensor(np.repeat(t.data, group, axis=1)) for t in (k, v)]
    expected = F.scaled_dot_product_attention(nima.Tensor(q.data), *repeated, is_causal=causal)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, is_causal=causal, enable_gqa=True), [q, k, v])


def test_gqa_needs_a_multiple_of_the_kv_heads() -> None:
    with pytest.raises(ValueError, match="multiple of the key/value heads"):
        F.scaled_dot_product_attention(f64((1, 3, 2, 4)), f64((1, 2, 2, 4)), f64((1, 2, 2, 4)),
                                       enable_gqa=True)


def test_attention_scores_gradcheck_and_scale() -> None:
    from nima.ops.attention import attention_scores

    q, k = f64((2, 3, 4), 0), f64((2, 5, 4), 1)
    np.testing.assert_allclose(attention_scores(q, k).data,
                               q.data @ k.data.swapaxes(-1, -2) / 2.0, rtol=1e-14)
    np.testing.assert_allclose(attention_scores(q, k, scale=0.3).data,
                               q.data @ k.data.swapaxes(-1, -2) * 0.3, rtol=1e-14)
    assert gradcheck(attention_scores, [q, k])
    assert gradcheck(lambda q, k: attention_scores(q, k, scale=0.3), [q, f64((4, 4), 2)])


def test_forward_pre_hook_replaces_the_input_and_is_removed() -> None:
    layer = nn.Linear(3, 2).double()
    x = f64((1, 3), 0, requires_grad=False)
    plain = layer(x).data
    with layer.register_forward_pre_hook(lambda module, args: args[0] * 2):
        np.testing.assert_allclose(layer(x).data - layer.bias.data,
                                   2 * (plain - layer.bias.data), rtol=1e-12)
    np.testing.assert_array_equal(layer(x).data, plain)  # removed with the block
    handle = layer.register_forward_pre_hook(lambda module, args: None)  # None: unchanged
    np.testing.assert_array_equal(layer(x).data, plain)
    handle.remove()
    assert not layer._forward_pre_hooks
