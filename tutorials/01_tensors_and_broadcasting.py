# %% [markdown]
# # Tensors and broadcasting
#
# A Nima `Tensor` is a NumPy array with three extras: whether it wants a gradient
# (`requires_grad`), where its gradient goes (`.grad`), and the node of the graph that made it.
# Everything about *shapes* — creation, views, broadcasting, reductions, indexing, matmul —
# follows NumPy, and so PyTorch, exactly. This tutorial walks through those rules, then shows
# the one place where shapes and gradients meet: the gradient of a broadcast input has to be
# summed back to that input's shape.
#
# Run it with `python tutorials/01_tensors_and_broadcasting.py`; every `assert` below checks a
# claim the prose makes.

# %%
import numpy as np

import nima
from nima.autograd import unbroadcast

nima.manual_seed(0)

# %% [markdown]
# ## Creating tensors
#
# `nima.tensor` copies nested lists, numbers or arrays. Python floats become **float32** (as in
# PyTorch: models train in float32), Python ints become int64, and `dtype=nima.float64` asks for
# double precision — which gradient checks need (tutorial 02). The values live in `.data`, a plain
# `numpy.ndarray`.

# %%
a = nima.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
b = nima.tensor([[1.0, 2.0, 3.0]], dtype=nima.float64)
i = nima.tensor([0, 2, 1])
print(a)
print("a:", a.shape, a.dtype, "| b:", b.shape, b.dtype, "| i:", i.shape, i.dtype)
assert a.dtype == np.float32 and b.dtype == np.float64 and i.dtype == np.int64
assert isinstance(a.data, np.ndarray) and a.ndim == 2 and a.size == 6

# %% [markdown]
# The factories take a shape, as in PyTorch: `zeros`, `ones`, `full`, `arange`, and `randn` /
# `rand`, which draw from Nima's generator (reseed it with `nima.manual_seed`).

# %%
z = nima.zeros(2, 3)
r = nima.randn(2, 3)
k = nima.arange(6)
print(z.shape, r.dtype, k)
assert z.shape == (2, 3) and r.dtype == np.float32 and k.tolist() == [0, 1, 2, 3, 4, 5]

# %% [markdown]
# Mixing float32 and float64 tensors is refused rather than silently promoted (float64 creeping
# into a float32 model doubles its cost); convert one side with `.double()` or `.float()`.
# Python numbers mix with any float dtype and keep the tensor's dtype.

# %%
try:
    a + b
except TypeError as e:
    print("TypeError:", e)
print((a.double() + b).dtype, (a * 2.5).dtype)
assert (a.double() + b).dtype == np.float64 and (a * 2.5).dtype == np.float32

# %% [markdown]
# ## Views: same memory, new shape
#
# An array is a block of memory plus a shape and *strides* (how many bytes to step along each
# axis). `reshape`/`view`, `permute`/`transpose`/`.T` and `expand` only change the shape and
# strides, so they return **views** that share memory with their input — no copy. (Like NumPy,
# `reshape` copies only when no choice of strides can express the new shape, e.g. flattening a
# transpose.) A transpose swaps the strides; `expand` uses stride 0 to repeat a row without
# storing it again.

# %%
x = nima.arange(12, dtype=nima.float32).reshape(3, 4)
v = x.view(4, 3)
t = x.T
e = nima.tensor([[1.0, 2.0, 3.0, 4.0]]).expand(3, 4)
print("x strides", x.data.strides, "| x.T strides", t.data.strides,
      "| expanded strides", e.data.strides)
assert np.shares_memory(x.data, v.data) and np.shares_memory(x.data, t.data)
assert t.data.strides == x.data.strides[::-1]
assert not np.shares_memory(t.reshape(12).data, x.data)  # flattening a transpose copies
assert e.data.strides[0] == 0  # every row of `e` is the same 16 bytes

# %% [markdown]
# Since they share memory, writing through the array of one shows up in the other:

# %%
x.data[0, 1] = 100.0
print(v.data[0], t.data[1])
assert v.data[0, 1] == 100.0 and t.data[1, 0] == 100.0
x.data[0, 1] = 1.0

# %% [markdown]
# ## Broadcasting
#
# A binary op between shapes that differ follows NumPy's rules:
#
# 1. line the shapes up **from the right**; a missing leading axis counts as size 1;
# 2. two sizes are compatible when they are **equal or one of them is 1**;
# 3. the result takes the larger size on each axis — an axis of size 1 is repeated (without
#    copying) to match.
#
# A worked example, with the shapes from NumPy's documentation:
#
# | | axis 0 | axis 1 | axis 2 | axis 3 |
# |---|---|---|---|---|
# | `p` | 8 | 1 | 6 | 1 |
# | `q` |   | 7 | 1 | 5 |
# | `p + q` | 8 | 7 | 6 | 5 |
#
# So $(p + q)_{abcd} = p_{a\,0\,c\,0} + q_{b\,0\,d}$: each element of the result reads the one
# element of each input that its index selects, with index 0 on every size-1 axis.

# %%
p = nima.randn(8, 1, 6, 1)
q = nima.randn(7, 1, 5)
s = p + q
print("p", p.shape, "+ q", q.shape, "->", s.shape)
assert s.shape == (8, 7, 6, 5)
assert np.isclose(s.data[3, 2, 4, 1], p.data[3, 0, 4, 0] + q.data[2, 0, 1])

# %% [markdown]
# The everyday case is adding a bias of shape $(D,)$ to a batch of shape $(N, D)$, or scaling
# rows by a column of shape $(N, 1)$. Shapes that fail rule 2 raise, and the message names the op
# and both shapes:

# %%
X = nima.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (N, D) = (2, 3)
bias = nima.tensor([10.0, 20.0, 30.0])  # (D,)
col = nima.tensor([[1.0], [-1.0]])  # (N, 1)
print((X + bias).tolist())
print((X * col).tolist())
assert (X + bias).tolist() == [[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]
assert (X * col).tolist() == [[1.0, 2.0, 3.0], [-4.0, -5.0, -6.0]]
try:
    X + nima.tensor([1.0, 2.0])  # (2, 3) + (2,): 3 vs 2 on the last axis
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## Elementwise ops and reductions
#
# Elementwise ops (`exp`, `log`, `tanh`, `relu`, `gelu`, `+ - * / **`, comparisons) keep the
# shape. Reductions (`sum`, `mean`, `var`, `max`, `min`, `logsumexp`) take `dim` — an int, a
# tuple, or `None` for every axis — and drop the reduced axes unless `keepdim=True`, which keeps
# them with size 1. `keepdim` is what makes a reduction broadcast straight back against its input,
# as in centring each row, $x_{ij} - \frac{1}{D}\sum_k x_{ik}$:

# %%
x = nima.randn(4, 5)
print("sum(dim=0)", x.sum(dim=0).shape, "| sum(dim=1)", x.sum(dim=1).shape,
      "| sum(dim=1, keepdim=True)", x.sum(dim=1, keepdim=True).shape, "| sum()", x.sum().shape)
centred = x - x.mean(dim=-1, keepdim=True)  # (4, 5) - (4, 1)
print("row means after centring:", centred.mean(dim=-1).data)
assert np.allclose(centred.mean(dim=-1).data, 0.0, atol=1e-6)
assert np.allclose(x.sum(dim=(0, 1)).data, x.data.sum(), atol=1e-5)

# %% [markdown]
# `logsumexp` computes $\log\sum_j e^{x_j}$ as $m + \log\sum_j e^{x_j - m}$ with $m = \max_j x_j$,
# so every exponent is $\le 0$ and nothing overflows, even for logits of $10^3$ where $e^{1000}$
# is `inf` in any float format:

# %%
big = nima.tensor([[1000.0, 1000.0], [0.0, 0.0]])
print("logsumexp:", big.logsumexp(dim=-1).data)
assert np.allclose(big.logsumexp(dim=-1).data, [1000 + np.log(2), np.log(2)])

# %% [markdown]
# ## Indexing
#
# `x[...]` accepts what NumPy accepts:
#
# * **basic indexing** — integers, slices, `None` (a new axis) and `...`: the result is a view;
# * **integer-array indexing** — a list or integer tensor of positions picks those rows (this is
#   an embedding lookup: `table[token_ids]`);
# * **boolean masks** — a bool tensor of the same shape picks the elements where it is true,
#   flattened into 1-D.

# %%
x = nima.arange(12, dtype=nima.float32).reshape(3, 4)
print("x[1]       ", x[1].tolist())
print("x[:, 1:3]  ", x[:, 1:3].tolist())
print("x[..., -1] ", x[..., -1].tolist())
print("x[None].shape", x[None].shape)
assert x[1].tolist() == [4.0, 5.0, 6.0, 7.0] and x[None].shape == (1, 3, 4)
assert np.shares_memory(x[:, 1:3].data, x.data)

ids = nima.tensor([2, 0, 2])
print("x[ids]     ", x[ids].tolist())
assert x[ids].tolist() == [x.data[2].tolist(), x.data[0].tolist(), x.data[2].tolist()]

mask = x > 6.0
print("x[x > 6]   ", x[mask].tolist())
assert x[mask].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]

# %% [markdown]
# Indexing is differentiable: the backward puts each output's gradient back where the element
# came from, and zero elsewhere. A row picked twice receives *both* gradients — for
# $y = \sum_i \text{table}[\text{ids}_i]$, row $r$ of the gradient is the number of times $r$
# occurs in `ids`:

# %%
table = nima.randn(3, 4, requires_grad=True)
table[ids].sum().backward()
print("gradient rows:", table.grad[:, 0])
assert np.allclose(table.grad, np.array([[1.0], [0.0], [2.0]]) * np.ones((3, 4)))

# %% [markdown]
# ## Matrix multiplication
#
# `a @ b` multiplies the last two axes, $(\ldots, n, k) @ (\ldots, k, m) \to (\ldots, n, m)$,
# and **broadcasts the leading (batch) axes** by the rules above. The common case in a
# transformer is a batch of sequences times one weight matrix: $(B, T, C) @ (C, D) \to (B, T, D)$
# — the weight is treated as shape $(1, C, D)$ and reused for every batch element. A 1-D operand
# is a vector: it gets an axis of size 1 added for the product, removed afterwards.

# %%
xs = nima.randn(2, 5, 3)  # (B, T, C)
W = nima.randn(3, 4)  # (C, D)
print("(B, T, C) @ (C, D)           ", (xs @ W).shape)
A = nima.randn(2, 1, 3, 4)
B = nima.randn(5, 4, 6)
print("(2, 1, 3, 4) @ (5, 4, 6)     ", (A @ B).shape)
vec = nima.randn(4)
print("(2, 1, 3, 4) @ (4,)          ", (A @ vec).shape)
assert (xs @ W).shape == (2, 5, 4) and (A @ B).shape == (2, 5, 3, 6)
assert (A @ vec).shape == (2, 1, 3)
assert np.allclose((A @ B).data, np.matmul(A.data, B.data), atol=1e-5)
assert np.allclose((A @ B).data[1, 3], A.data[1, 0] @ B.data[3], atol=1e-5)

# %% [markdown]
# ## Gradients of broadcast inputs: `unbroadcast`
#
# Broadcasting copies an input; every copy feeds the loss, so by the chain rule the input's
# gradient is the **sum of the gradients of its copies**. Take $y = X + b$ with $X$ of shape
# $(N, D)$ and $b$ of shape $(D,)$, and the loss $L = \sum_{ij} w_{ij} y_{ij}$ for fixed weights
# $w$. Each $b_j$ appears in the whole column $y_{:, j}$, so
#
# $$\frac{\partial L}{\partial b_j} = \sum_i \frac{\partial L}{\partial y_{ij}} = \sum_i w_{ij},$$
#
# a vector of shape $(D,)$ — not the $(N, D)$ array $\partial L / \partial y = w$.

# %%
X = nima.randn(3, 4, requires_grad=True)
b = nima.randn(4, requires_grad=True)
w = np.arange(12.0, dtype=np.float32).reshape(3, 4)  # fixed weights
L = ((X + b) * w).sum()
L.backward()
print("b.grad:", b.grad, "shape", b.grad.shape)
print("by hand, w.sum(axis=0):", w.sum(axis=0))
assert b.grad.shape == (4,) and np.allclose(b.grad, w.sum(axis=0))
assert np.allclose(X.grad, w)  # X was not broadcast: its gradient is w itself

# %% [markdown]
# Nima does this once, in the autograd engine, for every op: after an op's backward returns a
# gradient for an input, the engine calls `unbroadcast(grad, input.shape)`, which sums over the
# leading axes broadcasting added and over the axes where the input had size 1 (keeping them, so
# the shape matches). For an input of shape $(3, 1)$ broadcast to $(2, 3, 4)$ that is a sum over
# axes 0 and 2:

# %%
g = np.arange(24.0).reshape(2, 3, 4)
by_hand = g.sum(axis=0).sum(axis=-1, keepdims=True)  # (3, 1)
print("unbroadcast to (3, 1):", unbroadcast(g, (3, 1)).ravel(), "| by hand:", by_hand.ravel())
assert np.array_equal(unbroadcast(g, (3, 1)), by_hand)
assert np.array_equal(unbroadcast(g, (4,)), g.sum(axis=(0, 1)))

# %% [markdown]
# The same rule covers matmul's batch broadcasting. In $Y = X W$ with $X$ of shape $(B, T, C)$
# and $W$ of shape $(C, D)$, each batch element contributes $X_b^\top \bar Y_b$ to $\bar W$, and
# the contributions add up:
#
# $$\bar W = \sum_{b} X_b^\top \bar Y_b = X_{\text{flat}}^\top\, \bar Y_{\text{flat}},$$
#
# with the batch and time axes flattened into rows. With $L = \sum Y$, $\bar Y$ is all ones.

# %%
X = nima.randn(2, 5, 3, requires_grad=True)  # (B, T, C)
W = nima.randn(3, 4, requires_grad=True)  # (C, D)
(X @ W).sum().backward()
Y_bar = np.ones((2, 5, 4), dtype=np.float32)
W_by_hand = X.data.reshape(-1, 3).T @ Y_bar.reshape(-1, 4)  # (C, B*T) @ (B*T, D)
print("W.grad shape", W.grad.shape, "| max |difference| from the hand value:",
      np.abs(W.grad - W_by_hand).max())
assert W.grad.shape == (3, 4) and np.allclose(W.grad, W_by_hand, atol=1e-5)
assert np.allclose(X.grad, Y_bar @ W.data.T, atol=1e-5)  # X-bar = Y-bar W^T, no sum needed

# %% [markdown]
# Next: [tutorial 02](02_autograd_by_hand.md) builds a graph, works its gradient out by hand with
# the chain rule, and checks it three ways.

# %% [markdown]
# ## Summary
#
# - A tensor is a NumPy array plus what autograd needs; views share memory, and strides say
#   where each element lives.
# - Broadcasting aligns shapes at their last axis and stretches axes of size 1; the gradient of a
#   broadcast input is summed back over the copies (`unbroadcast`).
# - Reductions, indexing and matrix products keep PyTorch's names and semantics.
#
# ## Check your understanding
#
# ??? question "Why must the gradient of a broadcast input be a sum?"
#     Broadcasting used the same element several times; each use feeds the loss, and by the
#     chain rule the contributions of every use add up.
#
# ??? question "Two arrays of shapes `(5, 4)` and `(4, 5)`: do they broadcast?"
#     No. Aligned at the last axis, 4 meets 5 and 5 meets 4; neither pair is equal or holds a 1.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_01 -->
