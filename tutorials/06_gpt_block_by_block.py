# %% [markdown]
# # A GPT block by block
#
# This tutorial takes the `baby` GPT apart and puts it back together by hand: token and
# position embeddings, then inside the first block the layer norm, the causal multi-head
# attention head by head, the feed-forward network and the residual additions, then the other
# blocks, the final norm and the tied output head. At every step it prints the shapes and checks
# the hand-made result against the model's own modules. It ends with a few training steps and
# the parameter budget: where the model's 0.8M numbers live, GPT-2's 124M, and the three
# 2.4M-parameter shapes of the Micro-Transformer design (a study of small transformers under a
# fixed budget; see [where the ideas come from](../index.md#where-the-ideas-come-from)).
#
# The reference pages are [GPT](../gpt.md) and [Parameters](../parameters.md). Everything runs
# in float64 so hand-made and module results can be compared to $10^{-10}$.

# %%
import math
import os

import numpy as np

import nima
from nima.models import GPT, GPTConfig, count_parameters, explore
from nima.models.budget import MICRO_BASE, micro_transformer_table

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
nima.manual_seed(0)


def show(name: str, t) -> None:
    """Print a tensor's (or array's) name and shape."""
    shape = t.shape if hasattr(t, "shape") else np.shape(t)
    print(f"{name:<34} {tuple(shape)!s:>16}")


def close(a, b) -> bool:
    return np.allclose(np.asarray(a.data if hasattr(a, "data") else a),
                       np.asarray(b.data if hasattr(b, "data") else b), atol=1e-10)


# %% [markdown]
# ## 1. A model and a batch
#
# Characters of a line of Shakespeare are the tokens. The `baby` preset is nanoGPT's CPU
# "baby GPT": 4 blocks, 4 heads, a residual stream 128 wide, a context of 64, no biases; the
# vocabulary is overridden to this text's characters.

# %%
text = ("First Citizen: Before we proceed any further, hear me speak. "
        "All: Speak, speak. First Citizen: You are all resolved rather to die than to famish?")
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = np.array([stoi[c] for c in text])

config = GPTConfig.preset("baby", vocab_size=len(chars))
model = GPT(config).double()
B, T, C, nh = 4, 32, config.n_embd, config.n_head
hd = C // nh
starts = np.random.default_rng(0).integers(0, len(data) - T - 1, B)
idx = np.stack([data[s:s + T] for s in starts])  # (B, T) token ids
targets = np.stack([data[s + 1:s + T + 1] for s in starts])  # (B, T): the next character
print(f"vocabulary: {len(chars)} characters; B={B}, T={T}, C={C}, heads={nh} of {hd} dims")
print(repr("".join(chars[i] for i in idx[0])), "->", repr("".join(chars[i] for i in targets[0])))
show("idx", idx)

# %% [markdown]
# ## 2. Embeddings
#
# $h_0 = W_E[\text{idx}] + P_{0..T-1}$: a row of the token table per token, plus a learned row
# per position, broadcast over the batch.

# %%
tok = model.wte(idx)  # (B, T, C)
pos = model.wpe(T)  # (T, C): positions 0..T-1
x = tok + pos  # (B, T, C)
show("wte.weight  W_E", model.wte.weight)
show("wpe.weight  P", model.wpe.weight)
show("token embeddings W_E[idx]", tok)
show("position embeddings", pos)
show("h_0 = tokens + positions", x)

# %% [markdown]
# ## 3. Inside block 0: attention, head by head
#
# Pre-norm: the attention reads $\operatorname{LN}_1(x)$. One matrix `qkv` makes queries, keys
# and values for all heads at once; splitting the channels into heads is a reshape and a
# transpose. Then, per head,
#
# $$A = \operatorname{softmax}\!\left(\frac{q k^\top}{\sqrt{d_h}} + M_\text{causal}\right),
# \qquad \text{head} = A v,$$
#
# the heads go back side by side, and `proj` ($W_O$) mixes them.

# %%
block = model.blocks[0]
a = block.ln_1(x)  # (B, T, C)
mu, var = x.data.mean(-1, keepdims=True), x.data.var(-1, keepdims=True)
assert close(a, (x.data - mu) / np.sqrt(var + 1e-5) * block.ln_1.weight.data)  # by hand

W = block.attn.qkv.weight.data  # (3C, C)
qkv = a.data @ W.T  # (B, T, 3C)
q, k, v = np.split(qkv, 3, axis=-1)  # (B, T, C) each


def heads(t: np.ndarray) -> np.ndarray:
    return t.reshape(B, T, nh, hd).transpose(0, 2, 1, 3)  # (B, nh, T, hd)


q, k, v = heads(q), heads(k), heads(v)
scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)  # (B, nh, T, T)
future = np.triu(np.ones((T, T), dtype=bool), k=1)  # True above the diagonal
scores = np.where(future, -np.inf, scores)  # (B, nh, T, T): no peeking ahead
weights = np.exp(scores - scores.max(-1, keepdims=True))
weights /= weights.sum(-1, keepdims=True)  # (B, nh, T, T), rows sum to 1
y = weights @ v  # (B, nh, T, hd)
y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C): heads side by side
attn_out = y @ block.attn.proj.weight.data.T  # (B, T, C)
for name, t in [("LN_1(x)", a), ("qkv(LN_1(x))", qkv), ("q, k, v per head", q),
                ("scores, weights", weights), ("heads merged", y), ("attention output", attn_out)]:
    show(name, t)
assert close(attn_out, block.attn(a))
print("row 5 of head 0's weights (first 8 keys):", np.round(weights[0, 0, 5, :8], 3))
assert np.all(weights[..., future] == 0)  # the causal mask at work

# %% [markdown]
# At initialisation the weights of each row are close to uniform over the visible keys, since
# every score is near zero — the model has not learned what to look at yet.
#
# ## 4. The feed-forward network
#
# After the first residual addition, each token goes alone through a two-layer MLP four times
# as wide: $\operatorname{FFN}(u) = W_2\,\operatorname{GELU}(W_1 u)$, with GPT-2's tanh GELU.

# %%
x1 = x.data + attn_out  # (B, T, C): first residual addition
u = block.ln_2(nima.tensor(x1)).data  # (B, T, C)
hidden = u @ block.ffn.fc.weight.data.T  # (B, T, 4C)
gelu = 0.5 * hidden * (1 + np.tanh(math.sqrt(2 / math.pi) * (hidden + 0.044715 * hidden**3)))
ffn_out = gelu @ block.ffn.proj.weight.data.T  # (B, T, C)
show("x + attention", x1)
show("FFN hidden, W_1 u", hidden)
show("FFN output", ffn_out)
assert close(ffn_out, block.ffn(nima.tensor(u)))

# %% [markdown]
# ## 5. Residuals: the block is two additions
#
# $$x \leftarrow x + \operatorname{Attn}(\operatorname{LN}_1(x)), \qquad
# x \leftarrow x + \operatorname{FFN}(\operatorname{LN}_2(x)).$$
#
# The residual stream carries the embeddings through unchanged, and each sublayer adds a
# correction. GPT-2's init keeps the corrections small (the `proj` weights start at
# $0.02/\sqrt{2L}$), so at initialisation the stream is mostly the embeddings.

# %%
x2 = x1 + ffn_out  # (B, T, C)
assert close(x2, block(x))
print(f"std of the stream: embeddings {x.data.std():.4f}, after attention {x1.std():.4f}, "
      f"after the FFN {x2.std():.4f}")
print(f"std of the corrections: attention {attn_out.std():.4f}, FFN {ffn_out.std():.4f}")

# %% [markdown]
# ## 6. All the blocks, the final norm and the tied head
#
# The other three blocks repeat the same two additions. Then the final LayerNorm, and the head:
# with tied weights it is the token table itself, so a token's logit is the dot product of the
# final hidden state with that token's embedding, $\text{logits} = \operatorname{LN}_f(h_L)
# W_E^\top$.

# %%
h = nima.tensor(x2)
for blk in model.blocks[1:]:
    h = blk(h)  # (B, T, C)
logits = model.ln_f(h).data @ model.wte.weight.data.T  # (B, T, V)
show("h_L", h)
show("logits", logits)
print("head tied to the embedding:", model.lm_head.weight is model.wte.weight)
full, loss = model(idx, targets)
assert close(logits, full)
print(f"loss at init {loss.item():.4f}; log V = {math.log(len(chars)):.4f} (uniform guessing)")
assert abs(loss.item() - math.log(len(chars))) < 0.1

# %% [markdown]
# ## 7. It learns
#
# A few steps of Adam, written out here (`nima.optim.AdamW` is the library's version, used from
# tutorial 07 on), on this one batch. The loss falls well below $\log V$ as the model
# memorises the text.

# %%
params = list(model.parameters())
moments = [(np.zeros_like(p.data), np.zeros_like(p.data)) for p in params]
steps = 30 if QUICK else 150
for step in range(1, steps + 1):
    model.zero_grad()
    _, loss = model(idx, targets)
    loss.backward()
    for p, (m, s) in zip(params, moments, strict=True):
        m[...] = 0.9 * m + 0.1 * p.grad
        s[...] = 0.99 * s + 0.01 * p.grad**2
        p.data -= 3e-3 * (m / (1 - 0.9**step)) / (np.sqrt(s / (1 - 0.99**step)) + 1e-8)
    if step % (steps // 5) == 0:
        print(f"step {step:3d}: loss {loss.item():.4f}")
assert loss.item() < 0.6 * math.log(len(chars))

# %% [markdown]
# ## 8. The parameter budget
#
# Where do the model's parameters sit? `count_parameters` says it on paper, from the config
# alone; grouping the model's own named parameters must give the same numbers.

# %%
parts = count_parameters(config)
by_name = {"embedding": 0, "position": 0, "attention": 0, "ffn": 0, "norms": 0, "final_norm": 0}
for name, p in model.named_parameters():
    if name.startswith("wte"):
        by_name["embedding"] += p.size
    elif name.startswith("wpe"):
        by_name["position"] += p.size
    elif ".attn." in name:
        by_name["attention"] += p.size
    elif ".ffn." in name:
        by_name["ffn"] += p.size
    elif ".ln_" in name:
        by_name["norms"] += p.size
    else:
        by_name["final_norm"] += p.size
L = config.n_layer
print(f"{'part':<12} {'formula':>10} {'model':>10}")
for key in by_name:
    formula = parts[key] * (L if key in ("attention", "ffn", "norms") else 1)
    print(f"{key:<12} {formula:>10,} {by_name[key]:>10,}")
    assert formula == by_name[key]
print(f"{'total':<12} {parts['total']:>10,} {model.num_parameters():>10,}")

# %% [markdown]
# Per block: attention $4C^2$ (no biases here), the FFN $2 \cdot C \cdot 4C = 8C^2$, the two
# norms $2C$. At this size the blocks hold 98% of the parameters; with GPT-2's vocabulary of
# 50257 the embedding table alone would hold 6.4M, eight times everything else. The same
# formulas give GPT-2 small and medium exactly:

# %%
for name in ("small", "medium"):
    total = count_parameters(GPTConfig.preset(name))["total"]
    print(f"GPT-2 {name}: {total:,} parameters")
assert count_parameters(GPTConfig.preset("small"))["total"] == 124_439_808

# %% [markdown]
# The Micro-Transformer design spends about 2.4M parameters three ways (vocabulary 5000, context
# 512, learned positions, tied head, GPT-2's biases and LayerNorms):

# %%
print(micro_transformer_table())

# %% [markdown]
# And `explore` searches a grid for every shape inside a budget — here 32-dimensional heads,
# 2 to 8 layers, a few widths and FFN sizes, between 2.2M and 2.5M parameters. The same search
# from the shell: `nima params --explore --target 2.2M-2.5M`.

# %%
grid = {"n_layer": range(2, 9), "n_embd": [128, 160, 192, 224, 256], "head_dim": [32],
        "ffn_hidden": [512, 640, 768, 1024]}
found = explore(grid, (2.2e6, 2.5e6), base=MICRO_BASE)
print(f"{len(found)} configurations:")
for c, total in found:
    print(f"  {c.n_layer} layers x {c.n_embd} wide, {c.n_head} heads, FFN {c.ffn_hidden}: "
          f"{total:,}")
assert {(c.n_layer, c.n_embd) for c, _ in found} >= {(4, 192), (6, 128), (5, 160)}

# %% [markdown]
# ## Summary
#
# - A GPT is embeddings, a stack of blocks and a tied head; each block is two residual
#   additions, attention then the feed-forward network.
# - The shapes stay `(B, T, C)` through the blocks; the head gives `(B, T, V)` logits and the
#   loss their mean cross-entropy over the positions with a target.
# - The parameter count follows from the shapes, and a few training steps show the loss
#   falling.
#
# ## Check your understanding
#
# ??? question "How does the final LayerNorm's $\beta$ reach the logits?"
#     The logits are $\operatorname{LN}(h) W_E^\top$; $\beta$ adds the same vector to every
#     position's normalised state, so it adds $\beta W_E^\top$ to every row of logits.
#
# ??? question "Why is the loss averaged over the positions with a target, not over all of them?"
#     Positions marked $-100$ (padding) carry no prediction; counting them would dilute the loss
#     and its gradient by the share of padding in the batch.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_06 -->
