"""RecursiveBlock and ProgressiveDepth: recursion equals the loop written out, ACT against a
NumPy reimplementation of Graves's rule, the halting limits, float64 hypothesis gradchecks,
causality, cached decoding, the depth schedule, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima import gradcheck, kernels
from nima.nn import LayerNorm, Module, Sequential
from nima.nn.attention import KVCache, MultiHeadAttention
from nima.nn.recursive_block import ProgressiveDepth, RecursiveBlock, RecursiveCache

D, NH = 4, 2


class Residual(Module):
    """A pre-norm attention block with its residual, as a transformer block has."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = LayerNorm(D)
        self.attn = MultiHeadAttention(D, NH, causal=True)
        self.calls = 0

    def forward(self, x: nima.Tensor, cache: KVCache | None = None) -> nima.Tensor:
        self.calls += 1
        return x + self.attn(self.norm(x), cache=cache)

    def new_cache(self, max_len: int | None = None) -> KVCache:
        return KVCache(max_len)


def make(depth: int = 3, act: bool = False, seed: int = 0, **kwargs) -> RecursiveBlock:
    nima.manual_seed(seed)
    m = RecursiveBlock(Residual(), D, max_depth=depth, act=act, **kwargs).double().eval()
    m.step_embedding.data[:] = np.random.default_rng(seed).standard_normal(
        m.step_embedding.shape)  # large enough to matter
    if act:  # halting probabilities spread over (0, 1)
        m.halt.weight.data[:] = np.random.default_rng(seed + 1).standard_normal((1, D))
        m.halt.bias.data[:] = -0.5
    return m


def inputs(B: int = 2, T: int = 5, seed: int = 1) -> nima.Tensor:
    return nima.tensor(np.random.default_rng(seed).standard_normal((B, T, D)))


def test_recursion_is_the_shared_block_applied_depth_times() -> None:
    m = make(depth=3)
    x = inputs()
    h = x
    for r in range(3):
        h = m.block(h + m.step_embedding[r])
    np.testing.assert_allclose(m(x).data, h.data, rtol=1e-12)
    m.depth = 2
    h2 = m.block(m.block(x + m.step_embedding[0]) + m.step_embedding[1])
    np.testing.assert_allclose(m(x).data, h2.data, rtol=1e-12)


def test_depth_costs_no_parameters() -> None:
    deep, shallow = make(depth=12), make(depth=1)
    extra = deep.num_parameters() - shallow.num_parameters()
    assert extra == 11 * D  # the step embeddings only


def act_reference(m: RecursiveBlock, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Graves's ACT written out per position, with the states from the block itself."""
    w, c = m.halt.weight.data[0], m.halt.bias.data[0]
    states, probs = [], []
    h = nima.tensor(x)
    with nima.no_grad():
        for r in range(m.depth):
            h = h + m.step_embedding[r]
            probs.append(1 / (1 + np.exp(-(h.data @ w + c))))  # (B, T)
            h = m.block(h)
            states.append(h.data)
    B, T, _ = x.shape
    y, rho = np.zeros_like(x), np.zeros((B, T))
    for b in range(B):
        for t in range(T):
            total = 0.0
            for n in range(m.depth):
                p = probs[n][b, t]
                if total + p > m.threshold or n == m.depth - 1:  # halts at step n + 1
                    y[b, t] += (1 - total) * states[n][b, t]
                    rho[b, t] = (n + 1) + (1 - total)
                    break
                y[b, t] += p * states[n][b, t]
                total += p
    return y, float(rho.mean())


@pytest.mark.parametrize("threshold", [0.99, 0.6])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_act_equals_graves_rule(threshold: float, depth: int) -> None:
    m = make(depth=depth, act=True, threshold=threshold, ponder_weight=0.1)
    x = inputs(2, 6)
    y = m(x)
    expected, rho = act_reference(m, x.data)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    assert m.ponder == pytest.approx(rho, rel=1e-12)
    assert float(m.aux_loss.data) == pytest.approx(0.1 * rho, rel=1e-12)


def test_act_limits_halt_at_once_or_run_every_step() -> None:
    m = make(depth=4, act=True)
    x = inputs()
    m.halt.weight.data[:] = 0
    m.halt.bias.data[:] = 30.0  # p = 1: halt after the first step, R = 1
    m.block.calls = 0
    np.testing.assert_allclose(m(x).data, m.block(x + m.step_embedding[0]).data, rtol=1e-12)
    assert m.ponder == pytest.approx(2.0) and m.block.calls == 2  # m(x)'s one step + ours
    m.halt.bias.data[:] = -30.0  # p = 0: every step runs, the last gets R = 1
    np.testing.assert_allclose(m(x).data, make_plain(m)(x).data, rtol=1e-10)
    assert m.ponder == pytest.approx(5.0)


def make_plain(m: RecursiveBlock) -> RecursiveBlock:
    plain = RecursiveBlock(m.block, D, m.max_depth).double()
    plain.step_embedding.data[:] = m.step_embedding.data
    return plain


def test_act_stops_when_every_position_has_halted() -> None:
    m = make(depth=6, act=True)
    m.halt.weight.data[:] = 0
    m.halt.bias.data[:] = np.log(0.45 / 0.55)  # p = 0.45: 0.9 after two steps, over 0.6 ...
    m.threshold = 0.6
    m.block.calls = 0
    m(inputs())
    assert m.block.calls == 2  # ... so every position halts at step 2 and steps 3-6 are skipped


@given(depth=st.integers(1, 3), act=st.booleans(), seed=st.integers(0, 99),
       T=st.integers(1, 4))
@settings(max_examples=12)
def test_gradcheck(depth: int, act: bool, seed: int, T: int) -> None:
    m = make(depth=depth, act=act, seed=seed)
    x = inputs(1, T, seed=seed).requires_grad_()

    def fn(x: nima.Tensor, *params: nima.Tensor) -> nima.Tensor:
        y = m(x)
        return y + m.aux_loss if act else y  # the ponder cost's gradient too

    with kernels.backend("numpy"):
        assert gradcheck(fn, [x, *m.parameters()])


@given(act=st.booleans(), T=st.integers(2, 7), data=st.data())
@settings(max_examples=20)
def test_changing_the_future_leaves_the_past_unchanged(act: bool, T: int,
                                                      data: st.DataObject) -> None:
    t = data.draw(st.integers(0, T - 2))
    m = make(depth=3, act=act)
    x = inputs(2, T)
    changed = x.data.copy()
    changed[:, t + 1:] += np.random.default_rng(t).standard_normal(changed[:, t + 1:].shape)
    np.testing.assert_allclose(m(nima.tensor(changed)).data[:, :t + 1], m(x).data[:, :t + 1],
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("act", [False, True])
def test_cached_decoding_equals_the_full_forward(act: bool) -> None:
    m = make(depth=3, act=act)
    x = inputs(2, 7)
    full = m(x).data
    cache = m.new_cache()
    assert isinstance(cache, RecursiveCache) and len(cache.steps) == 3
    steps = [m(x[:, :3], cache=cache).data] + [m(x[:, t:t + 1], cache=cache).data
                                                for t in range(3, 7)]
    assert cache.length == 7
    np.testing.assert_allclose(np.concatenate(steps, 1), full, rtol=1e-12, atol=1e-12)
    cache.reorder(np.array([1, 1]))
    assert all(step.k.shape[0] == 2 for step in cache.steps)
    np.testing.assert_array_equal(cache.steps[0].k[0], cache.steps[0].k[1])
    cache.reset()
    assert cache.length == 0


def test_progressive_depth_schedule() -> None:
    schedule = ProgressiveDepth(1, 4, steps=1000)
    assert [schedule(s) for s in (0, 249, 250, 499, 500, 749, 750, 999, 5000)] == \
        [1, 1, 2, 2, 3, 3, 4, 4, 4]
    model = Sequential(make(depth=4), make(depth=4, seed=1))
    assert schedule.apply(model, 300) == 2
    assert [block.depth for block in model] == [2, 2]
    assert ProgressiveDepth(3, 3, steps=1)(0) == 3


@pytest.mark.parametrize(("make_it", "match"), [
    (lambda: RecursiveBlock(Residual(), D, max_depth=0), "max_depth must be >= 1, got 0"),
    (lambda: RecursiveBlock(Residual(), D, max_depth=3, depth=0),
     r"depth must be in \[1, max_depth=3\], got 0"),
    (lambda: RecursiveBlock(Residual(), D, max_depth=3, depth=4),
     r"depth must be in \[1, max_depth=3\], got 4"),
    (lambda: RecursiveBlock(Residual(), D, 3, act=True, threshold=1.5),
     r"threshold must be in \(0, 1\], got 1.5"),
    (lambda: RecursiveBlock(Residual(), D, 3, ponder_weight=-1),
     "ponder_weight must be >= 0, got -1"),
    (lambda: ProgressiveDepth(0, 4, 100), "start must be >= 1, got 0"),
    (lambda: ProgressiveDepth(3, 2, 100), "end must be >= start=3, got 2"),
    (lambda: ProgressiveDepth(1, 2, 0), "steps must be >= 1, got 0"),
    (lambda: ProgressiveDepth(1, 2, 10)(-1), "step must be >= 0, got -1"),
    (lambda: make()(nima.zeros(2, 3)), r"expected x of shape \(B, T, 4\), got \(2, 3\)"),
])
def test_bad_settings_name_the_key_and_value(make_it, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_it()


def test_schedule_beyond_max_depth_is_refused() -> None:
    with pytest.raises(ValueError, match=r"depth must be in \[1, max_depth=2\], got 3"):
        ProgressiveDepth(1, 3, 10).apply(make(depth=2), 10)
