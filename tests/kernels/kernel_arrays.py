"""Array helpers for the kernel tests: random arrays in a chosen memory layout, tolerances."""

import numpy as np
from hypothesis import strategies as st

DTYPES = (np.float32, np.float64)
LAYOUTS = ("contiguous", "transposed", "strided")


def in_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The values of `a` as a contiguous array, a transposed view or a strided view."""
    if layout == "transposed" and a.ndim >= 2:
        return np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)
    if layout == "strided" and a.ndim >= 1:
        base = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)
        base[..., ::2] = a
        return base[..., ::2]
    return np.ascontiguousarray(a)


def random_array(
    seed: int, shape: tuple[int, ...], dtype: type, scale: float = 3.0, layout: str = "contiguous"
) -> np.ndarray:
    """Normal(0, scale) values of `dtype` in `layout`."""
    values = np.random.default_rng(seed).standard_normal(shape) * scale
    return in_layout(values.astype(dtype), layout)


def tolerance(dtype: type) -> dict[str, float]:
    """rtol/atol for comparing a kernel with its reference in `dtype`."""
    return {"rtol": 2e-5, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)
layouts = st.sampled_from(LAYOUTS)
