"""Batched matmul: the numba kernel (each blocking path) vs np.matmul vs a float64 einsum oracle."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_arrays import dtypes, layouts, random_array, seeds, tolerance

from nima import kernels
from nima.kernels.gemm import _aliases, matmul_numba, matmul_numpy

# Sizes around the tile (8 rows x 4 k-steps), the 64-row tasks and the panels of B (1536 float32
# or 768 float64 columns; wider B, or B whose rows are a multiple of 4 KiB, is cut into equal
# panels a multiple of 16 wide). Rows of C 512 float32 or 256 float64 wide alias at 4 KiB and
# take the buffered path. K past 256 (the blocks of k) is in test_two_dimensional.
sides = st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9, 13, 17, 33, 65, 72])
widths = st.sampled_from([1, 3, 4, 5, 64, 65, 256, 257, 300, 512, 768, 769, 1024, 1030, 1600])


def oracle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...ik,...kj->...ij", a.astype(np.float64), b.astype(np.float64))


def assert_matmul_close(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Within a few ulps of the sum of |a_ik b_kj| (the error bound of a K-term dot product)."""
    scale = oracle(np.abs(a), np.abs(b))
    bound = 4 * a.shape[-1] * np.finfo(a.dtype).eps * scale + np.finfo(a.dtype).tiny
    assert (np.abs(c - oracle(a, b)) <= bound).all()


@settings(deadline=None)  # the first example compiles the kernel
@given(
    batch=st.sampled_from([1, 2, 3]),
    m=sides,
    k=sides,
    n=widths,
    dtype=dtypes,
    layout_a=layouts,
    layout_b=layouts,
    seed=seeds,
)
def test_batched_against_oracle(
    batch: int, m: int, k: int, n: int, dtype: type, layout_a: str, layout_b: str, seed: int
) -> None:
    a = random_array(seed, (batch, m, k), dtype, 1.0, layout_a)
    b = random_array(seed + 1, (batch, k, n), dtype, 1.0, layout_b)
    a_before, b_before = a.copy(), b.copy()
    c = matmul_numba(a, b)
    assert c.shape == (batch, m, n) and c.dtype == dtype and c.flags.c_contiguous
    assert_matmul_close(c, a, b)
    assert_matmul_close(matmul_numpy(a, b), a, b)
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (1, 7, 300), (300, 7, 1), (9, 300, 5),
                                            (17, 33, 257), (64, 32, 64), (70, 130, 290),
                                            (70, 130, 512), (9, 40, 768), (9, 40, 800),
                                            (9, 40, 1030), (9, 40, 1600), (20, 300, 1024),
                                            (17, 517, 65), (72, 600, 800)])
def test_two_dimensional(m: int, k: int, n: int, dtype: type) -> None:
    a = random_array(m, (m, k), dtype, 1.0)
    b = random_array(n, (k, n), dtype, 1.0)
    c = kernels.matmul(a, b)
    assert c.shape == (m, n) and c.dtype == dtype
    assert_matmul_close(c, a, b)


def test_transposed_views_as_the_backward_pass_passes_them() -> None:
    a = random_array(0, (5, 20, 12), np.float32)  # (B, M, K)
    b = random_array(1, (5, 12, 800), np.float32)  # (B, K, N): N past the kernel switch
    g = random_array(2, (5, 20, 800), np.float32)  # dL/dC
    assert_matmul_close(kernels.matmul(g, b.transpose(0, 2, 1)), g, b.transpose(0, 2, 1))
    assert_matmul_close(kernels.matmul(a.transpose(0, 2, 1), g), a.transpose(0, 2, 1), g)
    sliced = b[:, ::2, ::3]  # strided in both axes
    assert_matmul_close(kernels.matmul(a[:, :, :6], sliced), a[:, :, :6], sliced)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [
        ((0, 3, 4), (0, 4, 5)),
        ((2, 0, 4), (2, 4, 5)),
        ((2, 3, 4), (2, 4, 0)),
        ((2, 3, 0), (2, 0, 5)),
    ],
)
def test_empty_dimensions(backend: str, shape_a: tuple, shape_b: tuple) -> None:
    a, b = np.ones(shape_a, np.float32), np.ones(shape_b, np.float32)
    with kernels.backend(backend):
        c = kernels.matmul(a, b)
    assert c.shape == (shape_a[0], shape_a[1], shape_b[2]) and c.dtype == np.float32
    assert (c == 0).all()


def test_errors_name_the_op_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3, 4\) and \(2, 5, 6\)"):
        kernels.matmul(np.zeros((2, 3, 4)), np.zeros((2, 5, 6)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3, 4\) and \(3, 4, 6\)"):
        kernels.matmul(np.zeros((2, 3, 4)), np.zeros((3, 4, 6)))
    with pytest.raises(ValueError, match=r"matmul: expected two 2-D or two 3-D.*\(3, 4\)"):
        kernels.matmul(np.zeros((2, 3, 4)), np.zeros((3, 4)))
    with pytest.raises(TypeError, match=r"matmul: .*float32, float64"):
        kernels.matmul(np.zeros((3, 4), np.float32), np.zeros((4, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 512, 1600])  # in place, aliasing rows, several panels
def test_nan_and_inf_reach_exactly_what_numpy_reaches(n: int, dtype: type) -> None:
    a = random_array(0, (2, 13, 6), dtype)  # 13 rows: a full tile and a zero-padded one
    b = random_array(1, (2, 6, n), dtype)
    a[0, 3, 2] = np.nan  # row 3 of C[0]
    a[1, 12, 5] = np.inf  # row 12 of C[1] (the padded tile): inf, or NaN where it meets a 0
    b[1, 5, 1] = 0.0
    b[0, 4, n - 1] = np.nan  # last column of C[0] (the last panel's last column)
    with np.errstate(invalid="ignore"):
        expected = np.matmul(a, b)
    c = matmul_numba(a, b)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(c), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(c[finite], expected[finite], **tolerance(dtype))


@pytest.mark.parametrize(("m", "k", "n"), [(768, 128, 384), (128, 768, 512), (48, 64, 1100)])
def test_backward_pass_layouts_at_model_shapes(m: int, k: int, n: int) -> None:
    """X^T dY (A a transposed view) and dY W^T (B a transposed view), as the autograd passes."""
    x = random_array(0, (k, m), np.float32)  # X (rows, features); A = X^T is (m, k)
    g = random_array(1, (k, n), np.float32)
    assert_matmul_close(kernels.matmul(x.T, g), x.T, g)
    w = random_array(2, (n, k), np.float32)
    y = random_array(3, (m, k), np.float32)
    assert_matmul_close(kernels.matmul(y, w.T), y, w.T)


def test_rows_a_multiple_of_4_kib_apart_take_the_buffer() -> None:
    """Rows 512 or 1024 float32 (256 float64) wide alias; 384, 528 and 768 float32 do not
    within three rows (768 floats alias only four rows apart)."""
    assert all(_aliases(n * 4) for n in (512, 1024, 2048)) and _aliases(256 * 8)
    assert not any(_aliases(n * 4) for n in (65, 384, 528, 768, 1152))
