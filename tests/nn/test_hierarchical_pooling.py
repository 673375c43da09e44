"""HierarchicalPooling and upsample: NumPy oracles for the pyramid, the attention pool's limits,
float64 hypothesis gradchecks, the causal shift, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima import gradcheck, kernels
from nima.nn.hierarchical_pooling import HierarchicalPooling, upsample


def make(mode: str, b: int = 2, levels: int = 2, d: int = 3, seed: int = 0) -> HierarchicalPooling:
    pool = HierarchicalPooling(d, b, levels, mode).double()
    if mode == "attention":  # away from zero, so the pool is not the mean
        pool.query.data[:] = np.random.default_rng(seed).standard_normal(pool.query.shape)
    return pool


def test_docstring_example_mean() -> None:
    x = np.arange(15.0).reshape(1, 5, 3)  # x_0..x_4
    s1, s2 = make("mean")(nima.tensor(x))
    np.testing.assert_allclose(s1.data[0], [(x[0, 0] + x[0, 1]) / 2, (x[0, 2] + x[0, 3]) / 2])
    np.testing.assert_allclose(s2.data[0], [x[0, :4].mean(0)])  # x_4's chunk is not complete


@given(b=st.integers(2, 4), levels=st.integers(1, 3), T=st.integers(0, 40), seed=st.integers(0, 99))
@settings(max_examples=30)
def test_mean_pyramid_is_the_mean_of_each_chunk(b: int, levels: int, T: int, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal((2, T, 3))
    pyramid = make("mean", b, levels)(nima.tensor(x))
    assert len(pyramid) == levels
    for level, s in enumerate(pyramid, start=1):
        unit = b ** level
        assert s.shape == (2, T // unit, 3)
        expected = [x[:, j * unit:(j + 1) * unit].mean(1) for j in range(T // unit)]
        if expected:
            np.testing.assert_allclose(s.data, np.stack(expected, 1), rtol=1e-12, atol=1e-12)


def test_attention_pool_is_softmax_weighted_children() -> None:
    pool = make("attention", b=3, levels=2, d=4)
    x = np.random.default_rng(1).standard_normal((2, 9, 4))
    s1, s2 = pool(nima.tensor(x))
    w = pool.query.data
    children = x.reshape(2, 3, 3, 4)  # (B, n, b, C)
    scores = children @ w[0] / 2.0  # / sqrt(4)
    alpha = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    expected1 = (alpha[..., None] * children).sum(2)
    np.testing.assert_allclose(s1.data, expected1, rtol=1e-12)
    scores2 = expected1 @ w[1] / 2.0  # level 2 pools the level-1 summaries
    alpha2 = np.exp(scores2) / np.exp(scores2).sum(-1, keepdims=True)
    np.testing.assert_allclose(s2.data[:, 0], (alpha2[..., None] * expected1).sum(1), rtol=1e-12)


def test_attention_pool_starts_as_the_mean() -> None:
    x = nima.tensor(np.random.default_rng(2).standard_normal((1, 8, 3)))
    fresh = HierarchicalPooling(3, 2, 3, "attention").double()
    for a, m in zip(fresh(x), make("mean", 2, 3)(x), strict=True):
        np.testing.assert_allclose(a.data, m.data, rtol=1e-12)


@given(mode=st.sampled_from(["mean", "attention"]), b=st.integers(2, 3),
       levels=st.integers(1, 2), T=st.integers(4, 10), seed=st.integers(0, 99))
@settings(max_examples=15)
def test_gradcheck_pyramid(mode: str, b: int, levels: int, T: int, seed: int) -> None:
    pool = make(mode, b, levels, seed=seed)
    x = nima.tensor(np.random.default_rng(seed).standard_normal((2, T, 3)), requires_grad=True)
    with kernels.backend("numpy"):
        assert gradcheck(lambda x, *p: nima.cat(pool(x), dim=1), [x, *pool.parameters()])


@given(n=st.integers(0, 4), span=st.integers(1, 4), seed=st.integers(0, 99), data=st.data())
@settings(max_examples=25)
def test_upsample_matches_the_shifted_repeat_and_gradchecks(n: int, span: int, seed: int,
                                                           data: st.DataObject) -> None:
    length = data.draw(st.integers(0, (n + 1) * span))
    s = nima.tensor(np.random.default_rng(seed).standard_normal((2, n, 3)), requires_grad=True)
    out = upsample(s, span, length).data
    for t in range(length):
        expected = s.data[:, t // span - 1] if t >= span else np.zeros((2, 3))
        np.testing.assert_array_equal(out[:, t], expected)
    if n and length > span:
        assert gradcheck(lambda s: upsample(s, span, length), [s])


def test_upsample_docstring_example() -> None:
    s = nima.tensor(np.array([[[1.0], [2.0]]]))
    assert upsample(s, 2, 6).data.ravel().tolist() == [0, 0, 1, 1, 2, 2]


@given(b=st.integers(2, 3), levels=st.integers(1, 3), T=st.integers(1, 30),
       data=st.data())
@settings(max_examples=30)
def test_a_summary_reaches_only_positions_after_its_chunk(b: int, levels: int, T: int,
                                                         data: st.DataObject) -> None:
    """Change token u: the upsampled level-l summaries change only at t >= s + b^l, where
    [s, s + b^l) is u's level-l chunk — never inside the chunk, never before."""
    u = data.draw(st.integers(0, T - 1))
    pool = make(data.draw(st.sampled_from(["mean", "attention"])), b, levels)
    x = np.random.default_rng(T).standard_normal((1, T, 3))
    changed = x.copy()
    changed[0, u] += 1.0
    for level, (a, c) in enumerate(zip(pool(nima.tensor(x)), pool(nima.tensor(changed)),
                                       strict=True), start=1):
        span = b ** level
        before = upsample(a, span, T).data[0]
        after = upsample(c, span, T).data[0]
        chunk_end = (u // span + 1) * span
        np.testing.assert_array_equal(before[:chunk_end], after[:chunk_end])
        if chunk_end < T:  # the summary of u's chunk exists and arrives exactly at chunk_end
            assert not np.allclose(before[chunk_end], after[chunk_end])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"chunk_size": 1}, "chunk_size must be >= 2, got 1"),
    ({"levels": 0}, "levels must be >= 1, got 0"),
    ({"mode": "max"}, "mode must be one of 'mean', 'attention', got 'max'"),
    ({"d_model": 0}, "d_model must be >= 1, got 0"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    settings_ = {"d_model": 3, "chunk_size": 2, "levels": 2, "mode": "mean", **kwargs}
    with pytest.raises(ValueError, match=match):
        HierarchicalPooling(**settings_)


def test_bad_inputs() -> None:
    pool = make("mean")
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, 3\), got \(2, 4\)"):
        pool(nima.zeros(2, 4))
    with pytest.raises(ValueError, match="level=3"):
        pool.pool(nima.zeros(1, 4, 3), 3)
    with pytest.raises(ValueError, match=r"\(B, n \* 2, 3\)"):
        pool.pool(nima.zeros(1, 3, 3), 1)
    with pytest.raises(ValueError, match="2 summaries of span=4 reach positions < 12, got "
                                         "length=13"):
        upsample(nima.zeros(1, 2, 3), 4, 13)
