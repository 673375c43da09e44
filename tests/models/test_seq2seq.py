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
    with pytest.raises(ValueError, match=r"TransformerConfig\.d_model: must be divisible by "
                                         r"n_head=4, got 10"):
        config(d_model=10, n_head=4)
    with pytest.raises(ValueError, match=r"TransformerConfig\.position: must be one of"):
        config(position="rope")
    with pytest.raises(ValueError, match=r"TransformerConfig\.ffn: must be one of"):
        config(ffn="tanh")
    with pytest.raises(ValueError, match=r"TransformerConfig\.dropout: must be < 1"):
        config(dropout=1.0)
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
    from nima.generation import generate  # the decoding code, cached: the same answers

    decoded = generate(model.condition(held_src), np.full((256, 1), BOS), 9, stats=False)
    np.testing.assert_array_equal(decoded.sequences[:, 1:], predicted)


# ----------------------------------------------------------------------------- decoding
def random_model(seed: int = 5, **overrides) -> Transformer:
    """A float64 model with large random weights: far-from-uniform predictions."""
    nima.manual_seed(seed)
    model = Transformer(config(**overrides)).double().eval()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.normal(0.0, 0.4, p.shape)
    return model


def log_prob(model: Transformer, src: np.ndarray, tokens: list[int]) -> float:
    """log p(tokens | src) from one uncached teacher-forced forward, BOS first."""
    with nima.no_grad():
        logits = model(src[None], np.array([[BOS, *tokens[:-1]]]))[0].data[0]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                                                            keepdims=True))
    logp -= logits.max(-1, keepdims=True)
    return float(sum(logp[t, tok] for t, tok in enumerate(tokens)))


@pytest.mark.parametrize("position", ["sinusoidal", "learned"])
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_cached_decoding_equals_the_full_decoder(position: str, placement: str) -> None:
    """A 3-token prefix in one call, then one token at a time through DecoderCaches: the
    teacher-forced logits, for padded sources; the cross-attention keys are computed once."""
    model = random_model(position=position, norm_placement=placement)
    src, tgt_in, _ = reversal_batch(3, np.random.default_rng(5))
    tgt = np.where(tgt_in == PAD, 4, tgt_in)  # every target position real
    with nima.no_grad():
        full = model(src, tgt)[0].data
        memory, src_pad = model.encode(src)
        caches = model.new_caches()
        steps = [model.decode(tgt[:, :3], memory, src_pad, caches).data]
        cross = caches[0].cross_attn.k
        steps += [model.decode(tgt[:, t:t + 1], None, src_pad, caches).data
                  for t in range(3, tgt.shape[1])]
    np.testing.assert_allclose(np.concatenate(steps, 1), full, rtol=1e-12, atol=1e-12)
    assert caches[0].cross_attn.k is cross and caches[0].length == tgt.shape[1]
    assert caches[0].cross_attn.padding_mask(0).sum() == src_pad.sum()  # the source padding


def test_generate_drives_the_decoder_greedy_and_beam() -> None:
    """`generate` on `condition(src)`: greedy equals the uncached argmax loop; beam search
    scores are the summed log-probabilities of a full forward, one beam is greedy, and the
    best of 3 beams is at least as likely as the greedy sequence."""
    from nima.generation import generate

    model = random_model()
    src, _, _ = reversal_batch(4, np.random.default_rng(6))
    bos = np.full((4, 1), BOS)
    out = generate(model.condition(src), bos, 9, stats=False)
    np.testing.assert_array_equal(out.sequences[:, 1:], greedy(model, src, 9))
    one = generate(model.condition(src), bos, 9, num_beams=1, strategy="beam", stats=False)
    np.testing.assert_array_equal(one.sequences, out.sequences)
    beams = generate(model.condition(src), bos, 9, num_beams=3, num_return_sequences=2,
                     eos_token_id=EOS, stats=False)
    for i in range(8):
        tokens = beams.generated(i)
        assert beams.sequence_logprobs[i] == pytest.approx(log_prob(model, src[i // 2], tokens),
                                                           rel=1e-9)
    for b in range(4):
        assert beams.sequence_logprobs[2 * b] >= log_prob(model, src[b], out.generated(b)) - 1e-9


def test_repeated_rows_read_their_own_source() -> None:
    """num_return_sequences = 3 samples: 12 rows for 4 sources, each row's log-probability is
    that of its own source's decoder."""
    from nima.generation import generate

    model = random_model(7)
    src, _, _ = reversal_batch(4, np.random.default_rng(7))
    out = generate(model.condition(src), np.full((4, 1), BOS), 6, do_sample=True,
                   num_return_sequences=3, seed=0, stats=False)
    for row in range(12):
        assert out.sequence_logprobs[row] == pytest.approx(
            log_prob(model, src[row // 3], out.generated(row)), rel=1e-9)


def test_conditioned_decoder_errors() -> None:
    model = random_model()
    src, _, _ = reversal_batch(2, np.random.default_rng(8))
    decoder = model.condition(src)
    with pytest.raises(ValueError, match="3 target rows for 2 sources"):
        decoder(np.full((3, 1), BOS))
    with pytest.raises(ValueError, match="take no attention_mask"):
        decoder(np.full((2, 1), BOS), attention_mask=np.ones((2, 1)))
    with pytest.raises(ValueError, match="one DecoderCache per decoder layer"):
        model.decode(np.full((2, 1), BOS), decoder.memory, decoder.src_pad, [])
    with pytest.raises(ValueError, match=r"tgt_in token id 13 is outside the vocabulary"):
        decoder(np.full((2, 1), 13))
    caches = model.new_caches()
    with nima.no_grad():
        decoder(np.full((2, 15), BOS), caches=caches)
        with pytest.raises(ValueError, match="2 positions after 15 cached, more than max_len"):
            decoder(np.full((2, 2), BOS), caches=caches)
