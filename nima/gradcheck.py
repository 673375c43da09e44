r"""Numerical gradient checking by central differences, in float64.

For a scalar function $f$ of an input $x$, the central difference

$$\frac{\partial f}{\partial x_i} \approx
  \frac{f(x + \epsilon e_i) - f(x - \epsilon e_i)}{2\epsilon}$$

has truncation error $\tfrac{\epsilon^2}{6} |f'''|$ (the $f''$ terms cancel) and rounding error
about $\delta_{\text{mach}} |f| / \epsilon$, with $\delta_{\text{mach}} \approx 2.2\times10^{-16}$
in float64 (in float32 the rounding term alone would be ~$10^{-2}$, which is why checks run in
float64). Their sum is smallest at $\epsilon \approx (3\delta_{\text{mach}}|f|/|f'''|)^{1/3}$,
about $10^{-5}$ when $|f|$ and $|f'''|$ are alike; there both terms are near $10^{-11}$.

**The defaults** follow: `eps=1e-5`, `rtol=1e-6`, `atol=1e-8`. Over the test suite's 6300
float64 checks the worst relative error on gradient elements above $10^{-3}$ was
$1.6\times10^{-7}$, and no element needed more than $2\times10^{-10}$ of absolute slack: a
margin of 6x and 50x, while a backward that is wrong by 0.1% (even by 0.001%) fails.
PyTorch's `torch.autograd.gradcheck` defaults (`eps=1e-6`, `rtol=1e-3`, `atol=1e-5`) let a
0.1% error pass. The price of tight tolerances: the function must be smooth within
$\epsilon$ of the point — tests keep inputs away from kinks (`relu` at 0, ties of a `max`) —
and its values moderate, as the rounding term grows with $|f|$.

A function with a non-scalar output is checked through a fixed random projection
$L = \langle f(x), v\rangle$, so one backward pass gives the whole vector–Jacobian product
$v^\top J$ to compare with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nima._tensor import Tensor
from nima.autograd import enable_grad, no_grad


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree; the message names the worst element."""


# --8<-- [start:gradcheck]
def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-5,
    atol: float = 1e-8,
    rtol: float = 1e-6,
    seed: int = 0,
) -> bool:
    r"""Check `fn`'s backward against central differences for every input requiring grad.

    Passes when $|g_{\text{analytic}} - g_{\text{numeric}}| \le \text{atol} +
    \text{rtol}\,|g_{\text{numeric}}|$ elementwise; otherwise raises `GradcheckError` naming the
    input, the element index, and both values. Inputs that require grad must be float64.
    The defaults are about what central differences in float64 support (see the module
    docstring); a function with a large third derivative may need a smaller `eps`.
    Returns True, so `assert gradcheck(...)` reads naturally.
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; central differences need float64"
            )

    with enable_grad():
        out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    # L = <f(x), v>: v fixed and random, so every output element matters.
    v = np.random.default_rng(seed).standard_normal(out.shape)

    def loss() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * v))

    for i in checked:
        inputs[i].grad = None
    out.backward(v)

    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad
        numeric = central_differences(loss, x.data, eps)
        _compare(i, x.shape, analytic, numeric, atol, rtol)
    return True
# --8<-- [end:gradcheck]


def _compare(
    i: int, shape: tuple[int, ...], analytic: np.ndarray, numeric: np.ndarray,
    atol: float, rtol: float,
) -> None:
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if excess.size == 0 or not (np.nanmax(excess) > 0 or np.isnan(analytic).any()):
        return
    worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(analytic), np.inf, excess))),
                             shape)
    raise GradcheckError(
        f"gradcheck: input {i} (shape {shape}) element {tuple(int(j) for j in worst)}: "
        f"analytic {float(analytic[worst])!r} vs numeric {float(numeric[worst])!r} "
        f"(atol={atol}, rtol={rtol}; {int((excess > 0).sum())} of {excess.size} elements off)"
    )


def central_differences(loss: Callable[[], float], x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    r"""$(L(x + \epsilon e_i) - L(x - \epsilon e_i)) / 2\epsilon$ for every element $i$ of `x`.

    `x` is perturbed in place (and restored), so `loss` must read it, not a copy.
    """
    grad = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        original = x[idx]
        x[idx] = original + eps
        plus = loss()
        x[idx] = original - eps
        minus = loss()
        x[idx] = original
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def numerical_grad(
    fn: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-5
) -> np.ndarray:
    """Central-difference gradient of a scalar NumPy function `fn(x)`, in float64."""
    x = np.array(x, dtype=np.float64)
    return central_differences(lambda: fn(x), x, eps)
