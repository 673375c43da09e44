# %% [markdown]
# # A scalar autograd engine from scratch
#
# Nima's autograd is a few hundred lines, but its core idea fits in one screen. In this
# tutorial you write that screen: a `Value` class holding one number, which records the
# operations applied to it (`+`, `*`, `tanh`, `exp`) and sends gradients back through them
# with `backward()`, in the style of Karpathy's micrograd. Then you use it to train a tiny
# neuron, and put it next to Nima: the same interface (`.backward()`, `.grad`), the same
# numbers (checked against Nima's tensors and against `nima.gradcheck`), and what Nima does
# differently to work on whole arrays at once.
#
# The reference page is [Autograd](../autograd.md); [tutorial 02](02_autograd_by_hand.md) does
# the chain rule by hand on Nima's own tensors. Everything runs in float64.

# %%
import math
import os

import numpy as np

import nima

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"

# %% [markdown]
# ## 1. A value that remembers where it came from
#
# A `Value` holds a number `data`, a gradient `grad` (of the final output with respect to this
# value, filled in by `backward()`), the values it was computed from (`parents`), and a small
# function `_backward` that, given its own `grad`, adds its share to its parents' `grad`. Each
# operation builds its output and, right beside it, that function: forward and backward of an
# op sit side by side. With $\bar t = \partial L / \partial t$:
#
# | op | forward | backward |
# |---|---|---|
# | add | $y = a + b$ | $\bar a \mathrel{+}= \bar y$, $\bar b \mathrel{+}= \bar y$ |
# | multiply | $y = a b$ | $\bar a \mathrel{+}= \bar y\, b$, $\bar b \mathrel{+}= \bar y\, a$ |
# | tanh | $y = \tanh a$ | $\bar a \mathrel{+}= \bar y\,(1 - y^2)$ |
# | exp | $y = e^a$ | $\bar a \mathrel{+}= \bar y\, y$ |
#
# The gradients *add up* (`+=`): a value used twice receives gradient from both uses.

# %%
class Value:
    """One number, its gradient, and the operation that made it."""

    def __init__(self, data: float, parents: tuple["Value", ...] = (), op: str = "") -> None:
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents
        self.op = op
        self._backward = lambda: None  # a leaf sends nothing further back

    def __add__(self, other: "Value | float") -> "Value":
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: "Value | float") -> "Value":
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def tanh(self) -> "Value":
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward() -> None:
            self.grad += (1.0 - out.data**2) * out.grad

        out._backward = _backward
        return out

    def exp(self) -> "Value":
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward() -> None:
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    # a + b, a * b with a plain number on the left, and a - b, all from the ops above
    __radd__ = __add__
    __rmul__ = __mul__

    def __neg__(self) -> "Value":
        return self * -1.0

    def __sub__(self, other: "Value | float") -> "Value":
        return self + (-other if isinstance(other, Value) else -float(other))

    def __repr__(self) -> str:
        return f"Value({self.data:.6g}, grad={self.grad:.6g})"


# %% [markdown]
# ## 2. `backward()`: a topological order, then the chain rule
#
# To send gradients back, each value must call its `_backward` only after *every* value that
# used it has added its share to its `grad`. Any order in which a value comes after all the
# values computed from it will do: the reverse of a topological order of the graph.
#
# micrograd builds that order with a recursive depth-first search. Python's recursion limit is
# about 1000 frames, so a graph 1000 operations deep (an RNN unrolled over a long sequence, a
# deep stack of layers on scalars) would crash it. Here the depth-first search keeps its own
# stack: each entry is a value and whether its parents have been visited yet. A value is
# appended to the order when it is popped the second time, after all its parents: a post-order.

# %%
def topological_order(root: Value) -> list[Value]:
    """Every value `root` depends on, each after all of its parents (root last)."""
    order, visited = [], set()
    stack = [(root, False)]  # (value, its parents are already in `order`)
    while stack:
        value, parents_done = stack.pop()
        if parents_done:
            order.append(value)
        elif id(value) not in visited:
            visited.add(id(value))
            stack.append((value, True))  # come back to it after its parents
            stack.extend((p, False) for p in value.parents if id(p) not in visited)
    return order


def backward(root: Value) -> None:
    """Fill `.grad` of every value `root` depends on with d root / d value."""
    root.grad = 1.0  # d root / d root
    for value in reversed(topological_order(root)):
        value._backward()


Value.backward = backward

# %% [markdown]
# ## 3. Check it on a small function
#
# Take $f(x, y) = \tanh(xy + y^2)\, e^{x}$. By hand, with $s = xy + y^2$ and $t = \tanh s$:
#
# $$\frac{\partial f}{\partial x} = e^x\big((1 - t^2)\,y + t\big), \qquad
# \frac{\partial f}{\partial y} = e^x (1 - t^2)(x + 2y).$$

# %%
x, y = Value(0.7), Value(-0.4)
f = (x * y + y * y).tanh() * x.exp()
f.backward()

t = math.tanh(0.7 * -0.4 + 0.16)
dfdx = math.exp(0.7) * ((1 - t**2) * -0.4 + t)
dfdy = math.exp(0.7) * (1 - t**2) * (0.7 + 2 * -0.4)
print(f"f = {f.data:.12f}")
print(f"df/dx: engine {x.grad:.12f}, by hand {dfdx:.12f}")
print(f"df/dy: engine {y.grad:.12f}, by hand {dfdy:.12f}")
assert abs(x.grad - dfdx) < 1e-12 and abs(y.grad - dfdy) < 1e-12

# %% [markdown]
# `y` is used three times (twice in `y * y`, once in `x * y`), and its gradient is the sum of
# the three contributions, because each `_backward` adds (`+=`) rather than assigns.
#
# A second check that needs no algebra: central differences,
# $\partial f / \partial x \approx (f(x + h) - f(x - h)) / 2h$, whose error shrinks like $h^2$.

# %%
def f_of(xv: float, yv: float) -> float:
    xs, ys = Value(xv), Value(yv)
    return ((xs * ys + ys * ys).tanh() * xs.exp()).data


h = 1e-6
numeric_x = (f_of(0.7 + h, -0.4) - f_of(0.7 - h, -0.4)) / (2 * h)
numeric_y = (f_of(0.7, -0.4 + h) - f_of(0.7, -0.4 - h)) / (2 * h)
print(f"central differences: df/dx {numeric_x:.10f}, df/dy {numeric_y:.10f}")
assert abs(numeric_x - x.grad) < 1e-8 and abs(numeric_y - y.grad) < 1e-8

# %% [markdown]
# And a graph far deeper than Python's recursion limit: a chain of additions $x + x + \dots$,
# whose derivative with respect to $x$ is the number of terms. A recursive topological sort
# raises `RecursionError` here; the explicit stack does not.

# %%
depth = 3_000 if QUICK else 20_000
x = Value(0.5)
chain = x
for _ in range(depth - 1):
    chain = chain + x
chain.backward()
print(f"a chain of {depth} additions: d/dx = {x.grad:.0f}")
assert x.grad == depth and depth > 2 * 1000

# %% [markdown]
# ## 4. A neuron that learns
#
# A neuron computes $\hat y = \tanh(w_1 x_1 + w_2 x_2 + b)$. Fit one to four points with
# gradient descent on the squared error $L = \sum_n (\hat y_n - y_n)^2$: each step builds the
# graph anew, calls `backward()`, moves every parameter against its gradient, and resets the
# gradients to zero (they would otherwise add up across steps).

# %%
X = [(2.0, 3.0), (3.0, -1.0), (0.5, 1.0), (1.0, 1.0)]
Y = [1.0, -1.0, -1.0, 1.0]
W0, B0, LR, STEPS = (0.1, -0.3), 0.2, 0.05, 40 if QUICK else 200


def neuron_loss(w1, w2, b, inputs=X, targets=Y):
    """The squared error of tanh(w1 x1 + w2 x2 + b) over the points (any number type)."""
    loss = 0.0
    for (x1, x2), target in zip(inputs, targets, strict=True):
        pred = (w1 * x1 + w2 * x2 + b).tanh()
        loss = loss + (pred - target) * (pred - target)
    return loss


params = [Value(W0[0]), Value(W0[1]), Value(B0)]
scalar_losses = []
for _ in range(STEPS):
    loss = neuron_loss(*params)
    for p in params:
        p.grad = 0.0
    loss.backward()
    for p in params:
        p.data -= LR * p.grad
    scalar_losses.append(loss.data)
print(f"loss {scalar_losses[0]:.4f} -> {scalar_losses[-1]:.4f} after {STEPS} steps; "
      f"w = ({params[0].data:.3f}, {params[1].data:.3f}), b = {params[2].data:.3f}")
assert scalar_losses[-1] < 0.5 * scalar_losses[0]

# %% [markdown]
# ## 5. The same thing with Nima
#
# Nima's `Tensor` has the same interface: operations record a graph, `backward()` fills
# `.grad`. The function above works unchanged on Nima's scalar tensors, because `Tensor` has
# `+`, `*` and `.tanh()` too. Run the same 4-point fit with Nima and compare every loss:

# %%
w1, w2, b = (nima.tensor(v, dtype=nima.float64, requires_grad=True) for v in (*W0, B0))
nima_losses = []
for _ in range(STEPS):
    loss = neuron_loss(w1, w2, b)
    for p in (w1, w2, b):
        p.grad = None
    loss.backward()
    with nima.no_grad():
        for p in (w1, w2, b):
            p.data -= LR * p.grad
    nima_losses.append(loss.item())
gap = np.abs(np.array(nima_losses) - np.array(scalar_losses)).max()
print(f"largest difference between the two loss curves: {gap:.1e}")
assert gap < 1e-12

# %% [markdown]
# Identical to rounding. The difference is in how much graph each one builds. The scalar
# engine makes one node per *number*: a product of two 16 × 16 matrices is $16^3$
# multiplications and as many additions, each a `Value` with its own closure. Nima makes one
# node per *array operation*: the whole product is one `Matmul` node, whose backward is two
# more matrix products, $\bar A = \bar C B^\top$ and $\bar B = A^\top \bar C$. Count them:

# %%
rng = np.random.default_rng(0)
n = 8 if QUICK else 16
A, B = rng.standard_normal((2, n, n))
A_values = [[Value(a) for a in row] for row in A]
B_values = [[Value(b) for b in row] for row in B]
C_values = [[sum((A_values[i][k] * B_values[k][j] for k in range(n)), Value(0.0))
             for j in range(n)] for i in range(n)]
total = sum((c for row in C_values for c in row), Value(0.0))
total.backward()
nodes = len(topological_order(total))

At, Bt = nima.tensor(A, requires_grad=True), nima.tensor(B, requires_grad=True)
(At @ Bt).sum().backward()
print(f"{n}x{n} matmul, then a sum: {nodes:,} scalar nodes; Nima: 2 nodes (matmul, sum)")
A_grad = np.array([[v.grad for v in row] for row in A_values])
assert np.allclose(A_grad, At.grad, atol=1e-12)  # the same gradient, d sum(AB) / dA
assert np.allclose(At.grad, np.ones((n, n)) @ B.T)  # = 1 B^T: the matmul's backward rule

# %% [markdown]
# ## 6. What Nima adds to generalise the idea
#
# The interface is the same; the engine underneath does more, each for a reason:
#
# - **Arrays, not numbers.** A node is a `Function` with `forward(ctx, *arrays)` and
#   `backward(ctx, grad)` on NumPy arrays, the vector–Jacobian product of the whole op. Python
#   runs once per op, and the arithmetic runs in NumPy or a numba kernel.
# - **Broadcasting.** `x + b` with `x` of shape `(B, D)` and `b` of shape `(D,)` uses `b` once
#   per row, so its gradient is the *sum* of the rows' gradients; the engine sums every
#   broadcast gradient back to its input's shape in one place (`unbroadcast`).
# - **The order.** Instead of sorting the graph first, Nima's engine counts how many consumers
#   each tensor has and processes a tensor once all of them have sent their gradient (Kahn's
#   algorithm, a worklist), so each gradient is summed once, as an array, before it is used.
# - **Memory and mistakes.** After `backward()` the arrays saved for it are freed, so calling
#   it twice through the same graph raises an error (unless `retain_graph=True`); the scalar
#   engine would silently add the gradients a second time.
#
# Check a vector version of section 3's function with `nima.gradcheck`, which compares the
# engine's gradients with central differences for every element of every input, and check the
# engine against the scalar one element by element:

# %%
def f_tensor(x: nima.Tensor, y: nima.Tensor) -> nima.Tensor:
    return (x * y + y * y).tanh() * x.exp()  # elementwise, on whole arrays


xs = rng.uniform(-1, 1, size=5)
ys = rng.uniform(-1, 1, size=5)
assert nima.gradcheck(f_tensor, [nima.tensor(xs, requires_grad=True),
                                 nima.tensor(ys, requires_grad=True)])
xt, yt = nima.tensor(xs, requires_grad=True), nima.tensor(ys, requires_grad=True)
f_tensor(xt, yt).sum().backward()
for i in range(5):
    xv, yv = Value(xs[i]), Value(ys[i])
    ((xv * yv + yv * yv).tanh() * xv.exp()).backward()
    assert abs(xv.grad - xt.grad[i]) < 1e-12 and abs(yv.grad - yt.grad[i]) < 1e-12
print("gradcheck passed; tensor gradients equal the scalar engine's:")
print("  d/dx", np.round(xt.grad, 6))
print("  d/dy", np.round(yt.grad, 6))

# %% [markdown]
# And the difference in what a second `backward()` does:

# %%
x = Value(2.0)
y = x * x
y.backward()
y.backward()
print(f"scalar engine, backward twice: dy/dx = {x.grad} (2x = 4, counted twice)")
assert x.grad == 8.0

xt = nima.tensor(2.0, dtype=nima.float64, requires_grad=True)
yt = xt * xt
yt.backward()
try:
    yt.backward()
except RuntimeError as error:
    print("Nima, backward twice:", error)
else:
    raise AssertionError("a second backward through a freed graph should raise")

# %% [markdown]
# From here, [Autograd](../autograd.md) shows Nima's engine line by line, and
# [tutorial 02](02_autograd_by_hand.md) writes a new op as a `Function` subclass.

# %% [markdown]
# ## Summary
#
# - A scalar `Value` records how it was computed; `backward()` orders the graph so every node
#   comes after all its consumers, then applies the chain rule once per node.
# - The engine checks against numerical derivatives and trains a neuron.
# - Nima's tensors generalise it: arrays instead of scalars, vector–Jacobian products,
#   unbroadcasting, a freed graph after backward.
#
# ## Check your understanding
#
# ??? question "Why must a node's backward wait for all its consumers?"
#     Its gradient is the sum of what every consumer sends; running it earlier would pass on a
#     partial gradient.
#
# ??? question "Why use an explicit stack instead of recursion to order the graph?"
#     A deep graph — a chain of 100,000 operations — would overflow Python's recursion limit.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_13 -->
