"""Learned inference parameters: the ranked-mass op against a brute-force oracle and by float64
gradcheck, the penalty and the soft nucleus against NumPy, the constraints for any raw values,
the unchanged model at init, gradchecks of the objective through the module, and learning that
moves each parameter where it should go (temperature toward the data's, top-p down when the
tail never occurs, the penalty up when tokens never repeat), with a frozen model left
bit-identical."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, shapes

import nima
from nima.generation.learned import (
    LearnedInference,
    cumulative_mass_before,
    fit_inference_params,
    held_out_nll,
    inference_objective,
    penalize_seen,
    seen_tokens,
    soft_nucleus_log_mask,
)
from nima.models import GPT, GPTConfig
from nima.nn import MultiHeadAttention

V = 11


def tiny_gpt(scale: float = 1.0, seed: int = 0, **fields) -> GPT:
    """A float64 2-layer GPT whose logits are multiplied by `scale` (through `ln_f`'s gain:
    no biases, so the logits are exactly linear in it)."""
    nima.manual_seed(seed)
    config = GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=False,
                       **fields)
    model = GPT(config).double()
    model.ln_f.weight.data *= scale
    return model


def sample_text(model: GPT, batches: int, B: int, T: int, seed: int) -> list:
    """`(idx, targets)` pairs drawn from `model`'s own next-token distribution (T = 1)."""
    rng = np.random.default_rng(seed)
    pairs = []
    with nima.no_grad():
        for _ in range(batches):
            seq = rng.integers(0, V, (B, 1))
            for _ in range(T):
                logits, _ = model(seq)
                z = logits.data[:, -1]  # (B, V)
                p = np.exp(z - z.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)
                nxt = [[rng.choice(V, p=row)] for row in p]
                seq = np.concatenate([seq, nxt], axis=1)
            pairs.append((seq[:, :-1], seq[:, 1:]))
    return pairs


# A "teacher": random weights with logits scaled to a std of about 2, so they say something.
TEACHER_SCALE = 25.0


@pytest.fixture(scope="module")
def teacher_text() -> tuple[list, list]:
    teacher = tiny_gpt(TEACHER_SCALE)
    return sample_text(teacher, 4, 16, 16, seed=1), sample_text(teacher, 2, 16, 16, seed=2)


# ----------------------------------------------------------------------------- mass before
def mass_before_oracle(p: np.ndarray) -> np.ndarray:
    """Brute force: c_v = sum of p_j over j ranked above v (larger, or equal with j < v)."""
    c = np.zeros_like(p)
    for row in np.ndindex(*p.shape[:-1]):
        x = p[row]
        for v in range(x.size):
            above = (x > x[v]) | ((x == x[v]) & (np.arange(x.size) < v))
            c[(*row, v)] = x[above].sum()
    return c


def test_mass_before_worked_example() -> None:
    c = cumulative_mass_before(nima.Tensor(np.array([0.2, 0.5, 0.3])))
    np.testing.assert_allclose(c.data, [0.8, 0.0, 0.5])


@given(shapes(1, 3).flatmap(
    lambda s: arrays(s, elements=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, -1.0]))))
def test_mass_before_matches_oracle_with_ties(p: np.ndarray) -> None:
    np.testing.assert_allclose(cumulative_mass_before(nima.Tensor(p)).data,
                               mass_before_oracle(p), atol=1e-12)


@st.composite
def distinct_rows(draw: st.DrawFn) -> np.ndarray:
    """Arrays whose entries along the last axis are at least 0.01 apart (no rank swaps
    within a finite-difference step)."""
    shape = draw(shapes(1, 3, max_side=5))
    ranks = draw(hnp.arrays(np.float64, shape, elements=st.floats(-0.004, 0.004)))
    base = np.argsort(np.random.default_rng(draw(st.integers(0, 99))).random(shape), axis=-1)
    return base * 0.05 + ranks  # distinct multiples of 0.05, jittered by < 0.005


@given(distinct_rows())
def test_mass_before_gradcheck(p: np.ndarray) -> None:
    assert nima.gradcheck(cumulative_mass_before, [nima.Tensor(p, requires_grad=True)])


def test_mass_before_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="cumulative_mass_before"):
        cumulative_mass_before(np.ones(3))


# ----------------------------------------------------------------------------- penalty
def test_seen_tokens_worked_example() -> None:
    seen = seen_tokens(np.array([[2, 0, 2]]), 3)
    np.testing.assert_array_equal(seen[0], [[0, 0, 1], [1, 0, 1], [1, 0, 1]])
    with pytest.raises(ValueError, match="seen_tokens"):
        seen_tokens(np.array([[3]]), 3)


@given(hnp.arrays(np.int64, (2, 5), elements=st.integers(0, 3)),
       arrays((2, 5, 4)), st.floats(1.0, 4.0))
def test_penalty_matches_ctrl_loop(idx: np.ndarray, z: np.ndarray, r: float) -> None:
    expected = z.copy()
    for b in range(2):
        for t in range(5):
            for v in set(idx[b, :t + 1].tolist()):
                expected[b, t, v] = z[b, t, v] / r if z[b, t, v] > 0 else z[b, t, v] * r
    out = penalize_seen(nima.Tensor(z), seen_tokens(idx, 4), r)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


@given(hnp.arrays(np.int64, (2, 3), elements=st.integers(0, 3)),
       arrays((2, 3, 4), elements=st.floats(0.1, 3.0).map(lambda x: x * (-1) ** int(x * 10))),
       st.floats(-2.0, 2.0))
def test_penalty_gradcheck(idx: np.ndarray, z: np.ndarray, c: float) -> None:
    seen = seen_tokens(idx, 4)
    raw = nima.Tensor(np.array(c), requires_grad=True)
    assert nima.gradcheck(lambda x, a: penalize_seen(x, seen, 1 + nima.softplus(a)),
                          [nima.Tensor(z, requires_grad=True), raw])


# ----------------------------------------------------------------------------- soft nucleus
@given(arrays((3, 6)), st.floats(0.05, 0.95))
def test_soft_nucleus_tends_to_the_hard_one(z: np.ndarray, p: float) -> None:
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")
    for row in range(3):  # the hard nucleus: the smallest top set whose mass reaches p
        mass = np.cumsum(probs[row, order[row]])
        n_keep = int(np.searchsorted(mass, p) + 1)
        keep = np.zeros(6, bool)
        keep[order[row, :n_keep]] = True
        assert probs[row, keep].sum() >= p and probs[row, order[row, :n_keep - 1]].sum() < p
        before = mass - probs[row, order[row]]  # the soft mask is only fuzzy near c = p
        if np.min(np.abs(before - p)) < 1e-3:
            continue
        mask = np.exp(soft_nucleus_log_mask(nima.Tensor(z[row]), p, 1e-5).data)
        np.testing.assert_allclose(mask, keep.astype(float), atol=1e-6)


def test_objective_is_tempered_nll_without_penalty_and_nucleus() -> None:
    rng = np.random.default_rng(0)
    z, idx, y = rng.normal(size=(2, 5, V)), rng.integers(0, V, (2, 5)), rng.integers(0, V, (2, 5))
    T = 1.7
    # top_p = 2 puts every c_v <= 1 far inside the nucleus: the mask is 1
    loss = inference_objective(nima.Tensor(z), idx, y, T, 2.0, 1.0, width=0.01)
    u = z / T
    logp = u - np.log(np.exp(u).sum(-1, keepdims=True))
    expected = -np.take_along_axis(logp, y[..., None], -1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_objective_keeps_float32_with_float_parameters() -> None:
    rng = np.random.default_rng(0)
    z = nima.Tensor(rng.normal(size=(2, 3, 5)).astype(np.float32), requires_grad=True)
    idx = np.array([[0, 1, 0], [2, 2, 3]])
    loss = inference_objective(z, idx, idx, 1.5, 0.9, 1.2)
    loss.backward()
    assert loss.dtype == np.float32 and z.grad.dtype == np.float32


# ----------------------------------------------------------------------------- constraints
@given(st.floats(-30, 30), st.floats(-30, 30), st.floats(-30, 30),
       hnp.arrays(np.float64, 3, elements=st.floats(-30, 30)),
       hnp.arrays(np.float64, (2, 2), elements=st.floats(-30, 30)))
def test_constraints_hold_for_any_raw_values(a, b, c, w, g) -> None:
    learned = LearnedInference(tiny_gpt())
    learned.raw_temperature.data[()] = a
    learned.raw_top_p.data[()] = b
    learned.raw_penalty.data[()] = c
    learned.layer_logits.data[:] = w
    learned.gate_logits.data[:] = g
    p = learned.get_inference_params()
    assert p["temperature"] > 0 and 0 < p["top_p"] < 1 and p["repetition_penalty"] > 1
    assert np.all(p["layer_weights"] >= 0) and abs(p["layer_weights"].sum() - 1) < 1e-12
    assert np.all((p["head_weights"] > 0) & (p["head_weights"] < 2))


def test_init_values_and_unchanged_model() -> None:
    model = tiny_gpt(3.0)
    learned = LearnedInference(model)
    p = learned.get_inference_params()
    assert p["temperature"] == pytest.approx(1.0, abs=1e-12)
    assert p["top_p"] == pytest.approx(0.99, abs=1e-12)
    assert p["repetition_penalty"] == pytest.approx(1.001, abs=1e-12)
    np.testing.assert_allclose(p["layer_weights"], [0.0005, 0.0005, 0.999], rtol=1e-12)
    assert np.all(p["head_weights"] == 1.0)  # 2 sigma(0) is exactly 1
    idx = np.random.default_rng(0).integers(0, V, (2, 16))
    plain, _ = model(idx)
    mixed, _ = learned(idx)
    gap = np.abs(mixed.data - plain.data).max()  # 0.1% of the mix on the earlier states
    assert 0 < gap < 1e-2 * np.abs(plain.data).max()
    learned.layer_logits.data[:] = [-np.inf, -np.inf, 0.0]  # the mix on h_L alone
    exact, _ = learned(idx)
    np.testing.assert_array_equal(exact.data, plain.data)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="temperature=0"):
        LearnedInference(tiny_gpt(), temperature=0.0)
    with pytest.raises(ValueError, match="top_p=1"):
        LearnedInference(tiny_gpt(), top_p=1.0)
    with pytest.raises(TypeError, match="must be a GPT"):
        LearnedInference(MultiHeadAttention(8, 2))
    learned = LearnedInference(tiny_gpt())
    with pytest.raises(ValueError, match="one cache per block"):
        learned(np.zeros((1, 2), dtype=np.int64), caches=learned.new_caches()[:1])
    with pytest.raises(ValueError, match="exceed block_size=16"):
        learned(np.zeros((1, 17), dtype=np.int64))


# ----------------------------------------------------------------------------- head gates
@pytest.mark.parametrize("attention", ["content", "hybrid"])
def test_head_gate_equals_scaling_the_output_projection(attention: str) -> None:
    """Gating head h by g_h is scaling W_O's columns of head h by g_h; the gates act only
    while the learned module runs, never on the plain GPT."""
    learned = LearnedInference(tiny_gpt(attention=attention), last_layer_weight=0.5)
    learned.layer_logits.data[:] = [-np.inf, -np.inf, 0.0]  # exactly h_L: no layer mix
    gates = np.array([[0.3, 1.7], [1.2, 0.4]])
    learned.gate_logits.data[:] = np.log(gates / (2 - gates))  # 2 sigma(logit) = g
    idx = np.random.default_rng(0).integers(0, V, (2, 6))
    gated, _ = learned(idx)
    plain, _ = learned.model(idx)
    assert not np.allclose(gated.data, plain.data)  # the hooks are gone after forward
    for block, g in zip(learned.model.blocks, gates, strict=True):
        block.attn.proj.weight.data *= np.repeat(g, block.attn.head_dim)  # head h's columns
    np.testing.assert_allclose(gated.data, learned.model(idx)[0].data, rtol=1e-10, atol=1e-12)


def test_cached_decoding_equals_full_forward() -> None:
    learned = LearnedInference(tiny_gpt(3.0))
    rng = np.random.default_rng(0)
    learned.layer_logits.data[:] = rng.normal(size=3)
    learned.gate_logits.data[:] = rng.normal(size=(2, 2))
    idx = rng.integers(0, V, (2, 9))
    full, _ = learned(idx)
    caches = learned.new_caches()
    steps = [learned(idx[:, :4], caches=caches)[0].data]
    steps += [learned(idx[:, t:t + 1], caches=caches)[0].data for t in range(4, 9)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full.data, rtol=1e-10,
                               atol=1e-12)


# ----------------------------------------------------------------------------- gradients
@settings(max_examples=25)
@given(st.floats(-1.5, 1.5), st.floats(-1.0, 5.0), st.floats(-4.0, 1.0), st.integers(0, 99))
def test_objective_gradcheck(a, b, c, seed) -> None:
    """With respect to the raw T, p, r and to the logits (distinct within a row, so no two
    swap ranks within a finite-difference step)."""
    rng = np.random.default_rng(seed)
    z = np.argsort(rng.random((1, 3, 5)), axis=-1) * 0.6 + rng.uniform(-0.01, 0.01, (1, 3, 5))
    idx, y = rng.integers(0, 5, (1, 3)), rng.integers(0, 5, (1, 3))

    def objective(z, a, b, c):
        return inference_objective(z, idx, y, nima.softplus(a), nima.sigmoid(b),
                                   1 + nima.softplus(c), width=0.05)

    raw = [nima.Tensor(np.array(v), requires_grad=True) for v in (a, b, c)]
    assert nima.gradcheck(objective, [nima.Tensor(z, requires_grad=True), *raw])


@settings(max_examples=4)
@given(st.integers(0, 99))
def test_objective_gradcheck_through_the_module(seed) -> None:
    """Every raw inference parameter, the layer mix and head gates included."""
    learned = LearnedInference(tiny_gpt(8.0), nucleus_width=0.05)
    rng = np.random.default_rng(seed)
    for p in learned.inference_parameters():
        p.data[...] = rng.normal(size=p.shape)
    idx, y = rng.integers(0, V, (2, 6)), rng.integers(0, V, (2, 6))
    assert nima.gradcheck(lambda *raw: learned(idx, y)[1], learned.inference_parameters())


def test_gates_and_layer_weights_receive_gradients(teacher_text) -> None:
    learned = LearnedInference(tiny_gpt(TEACHER_SCALE))
    idx, y = teacher_text[0][0]
    learned(idx, y)[1].backward()
    for p in learned.inference_parameters():
        assert p.grad is not None and np.all(np.isfinite(p.grad)) and np.any(p.grad != 0)
    assert np.all(learned.gate_logits.grad != 0) and np.all(learned.layer_logits.grad != 0)


# ----------------------------------------------------------------------------- learning
@pytest.mark.parametrize("relative", [3.0, 1 / 3])
def test_temperature_moves_toward_the_data(teacher_text, relative) -> None:
    """The text comes from the teacher at T = 1; a model with its logits x3 is over-confident
    (the right temperature is 3), one with x1/3 under-confident (1/3)."""
    train, held_out = teacher_text
    learned = LearnedInference(tiny_gpt(TEACHER_SCALE * relative))
    before = held_out_nll(learned, held_out)
    fit_inference_params(learned, train, steps=40, lr=0.05)
    after = held_out_nll(learned, held_out)
    temperature = learned.get_inference_params()["temperature"]
    assert (temperature > 1.5) if relative > 1 else (temperature < 0.7)
    assert after < before - 0.05


def test_frozen_model_is_bit_identical_and_joint_training_moves_it(teacher_text) -> None:
    learned = LearnedInference(tiny_gpt(TEACHER_SCALE * 3))
    weights = {k: v.copy() for k, v in learned.model.state_dict().items()}
    raw = [p.data.copy() for p in learned.inference_parameters()]
    fit_inference_params(learned, teacher_text[0], steps=3)
    for k, v in learned.model.state_dict().items():
        np.testing.assert_array_equal(v, weights[k])
    changed = [np.all(p.data != r) for p, r in zip(learned.inference_parameters(), raw,
                                                       strict=True)]
    assert all(changed)
    assert all(p.requires_grad for p in learned.model.parameters())  # restored after the fit
    fit_inference_params(learned, teacher_text[0], steps=3, freeze_model=False, model_lr=1e-2)
    moved = [k for k, v in learned.model.state_dict().items() if not np.array_equal(v, weights[k])]
    assert len(moved) == len(weights)


def adam_on_objective(raw: nima.Tensor, loss_fn, steps: int = 60) -> None:
    optimizer = nima.optim.AdamW([raw], lr=0.1, weight_decay=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()


def test_top_p_falls_when_the_tail_never_occurs() -> None:
    """Logits (3, 0, ..., 0): the top token has p = 0.67, yet it is always the target, so
    cutting the tail helps and the learned top-p drops below 0.67."""
    z = nima.Tensor(np.tile(np.r_[3.0, np.zeros(V - 1)], (4, 8, 1)))
    idx, y = np.zeros((4, 8), dtype=np.int64), np.zeros((4, 8), dtype=np.int64)
    b = nima.Tensor(np.array(math.log(0.99 / 0.01)), requires_grad=True)
    before = inference_objective(z, idx, y, 1.0, nima.sigmoid(b), 1.0).item()
    adam_on_objective(b, lambda: inference_objective(z, idx, y, 1.0, nima.sigmoid(b), 1.0))
    assert nima.sigmoid(b).item() < math.e ** 3 / (math.e ** 3 + V - 1)
    assert inference_objective(z, idx, y, 1.0, nima.sigmoid(b), 1.0).item() < before / 10


def test_penalty_rises_when_tokens_never_repeat() -> None:
    """Flat positive logits, and text in which no token repeats: every seen token is a wrong
    guess, so the penalty that lowers them rises."""
    rng = np.random.default_rng(0)
    seq = np.stack([rng.permutation(V) for _ in range(4)])  # (4, V): no repeats in a row
    idx, y = seq[:, :-1], seq[:, 1:]
    z = nima.Tensor(np.ones((4, V - 1, V)))
    c = nima.Tensor(np.array(-3.0), requires_grad=True)

    def loss() -> nima.Tensor:
        return inference_objective(z, idx, y, 1.0, 2.0, 1 + nima.softplus(c))

    before = loss().item()
    adam_on_objective(c, loss)
    assert 1 + nima.softplus(c).item() > 2.0 and loss().item() < before


# ----------------------------------------------------------------------------- generate
def test_generate_samples_with_the_learned_values() -> None:
    from nima.generation import generate

    learned = LearnedInference(tiny_gpt(TEACHER_SCALE))
    learned.raw_temperature.data[()] = 4.0  # T = 4.02: far from the default 1
    p = learned.get_inference_params()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    out = learned.generate(prompt, 12, seed=0)
    by_hand = generate(learned, prompt, 12, do_sample=True, temperature=p["temperature"],
                       top_p=p["top_p"], repetition_penalty=p["repetition_penalty"], seed=0)
    np.testing.assert_array_equal(out.sequences, by_hand.sequences)
    plain = generate(learned, prompt, 12, do_sample=True, seed=0)
    overridden = learned.generate(prompt, 12, seed=0, temperature=1.0, top_p=None,
                                  repetition_penalty=None)
    np.testing.assert_array_equal(overridden.sequences, plain.sequences)
    assert not np.array_equal(out.sequences, plain.sequences)


def test_fit_draws_from_a_token_dataset(tmp_path) -> None:
    from nima.data import TokenDataset

    path = tmp_path / "val.bin"
    np.random.default_rng(0).integers(0, V, 200).astype(np.uint16).tofile(path)
    dataset = TokenDataset(path, "uint16")
    shapes_seen = []
    draw = dataset.get_batch
    dataset.get_batch = lambda B, T, rng: shapes_seen.append((B, T)) or draw(B, T, rng)
    learned = LearnedInference(tiny_gpt(TEACHER_SCALE))
    losses = fit_inference_params(learned, dataset, steps=2, batch_size=3, block_size=8)
    assert shapes_seen == [(3, 8), (3, 8)] and len(losses) == 2 and np.all(np.isfinite(losses))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        fit_inference_params(learned, dataset, steps=0)
    with pytest.raises(ValueError, match="no \\(idx, targets\\) pairs"):
        fit_inference_params(learned, [], steps=1)
