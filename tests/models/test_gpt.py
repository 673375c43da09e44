"""GPT: config validation and presets, shapes and errors, the causal property, KV-cache decoding
equal to the full forward for every position type, weight tying, GPT-2's init, state_dict round
trip, float64 gradchecks, gradient checkpointing, and overfitting a tiny batch."""

import dataclasses
import math

import numpy as np
import pytest

import nima
from nima.models import GPT, GPTConfig
from nima.models.gpt import Block
from nima.nn import RotaryEmbedding

POSITIONS = ["learned", "sinusoidal", "rope", "alibi"]
ATTENTIONS = ["content", "reweight", "hybrid"]


def small(**overrides) -> GPTConfig:
    fields = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return GPTConfig(**{**fields, **overrides})


def ids(B: int, T: int, V: int = 11, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (B, T))


# ----------------------------------------------------------------------------- config
def test_presets() -> None:
    baby = GPTConfig.preset("baby")
    assert (baby.n_layer, baby.n_head, baby.n_embd, baby.block_size, baby.vocab_size,
            baby.bias) == (4, 4, 128, 64, 65, False)
    tiny = GPTConfig.preset("tiny")
    assert (tiny.n_layer, tiny.n_head, tiny.n_embd, tiny.ffn_hidden) == (4, 4, 256, 1024)
    assert GPTConfig.preset("small") == GPTConfig()  # the defaults are GPT-2 small
    medium = GPTConfig.preset("medium", dropout=0.1)
    assert (medium.n_layer, medium.n_head, medium.n_embd, medium.dropout) == (24, 16, 1024, 0.1)
    assert GPTConfig.preset("baby", vocab_size=256).vocab_size == 256


@pytest.mark.parametrize(("overrides", "field"), [
    (dict(n_embd=10, n_head=3), "n_embd"),
    (dict(n_layer=0), "n_layer"),
    (dict(vocab_size=2.5), "vocab_size"),
    (dict(ffn="tanh"), "ffn"),
    (dict(norm="batchnorm"), "norm"),
    (dict(norm_placement="middle"), "norm_placement"),
    (dict(position="relative"), "position"),
    (dict(attention="linear"), "attention"),
    (dict(dropout=1.0), "dropout"),
    (dict(ffn_hidden=0), "ffn_hidden"),
    (dict(position="rope", n_embd=6, n_head=2), "position"),
    (dict(n_kv_head=3), "n_kv_head"),
    (dict(n_kv_head=0), "n_kv_head"),
    (dict(rope_theta=0.0), "rope_theta"),
    (dict(norm_eps=-1e-5), "norm_eps"),
    (dict(norm_eps=float("nan")), "norm_eps"),
    (dict(gelu_approximate="erf"), "gelu_approximate"),
    (dict(attn_bias=1), "attn_bias"),
    (dict(n_layer=True), "n_layer"),
    (dict(init="kaiming"), "init"),
    (dict(embed_scale=1), "embed_scale"),
    (dict(hybrid_alpha=-0.1), "hybrid_alpha"),
])
def test_config_errors_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^GPTConfig.{field}: "):
        small(**overrides)


def test_preset_errors() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        GPTConfig.preset("huge")
    with pytest.raises(ValueError, match=r"unknown field.*n_layers"):
        GPTConfig.preset("baby", n_layers=3)


# ----------------------------------------------------------------------------- forward
def test_shapes_and_initial_loss() -> None:
    nima.manual_seed(0)
    model = GPT(small(vocab_size=50))
    idx = ids(3, 8, 50)
    logits, loss = model(idx, ids(3, 8, 50, seed=1))
    assert logits.shape == (3, 8, 50) and logits.dtype == np.float32
    # GPT-2's small init gives near-uniform predictions: loss ~ log V
    assert abs(loss.item() - math.log(50)) < 0.1
    logits, loss = model(nima.tensor(idx))
    assert loss is None and logits.shape == (3, 8, 50)


def test_input_errors() -> None:
    model = GPT(small())
    with pytest.raises(ValueError, match="9 tokens exceed block_size=8"):
        model(ids(1, 9))
    caches = model.new_caches()
    model(ids(1, 6), caches=caches)
    with pytest.raises(ValueError, match="3 tokens after 6 cached exceed block_size=8"):
        model(ids(1, 3), caches=caches)
    with pytest.raises(ValueError, match=r"idx must be integer token ids of shape \(B, T\)"):
        model(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"one cache per block \(2\), got 1"):
        model(ids(1, 2), caches=caches[:1])
    with pytest.raises(ValueError, match=r"token id 50 is outside the vocabulary \[0, 11\)"):
        model(np.array([[1, 50]]))
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        model(np.array([[-1, 2]]))
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT(dict(n_layer=2))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_causal(position: str, attention: str) -> None:
    """Logits at position t do not change when tokens after t change."""
    nima.manual_seed(1)
    model = GPT(small(position=position, attention=attention)).double()
    a = ids(2, 8)
    b = a.copy()
    b[:, 5:] = (b[:, 5:] + 1 + ids(2, 3, 9, seed=3)) % 11  # every later token differs
    la, _ = model(a)
    lb, _ = model(b)
    np.testing.assert_array_equal(la.data[:, :5], lb.data[:, :5])
    assert np.abs(la.data[:, 5:] - lb.data[:, 5:]).min() > 0


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_kv_cache_decoding_equals_full_forward(position: str, placement: str) -> None:
    """Token by token with caches gives the full forward's logits at every position."""
    nima.manual_seed(2)
    model = GPT(small(position=position, norm_placement=placement)).double()
    idx = ids(2, 8)
    with nima.no_grad():
        full, _ = model(idx)
        caches = model.new_caches()
        steps = [model(idx[:, t:t + 1], caches=caches)[0].data for t in range(8)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full.data, atol=1e-12)
    assert [c.length for c in caches] == [8, 8]


@pytest.mark.parametrize("attention", ["reweight", "hybrid"])
def test_kv_cache_with_hybrid_attention_and_a_prompt(attention: str) -> None:
    """A 5-token prompt in one call, then single tokens."""
    nima.manual_seed(3)
    model = GPT(small(attention=attention, position="rope")).double()
    idx = ids(2, 8)
    with nima.no_grad():
        full, _ = model(idx)
        caches = model.new_caches()
        steps = [model(idx[:, :5], caches=caches)[0].data]
        steps += [model(idx[:, t:t + 1], caches=caches)[0].data for t in range(5, 8)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full.data, atol=1e-12)


VARIANTS = [dict(), dict(n_kv_head=1), dict(n_kv_head=1, position="rope"),
            dict(attn_bias=True, mlp_bias=False), dict(gelu_approximate="none"),
            dict(norm_eps=1e-3, rope_theta=500.0, position="rope")] + [
    {field: value} for field, values in (
        ("position", ["learned", "sinusoidal", "rope", "alibi"]),
        ("ffn", ["gelu", "relu", "glu", "swiglu"]),
        ("norm", ["layernorm", "rmsnorm"]), ("norm_placement", ["pre", "post"]),
        ("attention", ["content", "reweight", "hybrid"])) for value in values] + [
    # the Deep Tree Echo parts (echo and memory layers hold one training stream per row: B = 2)
    dict(attention="tree", tree_chunk=2), dict(attention="tree", tree_chunk=4, tree_gate="softmax",
                                               tree_pooling="attention"),
    dict(attention="tree", tree_layers=(1,), tree_chunk=2, tree_levels=2, position="sinusoidal"),
    dict(memory_layers=(1,), streams=2), dict(memory_layers=(0,), memory_top_k=2, streams=2),
    dict(echo_layers=(0,), streams=2, echo_slots=3), dict(echo_layers=(1,), streams=2,
                                                          norm_placement="post"),
    dict(recursion_depth=2), dict(recursion_depth=3, act=True),
    dict(attention="tree", tree_chunk=2, memory_layers=(1,), echo_layers=(1,), streams=2,
         recursion_depth=2, act=True, memory_contrastive=0.1)]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in
                                                                      v.items()) or "default")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_variant_decodes_through_the_one_forward(variant: dict, dtype) -> None:
    """A 3-token prompt, then one token at a time through `forward(caches=...)`: the logits
    of the full forward at every position, for every attention, position, FFN and norm
    kind — the cached path is the training path, not a copy of it."""
    nima.manual_seed(5)
    model = GPT(small(n_head=2, n_embd=8, **variant)).to(dtype).eval()
    idx = ids(2, 8)
    with nima.no_grad():
        full, _ = model(idx)
        caches = model.new_caches()
        steps = [model(idx[:, :3], caches=caches)[0].data]
        steps += [model(idx[:, t:t + 1], caches=caches)[0].data for t in range(3, 8)]
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full.data, atol=tol, rtol=tol)
    assert [c.length for c in caches] == [8, 8]


def test_grouped_query_attention_shares_keys_and_values() -> None:
    """With one key/value head, every query head reads the same keys: the qkv layer is
    (n_head + 2) head widths wide, and the cache holds one head."""
    nima.manual_seed(6)
    model = GPT(small(n_head=4, n_embd=16, n_kv_head=1))
    assert model.blocks[0].attn.qkv.weight.shape == ((4 + 2) * 4, 16)
    caches = model.new_caches()
    with nima.no_grad():
        model(ids(2, 3), caches=caches)
    assert caches[0].k.shape[:2] == (2, 1) and caches[0].k.shape[2] == 8  # block_size


def test_post_norm_has_no_final_norm() -> None:
    assert GPT(small(norm_placement="post")).ln_f is None
    assert GPT(small()).ln_f is not None


# ----------------------------------------------------------------------------- parameters
def test_tied_weights_share_memory_and_get_one_gradient() -> None:
    nima.manual_seed(4)
    model = GPT(small())
    assert model.lm_head.weight is model.wte.weight
    assert np.shares_memory(model.state_dict()["lm_head.weight"], model.state_dict()["wte.weight"])
    names = [n for n, _ in model.named_parameters()]
    assert "wte.weight" in names and "lm_head.weight" not in names  # counted once
    _, loss = model(ids(2, 8), ids(2, 8, seed=1))
    loss.backward()
    grad = model.wte.weight.grad
    # the one gradient holds both uses: embedding rows of the tokens seen, and the head
    untied = GPT(small(tie_weights=False))
    untied.load_state_dict({**model.state_dict()})
    _, loss2 = untied(ids(2, 8), ids(2, 8, seed=1))
    loss2.backward()
    np.testing.assert_allclose(grad, untied.wte.weight.grad + untied.lm_head.weight.grad,
                               rtol=1e-5, atol=1e-7)
    assert untied.num_parameters() == model.num_parameters() + 11 * 8


def test_gpt2_init() -> None:
    nima.manual_seed(5)
    config = small(n_layer=8, n_embd=64, n_head=4, vocab_size=500, block_size=64)
    model = GPT(config)
    params = dict(model.named_parameters())
    assert abs(params["wte.weight"].data.std() - 0.02) < 0.002
    assert abs(params["blocks.0.attn.qkv.weight"].data.std() - 0.02) < 0.002
    residual = 0.02 / math.sqrt(2 * 8)
    for name in ("blocks.3.attn.proj.weight", "blocks.3.ffn.proj.weight"):
        assert abs(params[name].data.std() - residual) < 0.15 * residual, name
    assert not params["blocks.0.attn.qkv.bias"].data.any()
    np.testing.assert_array_equal(params["blocks.0.ln_1.weight"].data, 1)


def test_xavier_init() -> None:
    """Glorot uniform on every matrix: inside the bound, with its variance a^2 / 3; biases 0,
    norms 1; GPT-2's 0.02 and residual scaling are gone."""
    nima.manual_seed(5)
    model = GPT(small(n_layer=2, n_embd=64, n_head=4, vocab_size=500, block_size=64,
                      init="xavier", attention="hybrid"))
    params = dict(model.named_parameters())
    for name, (fan_out, fan_in) in (("wte.weight", (500, 64)), ("wpe.weight", (64, 64)),
                                    ("blocks.0.attn.qkv.weight", (192, 64)),
                                    ("blocks.1.ffn.proj.weight", (64, 256)),
                                    ("blocks.0.attn.reweight.weight", (4 * 64, 64))):
        a = math.sqrt(6 / (fan_in + fan_out))
        w = params[name].data
        assert np.abs(w).max() <= a and abs(w.var() / (a * a / 3) - 1) < 0.1, name
    assert not params["blocks.0.attn.qkv.bias"].data.any()
    np.testing.assert_array_equal(params["blocks.0.ln_1.weight"].data, 1)
    np.testing.assert_allclose(params["blocks.0.attn.alpha_logit"].data, 0.0)  # alpha 0.5


def test_embedding_scale_multiplies_by_sqrt_width() -> None:
    nima.manual_seed(8)
    plain = GPT(small(n_embd=16, position="rope", tie_weights=False))
    scaled = GPT(small(n_embd=16, position="rope", tie_weights=False, embed_scale=True))
    scaled.load_state_dict(plain.state_dict())
    idx = ids(2, 5)
    np.testing.assert_allclose(scaled.embed(idx).data, 4.0 * plain.embed(idx).data, rtol=1e-6)
    plain.wte.weight.data *= 4.0  # the same model with the scale folded into the table
    np.testing.assert_allclose(scaled(idx)[0].data, plain(idx)[0].data, rtol=1e-5, atol=1e-6)


def test_hybrid_alpha_from_the_config() -> None:
    fixed = GPT(small(attention="hybrid", hybrid_alpha=0.25, hybrid_learn_alpha=False))
    attn = fixed.blocks[0].attn
    assert attn.alpha_fixed == 0.25 and not hasattr(attn, "alpha_logit")
    np.testing.assert_allclose(attn.alpha().data, 0.25)
    learned = GPT(small(attention="hybrid", hybrid_alpha=0.8))
    np.testing.assert_allclose(learned.blocks[1].attn.alpha().data, 0.8, rtol=1e-6)
    assert GPT(small(attention="hybrid", hybrid_alpha=1.0, hybrid_learn_alpha=False))
    with pytest.raises(ValueError, match=r"^GPTConfig.hybrid_alpha: must be inside \(0, 1\)"):
        small(attention="hybrid", hybrid_alpha=1.0)
    with pytest.raises(ValueError, match=r"^GPTConfig.hybrid_alpha: must be <= 1"):
        small(hybrid_alpha=1.5)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_crop_block_size_keeps_the_logits_of_what_fits(position: str, attention: str) -> None:
    """nanoGPT's model surgery: after cropping 16 -> 6, every sequence that fits gets the
    logits it had, through the cache too; the parameters are the budget's for the new size."""
    from nima.models.budget import count_parameters

    nima.manual_seed(12)
    model = GPT(small(block_size=16, position=position, attention=attention)).double()
    idx = ids(2, 6)
    with nima.no_grad():
        before = model(idx)[0].data
        model.crop_block_size(6)
        after = model(idx)[0].data
        caches = model.new_caches()
        steps = [model(idx[:, t:t + 1], caches=caches)[0].data for t in range(6)]
    np.testing.assert_array_equal(after, before)
    np.testing.assert_allclose(np.concatenate(steps, 1), before, rtol=1e-12, atol=1e-12)
    assert model.config.block_size == 6 and caches[0].capacity == 6
    assert model.num_parameters() == count_parameters(model.config)["total"]
    with pytest.raises(ValueError, match="exceed block_size=6"):
        model(ids(1, 7))


def test_crop_block_size_errors() -> None:
    model = GPT(small())
    with pytest.raises(ValueError, match=r"block_size must be in \[1, 8\].*got 9"):
        model.crop_block_size(9)
    with pytest.raises(ValueError, match=r"got 0"):
        model.crop_block_size(0)


def test_state_dict_round_trip() -> None:
    nima.manual_seed(6)
    a = GPT(small(position="rope", attention="hybrid"))
    nima.manual_seed(7)
    b = GPT(small(position="rope", attention="hybrid"))
    idx = ids(2, 8)
    assert not np.allclose(a(idx)[0].data, b(idx)[0].data)
    state = {k: v.copy() for k, v in a.state_dict().items()}
    assert not any("rope" in k for k in state)  # the cos/sin tables are rebuilt, not saved
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(idx)[0].data, b(idx)[0].data)
    assert b.lm_head.weight is b.wte.weight  # still tied after loading


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("ffn", ["gelu", "swiglu"])
def test_block_gradcheck(placement: str, ffn: str) -> None:
    nima.manual_seed(8)
    config = small(norm_placement=placement, ffn=ffn, ffn_hidden=12, position="rope")
    block = Block(config, rope=RotaryEmbedding(config.head_dim, config.block_size)).double()
    x = nima.randn(2, 5, 8, dtype=nima.float64, requires_grad=True)
    params = list(block.parameters())

    def f(x, *ps):
        return block(x)

    assert nima.gradcheck(f, [x, *params])


def test_model_gradcheck() -> None:
    """The whole model, loss included, in float64 (a few parameters, to keep it quick)."""
    nima.manual_seed(9)
    model = GPT(small(n_layer=1, tie_weights=True)).double()
    idx, targets = ids(2, 4), ids(2, 4, seed=1)
    checked = [model.wte.weight, model.wpe.weight, model.blocks[0].attn.qkv.weight,
               model.ln_f.weight]

    def f(*ps):
        return model(idx, targets)[1]

    assert nima.gradcheck(f, checked)


def test_gradient_checkpointing_gives_identical_gradients() -> None:
    config = small(n_layer=3, dropout=0.1)
    grads = []
    for flag in (False, True):
        nima.manual_seed(10)
        model = GPT(dataclasses.replace(config, gradient_checkpointing=flag))
        nima.manual_seed(11)  # the same dropout masks in both runs
        _, loss = model(ids(2, 8), ids(2, 8, seed=1))
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        np.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)


# ----------------------------------------------------------------------------- learning
def adam_step(params, state, step, lr=1e-2, betas=(0.9, 0.99), eps=1e-8) -> None:
    """A minimal Adam, on p.data with p.grad (nima.optim arrives in a later issue)."""
    b1, b2 = betas
    for p in params:
        m, v = state.setdefault(id(p), (np.zeros_like(p.data), np.zeros_like(p.data)))
        m[...] = b1 * m + (1 - b1) * p.grad
        v[...] = b2 * v + (1 - b2) * p.grad ** 2
        p.data -= lr * (m / (1 - b1 ** step)) / (np.sqrt(v / (1 - b2 ** step)) + eps)


def test_overfits_a_tiny_batch() -> None:
    nima.manual_seed(12)
    model = GPT(small(vocab_size=16, block_size=16, n_layer=2, n_embd=32, n_head=4))
    data = ids(4, 17, 16, seed=5)
    x, y = data[:, :-1], data[:, 1:]
    params, state = list(model.parameters()), {}
    for step in range(1, 151):
        model.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        adam_step(params, state, step)
    assert loss.item() < 0.05, loss.item()
