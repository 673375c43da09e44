# %% [markdown]
# # Optimizers and schedules compared
#
# The same gradients, four ways to turn them into steps: plain SGD, SGD with momentum, Adam and
# AdamW, raced on the Rosenbrock function, a classic test where the minimum sits at the end of
# a long, curved, nearly flat valley. Then the four learning-rate schedules of `nima.optim`
# plotted side by side, gradient clipping, and gradient accumulation checked against one big
# batch. Figures go to `tutorials/figures/` (`09_rosenbrock.png`, `09_schedules.png`).
#
# The reference page is [Optimizers and training tools](../optim.md).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nima
from nima import nn
from nima.nn import Parameter
from nima.optim import (
    SGD,
    Adam,
    AdamW,
    Constant,
    Linear,
    Noam,
    WarmupCosine,
    clip_grad_norm_,
)

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
FIGURES.mkdir(parents=True, exist_ok=True)
STEPS = 1500 if QUICK else 3000
nima.manual_seed(0)

# %% [markdown]
# ## 1. The Rosenbrock valley
#
# $$f(x, y) = (1 - x)^2 + 100\,(y - x^2)^2,$$
#
# minimal ($f = 0$) at $(1, 1)$. Across the valley the function is steep (the factor 100),
# along it nearly flat: a learning rate small enough not to bounce off the walls crawls along
# the floor. The function is written with Nima ops, so `backward()` gives its gradient; check
# it against the derivative by hand,
# $\nabla f = \bigl(-2(1-x) - 400x(y - x^2),\; 200(y - x^2)\bigr)$:

# %%
def rosenbrock(p: nima.Tensor) -> nima.Tensor:
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


START = np.array([-1.5, 2.0])
p = Parameter(START.copy())
rosenbrock(p).backward()
x0, y0 = START
by_hand = [-2 * (1 - x0) - 400 * x0 * (y0 - x0**2), 200 * (y0 - x0**2)]
print("autograd:", p.grad, " by hand:", by_hand)
assert np.allclose(p.grad, by_hand)

# %% [markdown]
# ## 2. Four optimizers, one valley
#
# Each starts at $(-1.5, 2)$ and takes the same number of steps. The learning rates are about
# the largest each method tolerates here: plain SGD diverges above a few $10^{-3}$ (the walls),
# Adam's step is $\approx \eta$ per coordinate whatever the gradient, so it can use a larger
# one. AdamW adds decoupled weight decay, $\theta \leftarrow \theta(1 - \eta\lambda)$, which
# pulls toward the origin: on a problem whose answer is not near 0 it *moves the minimum* —
# the price of regularisation, visible here because there is no data to fit, only $f$.

# %%
OPTIMIZERS = {
    "SGD (lr 1e-3)": lambda q: SGD([q], lr=1e-3),
    "SGD + momentum 0.9 (lr 1e-3)": lambda q: SGD([q], lr=1e-3, momentum=0.9),
    "Adam (lr 2e-2)": lambda q: Adam([q], lr=2e-2),
    "AdamW (lr 2e-2, decay 0.1)": lambda q: AdamW([q], lr=2e-2, weight_decay=0.1),
}
runs = {}
for name, make in OPTIMIZERS.items():
    q = Parameter(START.copy())
    opt = make(q)
    losses, path = [], [q.data.copy()]
    for _ in range(STEPS):
        opt.zero_grad()
        loss = rosenbrock(q)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
        path.append(q.data.copy())
    runs[name] = (np.array(losses), np.array(path))
    print(f"{name:30s} f = {losses[-1]:.2e} at ({q.data[0]:+.4f}, {q.data[1]:+.4f})")

final = {name: losses[-1] for name, (losses, _) in runs.items()}
assert final["SGD + momentum 0.9 (lr 1e-3)"] < final["SGD (lr 1e-3)"] / 10  # momentum pays
assert final["Adam (lr 2e-2)"] < final["SGD (lr 1e-3)"]
assert final["AdamW (lr 2e-2, decay 0.1)"] > final["Adam (lr 2e-2)"]  # decay shifts the optimum

# %%
fig = Figure(figsize=(12, 4.6), layout="constrained")
ax_loss, ax_path = fig.subplots(1, 2)
for name, (losses, path) in runs.items():
    ax_loss.semilogy(losses, label=name)
    ax_path.plot(path[:, 0], path[:, 1], lw=1.2, alpha=0.8, label=name)
ax_loss.set(title="loss $f$ per step", xlabel="step", ylabel="$f(x, y)$")
ax_loss.legend()
gx, gy = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
levels = np.logspace(-1, 3.5, 15)
ax_path.contour(gx, gy, (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2, levels=levels, colors="0.8")
ax_path.plot([1], [1], "k*", ms=12)
ax_path.set(title="paths from $(-1.5, 2)$ to the minimum $\\star$", xlabel="$x$", ylabel="$y$")
fig.savefig(FIGURES / "09_rosenbrock.png", dpi=100)

# %% [markdown]
# Plain SGD bounces across the valley and then creeps along it; momentum accumulates the small,
# consistent along-valley component and gets there; Adam normalises each coordinate's step and
# travels the valley at about $\eta$ per step; AdamW stops short, where the pull of the decay
# balances the gradient.
#
# ## 3. Learning-rate schedules
#
# A schedule sets the learning rate from the step count. Every schedule has a pure
# `lr_at(step)`, so its whole curve can be drawn without training. Below: nanoGPT's
# Shakespeare settings for the warmup-cosine ($\eta = 10^{-3}$, 100 warmup steps, cosine to
# $10^{-4}$ at step 2000), a linear decay to zero, a constant, and the Transformer paper's Noam
# schedule (base rate 1 as a factor, $d_\text{model} = 128$, 100 warmup steps).

# %%
def curve(make_schedule, lr, steps=2200):
    """`lr_at(t)` for t = 0 .. steps-1 of a schedule on a throwaway optimizer."""
    schedule = make_schedule(SGD([Parameter(np.zeros(1))], lr=lr))
    return np.array([schedule.lr_at(t) for t in range(steps)])


schedules = {
    "warmup + cosine": curve(lambda o: WarmupCosine(o, warmup=100, total=2000, min_lr=1e-4), 1e-3),
    "linear to 0": curve(lambda o: Linear(o, total=2000), 1e-3),
    "constant": curve(Constant, 1e-3),
    "Noam": curve(lambda o: Noam(o, d_model=128, warmup=100), 1.0),
}
cos = schedules["warmup + cosine"]
print("warmup-cosine at 0, 100, 1050, 2000, 2100:", cos[[0, 100, 1050, 2000, 2100]])
assert np.isclose(cos[0], 1e-3 / 101) and np.isclose(cos[100], 1e-3)
assert np.isclose(cos[1050], 5.5e-4) and np.isclose(cos[2000], 1e-4) and cos[2100] == 1e-4
noam = schedules["Noam"]
assert np.argmax(noam) == 99 and np.isclose(noam.max(), 1 / np.sqrt(128 * 100))  # s = w

fig = Figure(figsize=(11, 4), layout="constrained")
ax_lin, ax_noam = fig.subplots(1, 2)
for name in ("warmup + cosine", "linear to 0", "constant"):
    ax_lin.plot(schedules[name], label=name)
ax_lin.set(title="base rate $10^{-3}$", xlabel="step", ylabel="learning rate")
ax_lin.legend()
ax_noam.plot(noam, color="C3")
ax_noam.set(title="Noam: $d^{-1/2}\\min(s^{-1/2}, s\\,w^{-3/2})$", xlabel="step")
fig.savefig(FIGURES / "09_schedules.png", dpi=100)

# %% [markdown]
# ## 4. Gradient clipping
#
# `clip_grad_norm_` takes one norm over *all* gradients and, when it exceeds `max_norm`, scales
# them all by `max_norm / norm`: the step's direction is kept, only its length is capped. It
# returns the norm before clipping.

# %%
a, b = Parameter(np.zeros(3)), Parameter(np.zeros(2))
a.grad, b.grad = np.array([3.0, 0.0, 4.0]), np.array([0.0, 12.0])  # total norm 13
before = np.concatenate([a.grad, b.grad])
norm = clip_grad_norm_([a, b], max_norm=1.0)
after = np.concatenate([a.grad, b.grad])
print(f"norm before {norm}, after {np.linalg.norm(after):.6f}")
assert norm == 13.0 and np.isclose(np.linalg.norm(after), 1.0)
assert np.allclose(after, before / 13)  # same direction
assert clip_grad_norm_([a, b], max_norm=5.0) <= 5.0 and np.allclose(after, np.r_[a.grad, b.grad])

# %% [markdown]
# ## 5. Gradient accumulation
#
# Split a batch of 16 into 4 micro-batches of 4; scale each micro-batch's mean loss by $1/4$
# and let `backward()` add the gradients up in `.grad`. The sum is the gradient of the mean
# loss over the whole batch:
#
# $$\nabla \frac{1}{16}\sum_{i=1}^{16} \ell_i = \sum_{k=1}^{4} \frac14 \nabla
# \frac{1}{4}\sum_{i \in \text{micro-batch } k} \ell_i .$$

# %%
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((16, 5)), rng.standard_normal((16, 1))
model = nn.Linear(5, 1).double()


def mse(xb, yb):
    return ((model(nima.tensor(xb)) - nima.tensor(yb)) ** 2).mean()


model.zero_grad()
mse(X, Y).backward()
full = [p.grad.copy() for p in model.parameters()]
model.zero_grad()
for k in range(4):
    (mse(X[4 * k: 4 * k + 4], Y[4 * k: 4 * k + 4]) / 4).backward()  # adds into .grad
accumulated = [p.grad for p in model.parameters()]
for g_full, g_acc in zip(full, accumulated, strict=True):
    assert np.allclose(g_full, g_acc, rtol=1e-12, atol=1e-14)
print("4 micro-batches x (loss / 4) == one batch of 16: gradients agree")

# %% [markdown]
# Forgetting the $1/4$ gives four times the gradient: SGD would take a step four times too
# long, while Adam would barely notice (it divides by the gradient's own scale) — which is
# how the bug hides.

# %% [markdown]
# ## Summary
#
# - On the Rosenbrock valley, plain SGD crawls, momentum accumulates the consistent
#   direction, Adam steps about $\eta$ per coordinate, and AdamW's decay shifts the optimum.
# - Schedules are functions of the step: warm-up then cosine, linear, constant, Noam.
# - Clipping caps one global norm; accumulation divides each micro-batch's loss by their
#   number.
#
# ## Check your understanding
#
# ??? question "Why does momentum help in a long narrow valley?"
#     The small along-valley component of the gradient points the same way step after step and
#     builds up in the buffer, while the across-valley components alternate and cancel.
#
# ??? question "Why does Nesterov's step use $g + \mu b$?"
#     It steps as if it had already moved by the momentum, $\mu b$, plus the current gradient —
#     a look ahead that damps overshoot.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_09 -->
