# %% [markdown]
# # Tree attention by hand
#
# Dense causal attention lets query $t$ look at all $t + 1$ keys before it: $T^2/2$ scores for a
# sequence. Tree attention reads the recent past token by token and older stretches through
# *summaries* — one vector per chunk of $b$ tokens, per chunk of $b$ chunks, and so on — so each
# query reads at most $b + L(b-1)$ keys, whatever the length.
#
# This tutorial builds it from nothing. We work out which key each query reads at which level
# with a double loop, draw that mask and check it against `nima.nn.tree_attention.tree_pattern`;
# count the keys per query; then compute a whole `TreeAttention` layer by hand in NumPy —
# summaries, one softmax per level, branch gates — and check that it gives the module's output
# to 1e-12. Last, the causal property and decoding token by token.
#
# The reference pages are [Tree attention](../tree_attention.md) and
# [Hierarchical pooling](../hierarchical_pooling.md). The figure is saved under
# `tutorials/figures/` (`16_tree_mask.png`).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

import nima
from nima.nn import TreeAttention
from nima.nn.tree_attention import tree_levels, tree_pattern

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
FIGURES.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Which key, at which level
#
# Cut the positions into *leaf chunks* of $b$ tokens, those into chunks of $b$ leaf chunks, and
# so on: a tree with $b$ children per node, level $l$ holding chunks of $b^l$ tokens. Query $t$
# reads key $s \le t$ at the **lowest level $l$ where the two share a chunk of level $l + 1$**,
# $\lfloor s / b^{l+1} \rfloor = \lfloor t / b^{l+1} \rfloor$:
#
# - $l = 0$: $s$ is in $t$'s own leaf chunk — read as a token;
# - $l \ge 1$: $s$ is inside a *completed sibling* of $t$'s level-$l$ chunk — read through that
#   sibling's summary.
#
# With $b = 2$ and query $t = 5$ (binary 101): keys 4 and 5 are its leaf chunk; keys 0–3 form
# the level-2 chunk before its own, read as one summary. Let us write that as a double loop.

# %%
def pattern_by_hand(T: int, b: int, levels: int) -> np.ndarray:
    """(T, T): the level through which query t reads key s, -1 where it does not."""
    out = np.full((T, T), -1)
    for t in range(T):
        for s in range(t + 1):  # causal: only the past and itself
            for level in range(levels + 1):
                if s // b ** (level + 1) == t // b ** (level + 1):
                    out[t, s] = level  # the lowest shared level wins
                    break
    return out


print(pattern_by_hand(8, 2, 2)[5])  # [2 2 2 2 0 0 -1 -1]
assert pattern_by_hand(8, 2, 2)[5].tolist() == [2, 2, 2, 2, 0, 0, -1, -1]

# %% [markdown]
# How many levels does a context of `block_size` positions need? The top level's chunks must
# hold the whole window, $b^{L+1} \ge T$, and no level should summarise chunks as long as the
# window (no query could ever see them): $b^L < T \le b^{L+1}$. `tree_levels` derives it.

# %%
T, b = (32, 4) if QUICK else (64, 4)
L = tree_levels(T, b)
print(f"T = {T}, b = {b}: L = {L} levels above the tokens ({b}^{L} < {T} <= {b}^{L + 1})")
mask = pattern_by_hand(T, b, L)
np.testing.assert_array_equal(mask, tree_pattern(T, b, L))  # the module's mask, the same
print("the hand-made pattern equals tree_pattern")

# %% [markdown]
# ## 2. The mask, drawn
#
# Each row is a query, each column a key, the colour the level it is read through. Every row is
# covered up to the diagonal — the whole past — and nothing above it.

# %%
fig = Figure(figsize=(6.5, 5.5), layout="constrained")
ax = fig.subplots()
colours = ListedColormap(["#4c72b0", "#dd8452", "#55a868", "#c44e52"][:L + 1])
image = ax.imshow(np.where(mask >= 0, mask, np.nan), cmap=colours, vmin=-0.5, vmax=L + 0.5)
bar = fig.colorbar(image, ax=ax, ticks=range(L + 1), shrink=0.8)
bar.ax.set_yticklabels(["token"] + [f"level-{l} summary" for l in range(1, L + 1)])
ax.set(title=f"tree attention, b = {b}, L = {L}: query t reads key s at level ...",
       xlabel="key s", ylabel="query t")
fig.savefig(FIGURES / "16_tree_mask.png", dpi=100)
print("saved", FIGURES / "16_tree_mask.png")

# %% [markdown]
# ## 3. Few keys per query
#
# A query reads the tokens of its leaf chunk (at most $b$) and, at each level above, at most
# $b - 1$ summaries — one per completed sibling. A summary stands for $b^l$ keys of the mask, so
# dividing the mask's counts by the chunk sizes gives the number of vectors actually read.

# %%
keys = (mask == 0).sum(1).astype(float)
for level in range(1, L + 1):
    keys += (mask == level).sum(1) / b ** level  # one summary for b^level positions
assert keys.max() <= b + L * (b - 1)
assert ((mask >= 0).sum(1) == np.arange(1, T + 1)).all()  # every past key, exactly once
print(f"at most {keys.max():.0f} vectors per query (bound b + L(b-1) = {b + L * (b - 1)}), "
      f"where dense attention reads up to {T}")
for length in (1024, 4096):
    levels = tree_levels(length, 16)
    print(f"T = {length}, b = 16: at most {16 + levels * 15} keys per query, instead of "
          f"{length}")

# %% [markdown]
# ## 4. The layer, by hand
#
# `TreeAttention` projects queries, keys and values with the same `qkv` as any attention layer.
# The summary of a chunk is the mean of its tokens (`pooling="mean"`), and its key and value
# come from the same $W_K, W_V$. Each level is its own softmax over its own keys,
#
# $$Y_{h,l} = \operatorname{softmax}\Bigl(\frac{q_h K_{h,l}^\top}{\sqrt{d_h}}\Bigr) V_{h,l},$$
#
# and per-head, per-level **branch gates** $g_{h,l} = \sigma(a_{h,l})$ mix them:
# $y_h = \sum_l g_{h,l} Y_{h,l}$. A level with no keys for a query adds nothing. We compute all
# of it query by query, with the mask of section 1 telling us what each query reads.

# %%
D, NH = 8, 2
HD = D // NH
nima.manual_seed(0)
layer = TreeAttention(D, NH, T, chunk_size=b).double()
layer.gate_logit.data[...] = rng.standard_normal(layer.gate_logit.shape)  # gates that differ
x = rng.standard_normal((1, T, D))


def by_hand(layer: TreeAttention, x: np.ndarray) -> np.ndarray:
    W, bias = layer.qkv.weight.data, layer.qkv.bias.data  # (3D, D), (3D,)
    gates = 1 / (1 + np.exp(-layer.gate_logit.data))  # (NH, L+1): sigmoid
    pattern = tree_pattern(T, b, L)
    out = np.zeros((T, D))
    for t in range(T):
        heads = []
        for h in range(NH):
            rows = slice(h * HD, (h + 1) * HD)
            q = x[0, t] @ W[rows].T + bias[rows]  # this head's query, (HD,)
            y = np.zeros(HD)
            for level in range(L + 1):
                span = b ** level
                # the starts of the chunks query t reads at this level (tokens: span 1)
                starts = sorted({s // span * span for s in np.flatnonzero(pattern[t] == level)})
                if not starts:
                    continue  # no keys at this level: nothing added
                vectors = np.array([x[0, s:s + span].mean(0) for s in starts])  # summaries
                k = vectors @ W[D:2 * D][rows].T + bias[D:2 * D][rows]  # (n, HD)
                v = vectors @ W[2 * D:][rows].T + bias[2 * D:][rows]
                scores = k @ q / np.sqrt(HD)
                weights = np.exp(scores - scores.max())
                y += gates[h, level] * (weights / weights.sum()) @ v
            heads.append(y)
        out[t] = np.concatenate(heads) @ layer.proj.weight.data.T + layer.proj.bias.data
    return out


mine = by_hand(layer, x)
theirs = layer(nima.tensor(x)).data[0]
print("largest difference, by hand vs TreeAttention:", np.abs(mine - theirs).max())
np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)

# %% [markdown]
# The module computes the same numbers without a loop over queries: the leaf level is causal
# attention inside blocks of $b$, and each higher level groups the queries by their level-$(l+1)$
# chunk, so a group of $b^{l+1}$ queries meets only the $b$ summaries of its chunk — all through
# the fused `scaled_dot_product_attention`, at $O(T\,b\log_b T)$ cost.
#
# ## 5. Causal, and decodable token by token
#
# A summary is read only by queries *after* its whole chunk, so changing a token never changes
# an earlier output. And a new token needs only the open chunk at each level: `TreeCache` keeps
# at most $b$ children per level, pooling a chunk into its summary the moment it completes.

# %%
t = T // 2 + 1
changed = x.copy()
changed[0, t + 1:] = rng.standard_normal(changed[0, t + 1:].shape)
after = layer(nima.tensor(changed)).data[0]
np.testing.assert_array_equal(after[:t + 1], theirs[:t + 1])
print(f"changing tokens {t + 1}.. leaves outputs 0..{t} exactly as they were")

cache = layer.new_cache()
with nima.no_grad():
    steps = [layer(nima.tensor(x[:, i:i + 1]), cache=cache).data[0, 0] for i in range(T)]
np.testing.assert_allclose(np.array(steps), theirs, rtol=1e-12, atol=1e-12)
print("token by token through the cache: the same outputs;", cache)

# %% [markdown]
# ## Summary
#
# - Query $t$ reads key $s \le t$ at the lowest level $l$ with
#   $\lfloor s/b^{l+1} \rfloor = \lfloor t/b^{l+1} \rfloor$ — as a token in its own leaf chunk,
#   else inside the summary of a completed sibling chunk; a double loop gives exactly
#   `tree_pattern`, and `tree_levels` picks $L$ with $b^L < T \le b^{L+1}$.
# - Every row of the mask covers the whole past exactly once, with at most $b + L(b-1)$
#   vectors read per query where dense attention reads $t + 1$.
# - `TreeAttention` by hand: mean summaries projected by the tokens' own $W_K, W_V$, one
#   softmax per level and head, sigmoid branch gates $g_{h,l}$ weighing the levels, then
#   `proj` — the module's output to 1e-12.
# - A summary is read only by queries after its whole chunk, so the layer is causal; decoding
#   through `TreeCache`, which pools a chunk the moment it completes, gives the same outputs.
#
# ## Check your understanding
#
# ??? question "With $b = 4$ and $T = 64$, which vectors does query 27 read, at which levels?"
#     $27 = 123_4$. Level 0: tokens 24–27 of its leaf chunk. Level 1: the summaries
#     of the completed leaf chunks 16–19 and 20–23 (its level-2 chunk is 16–31). Level 2: the
#     summary of 0–15, the one level-2 chunk before its own. Seven vectors for 28 keys, within
#     the bound $b + L(b-1) = 4 + 2 \cdot 3 = 10$.
#
# ??? question "With $b = 4$ and $T = 64$, which outputs does a change of token 20 change?"
#     Outputs 20 to 63, and none before. Every query reads its whole past exactly once: 20–23
#     read token 20 in their leaf chunk, 24–31 inside the summary of 20–23, later queries
#     inside the summary of 16–31. Query 19 or earlier could only read it through the summary
#     of a chunk holding position 20, and a summary is read only by queries after its whole
#     chunk.
#
# ??? question "Key of the mean, or mean of the keys: does it matter for a summary?"
#     No. A summary is a weighted mean of its chunk's tokens, weights summing to 1 (all
#     $1/b^l$ for mean pooling), and the projection $x \mapsto x W_K^\top + b_K$ is affine:
#     the key of the summary is the same weighted mean of the tokens' keys, bias included.
#     Likewise for values.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_16 -->
