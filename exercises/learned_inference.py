r"""Exercises of the Learned inference parameters page (docs/learned_inference.md)."""

import numpy as np

import nima
import nima.functional as F
from exercises import close
from nima.generation.learned import MassBefore, soft_nucleus_log_mask


def mass_before_backward(p: np.ndarray, grad: np.ndarray) -> np.ndarray:
    r"""The backward of the ranked mass.

    The forward is $c_v = \sum_{j \prec v} p_j$ along the last axis of `p`, the mass of the
    entries ranked above $v$ (by decreasing value, ties by index), with the ranking held
    fixed. Given $\bar c$ (`grad`, shaped like `p`), return $\bar p$: entry $v$ feeds $c_w$
    for every $w$ ranked *below* it.
    """
    raise NotImplementedError


def check_mass_before_backward(mass_before_backward) -> None:
    """Compares with the gradient the soft nucleus's `MassBefore` op sends back, through
    Nima's autograd, for rows of 5 and 9 distinct probabilities."""
    rng = np.random.default_rng(0)
    for shape in [(2, 5), (3, 9)]:
        p = nima.tensor(rng.dirichlet(np.ones(shape[-1]), shape[0]), requires_grad=True)
        grad = rng.standard_normal(shape)
        MassBefore.apply(p).backward(gradient=grad)
        close(mass_before_backward(p.data.copy(), grad), p.grad, f"the gradient, shape {shape}")


def soft_nucleus(logits: np.ndarray, p: float, tau: float) -> np.ndarray:
    r"""The soft nucleus, in NumPy.

    For logits `(..., V)`, return $\log m_v = -\operatorname{softplus}((c_v - p)/\tau)$, with
    $c_v$ the mass of the tokens ranked above $v$ under $\operatorname{softmax}(z)$ and
    $\operatorname{softplus}(x) = \ln(1 + e^x)$ computed without overflow.
    """
    raise NotImplementedError


def check_soft_nucleus(soft_nucleus) -> None:
    """Compares with `nima.generation.learned.soft_nucleus_log_mask` for several p and widths,
    including a width so small that the ramp overflows a naive softplus."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2, 3, 7)) * 2
    for p, tau in [(0.9, 0.02), (0.5, 0.1), (0.05, 1e-4)]:
        expected = soft_nucleus_log_mask(nima.tensor(z), p, tau)
        with np.errstate(over="ignore"):
            close(soft_nucleus(z.copy(), p, tau), expected, f"log m at p={p}, tau={tau}",
                  rtol=1e-9, atol=1e-12)


def temperature_grad(z: np.ndarray, y: int, T: float) -> float:
    r"""Which way should the temperature move?

    For one row of logits `z` and target `y`, return
    $\frac{d}{dT}\bigl(-\log \operatorname{softmax}(z/T)_y\bigr)$.
    """
    raise NotImplementedError


def check_temperature_grad(temperature_grad) -> None:
    """Compares with the gradient Nima's autograd gives a temperature tensor through
    `F.cross_entropy(z / T, y)`, for targets the model likes and dislikes."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal(6) * 3
    for y in (int(np.argmax(z)), int(np.argmin(z)), 2):
        for T0 in (0.5, 1.0, 2.5):
            T = nima.tensor(T0, dtype=np.float64, requires_grad=True)
            F.cross_entropy((nima.tensor(z) / T).reshape(1, 6), np.array([y])).backward()
            close(temperature_grad(z.copy(), y, T0), float(T.grad), f"dL/dT at y={y}, T={T0}",
                  rtol=1e-9)
