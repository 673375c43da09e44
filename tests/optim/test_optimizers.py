"""Optimizer updates against hand-computed formulas (NumPy float64 oracles) over several steps."""

import json

import numpy as np
import pytest

import nima
from nima import nn
from nima.nn import Parameter
from nima.optim import SGD, Adam, AdamW, param_groups_for_decay

STEPS = 5


def _grads(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(n)]


def _run(opt_cls, theta0, grads, dtype=np.float64, **kw):
    p = Parameter(theta0.astype(dtype))
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.astype(dtype)
        opt.step()
    return p.data


# ----------------------------------------------------------------------------- SGD
def sgd_oracle(theta, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """PyTorch's documented SGD algorithm, float64."""
    theta, buf = theta.copy(), None
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * theta
        if momentum:
            buf = g.copy() if t == 1 else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
    return theta


@pytest.mark.parametrize("kw", [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.1},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.5, "weight_decay": 0.01, "nesterov": True},
    {"weight_decay": 0.1},
])
def test_sgd_matches_pytorch_formulas(kw):
    theta0 = np.random.default_rng(1).standard_normal((3, 4))
    grads = _grads((3, 4), STEPS)
    got = _run(SGD, theta0, grads, lr=0.1, **kw)
    np.testing.assert_allclose(got, sgd_oracle(theta0, grads, 0.1, **kw), rtol=1e-12)


def test_sgd_momentum_by_hand():
    # scalar, g = 1 every step, mu = 0.9, lr = 1: buffers 1, 1.9, 2.71 -> theta = -5.61
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=1.0, momentum=0.9)
    for _ in range(3):
        p.grad = np.ones(1)
        opt.step()
    np.testing.assert_allclose(p.data, [-(1 + 1.9 + 2.71)])


def test_nesterov_differs_from_momentum():
    theta0, grads = np.ones(3), _grads(3, STEPS)
    a = _run(SGD, theta0, grads, lr=0.1, momentum=0.9)
    b = _run(SGD, theta0, grads, lr=0.1, momentum=0.9, nesterov=True)
    assert not np.allclose(a, b)


# ----------------------------------------------------------------------------- Adam / AdamW
def adam_oracle(theta, grads, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    theta, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta = theta - lr * wd * theta
        else:
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("cls,decoupled", [(Adam, False), (AdamW, True)])
def test_adam_adamw_match_formulas(cls, decoupled, wd):
    theta0 = np.random.default_rng(2).standard_normal((4, 3))
    grads = _grads((4, 3), STEPS, seed=3)
    got = _run(cls, theta0, grads, lr=1e-2, betas=(0.8, 0.99), weight_decay=wd)
    want = adam_oracle(theta0, grads, 1e-2, 0.8, 0.99, wd=wd, decoupled=decoupled)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_adam_bias_correction_first_step():
    # at t = 1, m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps) ~ lr * sign(g)
    g = np.array([1e-3, -2.0, 50.0])
    p = Parameter(np.zeros(3))
    opt = Adam([p], lr=0.1)
    p.grad = g
    opt.step()
    np.testing.assert_allclose(p.data, -0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    assert opt.state[id(p)]["step"] == 1


def test_adamw_decay_is_decoupled():
    theta0, grads = np.full(3, 2.0), _grads(3, STEPS, seed=4)
    w = _run(AdamW, theta0, grads, lr=1e-2, weight_decay=0.5)
    a = _run(Adam, theta0, grads, lr=1e-2, weight_decay=0.5)
    assert not np.allclose(w, a)
    # with zero gradients Adam's step is 0/(0+eps) = 0, so AdamW only decays:
    p = Parameter(np.full(3, 2.0))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        p.grad = np.zeros(3)
        opt.step()
    np.testing.assert_allclose(p.data, 2.0 * (1 - 0.1 * 0.5) ** 3)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_float32_stays_float32(cls):
    theta0, grads = np.ones((2, 3)), _grads((2, 3), STEPS)
    kw = {"momentum": 0.9} if cls is SGD else {}
    got = _run(cls, theta0, grads, dtype=np.float32, lr=1e-2, **kw)
    assert got.dtype == np.float32
    want = _run(cls, theta0, grads, lr=1e-2, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_param_without_grad_is_skipped_and_zero_grad():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = SGD([a, b], lr=1.0)
    a.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(a.data, [0, 0])
    np.testing.assert_array_equal(b.data, [1, 1])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, [0, 0])
    opt.zero_grad()
    assert a.grad is None


def test_groups_use_their_own_hyperparameters():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)
    with pytest.raises(ValueError, match="two groups"):
        SGD([{"params": [a]}, {"params": [a]}])
    with pytest.raises(ValueError, match="unknown group options"):
        SGD([{"params": [a], "betas": (0.9, 0.9)}])


# ----------------------------------------------------------------------------- no-decay groups
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)


def test_param_groups_for_decay():
    model = _Tiny()
    decay, no_decay = param_groups_for_decay(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(model.fc.weight)]
    want = {id(model.emb.weight), id(model.norm.weight), id(model.norm.bias), id(model.fc.bias)}
    assert {id(p) for p in no_decay["params"]} == want
    # the no-decay group really is not decayed by AdamW
    opt = AdamW([decay, no_decay], lr=0.1)
    before = {id(p): p.data.copy() for p in model.parameters()}
    for p in model.parameters():
        p.grad = np.zeros_like(p.data)
    opt.step()
    np.testing.assert_array_equal(model.emb.weight.data, before[id(model.emb.weight)])
    np.testing.assert_allclose(model.fc.weight.data, before[id(model.fc.weight)] * (1 - 0.01),
                               rtol=1e-6)


# ----------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=1e-2),
    lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1),
])
def test_state_dict_resume_continues_identically(make):
    grads = _grads((3, 2), 8, seed=5)
    theta0 = np.random.default_rng(6).standard_normal((3, 2)).astype(np.float32)

    p = Parameter(theta0.copy())
    opt = make([p])
    for g in grads:
        p.grad = g.astype(np.float32)
        opt.step()

    q = Parameter(theta0.copy())
    opt1 = make([q])
    for g in grads[:4]:
        q.grad = g.astype(np.float32)
        opt1.step()
    sd = opt1.state_dict()
    arrays = [v for s in sd["state"].values() for v in s.values() if isinstance(v, np.ndarray)]
    assert arrays and all(a.dtype == np.float32 for a in arrays)
    scalars = {"state": {k: {n: v for n, v in s.items() if not isinstance(v, np.ndarray)}
                         for k, s in sd["state"].items()}, "param_groups": sd["param_groups"]}
    json.loads(json.dumps(scalars))  # the non-array part is JSON-able

    r = Parameter(q.data.copy())
    opt2 = make([r])
    opt2.load_state_dict(sd)
    for g in grads[4:]:
        r.grad = g.astype(np.float32)
        opt2.step()
    np.testing.assert_array_equal(r.data, p.data)


def test_load_state_dict_restores_hyperparameters_and_checks_shapes():
    p = Parameter(np.ones(3))
    opt = Adam([p], lr=0.5)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    opt2 = Adam([Parameter(np.ones(3))], lr=0.1)
    opt2.load_state_dict(json.loads(json.dumps(sd, default=lambda a: a.tolist())) | {
        "state": {"0": sd["state"][0]}})
    assert opt2.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="shape"):
        Adam([Parameter(np.ones(4))]).load_state_dict(sd)


# ----------------------------------------------------------------------------- accumulation
@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9),  # sensitive to the 1/4: the step scales with g
    lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1),
])
def test_accumulation_over_4_micro_batches_equals_one_big_batch(make_opt):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)

    def model_and_opt():
        m = nn.Linear(5, 2)
        m.weight.data[...] = np.arange(10, dtype=np.float32).reshape(2, 5) / 10
        m.bias.data[...] = [0.1, -0.2]
        return m, make_opt(m.parameters())

    def loss_fn(m, xb, yb):
        d = m(nima.tensor(xb)) - nima.tensor(yb)
        return (d * d).mean()

    big, opt_big = model_and_opt()
    small, opt_small = model_and_opt()
    for _ in range(3):
        loss_fn(big, x, y).backward()
        opt_big.step()
        opt_big.zero_grad()
        for k in range(4):
            (loss_fn(small, x[4 * k:4 * k + 4], y[4 * k:4 * k + 4]) * 0.25).backward()
        opt_small.step()
        opt_small.zero_grad()
    np.testing.assert_allclose(small.weight.data, big.weight.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(small.bias.data, big.bias.data, rtol=1e-5, atol=1e-6)
