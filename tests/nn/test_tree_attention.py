"""TreeAttention: the tree pattern covers the past once with O(bL) keys, a per-query NumPy
oracle, float64 hypothesis gradchecks, exact causality, cached decoding equal to the full
forward (prefill, token by token, beam reorder), the bounded cache, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima import gradcheck, kernels
from nima.nn.attention import MultiHeadAttention
from nima.nn.tree_attention import TreeAttention, TreeCache, tree_levels, tree_pattern

D, NH = 4, 2


def make(b: int = 2, levels: int = 2, gate: str = "sigmoid", pooling: str = "mean",
         seed: int = 0, block_size: int | None = None) -> TreeAttention:
    """A float64 layer with random gates (and pooling queries), so no level is neutral."""
    nima.manual_seed(seed)
    block_size = b ** (levels + 1) if block_size is None else block_size
    m = TreeAttention(D, NH, block_size, chunk_size=b, levels=levels, gate=gate,
                      pooling=pooling).double().eval()
    rng = np.random.default_rng(seed)
    m.gate_logit.data[:] = rng.standard_normal(m.gate_logit.shape)
    if pooling == "attention":
        m.pool.query.data[:] = rng.standard_normal(m.pool.query.shape)
    return m


def inputs(B: int, T: int, seed: int = 1) -> nima.Tensor:
    return nima.tensor(np.random.default_rng(seed).standard_normal((B, T, D)))


# ------------------------------------------------------------------------------ the pattern
def test_tree_pattern_hand_worked() -> None:
    p = tree_pattern(8, 2, 2)
    assert p[5].tolist() == [2, 2, 2, 2, 0, 0, -1, -1]  # the docstring's row
    assert p[6].tolist() == [2, 2, 2, 2, 1, 1, 0, -1]
    assert p[0].tolist() == [0] + [-1] * 7


@given(b=st.integers(2, 5), levels=st.integers(1, 3))
@settings(max_examples=20)
def test_tree_pattern_covers_the_past_once_with_few_keys(b: int, levels: int) -> None:
    T = b ** (levels + 1)
    p = tree_pattern(T, b, levels)
    for t in range(T):
        assert (p[t, :t + 1] >= 0).all() and (p[t, t + 1:] == -1).all()  # the whole past
        keys = 0
        for level in range(levels + 1):
            seen = np.flatnonzero(p[t] == level)
            if level == 0:
                assert seen.tolist() == list(range(t // b * b, t + 1))  # its own leaf chunk
                keys += seen.size
                continue
            chunks = np.unique(seen // b ** level)  # whole level-l chunks, each one key
            assert seen.size == chunks.size * b ** level
            assert chunks.size <= b - 1 and (chunks < t // b ** level).all()
            keys += chunks.size
        assert keys <= b + levels * (b - 1)


# ------------------------------------------------------------------------------ an oracle
def naive_tree(m: TreeAttention, x: np.ndarray) -> np.ndarray:
    """Per query, in NumPy: the tokens of its leaf chunk and the mean of every completed
    sibling chunk at each level (taken straight from the tokens), one softmax per level,
    gated. Mean pooling only."""
    B, T, _ = x.shape
    b, L, hd = m.chunk_size, m.levels, D // NH
    W, bias = m.qkv.weight.data, m.qkv.bias.data
    q = (x @ W[:D].T + bias[:D]).reshape(B, T, NH, hd)

    def keys_values(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (B, n, D) vectors
        kv = rows @ W[D:].T + bias[D:]
        n = rows.shape[1]
        return kv[..., :D].reshape(B, n, NH, hd), kv[..., D:].reshape(B, n, NH, hd)

    a = m.gate_logit.data  # (NH, L+1)
    out = np.zeros((B, T, NH, hd))
    for t in range(T):
        branches = [x[:, t // b * b:t + 1]]
        for level in range(1, L + 1):
            unit = b ** level
            first = t // (unit * b) * b  # first sibling in the parent chunk
            branches.append(np.stack([x[:, j * unit:(j + 1) * unit].mean(1)
                                      for j in range(first, t // unit)] or
                                     [np.zeros((B, D))], 1)[:, :t // unit - first])
        present = np.array([br.shape[1] > 0 for br in branches])
        if m.gate == "sigmoid":
            gates = 1 / (1 + np.exp(-a))
        else:
            e = np.where(present, np.exp(a), 0.0)
            gates = e / e.sum(1, keepdims=True)
        for level, rows in enumerate(branches):
            if rows.shape[1] == 0:
                continue
            k, v = keys_values(rows)  # (B, n, NH, hd)
            s = np.einsum("bhd,bnhd->bhn", q[:, t], k) / np.sqrt(hd)
            w = np.exp(s - s.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            out[:, t] += gates[:, level][None, :, None] * np.einsum("bhn,bnhd->bhd", w, v)
    return out.reshape(B, T, D) @ m.proj.weight.data.T + m.proj.bias.data


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
@pytest.mark.parametrize(("b", "levels", "T"), [(2, 2, 8), (2, 2, 7), (3, 2, 20), (2, 3, 13),
                                                (4, 1, 16), (3, 1, 5)])
def test_equals_the_per_query_oracle(gate: str, b: int, levels: int, T: int) -> None:
    m = make(b, levels, gate)
    x = inputs(2, T)
    np.testing.assert_allclose(m(x).data, naive_tree(m, x.data), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------ gradients
configs = st.tuples(st.sampled_from(["sigmoid", "softmax"]), st.sampled_from(["mean", "attention"]),
                    st.sampled_from([(2, 1), (2, 2), (3, 1)]))


@given(config=configs, data=st.data())
@settings(max_examples=12)
def test_gradcheck(config: tuple, data: st.DataObject) -> None:
    gate, pooling, (b, levels) = config
    m = make(b, levels, gate, pooling, seed=data.draw(st.integers(0, 99)))
    x = inputs(1, data.draw(st.integers(1, b ** (levels + 1))), seed=2).requires_grad_()
    with kernels.backend("numpy"):
        assert gradcheck(lambda x, *p: m(x), [x, *m.parameters()])


# ------------------------------------------------------------------------------ causality
@given(config=configs, data=st.data())
@settings(max_examples=25)
def test_changing_the_future_leaves_the_past_unchanged(config: tuple, data: st.DataObject) -> None:
    gate, pooling, (b, levels) = config
    T = data.draw(st.integers(2, b ** (levels + 1)))
    t = data.draw(st.integers(0, T - 2))
    m = make(b, levels, gate, pooling)
    x = inputs(2, T)
    changed = x.data.copy()
    changed[:, t + 1:] = np.random.default_rng(t).standard_normal(changed[:, t + 1:].shape)
    base, out = m(x).data, m(nima.tensor(changed)).data
    np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
    assert not np.allclose(out[:, t + 1], base[:, t + 1])


# ------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("prefill", [0, 1, 4, 9])
def test_cached_decoding_equals_the_full_forward(gate: str, pooling: str, prefill: int) -> None:
    m = make(3, 2, gate, pooling)
    x = inputs(2, 27)
    full = m(x).data
    cache = m.new_cache()
    steps = [m(x[:, :prefill], cache=cache).data] if prefill else []
    for t in range(prefill, 27):
        assert cache.length == t
        steps.append(m(x[:, t:t + 1], cache=cache).data)
    np.testing.assert_allclose(np.concatenate(steps, 1), full, rtol=1e-12, atol=1e-12)
    cache.reset()
    assert cache.length == 0 and all(kv.length == 0 for kv in cache.kv)
    np.testing.assert_allclose(m(x[:, :5], cache=cache).data, full[:, :5], rtol=1e-12)


def test_several_new_tokens_after_a_prefill() -> None:
    m = make(2, 3)
    x = inputs(1, 16)
    cache = m.new_cache()
    parts = [m(x[:, :3], cache=cache), m(x[:, 3:10], cache=cache), m(x[:, 10:], cache=cache)]
    np.testing.assert_allclose(nima.cat(parts, 1).data, m(x).data, rtol=1e-12, atol=1e-12)


def test_the_cache_holds_at_most_b_children_per_level() -> None:
    b, levels = 3, 2
    m = make(b, levels)
    x = inputs(1, 27)
    cache = m.new_cache()
    for t in range(27):
        m(x[:, t:t + 1], cache=cache)
        for level, (kv, item) in enumerate(zip(cache.kv, cache.items, strict=True)):
            # the children of the open chunk at each level: the digits of t + 1 in base b
            assert kv.length == (t + 1) // b ** level % b or (level == levels and kv.length == b)
            assert item is None or item.shape[1] == kv.length


def test_reorder_follows_the_beams() -> None:
    m = make(2, 2)
    x = inputs(3, 8)
    cache = m.new_cache()
    m(x[:, :5], cache=cache)
    rows = np.array([2, 0, 0])
    cache.reorder(rows)
    rest = m(x.data[rows][:, 5:], cache=cache)  # the beams continue with their own rows
    np.testing.assert_allclose(rest.data, m(nima.tensor(x.data[rows])).data[:, 5:], rtol=1e-12)
    with pytest.raises(ValueError, match=r"TreeCache.reorder: indices must be 1-D ints in "
                                         r"\[0, 3\)"):
        cache.reorder(np.array([3]))


def test_parameter_names_match_dense_attention() -> None:
    tree = make(2, 2)
    dense = MultiHeadAttention(D, NH, causal=True).double()
    result = tree.load_state_dict(dense.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == ["gate_logit"]  # mean pooling learns nothing
    np.testing.assert_array_equal(tree.qkv.weight.data, dense.qkv.weight.data)


def test_float32_runs_and_gates_learn() -> None:
    m = TreeAttention(8, 2, 64, chunk_size=4, gate="softmax", pooling="attention")
    x = nima.randn(2, 64, 8)
    y = m(x)
    assert y.dtype == np.float32 and y.shape == (2, 64, 8)
    y.sum().backward()
    assert np.abs(m.gate_logit.grad).sum() > 0 and np.abs(m.pool.query.grad).sum() > 0


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"block_size": 512, "chunk_size": 4, "levels": 2},
     r"block_size=512 is larger than chunk_size \*\* \(levels \+ 1\) = 4 \*\* 3 = 64"),
    ({"block_size": 64, "chunk_size": 4, "levels": 3},
     "levels=3 with chunk_size=4 summarises chunks of 64 tokens, no shorter than block_size=64"),
    ({"block_size": 64, "chunk_size": 1}, "chunk_size must be >= 2, got 1"),
    ({"block_size": 1}, "block_size must be >= 2, got 1"),
    ({"block_size": 64, "levels": 0}, "levels must be >= 1, got 0"),
    ({"block_size": 64, "gate": "relu"}, "gate must be one of 'sigmoid', 'softmax', got 'relu'"),
    ({"block_size": 64, "pooling": "max"},
     "pooling must be one of 'mean', 'attention', got 'max'"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TreeAttention(D, NH, **kwargs)


def test_levels_are_derived_from_block_size() -> None:
    assert tree_levels(512, 16) == 2 and tree_levels(512, 8) == 2 and tree_levels(512, 4) == 4
    assert tree_levels(16, 16) == 1 and tree_levels(17, 16) == 1 and tree_levels(257, 16) == 2
    assert TreeAttention(D, NH, 100, chunk_size=4).levels == 3


def test_too_long_inputs_are_refused() -> None:
    m = make(2, 2)  # block_size 8
    with pytest.raises(ValueError, match=r"0 cached \+ T <= block_size=8, got \(1, 9, 4\)"):
        m(inputs(1, 9))
    cache = m.new_cache()
    m(inputs(1, 6), cache=cache)
    with pytest.raises(ValueError, match=r"6 cached \+ T <= block_size=8, got \(1, 3, 4\)"):
        m(inputs(1, 3), cache=cache)
    assert isinstance(cache, TreeCache) and cache.length == 6
