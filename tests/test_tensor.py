"""The Tensor API: creation and dtype inference, random state, attributes and conversions, repr,
operators, dtype and broadcasting errors, and the shape and dtype of `.grad`."""

from __future__ import annotations

import numpy as np
import pytest

import nima


# ------------------------------------------------------------------------------ nima.tensor
@pytest.mark.parametrize(("data", "dtype"), [
    (1.5, np.float32),
    ([1.0, 2.0], np.float32),
    ([[1, 2], [3, 4]], np.int64),
    (7, np.int64),
    ([True, False], np.bool_),
    ([1, 2.5], np.float32),  # mixed ints and floats are floats
    (np.array([1.0, 2.0]), np.float64),  # arrays keep their dtype
    (np.array([1, 2], dtype=np.int32), np.int32),
    (np.array([1.0], dtype=np.float16), np.float16),
])
def test_tensor_infers_dtype(data: object, dtype: type) -> None:
    t = nima.tensor(data)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.data, np.asarray(data))


def test_tensor_dtype_argument_and_copy() -> None:
    source = np.array([1.0, 2.0])
    t = nima.tensor(source, dtype=nima.float32)
    assert t.dtype == np.float32
    u = nima.tensor(source)
    source[0] = 99.0  # nima.tensor copies
    assert u.data[0] == 1.0
    v = nima.tensor(u)
    assert v.dtype == np.float64 and not np.shares_memory(v.data, u.data)
    assert nima.tensor([1, 2], dtype=nima.float64).dtype == np.float64


# ------------------------------------------------------------------------------ factories
@pytest.mark.parametrize("factory", [nima.zeros, nima.ones, nima.randn, nima.rand])
def test_factories_shapes_and_dtypes(factory: object) -> None:
    assert factory(2, 3).shape == (2, 3)
    assert factory((2, 3)).shape == (2, 3)
    assert factory([4]).shape == (4,)
    assert factory().shape == ()
    assert factory(2).dtype == np.float32
    assert factory(2, dtype=nima.float64).dtype == np.float64
    t = factory(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf


def test_factory_values() -> None:
    np.testing.assert_array_equal(nima.zeros(2, 2).data, np.zeros((2, 2)))
    np.testing.assert_array_equal(nima.ones(3).data, np.ones(3))
    full = nima.full((2, 3), 7.5)
    assert full.dtype == np.float32 and full.shape == (2, 3) and (full.data == 7.5).all()
    assert nima.full(4, 1, dtype=nima.int64).dtype == np.int64
    u = nima.rand(1000).data
    assert u.min() >= 0.0 and u.max() < 1.0
    n = nima.randn(10_000, dtype=nima.float64).data
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1.0) < 0.05


def test_arange() -> None:
    a = nima.arange(5)
    assert a.dtype == np.int64
    np.testing.assert_array_equal(a.data, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(nima.arange(2, 8, 3).data, [2, 5])
    f = nima.arange(0.0, 1.0, 0.25)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f.data, [0.0, 0.25, 0.5, 0.75])
    assert nima.arange(3, dtype=nima.float64).dtype == np.float64


@pytest.mark.parametrize("source_dtype", [np.float32, np.float64])
def test_like_factories_copy_shape_and_dtype(source_dtype: type) -> None:
    x = nima.zeros(2, 3, dtype=source_dtype)
    for made in [nima.zeros_like(x), nima.ones_like(x), nima.full_like(x, 3.0),
                 nima.randn_like(x), nima.rand_like(x)]:
        assert made.shape == (2, 3) and made.dtype == source_dtype and not made.requires_grad
    assert (nima.ones_like(x).data == 1).all() and (nima.full_like(x, 3.0).data == 3).all()
    assert nima.zeros_like(x, dtype=nima.float16).dtype == np.float16
    assert nima.ones_like(x, requires_grad=True).requires_grad


def test_manual_seed_makes_draws_reproducible() -> None:
    nima.manual_seed(123)
    a, b = nima.randn(5).data, nima.rand(3).data
    nima.manual_seed(123)
    np.testing.assert_array_equal(nima.randn(5).data, a)
    np.testing.assert_array_equal(nima.rand(3).data, b)
    nima.manual_seed(124)
    assert not np.array_equal(nima.randn(5).data, a)


# ------------------------------------------------------------------------------ attributes
def test_attributes_and_conversions() -> None:
    x = nima.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert x.shape == (2, 3) and x.ndim == 2 and x.dtype == np.float32 and x.size == 6
    assert len(x) == 2
    assert x.T.shape == (3, 2)
    np.testing.assert_array_equal(x.T.data, x.data.T)
    assert x.numpy() is x.data
    assert x.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert nima.tensor([[2.5]]).item() == 2.5 and isinstance(nima.tensor(3).item(), int)
    assert float(nima.tensor(1.5)) == 1.5 and int(nima.tensor(4)) == 4
    assert bool(nima.tensor(1.0)) and not bool(nima.tensor(0.0))
    with pytest.raises(ValueError, match=r"item: only one-element tensors.*\(2, 3\)"):
        x.item()
    with pytest.raises(TypeError, match="0-d"):
        len(nima.tensor(1.0))
    np.testing.assert_array_equal(np.asarray(x), x.data)


def test_detach_shares_memory_and_drops_grad() -> None:
    x = nima.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    x_d = x.detach()
    assert np.shares_memory(x_d.data, x.data) and x_d is not x


# ------------------------------------------------------------------------------ repr
def test_repr() -> None:
    x = nima.tensor([1.5, -2.0])
    assert repr(x) == "tensor([ 1.5, -2. ])"
    assert "dtype=float64" in repr(nima.tensor([1.0], dtype=nima.float64))
    assert "dtype=int64" in repr(nima.arange(3))
    leaf = nima.tensor([1.0, 2.0], requires_grad=True)
    assert repr(leaf).endswith("requires_grad=True)")
    y = leaf * 2
    assert "[2., 4.]" in repr(y) and "grad_fn=<Mul>" in repr(y)
    assert "requires_grad" not in repr(y)
    with nima.no_grad():
        assert "grad" not in repr(leaf * 2)


# ------------------------------------------------------------------------------ operators
def test_operators_match_numpy() -> None:
    a_np = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b_np = np.array([0.5, 4.0], dtype=np.float32)
    a, b = nima.tensor(a_np), nima.tensor(b_np)
    cases = {
        "a + b": (a + b, a_np + b_np), "a - b": (a - b, a_np - b_np),
        "a * b": (a * b, a_np * b_np), "a / b": (a / b, a_np / b_np),
        "a ** 2": (a**2, a_np**2), "-a": (-a, -a_np),
        "2 - a": (2 - a, 2 - a_np), "2 / a": (2 / a, 2 / a_np), "2 ** a": (2**a, 2**a_np),
        "ndarray + a": (b_np + a, b_np + a_np), "ndarray * a": (b_np * a, b_np * a_np),
    }
    for name, (got, expected) in cases.items():
        assert isinstance(got, nima.Tensor), name
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got.data, expected, rtol=1e-6, err_msg=name)


def test_comparisons_are_bool_tensors_without_grad() -> None:
    x = nima.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for out, expected in [(x > 2, [False, False, True]), (x >= 2, [False, True, True]),
                          (x < 2, [True, False, False]), (x <= 2, [True, True, False]),
                          (x == 2, [False, True, False]), (x != 2, [True, False, True]),
                          (x == x, [True, True, True])]:
        assert out.dtype == np.bool_ and not out.requires_grad and out._ctx is None
        np.testing.assert_array_equal(out.data, expected)


def test_tensors_stay_hashable() -> None:
    x = nima.ones(2)
    assert {x: 1}[x] == 1


# ------------------------------------------------------------------------ dtype and shape errors
DUNDER = {"add": "__add__", "sub": "__sub__", "mul": "__mul__", "div": "__truediv__"}


@pytest.mark.parametrize("op", DUNDER)
def test_float32_with_float64_raises_naming_op_and_shapes(op: str) -> None:
    a = nima.ones(2, 3)
    b = nima.ones(3, dtype=nima.float64)
    with pytest.raises(TypeError, match=rf"{op}: dtype mismatch float32 vs float64 "
                                        r"\(shapes \(2, 3\) and \(3,\)\)"):
        getattr(a, DUNDER[op])(b)


def test_python_scalars_keep_float32() -> None:
    x = nima.tensor([1.0, 2.0])
    for out in [x + 1, 1 + x, x * 0.1, 0.1 * x, x / 3, 3 / x, x - 1e-8, x**0.5, 0.5**x,
                x + np.float64(1.0), x * np.array(2.0), (x + 1).exp().sum(), x.mean(),
                x.var(), x.logsumexp(0)]:
        assert out.dtype == np.float32


@pytest.mark.parametrize("op", DUNDER)
def test_mismatched_broadcasting_raises_naming_op_and_shapes(op: str) -> None:
    with pytest.raises(ValueError, match=rf"^{op}:.*\(input shapes: \(2, 3\), \(2,\)\)"):
        getattr(nima.ones(2, 3), DUNDER[op])(nima.ones(2))


# ------------------------------------------------------------------------------ .grad
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_has_the_shape_and_dtype_of_its_tensor(dtype: type) -> None:
    w = nima.ones(3, 1, dtype=dtype, requires_grad=True)
    b = nima.zeros(4, dtype=dtype, requires_grad=True)
    s = nima.tensor(2.0, dtype=dtype, requires_grad=True)
    x = nima.randn(2, 3, 4, dtype=dtype)
    ((x * w + b) * s).tanh().mean().backward()
    for t in (w, b, s):
        assert t.grad is not None
        assert t.grad.shape == t.shape and t.grad.dtype == dtype


def test_float_double_long_conversions() -> None:
    x = nima.tensor([1.5, -2.5], requires_grad=True)
    d = x.double()
    assert d.dtype == np.float64 and d.requires_grad
    assert d.float().dtype == np.float32
    assert x.long().dtype == np.int64 and not x.long().requires_grad
    (d * d).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3.0, -5.0])


@pytest.mark.parametrize(("make", "message"), [
    (lambda: nima.zeros(2.9), r"zeros: sizes must be integers, got 2\.9 \(float\) in size \(2\.9,"),
    (lambda: nima.randn(3.7, 2), r"randn: sizes must be integers, got 3\.7 \(float\)"),
    (lambda: nima.ones((2, 3.0)), r"ones: sizes must be integers, got 3\.0"),
    (lambda: nima.rand(True), r"rand: sizes must be integers, got True \(bool\)"),
    (lambda: nima.full("3", 1.0), r"full: sizes must be integers, got '3' \(str\)"),
])
def test_non_integral_sizes_are_refused_not_truncated(make, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


def test_negative_sizes_are_refused_and_integer_types_accepted() -> None:
    with pytest.raises(ValueError, match=r"zeros: sizes must be >= 0, got -1 in size \(2, -1\)"):
        nima.zeros(2, -1)
    assert nima.zeros(np.int64(2), np.int32(3)).shape == (2, 3)
    assert nima.randn([2, 0]).shape == (2, 0) and nima.ones().shape == ()


@pytest.mark.parametrize(("data", "name", "dtype"), [
    ("abc", "str", "<U3"), (None, "NoneType", "object"), ([1, None], "list", "object"),
    (object(), "object", "object"), (np.array(["a"]), "ndarray", "<U1"),
    (1 + 2j, "complex", "complex128"),
])
def test_tensors_of_non_numbers_are_refused(data: object, name: str, dtype: str) -> None:
    message = (rf"^tensor: expected numbers \(bool, integer or floating point\), got {name} data "
               rf"\(NumPy dtype {dtype}\)$")
    with pytest.raises(TypeError, match=message):
        nima.tensor(data)
    with pytest.raises(TypeError, match=message):
        nima.Tensor(data)


def test_ragged_or_unconvertible_data_names_the_factory() -> None:
    with pytest.raises(ValueError, match=r"^tensor: cannot make an array of list data: .*"):
        nima.tensor([[1, 2], [3]])
    with pytest.raises(ValueError, match=r"^tensor: cannot make a float64 array of str data: "):
        nima.tensor("abc", dtype=np.float64)
