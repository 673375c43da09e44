"""Padded batches through the one forward: each row of a left- or right-padded batch gives what
its prompt gives alone — for every position kind and attention kind, in the full forward and
with the KV cache — the loss ignores padding, the cache remembers it, and bad masks are named."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima.models import GPT, GPTConfig
from nima.nn import KVCache
from nima.nn.positional import positions_from_padding

POSITIONS = ["learned", "sinusoidal", "rope", "alibi"]
ATTENTIONS = ["content", "reweight", "hybrid"]
V = 11


def model(seed: int = 0, **overrides) -> GPT:
    """A float64 GPT with large random weights, so that a wrong position shows."""
    nima.manual_seed(seed)
    fields = dict(vocab_size=V, block_size=12, n_layer=2, n_head=2, n_embd=8)
    gpt = GPT(GPTConfig(**{**fields, **overrides})).double().eval()
    rng = np.random.default_rng(seed)
    for p in gpt.parameters():
        p.data[...] = rng.normal(0.0, 0.5, p.shape)
    return gpt


def padded(prompts: list[np.ndarray], side: str, T: int | None = None
           ) -> tuple[np.ndarray, np.ndarray, list[slice]]:
    """Prompts padded to `T` (the longest by default) on `side`: ids (garbage at padding, to
    show it is never read), the 0/1 attention mask, and where each row's tokens sit."""
    T = T or max(len(p) for p in prompts)
    ids = np.full((len(prompts), T), V - 1)
    mask = np.zeros((len(prompts), T), dtype=np.int64)
    where = []
    for b, p in enumerate(prompts):
        sl = slice(T - len(p), T) if side == "left" else slice(0, len(p))
        ids[b, sl], mask[b, sl] = p, 1
        where.append(sl)
    return ids, mask, where


def alone(gpt: GPT, tokens: np.ndarray) -> np.ndarray:
    with nima.no_grad():
        return gpt(tokens[None])[0].data[0]  # (T, V)


PROMPTS = [np.array([3, 1, 4, 1, 5]), np.array([9, 2]), np.array([6, 5, 3, 5, 8, 9, 7])]


def test_positions_from_padding() -> None:
    """The worked examples of the docstring, and HF's cumsum rule on a random mask."""
    left = np.array([[True, True, False, False]])
    np.testing.assert_array_equal(positions_from_padding(left), [[0, 0, 0, 1]])
    right = np.array([[False, False, True]])
    np.testing.assert_array_equal(positions_from_padding(right), [[0, 1, 1]])
    mask = np.random.default_rng(0).integers(0, 2, (4, 9))
    hf = np.where(mask == 1, mask.cumsum(-1) - 1, 0)  # transformers' position_ids, real tokens
    got = positions_from_padding(mask == 0)
    np.testing.assert_array_equal(got[mask == 1], hf[mask == 1])


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_each_row_is_its_prompt_alone(position: str, attention: str, side: str) -> None:
    gpt = model(position=position, attention=attention)
    ids, mask, where = padded(PROMPTS, side)
    with nima.no_grad():
        logits = gpt(ids, attention_mask=mask)[0].data
    for b, p in enumerate(PROMPTS):
        np.testing.assert_allclose(logits[b, where[b]], alone(gpt, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_cached_decoding_of_a_padded_batch(position: str, attention: str, side: str) -> None:
    """The padded prompts in one call with the mask, then three tokens one at a time with no
    mask: the caches remember the padding and the positions go on from each row's length.
    With right padding the new tokens come after the padding, and still see only real keys."""
    gpt = model(1, position=position, attention=attention)
    ids, mask, where = padded(PROMPTS, side)
    more = np.random.default_rng(1).integers(0, V, (3, 3))
    with nima.no_grad():
        caches = gpt.new_caches()
        first = gpt(ids, attention_mask=mask, caches=caches)[0].data
        steps = [gpt(more[:, t:t + 1], caches=caches)[0].data for t in range(3)]
    assert all(c.length == ids.shape[1] + 3 for c in caches)
    assert caches[0].padding is not None
    for b, p in enumerate(PROMPTS):
        expected = alone(gpt, np.concatenate([p, more[b]]))
        got = np.concatenate([first[b, where[b]], *[s[b] for s in steps]])
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_padding_can_arrive_in_a_later_step() -> None:
    """A mask first given at step two: earlier keys count as real."""
    gpt = model(2, position="rope")
    a = np.array([[1, 2], [3, 4]])
    b = np.array([[5, 6], [7, 8]])
    mask_b = np.array([[1, 1], [0, 1]])  # row 1's first new token is padding
    with nima.no_grad():
        caches = gpt.new_caches()
        gpt(a, caches=caches)
        got = gpt(b, attention_mask=mask_b, caches=caches)[0].data
    np.testing.assert_allclose(got[0], alone(gpt, np.array([1, 2, 5, 6]))[2:], atol=1e-12)
    np.testing.assert_allclose(got[1, 1], alone(gpt, np.array([3, 4, 8]))[2], atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4),
       position=st.sampled_from(POSITIONS), side=st.sampled_from(["left", "right"]),
       seed=st.integers(0, 2**16))
def test_any_padding_equals_the_rows_alone(lengths, position, side, seed) -> None:
    gpt = model(3, position=position)
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, V, n) for n in lengths]
    ids, mask, where = padded(prompts, side, T=max(lengths) + 1)  # at least one pad per row
    with nima.no_grad():
        logits = gpt(ids, attention_mask=mask)[0].data
    assert np.isfinite(logits).all()  # a padding query sees no key: zeros, not NaN
    for b, p in enumerate(prompts):
        np.testing.assert_allclose(logits[b, where[b]], alone(gpt, p), rtol=1e-11, atol=1e-11)


def test_loss_ignores_padding_and_gradients_match() -> None:
    """The loss of a padded batch is the mean over real positions: the loss and gradients of
    the rows alone, token-weighted."""
    gpt = model(4, position="learned")
    prompts = [np.array([1, 2, 3, 4, 5]), np.array([6, 7, 8])]
    targets = [np.array([2, 3, 4, 5, 6]), np.array([7, 8, 9])]
    ids, mask, where = padded(prompts, "left")
    y = np.full_like(ids, 0)
    for b, t in enumerate(targets):
        y[b, where[b]] = t
    _, loss = gpt(ids, y, attention_mask=mask)
    loss.backward()
    padded_grad = gpt.wte.weight.grad.copy()
    gpt.zero_grad()
    total = 0.0
    for p, t in zip(prompts, targets, strict=True):
        _, row = gpt(p[None], t[None])
        (row * (len(p) / 8)).backward()
        total += row.item() * len(p) / 8
    np.testing.assert_allclose(loss.item(), total, rtol=1e-12)
    np.testing.assert_allclose(padded_grad, gpt.wte.weight.grad, rtol=1e-10, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(1, 4), min_size=2, max_size=2),
       position=st.sampled_from(POSITIONS), attention=st.sampled_from(ATTENTIONS),
       side=st.sampled_from(["left", "right"]))
def test_gradcheck_with_padding(lengths, position, attention, side) -> None:
    """float64 central differences through every path padding adds: positions gathered from
    the learned table, RoPE at per-row angles, ALiBi per row, reweight logits gathered."""
    gpt = model(5, position=position, attention=attention, n_layer=1)
    rng = np.random.default_rng(sum(lengths))
    ids, mask, _ = padded([rng.integers(0, V, n) for n in lengths], side, T=5)
    targets = rng.integers(0, V, ids.shape)
    params = [p for n, p in gpt.named_parameters() if n in (
        "wte.weight", "blocks.0.attn.qkv.weight", "wpe.weight", "blocks.0.attn.reweight.weight")]

    def f(*ps):
        return gpt(ids, targets, attention_mask=mask)[1]

    assert nima.gradcheck(f, params)


def test_gradient_checkpointing_with_padding_gives_the_same_gradients() -> None:
    grads = []
    ids, mask, _ = padded(PROMPTS, "left")
    for flag in (False, True):
        gpt = model(7, position="rope", gradient_checkpointing=flag).train()
        gpt(ids, ids, attention_mask=mask)[1].backward()
        grads.append(gpt.blocks[0].attn.qkv.weight.grad)
    np.testing.assert_array_equal(grads[0], grads[1])


def test_an_all_real_mask_is_the_unpadded_forward() -> None:
    gpt = model(6, position="alibi")
    idx = np.random.default_rng(6).integers(0, V, (2, 6))
    with nima.no_grad():
        caches = gpt.new_caches()
        masked = gpt(idx, attention_mask=np.ones_like(idx), caches=caches)[0].data
        plain = gpt(idx)[0].data
    np.testing.assert_array_equal(masked, plain)
    assert caches[0].padding is None  # no padding seen: nothing recorded


def test_kv_cache_records_reorders_and_resets_padding() -> None:
    cache = KVCache(capacity=6)
    k = nima.Tensor(np.zeros((2, 1, 3, 4)))
    cache.append(k, k)
    assert cache.padding is None and cache.padding_mask(1) is None
    cache.append(nima.Tensor(np.zeros((2, 1, 2, 4))), nima.Tensor(np.zeros((2, 1, 2, 4))),
                 np.array([[True, False], [False, False]]))
    np.testing.assert_array_equal(cache.padding_mask(1), [[0, 0, 0, 1, 0, 0],
                                                          [0, 0, 0, 0, 0, 0]])
    cache.reorder(np.array([1, 1]))
    assert not cache.padding_mask(1, np.array([[True], [False]]))[1].any()
    cache.reset()
    assert cache.padding is None and cache.length == 0
    with pytest.raises(ValueError, match=r"KVCache.padding_mask: new padding must be \(B, T\)"):
        KVCache().padding_mask(2, np.zeros((3, 1), dtype=bool))


@pytest.mark.parametrize(("mask", "match"), [
    (np.array([[1, 1, 2]]), "attention_mask must be 0/1 or bool of idx's shape"),
    (np.array([[1, 1]]), r"of idx's shape \(1, 3\)"),
    (np.array([[0.5, 1, 1]]), "got float64"),
])
def test_bad_masks_are_named(mask, match) -> None:
    with pytest.raises(ValueError, match=match):
        model()(np.array([[1, 2, 3]]), attention_mask=mask)


def test_bad_positions_are_named() -> None:
    gpt = model(position="rope")
    attn = gpt.blocks[0].attn
    x = nima.zeros(1, 3, 8, dtype=nima.float64)
    with pytest.raises(ValueError, match=r"positions must be \(B, S\) = \(1, 3\) ints"):
        attn(x, key_padding_mask=np.zeros((1, 3), bool), positions=np.zeros((1, 2), int))
    with pytest.raises(ValueError, match=r"RotaryEmbedding: positions 0..12 do not fit"):
        attn.rope(nima.zeros(1, 2, 3, 4), positions=np.array([[0, 1, 12]]))
    with pytest.raises(ValueError, match="targets must have idx's shape"):
        gpt(np.array([[1, 2, 3]]), np.array([[1, 2]]), attention_mask=np.array([[0, 1, 1]]))
