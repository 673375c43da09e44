r"""Exercises of the Autograd page (docs/autograd.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.autograd import Context, Function


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    r"""Sum a gradient back to its input's shape.

    An input of shape `shape` was broadcast to `grad.shape` in the forward pass: copied along
    new leading axes and along its axes of size 1. Every copy fed the loss, so the input's
    gradient is the sum over the copies. Return `grad` summed back to `shape`, e.g. a `(3, 1)`
    input broadcast to `(2, 3, 4)` gets the sum over axis 0 and over the last axis, kept as
    `(3, 1)`.
    """
    raise NotImplementedError


def check_unbroadcast(unbroadcast) -> None:
    """Compares, for pairs of shapes that broadcast, with the gradient Nima's engine gives an
    input added to a zero tensor of the larger shape."""
    rng = np.random.default_rng(0)
    for shape, big in [((3, 1), (2, 3, 4)), ((4,), (5, 4)), ((1, 1), (3, 2)), ((2, 3), (2, 3)),
                       ((), (2, 2)), ((1, 5, 1), (2, 1, 5, 3))]:
        grad = rng.standard_normal(big)
        x = nima.tensor(np.zeros(shape), requires_grad=True)
        (x + nima.zeros(*big, dtype=np.float64)).backward(gradient=grad)
        close(unbroadcast(grad, shape), x.grad, f"unbroadcast to {shape} from {big}")


class SiLU(Function):
    r"""The backward of SiLU.

    $y = x\,\sigma(x)$ with $\sigma(x) = 1/(1 + e^{-x})$ (the "swish" of the SwiGLU
    feed-forward). The forward is written and saves $x$ and $\sigma(x)$; write `backward`: given
    $\bar y$, return $\bar x = \bar y\, \frac{dy}{dx}$. Mind the product rule, and that
    $\sigma'(x) = \sigma(x)(1 - \sigma(x))$.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        s = 1.0 / (1.0 + np.exp(-x))  # $\sigma(x)$
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def check_SiLU(SiLU) -> None:
    """Runs `nima.gradcheck` (central differences in float64) on `SiLU.apply` at random inputs
    of shape `(3, 4)`."""
    x = nima.tensor(np.random.default_rng(1).standard_normal((3, 4)) * 2, requires_grad=True)
    nima.gradcheck(SiLU.apply, [x])


def grad_after_two_backwards() -> float:
    r"""Predict: what does `x.grad` hold?

    ```python
    x = nima.tensor(3.0, requires_grad=True)
    y = x * x + x
    y.backward(retain_graph=True)
    y.backward()
    ```

    Return the value of `x.grad` after these lines, worked out by hand.
    """
    raise NotImplementedError


def check_grad_after_two_backwards(grad_after_two_backwards) -> None:
    """Runs the four lines with Nima and compares."""
    x = nima.tensor(3.0, requires_grad=True)
    y = x * x + x
    y.backward(retain_graph=True)
    y.backward()
    equal(float(grad_after_two_backwards()), float(x.grad), "x.grad")
