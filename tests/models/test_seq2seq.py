"""The encoder–decoder Transformer: shapes, padding masks (source and target), causal decoding,
ignored padded targets, float64 gradchecks, and learning to reverse sequences."""

import math

import numpy as np
import pytest

import nima
from nima.models import Transformer, TransformerConfig

PAD, BOS, EOS, V = 0, 1, 2, 13  # ids 3..12 are the 10 symbols


def config(**overrides) -> TransformerConfig:
    fields = dict(src_vocab_size=V, tgt_vocab_size=V, max_len=16, d_model=16, n_head=2,
                  n_encoder_layers=2, n_decoder_layers=2, ffn_hidden=24)
    return TransformerConfig(**{**fields, **overrides})


def reversal_batch(n: int, rng: np.random.Generator,
                   exclude: set[bytes] = frozenset()) -> tuple[np.ndarray, ...]:
    """Sources of 5–8 symbols padded to 8; `tgt_in` = BOS + reversed, `tgt_out` = reversed + EOS,
    padded to 9. Sources in `exclude` (the held-out set) are drawn again."""
    src, tgt_in, tgt_out = (np.full((n, w), PAD) for w in (8, 9, 9))
    for i in range(n):
        s = rng.integers(3, V, rng.integers(5, 9))
        while s.tobytes() in exclude:
            s = rng.integers(3, V, len(s))
        r, n_tok = s[::-1], len(s)
        src[i, :n_tok], tgt_in[i, 0], tgt_in[i, 1:n_tok + 1] = s, BOS, r
        tgt_out[i, :n_tok], tgt_out[i, n_tok] = r, EOS
    return src, tgt_in, tgt_out


def greedy(model: Transformer, src: np.ndarray, steps: int) -> np.ndarray:
    """Decode by feeding back the argmax, starting from BOS (no teacher forcing)."""
    with nima.no_grad():
        memory, src_pad = model.encode(src)
        out = np.full((len(src), 1), BOS)
        for _ in range(steps):
            logits = model.decode(out, memory, src_pad)  # (B, t, V)
            out = np.concatenate([out, logits.data[:, -1].argmax(-1)[:, None]], axis=1)
    return out[:, 1:]


# ----------------------------------------------------------------------------- structure
def test_shapes_loss_and_tying() -> None:
    nima.manual_seed(0)
    model = Transformer(config())
    src, tgt_in, tgt_out = reversal_batch(3, np.random.default_rng(0))
    logits, loss = model(src, tgt_in, tgt_out)
    assert logits.shape == (3, 9, V) and loss.shape == ()
    assert math.log(V) < loss.item() < 2 * math.log(V)  # near-chance predictions at init
    assert model(src, tgt_in)[1] is None
    assert model.head.weight is model.tgt_embed.weight
    assert len(model.encoder) == 2 and len(model.decoder) == 2
    assert model.decoder[0].cross_attn.cross and model.decoder[0].self_attn.causal
    assert not model.encoder[0].self_attn.causal


def test_config_and_input_errors() -> None:
    with pytest.raises(ValueError, match="TransformerConfig: d_model=10 must be divisible"):
        config(d_model=10, n_head=4)
    with pytest.raises(ValueError, match="TransformerConfig: position must be one of"):
        config(position="rope")
    with pytest.raises(ValueError, match="TransformerConfig: ffn must be one of"):
        config(ffn="tanh")
    with pytest.raises(ValueError, match=r"TransformerConfig\.n_decoder_layers: must be >= 1"):
        config(n_decoder_layers=0)
    model = Transformer(config(max_len=8))
    with pytest.raises(ValueError, match="tgt_in has 9 positions, more than max_len=8"):
        model(np.ones((1, 4), int), np.ones((1, 9), int))
    with pytest.raises(ValueError, match=r"src must be integer ids of shape \(B, T\)"):
        model(np.ones(4, int), np.ones((1, 3), int))


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_source_padding_is_invisible(placement: str) -> None:
    """More padding after a source changes nothing, and neither does garbage behind the mask
    (an embedding of PAD changed by hand)."""
    nima.manual_seed(1)
    model = Transformer(config(norm_placement=placement)).double()
    src, tgt_in, _ = reversal_batch(4, np.random.default_rng(1))
    base, _ = model(src, tgt_in)
    padded, _ = model(np.pad(src, ((0, 0), (0, 5))), tgt_in)
    np.testing.assert_allclose(padded.data, base.data, atol=1e-12)
    model.src_embed.weight.data[PAD] += 10.0
    np.testing.assert_allclose(model(src, tgt_in)[0].data, base.data, atol=1e-12)


def test_decoder_is_causal_and_target_padding_is_ignored() -> None:
    nima.manual_seed(2)
    model = Transformer(config()).double()
    src, tgt_in, tgt_out = reversal_batch(4, np.random.default_rng(2))
    base, loss = model(src, tgt_in, tgt_out)
    later = tgt_in.copy()
    later[:, 4:] = 3 + (later[:, 4:] + 1) % 10
    changed, _ = model(src, later)
    np.testing.assert_allclose(changed.data[:, :4], base.data[:, :4], atol=1e-12)
    assert np.abs(changed.data[:, 4:] - base.data[:, 4:]).max() > 1e-6
    # the loss is the mean over real target positions only
    logp = base.data - np.log(np.exp(base.data).sum(-1, keepdims=True))
    real = tgt_out != PAD
    picked = np.take_along_axis(logp, tgt_out[..., None], -1)[..., 0]
    np.testing.assert_allclose(loss.item(), -picked[real].mean(), rtol=1e-10)


def test_cross_attention_reads_the_source() -> None:
    nima.manual_seed(3)
    model = Transformer(config()).double()
    src, tgt_in, _ = reversal_batch(2, np.random.default_rng(3))
    other = src.copy()
    other[:, 0] = 3 + (other[:, 0] - 2) % 10
    assert np.abs(model(src, tgt_in)[0].data - model(other, tgt_in)[0].data).max() > 1e-6


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_gradcheck(placement: str) -> None:
    nima.manual_seed(4)
    model = Transformer(config(d_model=8, ffn_hidden=8, n_encoder_layers=1,
                               n_decoder_layers=1, norm_placement=placement,
                               position="learned")).double()
    src, tgt_in, tgt_out = reversal_batch(2, np.random.default_rng(4))
    src, tgt_in, tgt_out = src[:, :6], tgt_in[:, :5], tgt_out[:, :5]
    layer = model.decoder[0]
    checked = [model.src_embed.weight, model.src_pos.weight, model.encoder[0].self_attn.qkv.weight,
               layer.cross_attn.q.weight, layer.cross_attn.kv.weight, layer.ffn.fc.weight,
               model.tgt_embed.weight]

    def f(*params):
        return model(src, tgt_in, tgt_out)[1]

    assert nima.gradcheck(f, checked)


# ----------------------------------------------------------------------------- learning
def test_learns_to_reverse_sequences() -> None:
    """≥ 99% token accuracy (EOS included) decoding held-out sources greedily, after 300 steps
    of a minimal Adam with a cosine learning rate (nima.optim arrives in a later issue)."""
    nima.manual_seed(0)
    model = Transformer(config(d_model=64, n_head=4, ffn_hidden=128))
    held_src, _, held_out = reversal_batch(256, np.random.default_rng(123))
    held = {row[row != PAD].tobytes() for row in held_src}
    rng = np.random.default_rng(0)
    params = list(model.parameters())
    moments = [(np.zeros_like(p.data), np.zeros_like(p.data)) for p in params]
    steps, b1, b2 = 300, 0.9, 0.98
    for step in range(1, steps + 1):
        lr = 3e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        model.zero_grad()
        _, loss = model(*reversal_batch(64, rng, exclude=held))
        loss.backward()
        for p, (m, v) in zip(params, moments, strict=True):
            m[...] = b1 * m + (1 - b1) * p.grad
            v[...] = b2 * v + (1 - b2) * p.grad ** 2
            p.data -= lr * (m / (1 - b1 ** step)) / (np.sqrt(v / (1 - b2 ** step)) + 1e-8)
    predicted = greedy(model, held_src, steps=9)
    real = held_out != PAD
    accuracy = ((predicted == held_out) & real).sum() / real.sum()
    assert accuracy >= 0.99, accuracy
