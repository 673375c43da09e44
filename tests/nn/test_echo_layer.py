"""EchoLayer: the gated update against its equation, a float64 gradcheck across three segments
(truncated BPTT off), the truncation itself, causality within and across segments, cached
decoding equal to segment-by-segment training, checkpoints of the state, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima import gradcheck, kernels
from nima.nn.echo_layer import EchoCache, EchoLayer

D, NH, SEG = 4, 2, 3


def make(tbptt: int = 3, B: int = 2, seed: int = 0, slots: int = 2) -> EchoLayer:
    nima.manual_seed(seed)
    return EchoLayer(D, NH, SEG, slots=slots, batch_size=B, tbptt=tbptt).double()


def segments(n: int = 3, B: int = 2, T: int = SEG, seed: int = 1) -> list[nima.Tensor]:
    rng = np.random.default_rng(seed)
    return [nima.tensor(rng.standard_normal((B, T, D))) for _ in range(n)]


def stream(m: EchoLayer, xs: list[nima.Tensor]) -> nima.Tensor:
    m.reset()
    return nima.cat([m(x) for x in xs], dim=1)


def test_update_is_the_gated_mix() -> None:
    m = make()
    s, h = segments(2, T=SEG)
    s = s[:, :2]  # two slots
    u = m.write(s, h).data
    z = np.concatenate([s.data, u], -1) @ m.gate.weight.data.T + m.gate.bias.data
    g = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(m.update(s, h).data, g * s.data + (1 - g) * u, rtol=1e-12)


def test_each_segment_reads_the_state_left_by_the_previous_ones() -> None:
    m = make()
    x1, x2 = segments(2)
    m.reset()
    y1, y2 = m(x1), m(x2)
    s0 = m.initial.data[None].repeat(2, 0)
    np.testing.assert_allclose(y1.data, m.read(x1, nima.tensor(s0)).data, rtol=1e-12)
    s1 = m.update(nima.tensor(s0), x1)
    np.testing.assert_allclose(y2.data, m.read(x2, s1).data, rtol=1e-12)
    np.testing.assert_allclose(m.state.data, m.update(s1, x2).data, rtol=1e-12)
    assert int(m.segments.data) == 2


@given(seed=st.integers(0, 99), T=st.integers(1, SEG), slots=st.integers(1, 3))
@settings(max_examples=4)
def test_gradcheck_across_three_segments(seed: int, T: int, slots: int) -> None:
    """With tbptt=3 the gradient of segment 3's output reaches segment 1's tokens and every
    parameter through the carried state — and agrees with central differences, so no update
    touched an array the graph had saved."""
    m = make(tbptt=3, B=1, seed=seed, slots=slots)
    xs = [x.requires_grad_() for x in segments(3, B=1, T=T, seed=seed)]
    with kernels.backend("numpy"):
        assert gradcheck(lambda *a: stream(m, list(a[:3])), [*xs, *m.parameters()])


def reaches(tbptt: int, out: int, source: int) -> bool:
    """Whether the output of segment `out` has a gradient on the tokens of segment `source`."""
    m = make(tbptt=tbptt)
    xs = [x.requires_grad_() for x in segments(3)]
    m.reset()
    ys = [m(x) for x in xs]
    ys[out].sum().backward()
    grad = xs[source].grad
    return grad is not None and bool(np.abs(grad).sum() > 0)


@pytest.mark.parametrize(("tbptt", "expected"), [
    (1, {(1, 0): False, (2, 0): False, (2, 1): False}),
    (2, {(1, 0): True, (2, 0): False, (2, 1): False}),  # cut after segment 2
    (3, {(1, 0): True, (2, 0): True, (2, 1): True}),
])
def test_truncated_bptt_cuts_the_gradient_every_k_segments(tbptt: int, expected: dict) -> None:
    assert {pair: reaches(tbptt, *pair) for pair in expected} == expected


def test_backward_after_every_segment_with_tbptt_1() -> None:
    m = make(tbptt=1)
    m.reset()
    for x in segments(3):
        m(x).sum().backward()  # no "graph freed" error: the state was detached
    assert m.initial.grad is not None and m.read.q.weight.grad is not None


def test_the_state_buffer_is_never_part_of_a_graph() -> None:
    """A checkpoint load writes into the `state` buffer in place; between a forward and its
    backward that must not change the gradients."""
    grads = []
    for overwrite in (False, True):
        m = make(tbptt=3)
        x1, x2 = (x.requires_grad_() for x in segments(2))
        m.reset()
        m(x1)
        y2 = m(x2)  # reads the carried state, whose graph reaches x1
        if overwrite:
            m.state.data[...] = 123.0
        y2.sum().backward()
        grads.append((x1.grad, m.initial.grad))
    for with_overwrite, reference in zip(grads[1], grads[0], strict=True):
        np.testing.assert_array_equal(with_overwrite, reference)
    assert np.abs(grads[0][0]).sum() > 0  # the gradient did cross the segment boundary


@given(T=st.integers(2, SEG), data=st.data())
@settings(max_examples=10)
def test_changing_the_future_leaves_the_past_unchanged(T: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(0, T - 2))
    m = make()
    x1, x2 = segments(2, T=T)
    base = stream(m, [x1, x2]).data
    changed = x1.data.copy()
    changed[:, t + 1:] += 1.0  # later tokens of segment 1
    out = stream(m, [nima.tensor(changed), x2]).data
    np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])  # segment 1 up to t
    assert not np.allclose(out[:, T:], base[:, T:])  # segment 2 reads the changed state


@pytest.mark.parametrize("chunks", [[1] * 9, [2, 4, 3], [9], [3, 3, 3], [5, 1, 1, 2]])
def test_cached_decoding_equals_the_segment_stream(chunks: list[int]) -> None:
    m = make()
    x = segments(3)
    full = stream(m, x).data
    tokens = nima.cat(x, dim=1)  # (2, 9, D)
    cache = m.new_cache()
    outs, i = [], 0
    for n in chunks:
        outs.append(m(tokens[:, i:i + n], cache=cache).data)
        i += n
    assert cache.length == 9 and cache.segment is None and cache.state is not None
    np.testing.assert_allclose(np.concatenate(outs, 1), full, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache.state, m.state.data, rtol=1e-12)


def test_cache_reorder_and_reset() -> None:
    m = make()
    x = nima.cat(segments(2), dim=1)
    cache = m.new_cache()
    m(x[:, :4], cache=cache)
    cache.reorder(np.array([1, 1, 0]))
    assert cache.state.shape == (3, 2, D) and cache.segment.shape == (3, 1, D)
    rest = m(nima.tensor(x.data[[1, 1, 0], 4:]), cache=cache)
    again = m.new_cache()
    expected = m(nima.tensor(x.data[[1, 1, 0]]), cache=again).data[:, 4:]
    np.testing.assert_allclose(rest.data, expected, rtol=1e-12)
    cache.reset()
    assert cache.length == 0 and cache.state is None and isinstance(cache, EchoCache)
    m(x[:, :1], cache=cache)
    with pytest.raises(ValueError, match=r"EchoCache.reorder: indices must be 1-D ints in "
                                         r"\[0, 2\)"):
        cache.reorder(np.array([0, 5]))


def test_a_checkpoint_resumes_the_stream() -> None:
    m = make(tbptt=1)
    x1, x2, x3 = segments(3)
    m.reset()
    m(x1), m(x2)
    state = {k: v.copy() for k, v in m.state_dict().items()}
    assert {"state", "segments"} <= set(state)
    expected = m(x3).data
    resumed = make(tbptt=1, seed=5)
    resumed.load_state_dict(state)
    np.testing.assert_allclose(resumed(x3).data, expected, rtol=1e-12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"segment_size": 0}, "segment_size must be >= 1, got 0"),
    ({"slots": 0}, "slots must be >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"tbptt": 0}, "tbptt must be >= 1, got 0"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EchoLayer(D, NH, **{"segment_size": SEG, **kwargs})


def test_bad_inputs() -> None:
    m = make(B=2)
    with pytest.raises(ValueError, match="x has batch 3, but the carried state holds "
                                         "batch_size=2 streams"):
        m(nima.zeros(3, 2, D).double())
    with pytest.raises(ValueError, match=r"at most segment_size=3 tokens, got x of shape "
                                         r"\(2, 4, 4\)"):
        m(nima.zeros(2, 4, D).double())
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, 4\)"):
        m(nima.zeros(2, 3).double())
