"""`nima.nn.checkpoint`: the same values and gradients as calling the function, intermediates not
kept, parameters closed over get their gradients, dropout reproduced, and the edge cases."""

import gc
import weakref

import numpy as np
import pytest

import nima
from nima import functional as F
from nima.nn import Dropout, Linear, checkpoint
from nima.nn.checkpoint import Checkpoint


def mlp() -> tuple[Linear, Linear]:
    nima.manual_seed(0)
    return Linear(4, 8).double(), Linear(8, 3).double()


def run(use_checkpoint: bool, x: nima.Tensor, layers) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    l1, l2 = layers

    def f(h: nima.Tensor, scale: float) -> nima.Tensor:
        return l2(l1(h).gelu()).tanh() * scale

    for p in (*l1.parameters(), *l2.parameters()):
        p.grad = None
    x.grad = None
    y = checkpoint(f, x, 2.0) if use_checkpoint else f(x, 2.0)
    ((y * y).sum() + y.mean()).backward()  # the checkpointed output used twice downstream
    grads = {"x": x.grad, **{f"p{i}": p.grad for i, p in
                             enumerate((*l1.parameters(), *l2.parameters()))}}
    return y.data, grads


def test_same_values_and_gradients() -> None:
    layers = mlp()
    x = nima.randn(5, 4, dtype=nima.float64, requires_grad=True)
    y0, g0 = run(False, x, layers)
    y1, g1 = run(True, x, layers)
    np.testing.assert_array_equal(y0, y1)
    assert g0.keys() == g1.keys()
    for name in g0:
        np.testing.assert_array_equal(g0[name], g1[name], err_msg=name)


def test_gradients_accumulate_with_other_uses_of_the_parameters() -> None:
    """A parameter used inside and outside the checkpoint gets the sum of both."""
    l1, _ = mlp()
    x = nima.randn(3, 4, dtype=nima.float64, requires_grad=True)
    grads = []
    for use in (False, True):
        l1.zero_grad()
        inside = checkpoint(l1, x) if use else l1(x)
        (inside.sum() + (l1(x) ** 2).sum()).backward()
        grads.append(l1.weight.grad.copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-14)


def test_gradcheck_through_checkpoint() -> None:
    l1, l2 = mlp()
    x = nima.randn(3, 4, dtype=nima.float64, requires_grad=True)

    def f(x, *params):
        return checkpoint(lambda h: l2(l1(h).tanh()), x)

    assert nima.gradcheck(f, [x, *l1.parameters(), *l2.parameters()])


def test_only_the_inputs_are_kept() -> None:
    """The output's node is one Checkpoint whose parents are the inputs; nothing computed
    inside `fn` stays alive."""
    l1, l2 = mlp()
    x = nima.randn(5, 4, dtype=nima.float64, requires_grad=True)
    inner = []

    def f(h):
        a = l1(h)
        inner.append(weakref.ref(a))
        return l2(a.relu())

    y = checkpoint(f, x)
    parents = y._ctx.parents
    assert y._ctx.function is Checkpoint and len(parents) == 2 and parents[1] is x
    gc.collect()
    assert inner[0]() is None  # the hidden activation was freed after the forward
    without = f(x)
    assert without._ctx.function is not Checkpoint  # a normal call records the inner graph


def test_dropout_masks_are_reproduced() -> None:
    nima.manual_seed(1)
    layer, drop = Linear(6, 6).double(), Dropout(0.5)
    x = nima.randn(4, 6, dtype=nima.float64, requires_grad=True)

    def f(h):
        return drop(layer(h))

    grads = []
    for use in (False, True):
        layer.zero_grad()
        x.grad = None
        nima.manual_seed(2)
        y = checkpoint(f, x) if use else f(x)
        nima.random.generator().random(10)  # draws between forward and backward
        (y ** 2).sum().backward()
        grads.append((y.data, x.grad, layer.weight.grad))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_input_requiring_grad_falls_back_to_a_normal_call() -> None:
    """Without a graph to hang the node on, fn runs normally: its parameters still get grads."""
    l1, _ = mlp()
    x = nima.randn(2, 4, dtype=nima.float64)
    y = checkpoint(l1, x)
    y.sum().backward()
    np.testing.assert_allclose(l1.bias.grad, np.full(8, 2.0))


def test_under_no_grad_and_errors() -> None:
    l1, _ = mlp()
    x = nima.randn(2, 4, dtype=nima.float64, requires_grad=True)
    with nima.no_grad():
        y = checkpoint(l1, x)
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(TypeError, match="checkpoint: fn must be callable"):
        checkpoint(3, x)
    with pytest.raises(TypeError, match="checkpoint: fn must return a single Tensor"):
        checkpoint(lambda h: (h, h), x)


def test_backward_twice_needs_retain_graph() -> None:
    l1, _ = mlp()
    x = nima.randn(2, 4, dtype=nima.float64, requires_grad=True)
    loss = F.softmax(checkpoint(l1, x), dim=-1)[:, 0].sum()
    loss.backward(retain_graph=True)
    first = l1.weight.grad.copy()
    loss.backward()
    np.testing.assert_allclose(l1.weight.grad, 2 * first)  # accumulated, as any backward
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
