# %% [markdown]
# # Autograd by hand
#
# Reverse-mode automatic differentiation is the chain rule, applied from the loss backwards, one
# op at a time. This tutorial does it by hand for a small graph, then checks the result against
# `backward()` and against `nima.gradcheck` (central differences). Then it writes a new op as a
# `Function` subclass, and ends with the switches that control the graph: `no_grad`, `detach`,
# gradient accumulation and `retain_graph`.
#
# Notation: for a scalar loss $L$ and any tensor $t$ in the graph, $\bar t = \partial L /
# \partial t$ (same shape as $t$). Everything here runs in float64; section 3 explains why.

# %%
import numpy as np

import nima
from nima.autograd import Context, Function

nima.manual_seed(0)

# %% [markdown]
# ## 1. A scalar graph: f(x, y) = tanh(xy + y²)
#
# Name every intermediate result; that is the graph autograd records:
#
# $$u = xy, \qquad v = y^2, \qquad s = u + v, \qquad f = \tanh s.$$
#
# Going backwards from $\bar f = 1$, each step multiplies by one local derivative, and a variable
# used twice ($y$ feeds both $u$ and $v$) *adds* the gradients from its uses:
#
# $$\bar s = \bar f\,(1 - f^2), \qquad \bar u = \bar s, \qquad \bar v = \bar s,$$
#
# $$\bar x = \bar u\, y, \qquad \bar y = \bar u\, x + \bar v \cdot 2y.$$

# %%
x = nima.tensor(0.7, dtype=nima.float64, requires_grad=True)
y = nima.tensor(-0.4, dtype=nima.float64, requires_grad=True)
u = x * y
v = y**2
s = (u + v).retain_grad()  # keep .grad for this intermediate too (leaves keep it by default)
f = s.tanh()
print("graph: f was made by", f)

# by hand, with plain floats
xv, yv = 0.7, -0.4
fv = np.tanh(xv * yv + yv**2)
s_bar = 1.0 * (1 - fv**2)
x_bar = s_bar * yv
y_bar = s_bar * xv + s_bar * 2 * yv

f.backward()
print(f"s-bar: hand {s_bar:.12f}  autograd {s.grad:.12f}")
print(f"x-bar: hand {x_bar:.12f}  autograd {x.grad:.12f}")
print(f"y-bar: hand {y_bar:.12f}  autograd {y.grad:.12f}")
assert np.isclose(s.grad, s_bar) and np.isclose(x.grad, x_bar) and np.isclose(y.grad, y_bar)

# %% [markdown]
# `f.backward()` did the same thing: it visits a node only after every op that consumed it has
# sent its gradient back, then calls the node's `backward` once, with the *sum* of those
# gradients.
#
# ## 2. Tensors: vector–Jacobian products
#
# With tensors, the local derivative of an op $y = g(x)$ is a Jacobian $J = \partial y /
# \partial x$ — for a $(64, 64)$ input to an elementwise op, a $4096 \times 4096$ matrix that is
# zero off the diagonal. Autograd never builds it. Each op's backward computes the
# **vector–Jacobian product** $\bar x = \bar y\, J$ directly, in the shape of $x$:
#
# | op | forward | backward |
# |---|---|---|
# | matmul | $Z = XW$ | $\bar X = \bar Z W^\top$, $\quad \bar W = X^\top \bar Z$ |
# | bias | $Z = A + b$ ($b$ broadcast) | $\bar A = \bar Z$, $\quad \bar b = \sum_i \bar Z_{i,:}$ |
# | tanh | $H = \tanh Z$ | $\bar Z = \bar H \odot (1 - H^2)$ |
# | mean squared error | $L = \frac{1}{NK}\sum (P - Y)^2$ | $\bar P = \frac{2}{NK}(P - Y)$ |
#
# A two-layer network on a batch $X$ of shape $(N, D)$ chains them:
#
# $$Z_1 = X W_1 + b_1, \quad H = \tanh Z_1, \quad P = H W_2 + b_2, \quad
# L = \tfrac{1}{NK} \textstyle\sum (P - Y)^2.$$

# %%
N, D, Hdim, K = 8, 5, 16, 3
X = nima.randn(N, D, dtype=nima.float64)
Y = nima.randn(N, K, dtype=nima.float64)
W1 = nima.randn(D, Hdim, dtype=nima.float64, requires_grad=True)
b1 = nima.zeros(Hdim, dtype=nima.float64, requires_grad=True)
W2 = nima.randn(Hdim, K, dtype=nima.float64, requires_grad=True)
b2 = nima.zeros(K, dtype=nima.float64, requires_grad=True)
params = [W1, b1, W2, b2]


def mlp_loss(X, W1, b1, W2, b2):
    H = (X @ W1 + b1).tanh()  # (N, H)
    P = H @ W2 + b2  # (N, K)
    return ((P - Y) ** 2).mean()  # ()


loss = mlp_loss(X, *params)
loss.backward()
print("loss", loss.item())

# %% [markdown]
# The same backward pass by hand, in NumPy, line by line from the table:

# %%
Xa, W1a, b1a, W2a, b2a = X.data, W1.data, b1.data, W2.data, b2.data
H = np.tanh(Xa @ W1a + b1a)  # forward again, keeping the intermediates
P = H @ W2a + b2a

P_bar = 2 * (P - Y.data) / P.size  # (N, K)
W2_bar = H.T @ P_bar  # (H, K)
b2_bar = P_bar.sum(axis=0)  # (K,)
H_bar = P_bar @ W2a.T  # (N, H)
Z1_bar = H_bar * (1 - H**2)  # (N, H)
W1_bar = Xa.T @ Z1_bar  # (D, H)
b1_bar = Z1_bar.sum(axis=0)  # (H,)

for name, p, by_hand in [("W1", W1, W1_bar), ("b1", b1, b1_bar), ("W2", W2, W2_bar),
                         ("b2", b2, b2_bar)]:
    difference = np.abs(p.grad - by_hand).max()
    print(f"{name}: shape {p.grad.shape}, max |autograd - hand| = {difference:.1e}")
    assert np.allclose(p.grad, by_hand, rtol=1e-10, atol=1e-12)

# %% [markdown]
# ## 3. Checking against numbers: `nima.gradcheck`
#
# Both of the above could share a mistake in the derivation. A check that needs no calculus is
# the **central difference**:
#
# $$\frac{\partial L}{\partial \theta_i} \approx \frac{L(\theta + \epsilon e_i) -
# L(\theta - \epsilon e_i)}{2\epsilon}.$$
#
# Taylor-expanding shows its truncation error is $\tfrac{\epsilon^2}{6} L'''$, so a smaller
# $\epsilon$ is better — until rounding takes over: $L$ is only known to a relative precision
# $\delta$, and dividing by $2\epsilon$ amplifies that to about $\delta |L| / \epsilon$. float32
# has $\delta \approx 6 \times 10^{-8}$, float64 $\delta \approx 1.1 \times 10^{-16}$. Here is
# the error of the central difference of $\tanh$ at $0.5$ in both precisions:

# %%
def central_difference_error(dtype, eps):
    x0, h = dtype(0.5), dtype(eps)
    estimate = (np.tanh(x0 + h) - np.tanh(x0 - h)) / (dtype(2) * h)
    exact = 1 - np.tanh(0.5) ** 2
    return abs(float(estimate) - exact)


print(f"{'eps':>8} {'float32 error':>15} {'float64 error':>15}")
errors = {}
for eps in [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8]:
    errors[eps] = (central_difference_error(np.float32, eps),
                   central_difference_error(np.float64, eps))
    print(f"{eps:8.0e} {errors[eps][0]:15.2e} {errors[eps][1]:15.2e}")
assert errors[1e-5][1] < errors[1e-3][1] < errors[1e-2][1]  # float64: smaller eps, better...
assert errors[1e-8][1] > 10 * errors[1e-5][1]  # ...down to about 1e-5, then rounding wins
assert errors[1e-6][0] > errors[1e-2][0]  # float32: rounding wins at small eps
assert errors[1e-6][0] > 1e3 * errors[1e-6][1]

# %% [markdown]
# Read the table down each column. In float64 the error falls as $\epsilon$ shrinks, to
# $10^{-11}$ or less at $\epsilon = 10^{-5}$ to $10^{-6}$, where the truncation term
# ($\approx 10^{-11}$ at $10^{-5}$) and the rounding bound ($\approx 10^{-11}$ at $10^{-5}$,
# $10^{-10}$ at $10^{-6}$) meet; at $10^{-8}$ rounding has taken over. In float32 the same
# turn comes much earlier: at $\epsilon = 10^{-6}$ it is worse than at $10^{-2}$, and far too
# coarse to catch a subtly wrong gradient. So `nima.gradcheck(fn, inputs)` insists on float64
# inputs, perturbs each element of every input that requires grad by $\epsilon = 10^{-5}$, and
# compares with `backward()`, elementwise, within
# $|g_{\text{autograd}} - g_{\text{numeric}}| \le \text{atol} + \text{rtol}\,|g_{\text{numeric}}|$,
# with $\text{rtol} = 10^{-6}$ and $\text{atol} = 10^{-8}$: tight enough that a backward wrong
# by a tenth of a percent fails. It returns `True` or raises `GradcheckError` naming the worst
# element.

# %%
assert nima.gradcheck(mlp_loss, [X, *params])
print("gradcheck of the MLP: passed")
try:
    nima.gradcheck(lambda a: a.tanh().sum(), [nima.randn(3, requires_grad=True)])
except TypeError as e:
    print("TypeError:", e)

# %% [markdown]
# ## 4. A new op: the `Function` subclass
#
# Every op in Nima is a `Function` with two static methods side by side: `forward(ctx, ...)`
# works on plain NumPy arrays and saves what the backward needs on `ctx`; `backward(ctx, grad)`
# receives $\bar y$ and returns $\bar x$, one gradient per input (`None` for non-tensor inputs).
# `Function.apply` wraps the arrays back into tensors and records the node.
#
# As an example, **softsign**, a smooth squashing function like $\tanh$ but with polynomial tails:
#
# $$y = \frac{x}{1 + |x|}, \qquad \frac{dy}{dx} = \frac{(1 + |x|) - x \operatorname{sign}(x)}
# {(1 + |x|)^2} = \frac{1}{(1 + |x|)^2}, \qquad \bar x = \frac{\bar y}{(1 + |x|)^2}.$$

# %%
class Softsign(Function):
    r"""$y = x / (1 + |x|)$; $\bar x = \bar y / (1 + |x|)^2$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        denominator = 1 + np.abs(x)
        ctx.save_for_backward(denominator)
        return x / denominator

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (denominator,) = ctx.saved_tensors
        return grad / denominator**2


def softsign(x: nima.Tensor) -> nima.Tensor:
    return Softsign.apply(x)


z = nima.tensor([-3.0, -0.5, 0.0, 2.0], dtype=nima.float64, requires_grad=True)
print("softsign:", softsign(z).data)
assert np.allclose(softsign(z).data, [-0.75, -1 / 3, 0.0, 2 / 3])
assert nima.gradcheck(softsign, [nima.randn(4, 5, dtype=nima.float64, requires_grad=True)])
print("gradcheck of Softsign: passed")

# %% [markdown]
# The check has teeth. Forget the square in the backward — an easy slip — and it fails, naming
# the element that is furthest off:

# %%
class SoftsignWrongBackward(Softsign):
    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (denominator,) = ctx.saved_tensors
        return grad / denominator  # wrong: should be denominator**2


try:
    nima.gradcheck(SoftsignWrongBackward.apply,
                   [nima.randn(4, 5, dtype=nima.float64, requires_grad=True)])
    raise AssertionError("gradcheck should have failed")
except nima.GradcheckError as e:
    print("GradcheckError:", e)

# %% [markdown]
# ## 5. Controlling the graph
#
# **`no_grad`.** Inside `with nima.no_grad():` (or under `@nima.no_grad()`) ops record nothing:
# the results do not require grad and hold no graph. Use it for evaluation and for optimizer
# updates, which must not become part of the next step's graph.

# %%
w = nima.randn(3, dtype=nima.float64, requires_grad=True)
with nima.no_grad():
    y_eval = w * 2
print("inside no_grad: requires_grad =", y_eval.requires_grad, "| is_leaf =", y_eval.is_leaf)
assert not y_eval.requires_grad and y_eval.is_leaf and nima.is_grad_enabled()

# %% [markdown]
# **`detach`.** `t.detach()` is the same values — sharing memory — cut from the graph, so it is
# a constant to autograd. In $L = \sum_i w_i \cdot \text{detach}(w_i)$ only the first factor is
# differentiated: $\bar w = \text{detach}(w) = w$, where $\sum_i w_i^2$ would give $2w$.

# %%
(w * w.detach()).sum().backward()
print("grad through w * w.detach():", w.grad, "| w:", w.data)
assert np.allclose(w.grad, w.data) and np.shares_memory(w.detach().data, w.data)

# %% [markdown]
# **Accumulation.** `backward()` *adds* into `.grad` — that is what lets a leaf used in several
# losses (or several micro-batches) collect all of its gradient. So a training loop resets it
# before each step (`w.grad = None`, or `module.zero_grad()`). Continuing from the cell above,
# where $\bar w = w$ already:

# %%
(w * w.detach()).sum().backward()
print("after a second graph's backward:", w.grad)
assert np.allclose(w.grad, 2 * w.data)
w.grad = None

# %% [markdown]
# **`retain_graph` and the second backward.** To save memory, `backward()` frees the arrays each
# node saved for its backward as soon as it has used them. A second `backward()` through the
# same graph therefore raises — unless the first call passed `retain_graph=True`, which keeps
# them (and the gradients then add up, as above).

# %%
L = (w.tanh() * 3).sum()
L.backward(retain_graph=True)
first = w.grad.copy()
L.backward()  # allowed: the first call kept the graph; this one frees it
assert np.allclose(w.grad, 2 * first)
try:
    L.backward()
    raise AssertionError("a third backward should have raised")
except RuntimeError as e:
    print("RuntimeError:", e)

# %% [markdown]
# **Non-scalar outputs.** `backward()` implies $\bar y = 1$ only for a scalar. For a tensor
# output, pass the vector of the vector–Jacobian product yourself, `y.backward(v)`, and the leaves
# receive $v^\top J$ — here, for the elementwise $y = w^2$, $\bar w = v \odot 2w$.

# %%
w.grad = None
y_vec = w**2
try:
    y_vec.backward()
except RuntimeError as e:
    print("RuntimeError:", e)
v = np.array([1.0, 10.0, 100.0])
y_vec.backward(v)
print("v^T J =", w.grad, "| v * 2w =", v * 2 * w.data)
assert np.allclose(w.grad, v * 2 * w.data)

# %% [markdown]
# Next: [tutorial 03](03_kernels.md) looks under the ops, at the numba kernels that compute
# softmax, cross-entropy and matmul, and races them against NumPy.

# %% [markdown]
# ## Summary
#
# - The chain rule, applied node by node from the output back, gives every input's gradient
#   in one backward pass.
# - A backward returns vector–Jacobian products, never Jacobians; `nima.gradcheck` checks them
#   against central differences in float64.
# - A new op is a `Function` with `forward` and `backward` side by side; `no_grad`, `detach`
#   and `retain_graph` control what is recorded.
#
# ## Check your understanding
#
# ??? question "For $f = \tanh(xy + y^2)$, why does $\partial f/\partial y$ have two terms?"
#     $y$ enters $u = xy + y^2$ twice: $\partial u / \partial y = x + 2y$, multiplied by
#     $\tanh'(u) = 1 - \tanh^2 u$.
#
# ??? question "Why must `gradcheck`'s inputs be float64?"
#     The rounding error of a central difference is about $\delta |f| / \epsilon$; with
#     float32's $\delta$ it would be near $10^{-2}$, larger than the errors the check hunts.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_02 -->
