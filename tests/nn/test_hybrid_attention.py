"""HybridAttention (content, reweight, hybrid): float64 gradchecks, the causal property, the
alpha = 0 / 1 limits, learned alpha, KV-cache decoding, known answers for the reweight
pattern, masks, parameter counts, errors."""

import numpy as np
import pytest

import nima
from nima import gradcheck, kernels
from nima.nn.attention import KVCache, MultiHeadAttention
from nima.nn.hybrid_attention import HybridAttention
from nima.nn.positional import ALiBi, RotaryEmbedding

D, NH, BS = 8, 2, 6  # d_model, n_head, block_size


def make(mode: str, seed: int = 0, **kwargs) -> HybridAttention:
    nima.manual_seed(seed)
    return HybridAttention(D, NH, BS, mode=mode, **kwargs).double().eval()


def inputs(B: int = 2, T: int = 5, seed: int = 1) -> nima.Tensor:
    nima.manual_seed(seed)
    return nima.randn(B, T, D).double()


CONFIGS = [
    ("content", {}),
    ("reweight", {}),
    ("hybrid", {}),  # learned alpha
    ("hybrid", {"learn_alpha": False, "alpha": 0.3}),
    ("hybrid", {"bias": False, "alpha": 0.8}),
]
IDS = ["content", "reweight", "hybrid-learned", "hybrid-fixed", "hybrid-nobias"]


# Gradchecks run the NumPy kernels: on these tiny arrays a parallel numba launch costs more
# than the work, and a gradcheck makes two forwards per input element.
@pytest.mark.parametrize(("mode", "kwargs"), CONFIGS, ids=IDS)
def test_gradcheck(mode: str, kwargs: dict) -> None:
    m = make(mode, **kwargs)
    x = inputs(B=1, T=4).requires_grad_()
    with kernels.backend("numpy"):
        assert gradcheck(lambda x, *params: m(x), [x, *m.parameters()])


@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_gradcheck_with_padding_and_positions(position: str) -> None:
    extra = {"rope": RotaryEmbedding(D // NH, BS)} if position == "rope" else {"alibi": ALiBi(NH)}
    m = make("hybrid", **extra)
    x = inputs(B=1, T=4).requires_grad_()
    pad = np.array([[False, False, True, False]])
    with kernels.backend("numpy"):
        assert gradcheck(lambda x, *params: m(x, key_padding_mask=pad), [x, *m.parameters()])


@pytest.mark.parametrize(("mode", "kwargs"), CONFIGS, ids=IDS)
def test_weights_are_causal_distributions(mode: str, kwargs: dict) -> None:
    y, w = make(mode, **kwargs)(inputs(), need_weights=True)
    assert y.shape == (2, 5, D) and w.shape == (2, NH, 5, 5)
    np.testing.assert_allclose(w.data.sum(-1), 1.0, atol=1e-12)
    assert (w.data >= 0).all()
    assert (w.data[..., np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] == 0).all()


@pytest.mark.parametrize(("mode", "kwargs"), CONFIGS, ids=IDS)
def test_outputs_at_t_ignore_inputs_after_t(mode: str, kwargs: dict) -> None:
    m = make(mode, **kwargs)
    x = inputs(T=6)
    base = m(x).data
    for t in range(5):
        changed = x.data.copy()
        changed[:, t + 1:] = np.random.default_rng(t).standard_normal(changed[:, t + 1:].shape)
        out = m(nima.tensor(changed)).data
        np.testing.assert_allclose(out[:, :t + 1], base[:, :t + 1], rtol=1e-12, atol=1e-12)
        assert not np.allclose(out[:, t + 1:], base[:, t + 1:])


def test_alpha_zero_is_content_and_alpha_one_is_reweight() -> None:
    x = inputs()
    for alpha, mode in ((0.0, "content"), (1.0, "reweight")):
        hybrid = make("hybrid", alpha=alpha, learn_alpha=False)
        pure = make(mode, seed=9)  # different init, then the hybrid's weights
        pure.load_state_dict(hybrid.state_dict(), strict=False)
        (y_h, w_h), (y_p, w_p) = hybrid(x, need_weights=True), pure(x, need_weights=True)
        np.testing.assert_allclose(y_h.data, y_p.data, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(w_h.data, w_p.data, rtol=1e-12, atol=1e-12)


def test_hybrid_weights_are_the_alpha_mix() -> None:
    x = inputs()
    hybrid = make("hybrid", alpha=0.25)
    hybrid.alpha_logit.data[:] = [-1.0, 2.0]  # a different alpha per head
    content, reweight = make("content", seed=9), make("reweight", seed=9)
    content.load_state_dict(hybrid.state_dict(), strict=False)
    reweight.load_state_dict(hybrid.state_dict(), strict=False)
    a = 1 / (1 + np.exp(-hybrid.alpha_logit.data))[:, None, None]  # (nh, 1, 1)
    _, w = hybrid(x, need_weights=True)
    _, w_c = content(x, need_weights=True)
    _, w_r = reweight(x, need_weights=True)
    np.testing.assert_allclose(w.data, a * w_r.data + (1 - a) * w_c.data, rtol=1e-12)


def test_content_mode_is_causal_multi_head_attention() -> None:
    hybrid = make("content")
    mha = MultiHeadAttention(D, NH, causal=True).double()
    mha.load_state_dict(hybrid.state_dict())
    x = inputs()
    np.testing.assert_allclose(hybrid(x).data, mha(x).data, rtol=1e-12, atol=1e-12)
    assert hybrid.num_parameters() == mha.num_parameters()


def test_learned_alpha_starts_at_alpha_stays_in_unit_interval_and_learns() -> None:
    m = make("hybrid", alpha=0.2)
    np.testing.assert_allclose(m.alpha().data, [0.2, 0.2])
    assert m.alpha_logit.shape == (NH,)
    m(inputs()).sum().backward()
    grad = m.alpha_logit.grad
    assert grad is not None and np.all(grad != 0)
    m.alpha_logit.data[:] = [-20.0, 20.0]  # far out: the sigmoid keeps alpha inside (0, 1)
    alpha = m.alpha().data
    assert np.all((alpha > 0) & (alpha < 1))


def test_fixed_alpha_is_not_a_parameter() -> None:
    m = make("hybrid", alpha=0.7, learn_alpha=False)
    assert "alpha_logit" not in dict(m.named_parameters())
    np.testing.assert_allclose(m.alpha().data, [0.7, 0.7])
    assert "alpha=0.7" in repr(m) and "alpha=learned" in repr(make("hybrid"))


@pytest.mark.parametrize(("mode", "kwargs"), CONFIGS, ids=IDS)
@pytest.mark.parametrize("position", [None, "rope", "alibi"])
def test_kv_cache_decoding_equals_full_forward(mode: str, kwargs: dict,
                                               position: str | None) -> None:
    extra = {"rope": RotaryEmbedding(D // NH, BS)} if position == "rope" else \
        {"alibi": ALiBi(NH)} if position == "alibi" else {}
    m = make(mode, **kwargs, **extra)
    x = inputs(T=6)
    full, w_full = m(x, need_weights=True)
    cache = KVCache()
    with nima.no_grad():
        steps = [m(x[:, :2], cache=cache, need_weights=True)]  # a prompt of 2, then 1 by 1
        steps += [m(x[:, t:t + 1], cache=cache, need_weights=True) for t in range(2, 6)]
    assert cache.length == 6
    y = np.concatenate([s[0].data for s in steps], axis=1)
    np.testing.assert_allclose(y, full.data, rtol=1e-10, atol=1e-12)
    for t, (_, w) in enumerate(steps[1:], start=2):  # the step's row of the full weights
        np.testing.assert_allclose(w.data[:, :, 0], w_full.data[:, :, t, :t + 1], atol=1e-12)


def test_zero_reweight_layer_averages_the_past() -> None:
    m = make("reweight")
    m.reweight.weight.data[:] = 0
    m.reweight.bias.data[:] = 0
    _, w = m(inputs(T=4), need_weights=True)
    expected = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]  # row t: 1/(t+1) each
    np.testing.assert_allclose(w.data, np.broadcast_to(expected, w.shape), atol=1e-15)


def test_static_pattern_from_the_bias() -> None:
    """With no weights, the bias is a fixed pattern: head 0 looks at position 0, head 1 at
    the previous position it can reach (here position 1)."""
    m = make("reweight")
    m.reweight.weight.data[:] = 0
    bias = np.zeros((NH, BS))
    bias[0, 0] = bias[1, 1] = 60.0
    m.reweight.bias.data[:] = bias.reshape(-1)
    _, w = m(inputs(T=4), need_weights=True)
    np.testing.assert_allclose(w.data[:, 0, :, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(w.data[:, 1, 1:, 1], 1.0, atol=1e-12)


def test_key_padding_reaches_both_branches() -> None:
    m = make("hybrid")
    pad = np.array([[False, True, False, False, False], [False] * 5])
    _, w = m(inputs(), key_padding_mask=pad, need_weights=True)
    assert (w.data[0, :, :, 1] == 0).all() and (w.data[1, :, 1:, 1] > 0).all()
    np.testing.assert_allclose(w.data.sum(-1), 1.0, atol=1e-12)


def test_dropout_only_in_training() -> None:
    m = make("hybrid", dropout=0.5)
    x = inputs()
    clean = m(x).data
    m.train()
    nima.manual_seed(3)
    assert not np.allclose(m(x).data, clean)
    m.eval()
    np.testing.assert_array_equal(m(x).data, clean)


def test_parameter_cost_of_reweight() -> None:
    content = HybridAttention(D, NH, BS, mode="content").num_parameters()
    assert content == 4 * D * D + 4 * D
    reweight = HybridAttention(D, NH, BS, mode="reweight").num_parameters()
    assert reweight - content == D * NH * BS + NH * BS
    no_bias = HybridAttention(D, NH, BS, mode="reweight", bias=False).num_parameters()
    assert no_bias == 4 * D * D + D * NH * BS
    hybrid = HybridAttention(D, NH, BS, mode="hybrid").num_parameters()
    assert hybrid - reweight == NH  # one mixing logit per head


def test_errors_name_choices_and_sizes() -> None:
    with pytest.raises(ValueError, match="mode must be one of 'content', 'reweight', 'hybrid'"):
        HybridAttention(D, NH, BS, mode="dense")
    m = make("reweight")
    with pytest.raises(ValueError, match=r"block_size=6 positions, got 7 \(T=7 new, 0 cached"):
        m(inputs(T=7))
    cache = KVCache()
    m(inputs(T=5), cache=cache)
    with pytest.raises(ValueError, match=r"block_size=6 positions, got 7 \(T=2 new, 5 cached"):
        m(inputs(T=2), cache=cache)
    make("content")(inputs(T=7))  # content attention has no window
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        HybridAttention(D, NH, BS, alpha=1.0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        HybridAttention(D, NH, BS, alpha=1.5, learn_alpha=False)
    with pytest.raises(ValueError, match="alpha exists in mode 'hybrid' only"):
        make("reweight").alpha()
    with pytest.raises(ValueError, match="context is for cross-attention"):
        m(inputs(T=2), inputs(T=2))
