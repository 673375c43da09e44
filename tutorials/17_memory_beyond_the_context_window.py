# %% [markdown]
# # Memory beyond the context window
#
# A GPT with a context of $T$ tokens cannot use anything older: a definition `set QX 47` more
# than $T$ characters before the question `get QX ..` is simply not in its input. Two of the
# Deep Tree Echo parts carry information past the window: the **echo layer** (a few state
# vectors rewritten after every segment) and the **memory bank** (the keys and values of past
# segments, read by attention).
#
# This tutorial first shows the problem on the recall task: the predictions of a dense GPT for
# a query do not change at all when the definition, outside its window, changes — while those of
# a GPT with an echo layer or a memory bank do. Then it builds, by hand, a memory layer and an
# echo layer that *recall*: weights set so that a key seen in one segment fetches its value in
# the next, where dense attention sees only the question. No training is needed to see the
# mechanism; whether training finds it is what the [experiment](../deep_tree_echo.md) measures.
#
# The reference pages are [Memory bank](../memory_bank.md), [Echo layer](../echo_layer.md) and
# [The Deep Tree Echo model](../deep_tree_echo.md).

# %%
import os

import numpy as np

import nima
from nima.data.recall import generate_recall, parse_recall
from nima.models import GPT, GPTConfig
from nima.nn import EchoLayer, MemoryAttention
from nima.training.tasks import stream_logits

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The task: a key set more than a window ago
#
# `generate_recall` writes definitions, filler and queries; each query comes at least
# `min_distance` characters after its definition. With a context of 32 characters and
# `min_distance = 33`, the definition is never in the window of the model predicting the answer.

# %%
T = 32
text = generate_recall(n_queries=6 if QUICK else 12, min_distance=T + 1, max_distance=2 * T,
                       seed=1)
print(text[:300])
queries = parse_recall(text)
print([(q.key, q.value, q.distance) for q in queries])
assert all(q.distance > T for q in queries)

# %% [markdown]
# ## 2. What a dense GPT cannot see
#
# Character ids, three small untrained GPTs of context $T$, and the text read the way the
# model reads a long text — in segments of $T$ tokens (`stream_logits`): a plain GPT, one with an
# echo layer, one with a memory layer. We change the value of the first definition and compare
# the logits where its query's answer is predicted.

# %%
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
ids = np.array([[stoi[c] for c in text]])
first = queries[0]
definition = first.position - first.distance  # where the definition's value starts
other = next(c for c in "0123456789" if c in stoi and c != text[definition])
changed = ids.copy()
changed[0, definition] = stoi[other]  # the key now holds another value
answer = first.position  # the query's first value digit: predicted at position - 1

base = dict(vocab_size=len(chars), block_size=T, n_layer=2, n_head=2, n_embd=32)
models = {"dense": {}, "echo": dict(echo_layers=(1,)),
          "memory": dict(memory_layers=(1,), memory_capacity=4 * T)}
for name, parts in models.items():
    nima.manual_seed(0)
    model = GPT(GPTConfig(**base, **parts)).double()
    before = stream_logits(model, ids)[0, answer - 1]
    after = stream_logits(model, changed)[0, answer - 1]
    moved = np.abs(after - before).max()
    print(f"{name:>6}: the answer's logits move by {moved:.2e} when the definition changes")
    if name == "dense":
        assert moved == 0.0  # exactly nothing: the definition is outside every window
    else:
        assert moved > 1e-9  # the carried state brings it in

# %% [markdown]
# The dense model's logits do not move at all: no weight setting could make it answer, the
# information is not in its input. The others *could* — their output depends on the old
# segment. The next two sections show that the dependence can be exactly the right one.
#
# ## 3. A memory layer that recalls, by hand
#
# Take vectors of two parts: a one-hot **key** (8 keys) and a one-hot **value** (10 values). A
# definition token carries both, a question only its key. In one `MemoryAttention` head,
#
# - the query and key projections keep the key part (the query scaled up: sharp attention),
# - the value projection keeps everything, the output projection is the identity,
# - the gate $g = \sigma(a)$ is pushed to 1: the layer's output is the memory read.
#
# Segment 1 holds the definitions; the layer writes their keys and values into its bank after
# reading. Segment 2 holds the questions, in another order: the local (dense) attention sees
# only questions, but each question's query matches exactly one key in the bank.

# %%
KEYS, VALUES = 8, 10
D = KEYS + VALUES
K_PART = np.diag(np.r_[np.ones(KEYS), np.zeros(VALUES)])  # keeps the key part of a vector


def token(key: int, value: int | None) -> np.ndarray:
    v = np.zeros(D)
    v[key] = 1.0
    if value is not None:
        v[KEYS + value] = 1.0
    return v


memory = MemoryAttention(D, 1, block_size=4, capacity=16, top_k=1).double().eval()
W = memory.qkv.weight.data  # (3D, D): W_Q, W_K, W_V stacked
W[...] = np.vstack([30.0 * K_PART, K_PART, np.eye(D)])
memory.qkv.bias.data[...] = 0.0
memory.proj.weight.data[...] = np.eye(D)
memory.proj.bias.data[...] = 0.0
memory.gate_logit.data[...] = 20.0  # g = sigmoid(20): all memory

keys = rng.permutation(KEYS)[:4]
values = rng.integers(0, VALUES, 4)
definitions = np.array([[token(k, v) for k, v in zip(keys, values, strict=True)]])
order = rng.permutation(4)
questions = np.array([[token(keys[i], None) for i in order]])
memory(nima.tensor(definitions))  # segment 1: read (nothing yet), then written to the bank
recalled = memory(nima.tensor(questions)).data[0, :, KEYS:].argmax(-1)
print("asked for keys", keys[order].tolist(), "-> values", recalled.tolist(),
      "(set to", values[order].tolist(), ")")
assert recalled.tolist() == values[order].tolist()

# %% [markdown]
# Top-1 retrieval makes it exact; reading the whole bank (`top_k=None`) with the same sharp
# queries gives almost the same answer, every value right. Without the bank — a fresh layer, or
# dense attention — segment 2 has no value part anywhere to copy from.

# %%
memory.top_k = None
memory.memory.reset()
memory(nima.tensor(definitions))
soft = memory(nima.tensor(questions)).data[0, :, KEYS:]
assert soft.argmax(-1).tolist() == values[order].tolist() and soft.max(-1).min() > 0.99
memory.memory.reset()
print("an empty bank recalls nothing: largest value weight",
      memory(nima.tensor(questions)).data[0, :, KEYS:].max())

# %% [markdown]
# ## 4. An echo layer that recalls, by hand
#
# The echo layer keeps $S$ slots. After each segment the slots attend to its tokens (the *write*
# cross-attention) and a gate mixes the old slots $s$ with what they read $u$:
# $s' = g \odot s + (1 - g) \odot u$. Tokens of the next segment attend to the slots (the *read*
# cross-attention).
#
# Let slot $j$ start as the one-hot of key $j$ (`initial`), let the write attention match a slot
# to the definition with its key, copy the whole token, and let the gate overwrite ($g \approx 0$):
# after segment 1, slot $j$ holds key $j$ *and its value*. The read attention then matches a
# question to the slot of its key.

# %%
echo = EchoLayer(D, 1, segment_size=4, slots=KEYS).double().eval()
echo.initial.data[...] = np.eye(KEYS, D)  # slot j = key j, no value yet
for attention in (echo.write, echo.read):
    attention.q.weight.data[...] = 30.0 * K_PART  # sharp: match on the key part
    attention.kv.weight.data[...] = np.vstack([K_PART, np.eye(D)])  # keys: key part; values: all
    attention.proj.weight.data[...] = np.eye(D)
    for part in (attention.q, attention.kv, attention.proj):
        part.bias.data[...] = 0.0
echo.gate.weight.data[...] = 0.0
echo.gate.bias.data[...] = -20.0  # g = sigmoid(-20): overwrite with what was read

s = echo.initial.data[None]
u = echo.write(nima.tensor(s), nima.tensor(definitions)).data
g = 1 / (1 + np.exp(-(np.concatenate([s, u], -1) @ echo.gate.weight.data.T + echo.gate.bias.data)))
expected = g * s + (1 - g) * u  # the update, by its equation

echo(nima.tensor(definitions))  # segment 1: the slots are rewritten
np.testing.assert_allclose(echo.state.data, expected, rtol=1e-12, atol=1e-12)
read = echo(nima.tensor(questions)).data[0, :, KEYS:].argmax(-1)
print("echo: asked for keys", keys[order].tolist(), "-> values", read.tolist())
assert read.tolist() == values[order].tolist()

# %% [markdown]
# Eight slots hold eight key–value pairs; a ninth key would have to share a slot. That is the
# difference between the two: the echo state is a fixed handful of vectors that must *choose*
# what to keep — its write attention and gate decide — while the bank keeps the last `capacity`
# keys and values verbatim and lets each query pick. Both are read through the same cached
# decoding as the rest of the model, so generation carries what they hold past `block_size`.
#
# In a trained GPT nobody sets these weights: the model has to find them from the loss. The
# experiment on [the Deep Tree Echo page](../deep_tree_echo.md#the-experiment) measures how far
# a few hundred steps get on exactly this task.
#
# ## Summary
#
# - Read as a stream — segments of $T$ tokens, the window emptied after each
#   (`stream_logits`) — a dense GPT's logits depend on its own segment only: changing a
#   definition outside it moves them by exactly 0, so no weights could make it answer.
# - An echo layer or a memory bank carries state from segment to segment: the same change
#   moves their logits.
# - A `MemoryAttention` whose queries and keys match on the key part, with sharp queries and
#   the gate at 1, recalls every value written by an earlier segment — exactly with top-1
#   retrieval, almost exactly reading the whole bank; an empty bank recalls nothing.
# - An `EchoLayer` whose slots start as the keys, whose write attention copies the matching
#   definition and whose gate overwrites holds one key–value pair per slot, and its read
#   attention answers the questions of the next segment.
# - The echo state is $S$ vectors that must choose what to keep; the bank keeps the last
#   `capacity` keys and values verbatim and lets each query pick.
#
# ## Check your understanding
#
# ??? question "Read as a stream with $T = 32$, can a dense GPT at position 40 see token 30?"
#     No, although it is only 10 tokens back: the segments are 0–31 and 32–63, and position
#     40's window starts at 32. Read as a stream, the window is not the last $T$ tokens but
#     the segment so far — the tokens at the start of a segment see almost nothing.
#
# ??? question "Why does section 3 push the memory layer's gate to 1?"
#     The output is $g\,Y^\text{mem} + (1 - g)\,Y^\text{local}$, and the local attention of
#     the question segment sees only questions, which carry no value part. With $g = 1$ the
#     output is the memory read alone; at the initial $g = 1/2$ the recalled value would come
#     out at half its weight.
#
# ??? question "Why can the echo layer of section 4 hold no more pairs than it has slots?"
#     Each slot is one vector, written by one attention over the segment. A slot whose key
#     matched two definitions would read their mean and mix the two values, and the gate
#     decides how much of the old slot survives a new write: $S$ slots hold at most $S$ pairs,
#     and the layer must choose which. The bank keeps the last `capacity` keys and values
#     verbatim, and each query picks among them.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_17 -->
