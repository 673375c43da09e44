"""Positions: the sinusoidal table and ALiBi slopes/biases against their formulas (the paper's
slopes for 8 heads and for non-powers of two), learned positions, RoPE's relative property and
its offset under a cache, the `Rotate` op's gradient, buffers and errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima import gradcheck, nn
from nima.nn.positional import Rotate, alibi_slopes, sinusoidal_table


# ------------------------------------------------------------------------------ sinusoidal
@pytest.mark.parametrize("d_model", [1, 4, 7, 16])
def test_sinusoidal_table_matches_the_formula_element_by_element(d_model: int) -> None:
    table = sinusoidal_table(50, d_model)
    for p in range(50):
        for c in range(d_model):
            i = c // 2
            angle = p / 10000 ** (2 * i / d_model)
            expected = math.sin(angle) if c % 2 == 0 else math.cos(angle)
            assert table[p, c] == pytest.approx(expected, abs=1e-12)


def test_sinusoidal_module_rows_offset_dtype_and_state() -> None:
    pe = nn.SinusoidalPositionalEncoding(32, 8)
    assert pe(32).shape == (32, 8) and pe(32).dtype == np.float32
    np.testing.assert_allclose(pe(5, offset=10).data, sinusoidal_table(32, 8)[10:15], atol=1e-7)
    assert pe.state_dict() == {} and pe.num_parameters() == 0  # rebuilt, never saved
    pe.double()
    assert pe(3).dtype == np.float64
    assert repr(pe) == "SinusoidalPositionalEncoding(max_len=32, d_model=8)"
    with pytest.raises(ValueError, match=re.escape(
            "SinusoidalPositionalEncoding: positions 30..33 (length 4, offset 30) do not fit in "
            "max_len=32")):
        pe(4, offset=30)


def test_sinusoidal_relative_shift_is_a_rotation() -> None:
    # PE[p + k] is a fixed linear (rotation) function of PE[p], for every p: the property the
    # paper cites for why the table lets a model attend by relative position.
    d, k = 8, 3
    table = sinusoidal_table(40, d)
    omega = 10000.0 ** (-np.arange(0, d, 2) / d)
    for p in range(30):
        for i, w in enumerate(omega):
            s, c = table[p, 2 * i], table[p, 2 * i + 1]
            rotated = (s * math.cos(k * w) + c * math.sin(k * w),
                       c * math.cos(k * w) - s * math.sin(k * w))
            np.testing.assert_allclose(table[p + k, 2 * i:2 * i + 2], rotated, atol=1e-12)


# ------------------------------------------------------------------------------ learned
def test_learned_positions_init_rows_gradient_and_state() -> None:
    nima.manual_seed(0)
    wpe = nn.LearnedPositionalEmbedding(512, 64)
    assert list(wpe.state_dict()) == ["weight"] and wpe.num_parameters() == 512 * 64
    assert abs(wpe.weight.data.std() - 0.02) < 0.001 and abs(wpe.weight.data.mean()) < 0.001
    rows = wpe(3, offset=5)
    np.testing.assert_array_equal(rows.data, wpe.weight.data[5:8])
    (rows * 2).sum().backward()
    expected = np.zeros((512, 64), dtype=np.float32)
    expected[5:8] = 2
    np.testing.assert_array_equal(wpe.weight.grad, expected)
    with pytest.raises(ValueError, match=re.escape(
            "LearnedPositionalEmbedding: positions 510..512 (length 3, offset 510)")):
        wpe(3, offset=510)


# ------------------------------------------------------------------------------ RoPE
def rotate_reference(x: np.ndarray, positions: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """Pair i with i + d/2 and rotate it by p * base^(-2i/d), written as 2x2 matrices."""
    d = x.shape[-1]
    out = np.empty_like(x)
    for t, p in enumerate(positions):
        for i in range(d // 2):
            theta = p * base ** (-2 * i / d)
            c, s = math.cos(theta), math.sin(theta)
            a, b = x[..., t, i], x[..., t, i + d // 2]
            out[..., t, i] = c * a - s * b
            out[..., t, i + d // 2] = s * a + c * b
    return out


def test_rope_matches_rotation_matrices_and_offset() -> None:
    rope = nn.RotaryEmbedding(6, 20)
    x = nima.Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 6)))
    np.testing.assert_allclose(rope(x).data, rotate_reference(x.data, np.arange(4)), atol=1e-12)
    np.testing.assert_allclose(rope(x, offset=7).data, rotate_reference(x.data, np.arange(7, 11)),
                               atol=1e-12)
    # position 0 is the identity; every rotation keeps the norm
    np.testing.assert_allclose(rope(x).data[..., 0, :], x.data[..., 0, :], atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(rope(x, 5).data, axis=-1),
                               np.linalg.norm(x.data, axis=-1), rtol=1e-12)


@settings(max_examples=30)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 20), st.integers(0, 2**16))
def test_rope_score_depends_only_on_the_offset(m: int, n: int, shift: int, seed: int) -> None:
    """<R_m q, R_n k> = <R_{m+s} q, R_{n+s} k> for every shift s."""
    rope = nn.RotaryEmbedding(8, 64)
    rng = np.random.default_rng(seed)
    q = nima.Tensor(rng.standard_normal((1, 8)))  # one position: (T=1, hd)
    k = nima.Tensor(rng.standard_normal((1, 8)))

    def score(pq: int, pk: int) -> float:
        return float((rope(q, offset=pq).data * rope(k, offset=pk).data).sum())

    assert score(m, n) == pytest.approx(score(m + shift, n + shift), abs=1e-10)
    # and it equals q . R_{n-m} k, the relative rotation alone
    if n >= m:
        assert score(m, n) == pytest.approx(score(0, n - m), abs=1e-10)


def test_rope_buffers_are_cached_non_persistent_and_cast() -> None:
    rope = nn.RotaryEmbedding(4, 10, base=100.0)
    assert rope.cos.shape == rope.sin.shape == (10, 2) and rope.cos.dtype == np.float64
    np.testing.assert_allclose(rope.cos.data[3], np.cos(3 * 100.0 ** -(np.arange(0, 4, 2) / 4)),
                               rtol=1e-15)
    assert rope.state_dict() == {} and {n for n, _ in rope.named_buffers()} == {"cos", "sin"}
    assert rope.float().cos.dtype == np.float32
    assert repr(rope) == "RotaryEmbedding(head_dim=4, max_len=10, base=100.0)"


def test_rotate_gradcheck_and_float32() -> None:
    rope = nn.RotaryEmbedding(4, 8)
    x = nima.Tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda x: rope(x, offset=2), [x])
    x32 = nima.randn(2, 3, 4)
    assert nn.RotaryEmbedding(4, 8)(x32).dtype == np.float32
    assert issubclass(Rotate, nima.Function)


def test_rope_errors() -> None:
    with pytest.raises(ValueError, match="RotaryEmbedding: head_dim must be even"):
        nn.RotaryEmbedding(5, 10)
    rope = nn.RotaryEmbedding(4, 10)
    with pytest.raises(ValueError, match=re.escape(
            "RotaryEmbedding: expected input (..., T, 4), got (2, 3, 6)")):
        rope(nima.zeros(2, 3, 6))
    with pytest.raises(ValueError, match=re.escape(
            "RotaryEmbedding: positions 8..10 (length 3, offset 8) do not fit in max_len=10")):
        rope(nima.zeros(1, 3, 4), offset=8)


# ------------------------------------------------------------------------------ ALiBi
def test_alibi_slopes_for_powers_of_two() -> None:
    np.testing.assert_allclose(alibi_slopes(8), [1 / 2**h for h in range(1, 9)], rtol=1e-15)
    np.testing.assert_allclose(alibi_slopes(4), [1 / 4, 1 / 16, 1 / 64, 1 / 256], rtol=1e-15)
    np.testing.assert_allclose(alibi_slopes(16), [2 ** (-h / 2) for h in range(1, 17)],
                               rtol=1e-15)
    np.testing.assert_allclose(alibi_slopes(1), [1 / 256], rtol=1e-15)


@pytest.mark.parametrize("n_head", [3, 5, 6, 12, 20])
def test_alibi_slopes_for_other_head_counts_follow_the_paper(n_head: int) -> None:
    # the paper's code: the slopes of the nearest lower power of two, then every other slope
    # of the next power of two (the ones that fall in between), until there are n_head
    n0 = 2 ** int(math.log2(n_head))
    first = [2 ** (-8 * h / n0) for h in range(1, n0 + 1)]
    between = [2 ** (-8 * h / (2 * n0)) for h in range(1, 2 * n0 + 1, 2)]
    np.testing.assert_allclose(alibi_slopes(n_head), (first + between)[:n_head], rtol=1e-15)
    assert len(set(alibi_slopes(n_head))) == n_head and (alibi_slopes(n_head) < 1).all()


def test_alibi_6_heads_known_answer() -> None:
    np.testing.assert_allclose(alibi_slopes(6), [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3],
                               rtol=1e-15)


def test_alibi_bias_matches_formula_and_offset() -> None:
    alibi = nn.ALiBi(4)
    bias = alibi.bias(3, 5, offset=2)  # queries at positions 2, 3, 4; keys 0..4
    assert bias.shape == (4, 3, 5)
    for h in range(4):
        for i in range(3):
            for j in range(5):
                assert bias[h, i, j] == -alibi.slopes[h] * ((2 + i) - j)
    full = alibi.bias(5, 5)
    np.testing.assert_array_equal(bias, full[:, 2:])  # the cache's rows are the full rows
    np.testing.assert_array_equal(np.diagonal(full, axis1=1, axis2=2), 0.0)
    assert alibi.state_dict() == {} and repr(alibi) == "ALiBi(n_head=4)"
    with pytest.raises(ValueError, match="ALiBi: n_head must be positive"):
        nn.ALiBi(0)
