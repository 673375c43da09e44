"""The autograd engine: accumulation, shared subgraphs, deep graphs, freed graphs, grad mode,
detach / retain_grad, custom Functions and unbroadcast."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

import nima
from nima.autograd import Context, Function, unbroadcast


def f64(values: object, requires_grad: bool = True) -> nima.Tensor:
    return nima.tensor(values, dtype=nima.float64, requires_grad=requires_grad)


# ------------------------------------------------------------------------------ accumulation
def test_gradients_accumulate_across_backward_calls_on_separate_graphs() -> None:
    x = f64([1.0, 2.0])
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])
    (x * x).sum().backward()  # a new graph: adds 2x
    np.testing.assert_array_equal(x.grad, [5.0, 7.0])
    x.zero_grad_()
    assert x.grad is None


def test_tensor_used_twice_in_one_expression() -> None:
    x = f64([3.0, -1.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, -2.0])
    x.grad = None
    (x + x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_diamond_graph_sums_both_paths() -> None:
    r"""$y = 2x$, $a = y + 1$, $b = 3y$, $z = a b = 6x^2 \cdot 2 + 6x$ ... by hand:
    $z = (2x + 1)(6x) = 12x^2 + 6x$, so $dz/dx = 24x + 6$."""
    x = f64([1.0, 2.0])
    y = x * 2.0
    z = ((y + 1.0) * (y * 3.0)).sum()
    z.backward()
    np.testing.assert_allclose(x.grad, [30.0, 54.0])


def test_node_with_many_consumers_on_different_depths() -> None:
    """x feeds the output directly and through a chain: every path contributes once."""
    x = f64(2.0)
    h = x
    for _ in range(5):
        h = h * 2.0
    (h + x * x + x).backward()  # 32 x + x^2 + x
    assert x.grad == pytest.approx(32.0 + 4.0 + 1.0)


def test_deep_chain_needs_no_recursion() -> None:
    r"""100,000 ops in a row: $(1 + 10^{-5})^{100000} \approx e$."""
    x = f64(1.0)
    y = x
    for _ in range(100_000):
        y = y * (1 + 1e-5)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # the engine must not recurse at all
    try:
        y.backward()
    finally:
        sys.setrecursionlimit(limit)
    assert x.grad == pytest.approx((1 + 1e-5) ** 100_000)
    del y
    gc.collect()  # tearing the chain down must not crash either


# ------------------------------------------------------------------------------ freed graphs
def test_second_backward_through_a_freed_graph_raises() -> None:
    x = f64([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        loss.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])  # untouched by the failed call


def test_retain_graph_allows_a_second_backward_and_gradients_double() -> None:
    x = f64([1.0, 2.0])
    loss = (x.exp() * x).sum()
    loss.backward(retain_graph=True)
    first = x.grad.copy()
    np.testing.assert_allclose(first, np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0])))
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * first)


# -------------------------------------------------------------------------- the `gradient` argument
def test_backward_on_non_scalar_needs_gradient_and_names_the_shape() -> None:
    y = f64(np.ones((2, 3))) * 2.0
    with pytest.raises(RuntimeError, match=r"scalar output, got shape \(2, 3\)"):
        y.backward()


def test_gradient_of_the_wrong_shape_raises() -> None:
    y = f64(np.ones((2, 3))) * 2.0
    with pytest.raises(ValueError, match=r"gradient shape \(3, 2\) does not match .*\(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_gradient_gives_the_vector_jacobian_product() -> None:
    x = f64([1.0, 2.0, 3.0])
    y = x * x  # J = diag(2x)
    y.backward(nima.tensor([1.0, 10.0, 100.0], dtype=nima.float64))
    np.testing.assert_array_equal(x.grad, [2.0, 40.0, 600.0])


def test_one_element_tensor_backward_without_gradient() -> None:
    x = f64([[2.0]])
    (x * 3.0).backward()
    np.testing.assert_array_equal(x.grad, [[3.0]])


def test_backward_on_a_tensor_without_graph_raises() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        nima.ones(1).backward()


# ------------------------------------------------------------------------------ grad mode
def test_no_grad_context_records_nothing() -> None:
    x = f64([1.0, 2.0])
    with nima.no_grad():
        assert not nima.is_grad_enabled()
        y = x * 2.0
    assert nima.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y._ctx is None
    np.testing.assert_array_equal(y.data, [2.0, 4.0])


def test_grad_mode_nests_and_restores_on_exceptions() -> None:
    x = f64([1.0])
    with nima.no_grad():
        with nima.enable_grad():
            assert nima.is_grad_enabled()
            assert (x * 2.0).requires_grad
        assert not nima.is_grad_enabled()
        with pytest.raises(ZeroDivisionError), nima.enable_grad():
            raise ZeroDivisionError
        assert not nima.is_grad_enabled()
    assert nima.is_grad_enabled()


def test_grad_mode_decorators_nest() -> None:
    x = f64([1.0])

    @nima.enable_grad()
    def recorded() -> nima.Tensor:
        return x * 2.0

    @nima.no_grad()
    def unrecorded() -> tuple[nima.Tensor, nima.Tensor]:
        return x * 2.0, recorded()

    plain, inner = unrecorded()
    assert not plain.requires_grad
    assert inner.requires_grad and inner._ctx is not None
    assert nima.is_grad_enabled()


def test_recursive_decorated_function_restores_grad_mode() -> None:
    @nima.no_grad()
    def depth(n: int) -> bool:
        return depth(n - 1) if n else nima.is_grad_enabled()

    assert depth(3) is False
    assert nima.is_grad_enabled()


def test_graph_is_recorded_only_when_an_input_requires_grad() -> None:
    a = f64([1.0, 2.0], requires_grad=False)
    b = f64([3.0, 4.0], requires_grad=False)
    out = a * b
    assert not out.requires_grad and out._ctx is None
    b.requires_grad_()
    out = a * b
    assert out.requires_grad and not out.is_leaf
    out.sum().backward()
    assert a.grad is None
    np.testing.assert_array_equal(b.grad, [1.0, 2.0])


# ---------------------------------------------------------------------------- detach / retain_grad
def test_detach_cuts_the_graph() -> None:
    x = f64([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, y.data)
    (x * d).sum().backward()  # d counts as a constant
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])


def test_retain_grad_keeps_a_non_leaf_gradient() -> None:
    x = f64([1.0, 2.0])
    y = x * 3.0
    z = x * 4.0
    y.retain_grad()
    (y * y + z).sum().backward()
    np.testing.assert_array_equal(y.grad, [6.0, 12.0])  # 2y
    assert z.grad is None
    np.testing.assert_array_equal(x.grad, [18.0 + 4.0, 36.0 + 4.0])


def test_retain_grad_on_the_root_and_after_later_ops() -> None:
    """`retain_grad` may come after the tensor was used, and on the root itself."""
    x = f64([1.0, 2.0])
    y = x * 3.0
    loss = (y * y).sum()
    y.retain_grad()
    loss.retain_grad()
    loss.backward()
    np.testing.assert_array_equal(y.grad, [6.0, 12.0])
    assert loss.grad == 1.0


def test_the_graph_keeps_an_intermediate_s_values_only_if_a_backward_saved_them() -> None:
    """As in PyTorch: the graph links nodes, so once the program drops an intermediate tensor
    its array is freed, unless an op saved it for its backward."""
    import gc
    import weakref

    x = f64([1.0, 2.0])
    u = x * 2.0  # Add's backward needs nothing of u
    v = x * 5.0  # Mul's backward needs v
    unused, saved = weakref.ref(u.data), weakref.ref(v.data)
    loss = ((u + 1.0) * v).sum()
    del u, v
    gc.collect()
    assert unused() is None and saved() is not None
    loss.backward()
    np.testing.assert_array_equal(x.grad, [25.0, 45.0])  # d/dx (10 x^2 + 5 x)


def test_requires_grad_only_for_floating_point_leaves() -> None:
    with pytest.raises(TypeError, match="int64"):
        nima.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="only floating-point"):
        nima.arange(3).requires_grad_()
    with pytest.raises(TypeError, match="bool"):
        nima.Tensor(np.array([True]), requires_grad=True)
    y = f64([1.0]) * 2.0
    with pytest.raises(RuntimeError, match="non-leaf"):
        y.requires_grad_(False)


# ------------------------------------------------------------------------------ custom Functions
class Cube(Function):
    r"""$y = s\,x^3$ for a plain number $s$; $\bar x = 3 s x^2\,\bar y$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, scale: float) -> np.ndarray:
        ctx.save_for_backward(x)
        ctx.scale = scale
        return scale * x**3

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        (x,) = ctx.saved_tensors
        return 3 * ctx.scale * x**2 * grad, None


class LeftOnly(Function):
    """`a * b` that (wrongly, on purpose) sends no gradient to `b`: returns None for it."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(b)
        return a * b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        (b,) = ctx.saved_tensors
        return grad * b, None


def test_custom_function_end_to_end() -> None:
    x = f64([1.0, -2.0])
    y = Cube.apply(x, 2.0)
    assert y._ctx.function is Cube
    assert tuple(y._ctx.needs_input_grad) == (True, False)
    np.testing.assert_array_equal(y.data, [2.0, -16.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 24.0])
    with pytest.raises(RuntimeError, match="'Cube' were freed"):
        y.sum().backward()
    assert nima.gradcheck(lambda x: Cube.apply(x, 0.5), [f64([[0.3, -1.2], [2.0, 0.7]])])


def test_a_none_gradient_counts_as_zero_and_does_not_stall_the_rest() -> None:
    """b gets nothing through LeftOnly, but its other use (b * 5) still reaches the leaf."""
    a = f64([2.0, 3.0])
    x = f64([1.0, 1.0])
    b = x * 4.0
    (LeftOnly.apply(a, b) + b * 5.0).sum().backward()
    np.testing.assert_array_equal(a.grad, [4.0, 4.0])
    np.testing.assert_array_equal(x.grad, [20.0, 20.0])


def test_a_path_that_returns_none_everywhere_still_lets_other_paths_through() -> None:
    x = f64([1.0, 2.0])
    blocked = LeftOnly.apply(f64([1.0, 1.0]), x * 2.0)  # no gradient flows back to x * 2
    (blocked + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


# ------------------------------------------------------------------------------ unbroadcast
def test_unbroadcast_by_hand() -> None:
    grad = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(unbroadcast(grad, (3, 1)),
                                  grad.sum(axis=0).sum(axis=-1, keepdims=True))
    np.testing.assert_array_equal(unbroadcast(grad, (3, 1)), [[60.0], [92.0], [124.0]])
    np.testing.assert_array_equal(unbroadcast(grad, (4,)), [60.0, 66.0, 72.0, 78.0])
    np.testing.assert_array_equal(unbroadcast(grad, (2, 1, 1)), [[[66.0]], [[210.0]]])
    assert unbroadcast(grad, ()) == 276.0 and unbroadcast(grad, ()).shape == ()
    assert unbroadcast(grad, (2, 3, 4)) is grad
    np.testing.assert_array_equal(unbroadcast(np.ones((5, 1)), (1,)), [5.0])


def test_engine_unbroadcasts_every_input() -> None:
    a = nima.tensor([[1.0], [2.0], [3.0]], requires_grad=True)  # (3, 1)
    b = nima.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)  # (4,)
    c = nima.tensor(2.0, requires_grad=True)  # ()
    (a * b * c).sum().backward()
    np.testing.assert_array_equal(a.grad, [[20.0], [20.0], [20.0]])
    np.testing.assert_array_equal(b.grad, [12.0, 12.0, 12.0, 12.0])
    assert c.grad.shape == () and c.grad == 60.0
    assert a.grad.dtype == b.grad.dtype == c.grad.dtype == np.float32


def test_a_leaf_keeps_the_engine_s_own_gradient_array_without_a_copy() -> None:
    """The engine made the array during this backward and nobody else holds it: it becomes
    `.grad` as is. Anything shared is copied, so in-place updates never alias."""
    import nima.autograd as autograd

    x = nima.Tensor(np.ones((3, 4)), requires_grad=True)
    made = {}

    class Twice(Function):
        @staticmethod
        def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
            return 2 * a

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
            made["grad"] = 2 * grad
            return made["grad"]

    Twice.apply(x).sum().backward()
    assert x.grad is made["grad"]  # no copy
    # one array sent to two leaves (Add's backward returns `grad` twice): each gets its own
    a = nima.Tensor(np.ones(3), requires_grad=True)
    b = nima.Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 10  # clipping in place touches a alone
    np.testing.assert_array_equal(b.grad, np.ones(3))
    # the caller's gradient is the caller's: copied
    c = nima.Tensor(np.ones(3), requires_grad=True)
    mine = np.full(3, 2.0)
    (c * 1.0).backward(mine)
    assert not np.shares_memory(c.grad, mine)
    # a broadcast view is copied (it is read-only, and its base may be someone else's)
    d = nima.Tensor(np.ones((2, 3)), requires_grad=True)
    d.reshape(6).sum().backward()
    assert d.grad.base is None and d.grad.flags.writeable
    assert autograd._owned(np.ones(2), set()) and not autograd._owned(np.ones(4)[:2], set())


def test_a_leaf_keeps_a_whole_view_of_the_engine_s_array_but_copies_a_part() -> None:
    """A kernel's output reshaped (a view of all of it) is kept as is; a slice of an array,
    a transposed view or a second view of an array already stored is copied."""
    import nima.autograd as autograd

    made = {}

    class Flat(Function):  # (2, 3) -> (6,); its backward reshapes a fresh array
        @staticmethod
        def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
            return a.reshape(6)

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
            made["grad"] = 3 * grad
            return made["grad"].reshape(2, 3)

    x = nima.Tensor(np.ones((2, 3)), requires_grad=True)
    (Flat.apply(x) * 1.0).sum().backward()
    assert x.grad.base is made["grad"]  # no copy
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 3.0))

    class Both(Function):  # two views of one array, to two inputs
        @staticmethod
        def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return a + b.reshape(a.shape)

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            g = 2 * grad
            return g.reshape(2, 3), g.reshape(6)

    a = nima.Tensor(np.ones((2, 3)), requires_grad=True)
    b = nima.Tensor(np.ones(6), requires_grad=True)
    Both.apply(a, b).sum().backward()
    assert not np.shares_memory(a.grad, b.grad)
    assert not autograd._owned(np.ones((3, 4)).T, set())  # not C-contiguous
    whole = np.ones(6)
    assert autograd._owned(whole.reshape(2, 3), set())
    assert not autograd._owned(whole.reshape(2, 3), {id(whole)})


def test_grad_mode_is_per_thread() -> None:
    import threading

    seen = []
    with nima.no_grad():
        t = threading.Thread(target=lambda: seen.append(nima.is_grad_enabled()))
        t.start()
        t.join()
        assert not nima.is_grad_enabled()
    assert seen == [True]  # a new thread starts with grad mode on


def test_without_grad_nothing_is_saved_or_recorded() -> None:
    saved = []

    class Keep(Function):
        @staticmethod
        def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
            ctx.save_for_backward(a)
            saved.append(ctx.saved_tensors)
            return a + 1

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
            return grad

    x = nima.Tensor(np.ones(2), requires_grad=True)
    with nima.no_grad():
        y = Keep.apply(x)
    assert y._ctx is None and not y.requires_grad and saved == [()]  # nothing kept
    y = Keep.apply(x)
    assert y._ctx is not None and len(saved[-1]) == 1
