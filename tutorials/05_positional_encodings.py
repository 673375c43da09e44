# %% [markdown]
# # Positional encodings compared
#
# Attention is blind to order: shuffle the tokens and the outputs shuffle with them, unchanged.
# This tutorial shows that, then looks at the four ways Nima tells attention where tokens are:
# sinusoidal and learned vectors added to the embeddings, RoPE rotating queries and keys, and
# ALiBi biasing the scores. It checks each scheme's defining property numerically and saves its
# picture under `tutorials/figures/` (`05_sinusoidal.png`, `05_rope.png`, `05_alibi.png`).
#
# The reference page is [Positions](../positions.md).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nima
from nima import nn
from nima.nn.positional import alibi_slopes, sinusoidal_table

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
FIGURES.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
nima.manual_seed(0)
MAX_LEN = 64 if QUICK else 128

# %% [markdown]
# ## 1. Attention without positions ignores order
#
# Permute the tokens of a sequence and run a (non-causal) attention layer. Every output row is
# the same as before, just moved to its token's new place. Formally,
# $\operatorname{MHA}(PX) = P\,\operatorname{MHA}(X)$ for every permutation matrix $P$:

# %%
attn = nn.MultiHeadAttention(16, 4).double()
x = rng.standard_normal((1, 6, 16))
perm = rng.permutation(6)
y = attn(nima.Tensor(x)).data
y_perm = attn(nima.Tensor(x[:, perm])).data
print("max |MHA(PX) - P MHA(X)|:", np.abs(y_perm - y[:, perm]).max())
assert np.allclose(y_perm, y[:, perm], atol=1e-12)

rope_attn = nn.MultiHeadAttention(16, 4, rope=nn.RotaryEmbedding(4, 16)).double()
y_rope = rope_attn(nima.Tensor(x)).data
y_rope_perm = rope_attn(nima.Tensor(x[:, perm])).data
print("with RoPE:          ", np.abs(y_rope_perm - y_rope[:, perm]).max())
assert not np.allclose(y_rope_perm, y_rope[:, perm])

# %% [markdown]
# ## 2. Sinusoidal
#
# $$PE_{p,\,2i} = \sin\!\left(\frac{p}{10000^{2i/d}}\right), \qquad
# PE_{p,\,2i+1} = \cos\!\left(\frac{p}{10000^{2i/d}}\right)$$
#
# Check a few entries against the formula, then draw the whole table. Positions run down,
# dimensions across. The left columns oscillate fast and the right ones slowly: every column
# pair is a clock hand with its own speed.

# %%
d_model = 64
table = sinusoidal_table(MAX_LEN, d_model)
for p, c in [(0, 0), (0, 1), (5, 0), (5, 1), (17, 10), (40, 63)]:
    i = c // 2
    formula = (np.sin if c % 2 == 0 else np.cos)(p / 10000 ** (2 * i / d_model))
    assert np.isclose(table[p, c], formula)
pe = nn.SinusoidalPositionalEncoding(MAX_LEN, d_model)
assert np.allclose(pe(MAX_LEN).data, table, atol=1e-6)
similarity = table @ table.T  # (MAX_LEN, MAX_LEN): PE_p . PE_q
fig = Figure(figsize=(11, 4.2), layout="constrained")
ax_table, ax_sim = fig.subplots(1, 2)
image = ax_table.imshow(table, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
ax_table.set_xlabel("dimension")
ax_table.set_ylabel("position")
ax_table.set_title("sinusoidal table $PE_{p, c}$")
fig.colorbar(image, ax=ax_table)
image = ax_sim.imshow(similarity, cmap="viridis")
ax_sim.set_xlabel("position q")
ax_sim.set_ylabel("position p")
ax_sim.set_title(r"$PE_p \cdot PE_q$ depends on $p - q$ only")
fig.colorbar(image, ax=ax_sim)
fig.savefig(FIGURES / "05_sinusoidal.png", dpi=100)
print("saved", FIGURES / "05_sinusoidal.png")

# %% [markdown]
# The right panel has constant diagonals. $PE_p \cdot PE_q = \sum_i \cos((p - q)\,\omega_i)$ (by
# $\sin a \sin b + \cos a \cos b = \cos(a - b)$), a function of the offset alone, largest at
# offset 0. The sinusoidal table also lets one *linear* map shift every position by a fixed $k$:
# pair $i$ rotates by $k\omega_i$.

# %%
k_shift = 3
omega = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)
c, s = np.cos(k_shift * omega), np.sin(k_shift * omega)
sin_part, cos_part = table[:-k_shift, 0::2], table[:-k_shift, 1::2]
shifted = np.empty_like(table[:-k_shift])
shifted[:, 0::2] = sin_part * c + cos_part * s
shifted[:, 1::2] = cos_part * c - sin_part * s
print("max |rotate(PE_p) - PE_{p+3}|:", np.abs(shifted - table[k_shift:]).max())
assert np.allclose(shifted, table[k_shift:], atol=1e-12)
offsets = np.arange(-20, 21)
diagonal = [np.diagonal(similarity, offset=int(o)).std() for o in offsets]
assert max(diagonal) < 1e-9

# %% [markdown]
# ## 3. Learned
#
# GPT-2 learns one vector per position, initialised $\mathcal N(0, 0.02^2)$. There is no
# formula, so there are no properties to check beyond its shape. A position past `max_len` has
# no vector at all:

# %%
wpe = nn.LearnedPositionalEmbedding(MAX_LEN, d_model)
print("parameters:", wpe.num_parameters(), "| std:", round(float(wpe.weight.data.std()), 4))
try:
    wpe(4, offset=MAX_LEN - 2)
    raise AssertionError("positions past max_len should raise")
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## 4. RoPE: the score depends on the offset only
#
# RoPE rotates each pair of dims of $q$ and $k$ by $p\,\omega_i$ at position $p$. Rotations
# compose, so $\langle R_m q, R_n k\rangle = \langle q, R_{n-m} k\rangle$. Fix one query vector
# and one key vector, place them at every pair of positions $(m, n)$, and compute the score. The
# matrix should be constant along each diagonal.

# %%
head_dim = 32
rope = nn.RotaryEmbedding(head_dim, MAX_LEN)
q_vec = nima.Tensor(rng.standard_normal((1, head_dim)))
k_vec = nima.Tensor(rng.standard_normal((1, head_dim)))
q_at = np.concatenate([rope(q_vec, offset=m).data for m in range(MAX_LEN)])  # (MAX_LEN, hd)
k_at = np.concatenate([rope(k_vec, offset=n).data for n in range(MAX_LEN)])  # (MAX_LEN, hd)
rope_scores = q_at @ k_at.T  # (MAX_LEN, MAX_LEN): score of q at m with k at n
spread = max(np.diagonal(rope_scores, offset=o).std() for o in range(-MAX_LEN + 1, MAX_LEN))
print("largest spread along a diagonal:", spread)
assert spread < 1e-9
# the same without RoPE: one number everywhere, position plays no role
assert np.allclose(q_vec.data @ k_vec.data.T, (q_vec.data * k_vec.data).sum())

fig = Figure(figsize=(11, 4.2), layout="constrained")
ax_scores, ax_offset = fig.subplots(1, 2)
image = ax_scores.imshow(rope_scores, cmap="RdBu")
ax_scores.set_xlabel("key position n")
ax_scores.set_ylabel("query position m")
ax_scores.set_title(r"RoPE score $\langle R_m q, R_n k\rangle$")
fig.colorbar(image, ax=ax_scores)
rel = np.arange(-(MAX_LEN - 1), MAX_LEN)
ax_offset.plot(rel, [np.diagonal(rope_scores, offset=int(o))[0] for o in rel])
ax_offset.set_xlabel("offset n - m")
ax_offset.set_ylabel("score")
ax_offset.set_title("one curve: the score as a function of the offset")
fig.savefig(FIGURES / "05_rope.png", dpi=100)
print("saved", FIGURES / "05_rope.png")

# %% [markdown]
# Under a KV cache, the new token at position `cache.length` must be rotated by *that*
# position's angles. `MultiHeadAttention` passes `offset=cache.length` to RoPE. Decoding token
# by token then matches the full forward:

# %%
layer = nn.MultiHeadAttention(16, 4, causal=True, rope=nn.RotaryEmbedding(4, 32)).double()
x = rng.standard_normal((1, 9, 16))
cache = nn.KVCache()
steps = [layer(nima.Tensor(x[:, t:t + 1]), cache=cache).data for t in range(9)]
print("max |cached - full|:", np.abs(np.concatenate(steps, axis=1) - layer(nima.Tensor(x)).data)
      .max())
assert np.allclose(np.concatenate(steps, axis=1), layer(nima.Tensor(x)).data, atol=1e-12)

# %% [markdown]
# ## 5. ALiBi: a linear penalty per head
#
# ALiBi adds $-m_h (i - j)$ to the score of query $i$ for key $j$, with slopes
# $m_h = 2^{-8h/n}$ for $n$ heads. For 8 heads those are $\tfrac12, \tfrac14, \dots,
# \tfrac1{256}$. Head counts that are not powers of two interleave two sequences, as the paper
# does:

# %%
print("8 heads:", alibi_slopes(8))
assert np.allclose(alibi_slopes(8), 0.5 ** np.arange(1, 9))
print("6 heads:", alibi_slopes(6), "= 1/4, 1/16, 1/64, 1/256, then 1/2, 1/8")
assert np.allclose(alibi_slopes(6), [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3])

alibi = nn.ALiBi(8)
T_show = 12
bias = alibi.bias(T_show, T_show)  # (8, T, T)
causal = np.tri(T_show, T_show, dtype=bool)
fig = Figure(figsize=(12, 6), layout="constrained")
axes = fig.subplots(2, 4)
for h, ax in enumerate(axes.flat):
    shown = np.where(causal, bias[h], np.nan)  # hidden (future) keys left blank
    image = ax.imshow(shown, cmap="magma", vmin=bias[0][causal].min(), vmax=0)
    ax.set_title(f"head {h + 1}: slope 1/{round(1 / alibi.slopes[h])}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(image, ax=axes, shrink=0.8, label="bias $-m_h (i - j)$ (query i, key j)")
fig.savefig(FIGURES / "05_alibi.png", dpi=100)
print("saved", FIGURES / "05_alibi.png")

# %% [markdown]
# Head 1 punishes distance steeply (slope 1/2: ten tokens back costs 5 in score, a factor
# $e^{-5} \approx 0.007$ in weight), so it sees only the last few tokens. Head 8 (slope 1/256)
# barely discounts at all. As with RoPE, the cache passes the offset: the rows for queries at
# positions `offset ...` are the last rows of the full matrix.

# %%
assert np.array_equal(alibi.bias(3, 10, offset=7), alibi.bias(10, 10)[:, 7:])
layer = nn.MultiHeadAttention(16, 4, causal=True, alibi=nn.ALiBi(4)).double()
cache = nn.KVCache()
steps = [layer(nima.Tensor(x[:, t:t + 1]), cache=cache).data for t in range(9)]
assert np.allclose(np.concatenate(steps, axis=1), layer(nima.Tensor(x)).data, atol=1e-12)
print("ALiBi under the KV cache: matches the full forward")

# %% [markdown]
# ## Summary
#
# | scheme | where | parameters | property checked here |
# |---|---|---|---|
# | sinusoidal | added to embeddings | 0 | $PE_p \cdot PE_q$ depends on $p - q$; shifts rotate |
# | learned | added to embeddings | $T_{\max} d$ | none beyond its shape; stops at $T_{\max}$ |
# | RoPE | rotates $q$, $k$ | 0 | score depends on $n - m$ only; correct under the cache |
# | ALiBi | biases scores | 0 | slopes $2^{-8h/n}$; correct under the cache |
#
# Next: [tutorial 06](06_gpt_block_by_block.md) assembles a GPT from these pieces.

# %% [markdown]
# ## Check your understanding
#
# ??? question "Why does RoPE need the position offset under a KV cache?"
#     A new token sits at position `cache.length`; rotating it as position 0 would make its
#     scores with the cached keys depend on the wrong offsets.
#
# ??? question "Which sign does ALiBi's bias have for keys in the past?"
#     Negative: $-m_h(i - j)$ with $j \le i$, a penalty that grows with distance.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_05 -->
