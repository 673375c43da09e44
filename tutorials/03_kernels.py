# %% [markdown]
# # Kernels: numba against NumPy
#
# Under the autograd ops sit *kernels*: functions on plain NumPy arrays that do the arithmetic.
# Every kernel in `nima/kernels/` comes twice, with the same signature — a numba implementation
# (`*_numba`, compiled to machine code, parallel over rows or blocks with `prange`) and a NumPy
# reference (`*_numpy`, short and obviously correct). The dispatchers `nima.kernels.matmul`,
# `softmax_forward`, `cross_entropy_forward`, ... call whichever backend is active.
#
# This tutorial checks the two against each other, looks at the tricks that make the numba
# softmax fast (a polynomial $e^x$) and safe (the $-\infty$ rules), races them, and explains why
# Nima keeps numba's threads and OpenBLAS's apart. Timings depend on the machine, so the
# prose gives none: the script prints them, and saves a chart to
# `tutorials/figures/03_kernels.png`.
#
# With `NIMA_TUTORIAL_QUICK=1` the arrays are smaller and the timings repeat fewer times.

# %%
import os
import time
from pathlib import Path

import numba
import numpy as np
from matplotlib.figure import Figure
from numba import njit
from threadpoolctl import threadpool_info

import nima
import nima.functional as F
from nima import kernels
from nima.kernels import softmax  # the module: softmax.softmax_forward_numba, ...
from nima.kernels.fastexp import fast_exp
from nima.kernels.gemm import matmul_numba, matmul_numpy

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
REPEATS = 3 if QUICK else 15
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
rng = np.random.default_rng(0)
print("quick mode:", QUICK, "| repeats per timing:", REPEATS,
      "| numba threads:", numba.get_num_threads())

# %% [markdown]
# ## The backend switch
#
# The active backend is `"numba"` unless the environment variable `NIMA_KERNELS` says otherwise.
# `nima.kernels.use("numpy")` changes the process default; `with nima.kernels.backend("numpy"):`
# changes it for one block of this thread and restores it after. Everything built on the
# kernels follows — here a softmax through the tensor API, forward and backward, once with each
# backend (the rest of this tutorial runs with numba active):

# %%
def softmax_and_grad():
    x = nima.tensor(np.arange(40.0).reshape(4, 10) / 7, dtype=nima.float32, requires_grad=True)
    y = x.softmax(-1)
    (y * nima.arange(10.0)).sum().backward()
    return y.data, x.grad


print("backend at start:", kernels.current())
kernels.use("numpy")
y_numpy, g_numpy = softmax_and_grad()
kernels.use("numba")
y_numba, g_numba = softmax_and_grad()
with kernels.backend("numpy"):
    print("inside `with kernels.backend('numpy')`:", kernels.current())
print("after it:", kernels.current())
print("max |numba - numpy|: output", np.abs(y_numba - y_numpy).max(),
      "| gradient", np.abs(g_numba - g_numpy).max())
assert kernels.current() == "numba"
assert np.allclose(y_numba, y_numpy, rtol=1e-5, atol=1e-7)
assert np.allclose(g_numba, g_numpy, rtol=1e-4, atol=1e-6)

# %% [markdown]
# ## Softmax, three ways
#
# For a row $x$ with maximum $m$,
#
# $$\operatorname{softmax}(x)_j = \frac{e^{x_j - m}}{\sum_k e^{x_k - m}}.$$
#
# Subtracting $m$ changes nothing mathematically (it cancels) but makes every exponent
# $\le 0$, so nothing overflows. Written with NumPy it is one line, `plain_softmax` below; each
# step (`max`, `-`, `exp`, `sum`, `/`) is a separate pass over memory that writes a full-size
# temporary. The NumPy reference `softmax.softmax_forward_numpy` is the same plus the masking
# rule of the next section. The numba kernel `softmax.softmax_forward_numba` makes one parallel
# task per row, and per row reads it for the maximum, then exponentiates, writes and sums in one
# fused pass, then scales: no temporaries.

# %%
def plain_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


x = rng.standard_normal((64, 1000), dtype=np.float32) * 5  # (rows, classes)
y_plain = plain_softmax(x)
y_ref = softmax.softmax_forward_numpy(x)
y_fast = softmax.softmax_forward_numba(x)
print("max |numba - reference| =", np.abs(y_fast - y_ref).max(),
      "| max |plain - reference| =", np.abs(y_plain - y_ref).max())
print("rows sum to 1:", np.allclose(y_fast.sum(axis=-1), 1, atol=1e-5))
assert np.allclose(y_fast, y_ref, rtol=1e-5, atol=1e-8) and np.allclose(y_plain, y_ref)

# %% [markdown]
# ### A polynomial eˣ
#
# The softmax kernel spends most of its time in `exp`. Without a vector math library for LLVM to
# call (Intel's SVML; Nima does not assume one), `np.exp` inside a numba loop is a call to the C
# library, one element at a time, and the loop cannot be vectorised. So the kernels use
# `fast_exp` (`nima/kernels/fastexp.py`), built only from operations LLVM can vectorise —
# multiply-add, `floor`, a float-to-int conversion, a bit cast, selects — so the loop that calls
# it runs several elements per instruction:
#
# 1. **range reduction**: $n = \lfloor x \log_2 e + \tfrac12 \rfloor$ and
#    $r = x - n \ln 2 \in [-\tfrac{\ln 2}{2}, \tfrac{\ln 2}{2}]$, with $\ln 2$ split in a short
#    high part and a low correction (Cody–Waite) so that $n \ln 2$ is subtracted exactly;
# 2. **polynomial**: $e^r \approx 1 + r + r^2 P(r)$ with the degree-5 minimax polynomial $P$ of
#    Cephes' `expf`;
# 3. **exponent bits**: $2^n$ is the float32 whose bits are $(n + 127) \cdot 2^{23}$, so
#    $e^x = 2^n e^r$ costs one integer multiply-add and a bit cast.
#
# In float64 (gradient checks, not speed) `fast_exp` is plain `math.exp`. Below
# $\ln(\text{FLT\_MIN}) \approx -87.34$ — including $-\infty$ — it returns exactly $0$. Let us
# measure its relative error against float64 `exp` over the range the kernels use ($x \le 0$,
# after subtracting the row maximum). A loop calling it, compiled by numba, is itself a tiny
# kernel:

# %%
@njit(cache=True)
def fast_exp_all(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = fast_exp(x[i])
    return out


grid = np.linspace(-87.0, 0.0, 200_001, dtype=np.float32)
exact = np.exp(grid.astype(np.float64))
fast_error = np.abs(fast_exp_all(grid) / exact - 1).max()
libm_error = np.abs(np.exp(grid) / exact - 1).max()
print(f"max relative error on [-87, 0]: fast_exp {fast_error:.2e} | np.exp (float32) "
      f"{libm_error:.2e} | float32 machine epsilon {np.finfo(np.float32).eps:.2e}")
special = fast_exp_all(np.array([-np.inf, -100.0, 0.0, np.nan], dtype=np.float32))
print("fast_exp(-inf, -100, 0, nan) =", special)
assert fast_error < 2e-7
assert special[0] == 0 and special[1] == 0 and special[2] == 1 and np.isnan(special[3])

# %% [markdown]
# ### −∞ and fully masked rows
#
# Attention masks a position by setting its score to $-\infty$: $e^{-\infty - m} = 0$, so it gets
# probability exactly $0$. But a row that is *entirely* $-\infty$ (a padded query that may attend
# to nothing) has $m = -\infty$ and $x_j - m = -\infty - (-\infty) = \text{NaN}$ — the plain
# NumPy line turns it into a row of NaN, which would then spread through the whole backward
# pass. Nima's kernels (both backends) pick values that keep the graph finite:
#
# | op | fully masked row |
# |---|---|
# | `softmax_forward` | all zeros |
# | `softmax_backward` | zeros |
# | `log_softmax_forward` | all $-\infty$ |
# | `log_softmax_backward` | zeros |
# | `cross_entropy_forward` | loss $+\infty$ (the target is impossible), $0$ if the row is ignored |
# | `cross_entropy_backward` | zeros |

# %%
scores = np.array([[0.0, -np.inf, 1.0, -np.inf],  # two positions masked
                   [-np.inf] * 4], dtype=np.float32)  # fully masked
with np.errstate(invalid="ignore"):
    naive = plain_softmax(scores)
print("plain NumPy:\n", naive)
print("numba kernel:\n", softmax.softmax_forward_numba(scores))
print("log-softmax:\n", softmax.log_softmax_forward_numba(scores))
assert np.isnan(naive[1]).all() and not np.isnan(naive[0]).any()
for name in ("softmax_forward", "log_softmax_forward"):
    fast = getattr(softmax, f"{name}_numba")(scores)
    ref = getattr(softmax, f"{name}_numpy")(scores)
    assert np.allclose(fast, ref, rtol=1e-5, atol=0), name  # the -inf and zeros included
y = softmax.softmax_forward_numba(scores)
assert y[0, 1] == 0 and y[0, 3] == 0 and (y[1] == 0).all()
assert np.isneginf(softmax.log_softmax_forward_numba(scores)[1]).all()
dx = softmax.softmax_backward_numba(y, np.ones_like(y))
assert np.isfinite(dx).all() and (dx[1] == 0).all()

# %% [markdown]
# ## Cross-entropy, fused
#
# For logits $x_i$ (one row per token) and target class $t_i$, the loss is
# $\ell_i = \operatorname{lse}(x_i) - x_{i,t_i}$ with
# $\operatorname{lse}(x) = m + \log\sum_j e^{x_j - m}$, and its gradient is
# $\partial \ell_i / \partial x_{ij} = \operatorname{softmax}(x_i)_j - [j = t_i]$. (With label
# smoothing $\varepsilon$ the target is $(1 - \varepsilon)$ one-hot plus $\varepsilon / C$ on every
# class; the kernels take it as an argument.)
#
# Composed from NumPy, this materialises an $N \times C$ matrix of log-probabilities — for a
# GPT-2 vocabulary, $C = 50257$ floats per token. The fused forward kernel computes only the
# two numbers per row the loss and the backward need, $\ell_i$ and $\operatorname{lse}(x_i)$; the
# backward recomputes $\operatorname{softmax}(x_i)_j = e^{x_{ij} - \operatorname{lse}(x_i)}$ in the
# same pass that writes the gradient. A row whose target is `ignore_index` (padding) gets loss
# and gradient $0$.

# %%
def plain_cross_entropy(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row losses and their gradient (upstream gradient 1 per row), composed from NumPy."""
    logp = x - x.max(axis=-1, keepdims=True)  # (N, C)
    logp -= np.log(np.exp(logp).sum(axis=-1, keepdims=True))
    rows = np.arange(len(t))
    dx = np.exp(logp)
    dx[rows, t] -= 1
    return -logp[rows, t], dx


def fused_cross_entropy(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same through the active backend's kernels."""
    losses, lse = kernels.cross_entropy_forward(x, t)
    return losses, kernels.cross_entropy_backward(x, t, lse, np.ones_like(losses))


logits = rng.standard_normal((32, 500), dtype=np.float32) * 3  # (N, C)
targets = rng.integers(0, 500, size=32)
loss_plain, dx_plain = plain_cross_entropy(logits, targets)
loss_fast, dx_fast = fused_cross_entropy(logits, targets)
print("max |fused - plain|: loss", np.abs(loss_fast - loss_plain).max(),
      "| gradient", np.abs(dx_fast - dx_plain).max())
assert np.allclose(loss_fast, loss_plain, rtol=1e-5, atol=1e-5)
assert np.allclose(dx_fast, dx_plain, atol=1e-6)

targets_padded = targets.copy()
targets_padded[:4] = -100  # the default ignore_index
losses, lse = kernels.cross_entropy_forward(logits, targets_padded, -100, 0.0)
print("losses of ignored rows:", losses[:4], "| mean over the rest:", losses[4:].mean())
assert (losses[:4] == 0).all() and np.allclose(losses[4:], loss_plain[4:], rtol=1e-5)

# %% [markdown]
# `nima.functional.cross_entropy` is the autograd op on top: it averages over the rows that are
# not ignored, as PyTorch does, and its backward is the kernel above.

# %%
x_t = nima.tensor(logits, requires_grad=True)
loss = F.cross_entropy(x_t, nima.tensor(targets_padded))
loss.backward()
print("F.cross_entropy:", loss.item(), "| by hand:", loss_plain[4:].mean())
assert np.isclose(loss.item(), loss_plain[4:].mean(), rtol=1e-5)
n_counted = int((targets_padded != -100).sum())  # the mean divides by these rows only
assert np.allclose(x_t.grad[4:], dx_plain[4:] / n_counted, atol=1e-7)
assert (x_t.grad[:4] == 0).all()

# %% [markdown]
# ## Matrix multiplication
#
# `kernels.matmul` multiplies stacks of matrices, $(B, M, K) @ (B, K, N)$. The numba kernel is
# register-tiled (see `nima/kernels/gemm.py`): it keeps an $8 \times 4$ block of $A$ in
# scalar variables and lets LLVM vectorise the innermost loop, which sweeps along eight rows of
# the result; wide $B$ is cut into contiguous panels. The NumPy reference is
# `np.matmul`, which calls OpenBLAS, whose kernels are hand-written assembly; do not expect to
# beat it everywhere. The numba kernel is there so that, with the numba backend, all the heavy
# work runs in one thread pool — the next section is about why that matters.

# %%
a = rng.standard_normal((6, 33, 20), dtype=np.float32)
b = rng.standard_normal((6, 20, 1600), dtype=np.float32)  # N > 1536: two panels of B
for left, right in [(a, b), (a, b[..., :40]), (a[0].T, a[1])]:  # last: a transposed view
    ours, ref = matmul_numba(left, right), matmul_numpy(left, right)
    print(f"{left.shape} @ {right.shape}: max |numba - numpy| = {np.abs(ours - ref).max():.1e}")
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## Who owns the cores
#
# numba's parallel kernels run on numba's thread pool; `np.matmul` runs on OpenBLAS's. Each pool
# wants every core, and after a call OpenBLAS's workers keep spinning for a while, so a numba
# kernel that starts right after a NumPy product waits for them to let go. Nima's rule
# (`nima/kernels/threads.py`) is to keep the pools apart rather than reconfigure either: with the
# numba backend every product Nima computes runs in its own kernel, never in OpenBLAS, and with
# the numpy backend numba is idle. Calling Nima changes neither pool — you can watch it — and a
# program that mixes its own NumPy products with numba kernels limits OpenBLAS itself, for a block
# of code, with `nima.runtime.using(blas_threads=1)`:

# %%
def blas_threads() -> int:
    """Threads of NumPy's OpenBLAS (numba's compiler may load SciPy's too; Nima never calls it)."""
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    numpy_blas = [info for info in blas if "numpy" in info["filepath"]] or blas
    return numpy_blas[0]["num_threads"]


before = blas_threads()
kernels.softmax_forward(x)  # a numba-backend call
with kernels.backend("numpy"):
    kernels.softmax_forward(x)
with nima.runtime.using(blas_threads=1):
    inside = blas_threads()
print("OpenBLAS threads: before", before, "| after Nima's kernels", blas_threads(),
      "| inside runtime.using(blas_threads=1)", inside, "| after it", blas_threads())
assert blas_threads() == before and inside == 1

# %% [markdown]
# The cost it avoids is easy to measure: a small NumPy product followed by a numba softmax (the
# pattern of a training step that mixed the two), with OpenBLAS at its default thread count and
# at one thread. The "extra" column is what the pair costs beyond its two parts timed alone.
# `benchmarks/bench_threads.py` measures this in more detail.

# %%
def median_ms(fn, *args, repeats: int = REPEATS) -> float:
    """Median wall time of `fn(*args)` in ms, after one untimed call (which compiles, or loads
    numba's on-disk cache, and warms the caches)."""
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


left, right = rng.standard_normal((2, 256, 256), dtype=np.float32)
att = rng.standard_normal((48, 64, 64), dtype=np.float32)  # (B * heads, T, T) scores


def product_then_softmax():
    np.matmul(left, right)
    softmax.softmax_forward_numba(att)


print(f"{'OpenBLAS threads':>16} {'matmul':>9} {'softmax':>9} {'pair':>9} {'extra':>9}")
for n_threads in sorted({before, 1}, reverse=True):
    with nima.runtime.using(blas_threads=n_threads):
        alone = (median_ms(np.matmul, left, right), median_ms(softmax.softmax_forward_numba, att))
        pair = median_ms(product_then_softmax)
    print(f"{n_threads:>16} {alone[0]:>9.3f} {alone[1]:>9.3f} {pair:>9.3f} "
          f"{pair - sum(alone):>+9.3f}")

# %% [markdown]
# ## The race
#
# Now the kernels against their NumPy references, at the shapes a small GPT meets: the attention
# softmax over $(B \cdot \text{heads} \cdot T, T)$ scores, a softmax and a cross-entropy over a
# GPT-2-sized vocabulary, and the products of a linear layer, of attention, and of an MLP's
# widening layer. Each time is the median of several runs, after one untimed call; each backend
# is timed through the dispatcher inside `kernels.backend(...)`.
#
# Run it on an otherwise idle machine. A parallel kernel is done only when its slowest thread
# is, so while another process holds one of the cores, every numba call waits for the operating
# system to hand that core back — small kernels suffer most, and their times can grow by orders
# of magnitude. Running the script twice shows how steady your numbers are.

# %%
if QUICK:
    T, rows, tokens = 64, 1024, 16  # context length, attention rows, tokens per batch
else:
    T, rows, tokens = 256, 16384, 256
vocab, C = 50257, 768  # GPT-2's vocabulary and width

cases = {}  # name -> {implementation: milliseconds}


def race(name: str, dispatched, args: tuple, plain=None) -> None:
    times = {}
    if plain is not None:
        times["plain NumPy"] = median_ms(plain, *args)
    for backend in ("numpy", "numba"):
        with kernels.backend(backend):
            times[backend] = median_ms(dispatched, *args)
    cases[name] = times


scores = rng.standard_normal((rows, T), dtype=np.float32)  # (B*heads*T, T)
vocab_logits = rng.standard_normal((tokens, vocab), dtype=np.float32)  # (B*T, V)
vocab_targets = rng.integers(0, vocab, size=tokens)
probs = softmax.softmax_forward_numpy(scores)
grad_probs = rng.standard_normal(probs.shape, dtype=np.float32)
x_lin = rng.standard_normal((tokens * 8, C), dtype=np.float32)  # (B*T, C)
w_lin = rng.standard_normal((C, C), dtype=np.float32)  # (C, C)
q = rng.standard_normal((48, T, 64), dtype=np.float32)  # (B*heads, T, head size)
k_t = rng.standard_normal((48, 64, T), dtype=np.float32)  # (B*heads, head size, T)
w_wide = rng.standard_normal((C, 4 * C), dtype=np.float32)  # (C, 4C): N > 256

race(f"softmax {scores.shape}", kernels.softmax_forward, (scores,), plain_softmax)
race(f"softmax {vocab_logits.shape}", kernels.softmax_forward, (vocab_logits,), plain_softmax)
race(f"softmax backward {probs.shape}", kernels.softmax_backward, (probs, grad_probs),
     lambda y, dy: y * (dy - (dy * y).sum(axis=-1, keepdims=True)))
race(f"cross-entropy fwd+bwd {vocab_logits.shape}", fused_cross_entropy,
     (vocab_logits, vocab_targets), plain_cross_entropy)
race(f"matmul {x_lin.shape}@{w_lin.shape}", kernels.matmul, (x_lin, w_lin))
race(f"matmul {q.shape}@{k_t.shape}", kernels.matmul, (q, k_t))
race(f"matmul {x_lin.shape}@{w_wide.shape}", kernels.matmul, (x_lin, w_wide))

print(f"{'case':<48} {'plain NumPy':>11} {'NumPy ref':>10} {'numba':>9} {'ref/numba':>10}")
for name, t in cases.items():
    plain_ms = f"{t['plain NumPy']:.3f}" if "plain NumPy" in t else "-"
    print(f"{name:<48} {plain_ms:>11} {t['numpy']:>10.3f} {t['numba']:>9.3f} "
          f"{t['numpy'] / t['numba']:>9.2f}x")

# %% [markdown]
# Times are in milliseconds; `ref/numba` above 1 means the numba kernel is faster than the NumPy
# reference. Where a fused row kernel (softmax, cross-entropy) comes out ahead, it is because it
# makes one to three passes over each row where the NumPy version makes five (max, subtract,
# exp, sum, divide), each allocating a full-size temporary, and because it uses both cores;
# where it does not — small arrays — the fixed cost of starting a parallel loop dominates.
# Matrix products are OpenBLAS's home ground; how close the register-tiled kernel gets depends
# on the shape. The chart shows the same ratios:

# %%
FIGURES.mkdir(parents=True, exist_ok=True)
names = list(cases)
positions = np.arange(len(names))
fig = Figure(figsize=(9, 0.55 * len(names) + 1.5))
ax = fig.subplots()
speedups = [cases[n]["numpy"] / cases[n]["numba"] for n in names]
plain_speedups = [cases[n]["numpy"] / cases[n].get("plain NumPy", np.nan) for n in names]
ax.barh(positions - 0.2, speedups, height=0.4, label="numba kernel")
ax.barh(positions + 0.2, plain_speedups, height=0.4, label="plain NumPy composition")
ax.axvline(1.0, color="black", linewidth=0.8)
ax.set_yticks(positions, names, fontsize=8)
ax.invert_yaxis()
ax.set_xscale("log")
ax.set_xlabel("speed relative to the NumPy reference (higher is faster; log scale)")
ax.set_title(f"Nima kernels on {os.cpu_count()} cores (median of {REPEATS} runs)")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
figure_path = FIGURES / "03_kernels.png"
fig.savefig(figure_path, dpi=120)
print("saved", figure_path)
assert figure_path.stat().st_size > 0

# %% [markdown]
# ## Debugging a kernel
#
# A numba kernel is ordinary Python under `@njit`. Run any script with `NUMBA_DISABLE_JIT=1` and
# every kernel (and `fast_exp`, bit cast included) runs as plain, slow Python — so `print`,
# breakpoints and tracebacks work inside it. And since every kernel has a NumPy reference,
# `with nima.kernels.backend("numpy"):` around a failing computation tells you at once whether
# the kernel is to blame.

# %% [markdown]
# ## Summary
#
# - Each kernel has a numba implementation and a NumPy reference with the same signature;
#   `nima.kernels.backend("numpy")` switches between them.
# - Fused kernels read a row once and keep it in cache; a polynomial exp lets the loops
#   vectorise; masked rows give zeros instead of NaN.
# - Who owns the cores decides small kernels' speed on a shared machine; `NUMBA_DISABLE_JIT=1`
#   turns every kernel into debuggable Python.
#
# ## Check your understanding
#
# ??? question "Why does the log-softmax backward need no extra pass to detect a fully masked row?"
#     It recomputes $p = e^{\ell}$ while writing the gradient and sums $p$ in the same pass: the
#     sum is 1 for a normal row and 0 for a fully masked one.
#
# ??? question "Why is a polynomial $e^x$ faster than `math.exp` inside a numba loop here?"
#     Without a vector math library, `math.exp` stays a scalar call and the loop cannot
#     vectorise; multiply-adds, a floor and a bit cast can.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_03 -->
