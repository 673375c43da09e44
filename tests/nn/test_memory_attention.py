"""MemoryAttention and info_nce: a NumPy oracle (full and top-k reads), float64 hypothesis
gradchecks (with the InfoNCE aux loss), causality, write-after-read across segments, graph
safety of later writes, cached decoding equal to segment-by-segment training, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima import gradcheck, kernels
from nima.nn.attention import MultiHeadAttention
from nima.nn.contrastive import info_nce
from nima.nn.memory_attention import MemoryAttention, MemoryCache

D, NH, HD, BS = 4, 2, 2, 4


def make(top_k: int | None = None, capacity: int = 6, B: int = 2, seed: int = 0,
         **kwargs) -> MemoryAttention:
    nima.manual_seed(seed)
    m = MemoryAttention(D, NH, BS, capacity, batch_size=B, top_k=top_k, **kwargs).double()
    m.gate_logit.data[:] = [0.7, -1.2]
    return m.eval()


def inputs(B: int = 2, T: int = BS, seed: int = 1) -> nima.Tensor:
    return nima.tensor(np.random.default_rng(seed).standard_normal((B, T, D)))


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def naive(m: MemoryAttention, x: np.ndarray, mem_k: np.ndarray, mem_v: np.ndarray) -> np.ndarray:
    """Local causal attention and a (top-k) read of the given memory, mixed per head."""
    B, T, _ = x.shape
    qkv = x @ m.qkv.weight.data.T + m.qkv.bias.data
    q, k, v = (qkv[..., i * D:(i + 1) * D].reshape(B, T, NH, HD).transpose(0, 2, 1, 3)
               for i in range(3))  # (B, nh, T, hd)
    s = q @ k.swapaxes(-1, -2) / np.sqrt(HD)
    local = softmax(np.where(np.tri(T, dtype=bool), s, -np.inf)) @ v
    y = local
    if mem_k.shape[2]:
        scores = q @ mem_k.swapaxes(-1, -2) / np.sqrt(HD)  # (B, nh, T, M)
        if m.top_k is not None and m.top_k < mem_k.shape[2]:
            kth = -np.sort(-scores, axis=-1)[..., m.top_k - 1:m.top_k]
            scores = np.where(scores >= kth, scores, -np.inf)  # only the k best per query
        g = 1 / (1 + np.exp(-m.gate_logit.data))[:, None, None]
        y = g * (softmax(scores) @ mem_v) + (1 - g) * local
    return y.transpose(0, 2, 1, 3).reshape(B, T, D) @ m.proj.weight.data.T + m.proj.bias.data


def fill(m: MemoryAttention, n: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    B = m.memory.keys.shape[0]
    m.memory.write(rng.standard_normal((B, NH, n, HD)), rng.standard_normal((B, NH, n, HD)))


def test_empty_memory_is_causal_multi_head_attention() -> None:
    m = make()
    mha = MultiHeadAttention(D, NH, causal=True).double()
    mha.load_state_dict(m.state_dict(), strict=False)
    x = inputs()
    np.testing.assert_allclose(m(x).data, mha(x).data, rtol=1e-12)


@pytest.mark.parametrize("top_k", [None, 1, 3, 5, 50])
def test_equals_the_oracle(top_k: int | None) -> None:
    m = make(top_k=top_k)
    fill(m, 5)
    m.write_memory = False
    x = inputs()
    mem_k, mem_v = m.memory.read()
    np.testing.assert_allclose(m(x).data, naive(m, x.data, mem_k, mem_v), rtol=1e-10,
                               atol=1e-12)


def test_top_k_at_least_the_bank_size_is_the_full_read() -> None:
    full, top = make(top_k=None), make(top_k=5)
    for m in (full, top):
        fill(m, 5)
    x = inputs()
    np.testing.assert_allclose(top(x).data, full(x).data, rtol=1e-12)


def test_segment_two_reads_segment_one_then_writes_itself() -> None:
    m = make(capacity=6)
    x1, x2 = inputs(seed=1), inputs(seed=2)
    m(x1)
    assert m.memory.size == BS
    k1, v1 = m.memory.read()
    np.testing.assert_allclose(m(x2).data, naive(m, x2.data, k1, v1), rtol=1e-10)
    assert m.memory.size == 6 and int(m.memory.count.data) == 2 * BS  # FIFO: 2 of x1's left


@given(top_k=st.sampled_from([None, 2]), contrastive=st.booleans(), T=st.integers(1, BS),
       seed=st.integers(0, 99))
@settings(max_examples=10)
def test_gradcheck(top_k: int | None, contrastive: bool, T: int, seed: int) -> None:
    m = make(top_k=top_k, B=1, contrastive=contrastive, seed=seed).train()
    fill(m, 4, seed=seed)
    m.write_memory = False  # the same memory for every evaluation of the check
    x = inputs(1, T, seed=seed).requires_grad_()

    def fn(x: nima.Tensor, *params: nima.Tensor) -> nima.Tensor:
        y = m(x)
        return y + m.aux_loss if contrastive else y

    with kernels.backend("numpy"):
        assert gradcheck(fn, [x, *m.parameters()])


@given(top_k=st.sampled_from([None, 2]), T=st.integers(2, BS), data=st.data())
@settings(max_examples=15)
def test_changing_the_future_leaves_the_past_unchanged(top_k: int | None, T: int,
                                                      data: st.DataObject) -> None:
    t = data.draw(st.integers(0, T - 2))
    m = make(top_k=top_k)
    fill(m, 5)
    m.write_memory = False
    x = inputs(T=T)
    changed = x.data.copy()
    changed[:, t + 1:] += 1.0
    np.testing.assert_array_equal(m(nima.tensor(changed)).data[:, :t + 1], m(x).data[:, :t + 1])


def test_later_writes_do_not_change_a_pending_backward() -> None:
    grads = []
    for overwrite in (False, True):
        m = make(capacity=4)
        fill(m, 4)
        x = inputs().requires_grad_()
        y = m(x)  # its graph holds the bank entries it read
        if overwrite:  # every slot written before the backward runs
            m.memory.write(np.full((2, NH, 4, HD), 9.0), np.full((2, NH, 4, HD), 9.0))
        y.sum().backward()
        grads.append(x.grad)
    np.testing.assert_array_equal(grads[1], grads[0])


@pytest.mark.parametrize("top_k", [None, 2])
@pytest.mark.parametrize("chunks", [[1] * 12, [4, 4, 4], [3, 5, 2, 2], [12]])
def test_cached_decoding_equals_segment_by_segment_training(top_k: int | None,
                                                            chunks: list[int]) -> None:
    m = make(top_k=top_k, capacity=6)  # smaller than two segments: the FIFO evicts
    x = inputs(T=12)
    full = np.concatenate([m(x[:, i:i + BS]).data for i in range(0, 12, BS)], 1)
    cache = m.new_cache()
    outs, i = [], 0
    for n in chunks:
        outs.append(m(x[:, i:i + n], cache=cache).data)
        i += n
    np.testing.assert_allclose(np.concatenate(outs, 1), full, rtol=1e-12, atol=1e-12)
    assert cache.length == 12 and cache.local.length == BS and cache.bank.size == 6


def test_cache_bank_is_bounded_reorders_and_resets() -> None:
    m = make(capacity=5)
    x = inputs(T=40)
    cache = m.new_cache()
    m(x[:, :9], cache=cache)
    nbytes = cache.bank.keys.data.nbytes
    for t in range(9, 39):
        m(x[:, t:t + 1], cache=cache)
    assert cache.bank.keys.data.nbytes == nbytes and cache.bank.size == 5
    assert cache.local.length <= BS
    rows = np.array([1, 0, 0])
    cache.reorder(rows)
    assert cache.bank.keys.shape[0] == 3 and cache.local.k.shape[0] == 3
    twin = m.new_cache()
    m(nima.tensor(x.data[rows, :39]), cache=twin)
    np.testing.assert_allclose(m(nima.tensor(x.data[rows, 39:]), cache=cache).data,
                               m(nima.tensor(x.data[rows, 39:]), cache=twin).data, rtol=1e-12)
    cache.reset()
    assert cache.length == 0 and cache.bank is None and isinstance(cache, MemoryCache)


def test_a_checkpoint_holds_the_memory(tmp_path) -> None:
    m = make(capacity=6)
    x = inputs(T=12)
    m(x[:, :4]), m(x[:, 4:8])
    nima.save(m.state_dict(), tmp_path / "memory.safetensors")
    assert {"memory.keys", "memory.values", "memory.count"} <= set(m.state_dict())
    resumed = make(capacity=6, seed=3)
    resumed.load_state_dict(nima.load(tmp_path / "memory.safetensors"))
    np.testing.assert_array_equal(resumed(x[:, 8:]).data, m(x[:, 8:]).data)


def test_contrastive_loss_only_in_training() -> None:
    m = make(contrastive=True)
    fill(m, 3)
    m.write_memory = False
    m(inputs())
    assert m.aux_loss is None  # eval
    m.train()
    m(inputs())
    loss = m.aux_loss
    assert loss is not None and loss.shape == () and float(loss.data) > 0


# ------------------------------------------------------------------------------ InfoNCE
def naive_info_nce(q: np.ndarray, k: np.ndarray, neg: np.ndarray, tau: float) -> float:
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    q, k, neg = unit(q), unit(k), unit(neg)
    losses = []
    for i in range(q.shape[0]):
        logits = np.concatenate([k @ q[i], neg @ q[i]]) / tau
        losses.append(np.log(np.exp(logits).sum()) - logits[i])
    return float(np.mean(losses))


def test_info_nce_equals_the_cross_entropy_at_the_own_key() -> None:
    rng = np.random.default_rng(0)
    q, k, neg = (rng.standard_normal(shape) for shape in ((5, 3), (5, 3), (4, 3)))
    got = info_nce(nima.tensor(q), nima.tensor(k), neg, temperature=0.5)
    assert float(got.data) == pytest.approx(naive_info_nce(q, k, neg, 0.5), rel=1e-12)
    alone = info_nce(nima.tensor(q), nima.tensor(k), np.zeros((0, 3)), temperature=0.5)
    assert float(alone.data) == pytest.approx(naive_info_nce(q, k, np.zeros((0, 3)), 0.5))
    perfect = info_nce(nima.tensor(np.eye(3)), nima.tensor(np.eye(3)), temperature=0.01)
    assert float(perfect.data) < 1e-12  # orthogonal pairs: the own key wins outright


@given(N=st.integers(1, 4), M=st.integers(0, 3), tau=st.floats(0.2, 2.0),
       seed=st.integers(0, 99))
@settings(max_examples=20)
def test_info_nce_gradcheck(N: int, M: int, tau: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = nima.tensor(rng.standard_normal((2, N, 3)), requires_grad=True)
    k = nima.tensor(rng.standard_normal((2, N, 3)), requires_grad=True)
    neg = nima.tensor(rng.standard_normal((2, M, 3)), requires_grad=True)
    assert gradcheck(lambda q, k, n: info_nce(q, k, n, tau), [q, k, neg])


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"capacity": 0}, "MemoryBank: capacity must be >= 1, got 0"),
    ({"top_k": 0}, r"top_k must be >= 1 \(or None for all\), got 0"),
    ({"block_size": 0}, "block_size must be >= 1, got 0"),
    ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MemoryAttention(D, NH, **{"block_size": BS, "capacity": 4, **kwargs})


def test_bad_inputs() -> None:
    m = make(B=2)
    with pytest.raises(ValueError, match=r"batch_size=2 rows and at most block_size=4 tokens, "
                                         r"got x of shape \(3, 4, 4\)"):
        m(inputs(B=3))
    with pytest.raises(ValueError, match=r"got x of shape \(2, 5, 4\)"):
        m(inputs(T=5))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(nima.zeros(2, 3), nima.zeros(2, 3), temperature=-1)
    with pytest.raises(ValueError, match=r"queries and keys of one shape"):
        info_nce(nima.zeros(2, 3), nima.zeros(3, 3))
