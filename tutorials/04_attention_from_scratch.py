# %% [markdown]
# # Attention from scratch
#
# Attention lets each token of a sequence read from the others, with weights computed from the
# data itself. This tutorial builds it by hand in NumPy on a sentence of eight words, checks it
# against `F.scaled_dot_product_attention`, measures why the scores are divided by
# $\sqrt{d_k}$, adds the causal and padding masks, splits the work into heads, and decodes with
# a KV cache. On the way it draws an attention heatmap, saved to
# `tutorials/figures/04_attention.png`.
#
# The reference page is [Attention](../attention.md). Everything runs in float64, so results
# can be compared to $10^{-12}$. Each demonstration draws its random numbers from its own
# seeded generator, so what one prints does not depend on how many numbers the others drew
# (`NIMA_TUTORIAL_QUICK=1` only draws fewer samples).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nima
import nima.functional as F
from nima.nn import KVCache, MultiHeadAttention

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
nima.manual_seed(0)

# %% [markdown]
# ## 1. A query, some keys, some values
#
# Take the sentence below and give each *distinct* word a one-hot vector, so that two tokens have
# dot product 1 if they are the same word and 0 otherwise. Use those vectors, scaled, as both
# queries and keys, and let the value of token $j$ be simply its position $j$ (one number).
# Then query $i$ will put its weight on the keys that are the same word as itself.
#
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}
# {\sqrt{d_k}}\right) V$$

# %%
words = ["the", "cat", "sat", "on", "the", "mat", "the", "end"]
vocab = sorted(set(words))
T, d = len(words), len(vocab)
onehot = np.eye(d)[[vocab.index(w) for w in words]]  # (T, d)
Q = K = 4.0 * onehot  # (T, d): a strong "same word" signal
V = np.arange(T, dtype=np.float64)[:, None]  # (T, 1): token j carries the value j

scores = Q @ K.T / np.sqrt(d)  # (T, T): $q_i \cdot k_j / \sqrt{d}$
e = np.exp(scores - scores.max(axis=-1, keepdims=True))  # subtract the row max: no overflow
weights = e / e.sum(axis=-1, keepdims=True)  # (T, T), rows sum to 1
out = weights @ V  # (T, 1): a weighted average of positions

print("vocabulary:", vocab)
for i, w in enumerate(words):
    top = ", ".join(f"{words[j]}@{j}: {weights[i, j]:.2f}" for j in np.argsort(-weights[i])[:3])
    print(f"{w:>4}@{i}  attends to  {top}   -> output {out[i, 0]:.2f}")
the_rows = [i for i, w in enumerate(words) if w == "the"]
assert np.allclose(weights[0, the_rows].sum(), weights[0].max() * 3)  # spread over the 3 "the"s
assert np.allclose(weights.sum(-1), 1.0)

# %% [markdown]
# Each "the" spreads its weight evenly over the three "the"s (positions 0, 4, 6), so its output
# is about their average position, $10/3 \approx 3.3$. Each word that occurs once attends mostly
# to itself. Now the same computation through Nima:

# %%
q, k, v = (nima.Tensor(a, requires_grad=True) for a in (Q, K, V))
y, w = F.scaled_dot_product_attention(q, k, v, need_weights=True)
print("max |Nima - by hand|:", np.abs(y.data - out).max(), "(weights:",
      np.abs(w.data - weights).max(), ")")
assert np.allclose(y.data, out, atol=1e-12) and np.allclose(w.data, weights, atol=1e-12)

# %% [markdown]
# Nima's version is built from ops (matmul, the fused softmax kernel, matmul), so autograd gives
# its gradient without any attention-specific code; `nima.gradcheck` confirms it against
# central differences:

# %%
rng = np.random.default_rng(1)
q_small, k_small, v_small = (nima.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
                             for _ in range(3))
assert nima.gradcheck(F.scaled_dot_product_attention, [q_small, k_small, v_small])
print("gradcheck of scaled_dot_product_attention: passed")

# %% [markdown]
# ## 2. Why divide by √dₖ
#
# For $q, k$ with independent components of mean 0 and variance 1, the dot product
# $q \cdot k = \sum_{m=1}^{d_k} q_m k_m$ is a sum of $d_k$ independent terms of variance 1, so
# its variance is $d_k$. Measure it:

# %%
rng = np.random.default_rng(2)
samples = 2000 if QUICK else 20000
print(f"{'d_k':>5} {'var(q.k)':>10} {'var(q.k/sqrt(d_k))':>20}")
for d_k in [4, 16, 64, 256]:
    qs, ks = rng.standard_normal((2, samples, d_k))
    dots = (qs * ks).sum(-1)
    print(f"{d_k:5d} {dots.var():10.1f} {(dots / np.sqrt(d_k)).var():20.2f}")
    assert 0.8 * d_k < dots.var() < 1.2 * d_k and 0.8 < (dots / np.sqrt(d_k)).var() < 1.2

# %% [markdown]
# Unscaled, the scores grow with the head size, and a softmax of widely spread scores is nearly
# one-hot. That is bad for learning. Its Jacobian $\operatorname{diag}(y) - yy^\top$ is then
# almost zero, so hardly any gradient gets back through the softmax to the scores, and from
# them to the queries and keys. Measure it for a head of 256 dims and 32 keys: draw random
# $q$, $K$, $V$ and a random direction $g$ for the loss $L = g \cdot \operatorname{attention}$,
# compute the scores with and without the scale, and compare the largest weight and the
# gradient $\partial L / \partial s$ that reaches the scores. One draw can be a near tie,
# where even the unscaled softmax passes gradient on, so we look at averages over many draws.

# %%
rng = np.random.default_rng(3)
d_k, n_keys, draws = 256, 32, 50 if QUICK else 400
largest = {"scaled by 1/sqrt(d_k)": [], "unscaled": []}
grads = {"scaled by 1/sqrt(d_k)": [], "unscaled": []}
for _ in range(draws):
    q_raw = rng.standard_normal((1, d_k))  # (1, d_k): one query
    k_raw = rng.standard_normal((n_keys, d_k))  # (n_keys, d_k)
    v_raw = rng.standard_normal((n_keys, 8))  # (n_keys, 8)
    g = nima.Tensor(rng.standard_normal((1, 8)))  # (1, 8): the loss's direction
    for name, divide_by in [("scaled by 1/sqrt(d_k)", np.sqrt(d_k)), ("unscaled", 1.0)]:
        s = nima.Tensor(q_raw @ k_raw.T / divide_by, requires_grad=True)  # (1, n_keys)
        w = F.softmax(s, dim=-1)
        ((w @ nima.Tensor(v_raw)) * g).sum().backward()
        largest[name].append(w.data.max())
        grads[name].append(np.linalg.norm(s.grad))
for name in largest:
    print(f"{name:>22}: largest weight {np.mean(largest[name]):.3f} on average; "
          f"|dL/ds| {np.mean(grads[name]):.3f} on average, median {np.median(grads[name]):.3f}")
scaled, unscaled = "scaled by 1/sqrt(d_k)", "unscaled"
assert np.mean(largest[unscaled]) > 0.8 > 0.3 > np.mean(largest[scaled])
assert np.mean(grads[unscaled]) < 0.6 * np.mean(grads[scaled])
assert np.median(grads[unscaled]) < 0.2 * np.median(grads[scaled])

# %% [markdown]
# Without the scale, the largest weight is above 0.9 on average and the typical gradient
# reaching the scores is many times smaller: most draws saturate the softmax. Dividing by
# $\sqrt{d_k}$ keeps the scores' variance at 1 whatever the head size, so the softmax stays
# in the range where it learns.

# %% [markdown]
# ## 3. The causal mask
#
# A language model predicts each next token from the ones before it, and trains all positions at
# once, so position $i$ must not see $j > i$. Set those scores to $-\infty$ before the softmax:
# $e^{-\infty} = 0$, so hidden keys get weight exactly 0. By hand, then with `is_causal=True`:

# %%
future = np.triu(np.ones((T, T), dtype=bool), k=1)  # True above the diagonal
masked = np.where(future, -np.inf, scores)
e = np.exp(masked - masked.max(axis=-1, keepdims=True))
causal_weights = e / e.sum(axis=-1, keepdims=True)
_, w_causal = F.scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
assert np.allclose(w_causal.data, causal_weights, atol=1e-12)
assert (w_causal.data[future] == 0).all()
print("causal weights, rounded:\n", np.round(w_causal.data, 2))

# %% [markdown]
# The second "the" (position 4) can now see only the first one and itself, and the third only
# the three so far. The defining property of the mask: **outputs at position $t$ do not change
# when inputs after $t$ change**. Check it on a random causal multi-head layer:

# %%
rng = np.random.default_rng(4)
attn = MultiHeadAttention(16, 4, causal=True).double()
x = rng.standard_normal((1, 10, 16))
changed = x.copy()
changed[:, 6:] = rng.standard_normal((1, 4, 16))  # rewrite tokens 6..9
y1, y2 = attn(nima.Tensor(x)).data, attn(nima.Tensor(changed)).data
print("max change at positions 0..5:", np.abs(y1[:, :6] - y2[:, :6]).max())
print("max change at positions 6..9:", np.abs(y1[:, 6:] - y2[:, 6:]).max())
assert np.allclose(y1[:, :6], y2[:, :6], atol=1e-12) and not np.allclose(y1[:, 6:], y2[:, 6:])

# %% [markdown]
# ## 4. Padding, and a query with nothing to see
#
# Batched sequences of different lengths are padded. A `key_padding_mask` (True = padding)
# hides padded keys from every query. Left-pad a sequence by two tokens under a causal mask, and
# query 0 may see only key 0, which is padding: its scores are all $-\infty$. Mathematically
# its softmax is $0/0$. PyTorch returns NaN there; Nima's softmax kernel returns a row of
# zeros, so the query's attention output is the zero vector (and the layer's output is the
# projection's bias), with a zero gradient.

# %%
rng = np.random.default_rng(5)
pad = np.array([[True, True, False, False, False]])
xt = nima.Tensor(rng.standard_normal((1, 5, 16)), requires_grad=True)
y, w = attn(xt, key_padding_mask=pad, need_weights=True)
print("weights of head 0 (rows: queries, columns: keys):\n", np.round(w.data[0, 0], 2))
assert (w.data[0, :, :2] == 0).all()  # the fully masked queries: all-zero rows, no NaN
assert np.allclose(y.data[0, 0], attn.proj.bias.data)  # proj(0) = its bias
y.sum().backward()
assert np.isfinite(xt.grad).all()
print("gradient finite everywhere:", np.isfinite(xt.grad).all())

# %% [markdown]
# ## 5. Several heads
#
# Multi-head attention splits the $d$ channels into $n_h$ heads of $d_h = d / n_h$, runs the
# attentions side by side and mixes the results with one projection $W_O$. By hand, with the
# layer's own weights: one projection gives $q, k, v$ for all heads; head $h$ owns the channels
# $h d_h \dots (h+1) d_h - 1$.

# %%
rng = np.random.default_rng(6)
x = rng.standard_normal((2, 6, 16))  # (B, T, d)
B, T6, D = x.shape
nh, hd = attn.n_head, attn.head_dim
qkv = x @ attn.qkv.weight.data.T + attn.qkv.bias.data  # (B, T, 3d)
q_all, k_all, v_all = np.split(qkv, 3, axis=-1)  # 3 x (B, T, d)
heads = []
for h in range(nh):
    cols = slice(h * hd, (h + 1) * hd)
    s = q_all[..., cols] @ np.swapaxes(k_all[..., cols], -1, -2) / np.sqrt(hd)  # (B, T, T)
    s = np.where(np.triu(np.ones((T6, T6), dtype=bool), 1), -np.inf, s)
    a = np.exp(s - s.max(-1, keepdims=True))
    heads.append((a / a.sum(-1, keepdims=True)) @ v_all[..., cols])  # (B, T, hd)
by_hand = np.concatenate(heads, axis=-1) @ attn.proj.weight.data.T + attn.proj.bias.data
layer = attn(nima.Tensor(x)).data
print("max |layer - by hand|:", np.abs(layer - by_hand).max())
assert np.allclose(layer, by_hand, atol=1e-12)

# %% [markdown]
# The layer does the loop without a loop. It reshapes `(B, T, d)` to `(B, T, nh, hd)` and swaps
# axes to `(B, nh, T, hd)`, so the heads become a batch dimension of one
# `scaled_dot_product_attention` call.
#
# ## 6. Decoding with a KV cache
#
# Generating text, the model sees one new token per step. Earlier keys and values do not change
# (in a causal layer nothing earlier depends on what comes later), so a `KVCache` keeps them and
# each step computes $q, k, v$ for the new token only. The result is the same as running the
# whole sequence:

# %%
rng = np.random.default_rng(7)
cache = KVCache()
x = rng.standard_normal((1, 8, 16))
full = attn(nima.Tensor(x)).data
with nima.no_grad():
    steps = [attn(nima.Tensor(x[:, t:t + 1]), cache=cache).data for t in range(8)]
print(cache, "| max |cached - full|:", np.abs(np.concatenate(steps, axis=1) - full).max())
assert np.allclose(np.concatenate(steps, axis=1), full, atol=1e-12)

# %% [markdown]
# ## 7. An attention heatmap
#
# Attention weights are easy to look at: one row per query, one column per key. Here are the
# "same word" weights from section 1, without and with the causal mask:

# %%
FIGURES.mkdir(parents=True, exist_ok=True)
fig = Figure(figsize=(10, 4.6), layout="constrained")
for ax, (title, matrix) in zip(fig.subplots(1, 2), [("bidirectional", weights),
                                                    ("causal", w_causal.data)], strict=True):
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(words)), [f"{w}\n{j}" for j, w in enumerate(words)], fontsize=8)
    ax.set_yticks(range(len(words)), [f"{i} {w}" for i, w in enumerate(words)], fontsize=8)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(f"'same word' attention, {title}")
fig.colorbar(image, ax=fig.axes, shrink=0.8, label="weight")
figure_path = FIGURES / "04_attention.png"
fig.savefig(figure_path, dpi=110)
print("saved", figure_path)
assert figure_path.stat().st_size > 0

# %% [markdown]
# In the left panel, the three "the" rows light up the same three columns, and every other word
# lights up its own diagonal cell. In the right panel, the upper triangle is all zeros: no query
# looks ahead, so a "the" can only share its weight with the "the"s before it.
#
# Next: [tutorial 05](05_positional_encodings.md). Attention alone cannot tell "the cat" from
# "cat the", and positional encodings fix that.

# %% [markdown]
# ## Summary
#
# - Attention scores every key against a query, turns the scores into weights with a softmax
#   and averages the values; dividing by $\sqrt{d_k}$ keeps the softmax from saturating.
# - The causal mask hides the future (aligned to the end under a cache); padding masks hide
#   keys that are not data; a query with nothing to see gets zeros.
# - Several heads are one batched attention on slices of the channels; a KV cache makes each
#   decoding step reuse earlier keys and values.
#
# ## Check your understanding
#
# ??? question "Why does a saturated softmax stop learning?"
#     When one weight is near 1 and the rest near 0, $y_j(1 - y_j) \approx 0$ for every $j$: the
#     Jacobian nearly vanishes, and so does the gradient to the scores.
#
# ??? question "Why are the heads split by a reshape and a transpose rather than a copy?"
#     Head $h$ owns a contiguous slice of the channels; viewing `(B, T, C)` as
#     `(B, T, nh, hd)` and swapping two axes gives each head its own matrix without moving
#     data.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_04 -->
