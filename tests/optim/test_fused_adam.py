"""The fused Adam/AdamW kernel: the same bits as the NumPy reference (the unfused path) over
several steps, a hand-computed first step, param groups, layouts, dispatch, and state_dict /
checkpoint round trips unchanged."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nima
from nima import kernels
from nima.kernels import adam as adam_kernels
from nima.models import GPT, GPTConfig
from nima.nn import Parameter
from nima.optim import Adam, AdamW, param_groups_for_decay
from nima.training.checkpoint import load_checkpoint, save_checkpoint

STEPS = 6


def _model(seed=0):
    nima.manual_seed(seed)
    return GPT(GPTConfig.preset("baby", vocab_size=17, n_layer=1, n_embd=32, n_head=2,
                                block_size=8))


def _grads(model, steps, seed=1):
    """Gradients of very different sizes per parameter, fixed per step."""
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal(p.shape) * 10.0 ** rng.integers(-6, 2)).astype(p.dtype)
             for p in model.parameters()] for _ in range(steps)]


def _train(model, opt, grads):
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads, strict=True):
            p.grad = g
        opt.step()
    return [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize("cls,kw", [
    (AdamW, {"lr": 3e-3, "betas": (0.9, 0.99), "weight_decay": 0.1}),
    (AdamW, {"lr": 1e-2, "weight_decay": 0.0}),
    (Adam, {"lr": 1e-3, "weight_decay": 0.01}),
    (Adam, {"lr": 1e-3, "eps": 1e-6}),
])
def test_fused_equals_unfused_bit_for_bit_over_steps_with_param_groups(cls, kw):
    grads = _grads(_model(), STEPS)
    runs = []
    for fused in (True, False):
        model = _model()
        groups = param_groups_for_decay(model, kw.get("weight_decay", 0.0))
        groups[1]["lr"] = kw["lr"] / 3  # the groups differ in lr and decay
        opt = cls(groups, fused=fused, **{k: v for k, v in kw.items() if k != "weight_decay"})
        runs.append((_train(model, opt, grads), opt.state))
    (fused_params, fused_state), (ref_params, ref_state) = runs
    for a, b in zip(fused_params, ref_params, strict=True):
        np.testing.assert_array_equal(a, b)
    for sa, sb in zip(fused_state.values(), ref_state.values(), strict=True):
        assert sa["step"] == sb["step"] == STEPS
        np.testing.assert_array_equal(sa["exp_avg"], sb["exp_avg"])
        np.testing.assert_array_equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled", [True, False])
def test_kernel_first_step_by_hand(dtype, decoupled):
    r"""Step 1: $\hat m = g$, $\hat v = g^2$, so (AdamW) $\theta' = \theta(1 - \eta\lambda) -
    \eta\,g / (|g| + \epsilon)$; (Adam, L2) $g' = g + \lambda\theta$ in place of $g$."""
    theta = np.array([1.0, -2.0, 0.5, 3.0])
    g = np.array([0.5, -1e-3, 0.0, 4.0])
    lr, wd, eps = 0.1, 0.2, 1e-3
    p, m, v = theta.astype(dtype), np.zeros(4, dtype), np.zeros(4, dtype)
    kernels.adam_update(p, g.astype(dtype), m, v, lr, 0.9, 0.999, eps, wd, 1, decoupled,
                        fused=True)
    if decoupled:
        want = theta * (1 - lr * wd) - lr * g / (np.abs(g) + eps)
    else:
        g2 = g + wd * theta
        want = theta - lr * g2 / (np.abs(g2) + eps)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, want, rtol=rtol)
    np.testing.assert_allclose(m, 0.1 * (g if decoupled else g2), rtol=rtol)


@given(n=st.integers(1, 3000), dtype=st.sampled_from([np.float32, np.float64]),
       lr=st.floats(1e-5, 1.0), b1=st.floats(0.0, 0.999), b2=st.floats(0.0, 0.9999),
       eps=st.sampled_from([0.0, 1e-8, 1e-3]), wd=st.floats(0.0, 0.5), decoupled=st.booleans(),
       seed=st.integers(0, 2**16))
def test_kernel_equals_reference_bit_for_bit(n, dtype, lr, b1, b2, eps, wd, decoupled, seed):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n).astype(dtype)
    state = [theta.copy(), np.zeros(n, dtype), np.zeros(n, dtype)]
    runs = [[a.copy() for a in state] for _ in range(2)]
    for t in range(1, 4):
        g = (rng.standard_normal(n) * 10.0 ** rng.integers(-8, 3)).astype(dtype)
        g[rng.random(n) < 0.1] = 0  # zero gradients: with eps = 0, 0 / 0 in both
        for fused, (p, m, v) in zip((True, False), runs, strict=True):
            with np.errstate(invalid="ignore", divide="ignore"):
                kernels.adam_update(p, g, m, v, lr, b1, b2, eps, wd, t, decoupled, fused=fused)
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)  # NaN where both have NaN


def test_a_parameter_of_several_blocks_agrees():
    n = 3 * adam_kernels._BLOCK + 5  # several blocks and a ragged end
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(n).astype(np.float32)
    p_f, p_r = theta.copy(), theta.copy()
    m_f, v_f, m_r, v_r = (np.zeros(n, np.float32) for _ in range(4))
    for t in range(1, 4):
        g = rng.standard_normal(n).astype(np.float32)
        kernels.adam_update(p_f, g, m_f, v_f, 1e-3, 0.9, 0.99, 1e-8, 0.1, t, True, fused=True)
        kernels.adam_update(p_r, g, m_r, v_r, 1e-3, 0.9, 0.99, 1e-8, 0.1, t, True, fused=False)
    np.testing.assert_array_equal(p_f, p_r)
    np.testing.assert_array_equal(v_f, v_r)


def test_non_contiguous_parameter_is_still_updated_in_place():
    base = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    p = Parameter(base.T)  # a transposed view: not C-contiguous
    q = Parameter(np.ascontiguousarray(base.T))
    g = np.ones((4, 6), np.float32)
    for param in (p, q):
        param.grad = g
        AdamW([param], lr=0.1, fused=True).step()
    np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(base.T, q.data)  # p's update went into `base`


def test_none_follows_the_kernel_backend(monkeypatch):
    calls = []
    real = adam_kernels.adam_update_numba
    monkeypatch.setattr(adam_kernels, "adam_update_numba",
                        lambda *a: (calls.append("numba"), real(*a)))
    p = Parameter(np.ones(3, np.float32))
    p.grad = np.ones(3, np.float32)
    opt = AdamW([p])
    with kernels.backend("numpy"):
        opt.step()
    assert calls == []
    with kernels.backend("numba"):
        opt.step()
    assert calls == ["numba"]
    AdamW([p], fused=False).step()
    assert calls == ["numba"]


def test_state_dict_is_unchanged_and_moves_between_fused_and_unfused():
    grads = _grads(_model(), 2 * STEPS)
    straight = _model()
    want = _train(straight, AdamW(straight.parameters(), lr=3e-3, fused=False), grads)

    first = _model()
    opt = AdamW(first.parameters(), lr=3e-3, fused=True)
    _train(first, opt, grads[:STEPS])
    saved = opt.state_dict()
    reference = AdamW(first.parameters(), lr=3e-3, fused=False)
    assert set(saved) == {"state", "param_groups"}
    assert "fused" not in saved["param_groups"][0]
    assert saved["param_groups"][0].keys() == reference.state_dict()["param_groups"][0].keys()

    second = _model()  # a fresh model with the weights so far, an unfused optimizer
    for p, q in zip(second.parameters(), first.parameters(), strict=True):
        p.data[...] = q.data
    resumed = AdamW(second.parameters(), lr=3e-3, fused=False)
    resumed.load_state_dict(saved)
    got = _train(second, resumed, grads[STEPS:])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_round_trip_and_resume_with_the_fused_optimizer(tmp_path):
    grads = _grads(_model(), 2 * STEPS)
    straight = _model()
    want = _train(straight, AdamW(straight.parameters(), lr=3e-3, fused=True), grads)

    first = _model()
    opt = AdamW(first.parameters(), lr=3e-3, fused=True)
    _train(first, opt, grads[:STEPS])
    path = save_checkpoint(tmp_path, STEPS, first, opt)

    second = _model(seed=5)
    resumed = AdamW(second.parameters(), lr=3e-3, fused=True)
    load_checkpoint(path, second, resumed)
    got = _train(second, resumed, grads[STEPS:])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_name_the_kernel():
    a = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"adam_update: .*share a shape.*\(3,\), \(4,\)"):
        kernels.adam_update(a, np.zeros(4, np.float32), a.copy(), a.copy(), 1e-3, 0.9, 0.99,
                            1e-8, 0.0, 1, True)
    with pytest.raises(TypeError, match=r"adam_update: expected float32 or float64"):
        kernels.adam_update(a, a, a.astype(np.float64), a.copy(), 1e-3, 0.9, 0.99, 1e-8, 0.0,
                            1, True)


NOJIT_SCRIPT = """
import numba
import numpy as np
from nima.kernels import adam

assert numba.config.DISABLE_JIT
rng = np.random.default_rng(0)
for decoupled in (True, False):
    p, m, v = rng.standard_normal(2500).astype(np.float32), np.zeros(2500, np.float32), \\
        np.zeros(2500, np.float32)
    q, mq, vq = p.copy(), m.copy(), v.copy()
    for t in range(1, 4):
        g = rng.standard_normal(2500).astype(np.float32)
        adam.adam_update_numba(p, g, m, v, 1e-2, 0.9, 0.99, 1e-8, 0.1, t, decoupled)
        adam.adam_update_numpy(q, g, mq, vq, 1e-2, 0.9, 0.99, 1e-8, 0.1, t, decoupled)
    np.testing.assert_allclose(p, q, rtol=1e-6)
    np.testing.assert_allclose(v, vq, rtol=1e-6)
print("ok")
"""


def test_kernel_runs_without_jit():
    """`NUMBA_DISABLE_JIT=1`, the debugging switch: the kernel runs as Python on NumPy scalars
    (`math.sqrt` then returns a Python float, so equal to rounding, not bit for bit)."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", NOJIT_SCRIPT], capture_output=True, text=True,
                            cwd=root, check=False, timeout=300,
                            env={**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
