# %% [markdown]
# # BPE from scratch
#
# A language model reads integers, not text. A character-level tokenizer gives every character
# an id: a tiny vocabulary, but long sequences, and a character it never saw cannot be encoded.
# **Byte-pair encoding** (BPE), as GPT-2 uses it, starts from the 256 byte values — so any UTF-8
# text encodes — and then repeatedly *merges the most frequent adjacent pair* into a new token,
# growing the vocabulary one entry at a time until it reaches the size asked for.
#
# This tutorial runs the algorithm by hand on a small text, checks it against
# `nima.data.ByteBPETokenizer`, trains that on Shakespeare, measures how compression grows with
# the vocabulary (figure: `tutorials/figures/08_compression.png`), and round-trips text that a
# character tokenizer cannot. The reference page is [Tokenizers](../tokenizers.md).

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from nima.data import ByteBPETokenizer, CharTokenizer, get_stats, merge

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
FIGURES.mkdir(parents=True, exist_ok=True)
SHAKESPEARE = HERE.parent / "data" / "tinyshakespeare.txt"

# %% [markdown]
# ## 1. Text is bytes
#
# UTF-8 writes ASCII characters as one byte each and everything else as two to four. A
# byte-level tokenizer's first 256 ids are exactly those byte values:

# %%
examples = ["hi", "é", "€", "👋"]
for s in examples:
    b = s.encode("utf-8")
    print(f"{s!r:6} -> {len(b)} byte(s): {list(b)}")
assert [len(s.encode("utf-8")) for s in examples] == [2, 2, 3, 4]

# %% [markdown]
# ## 2. One merge, by hand
#
# Take the classic example `aaabdaaabac` (Wikipedia's). As bytes, `a` = 97, `b` = 98, `c` = 99,
# `d` = 100. **Count** every adjacent pair (overlapping pairs included, so `aaa` holds the pair
# `(a, a)` twice):

# %%
text = "aaabdaaabac"
ids = list(text.encode("utf-8"))
stats = get_stats(ids)
print(ids)
for pair, count in sorted(stats.items(), key=lambda kv: -kv[1]):
    print(f"  {bytes(pair).decode()!r}: {count}")
assert stats[(97, 97)] == 4 and stats[(97, 98)] == 2 and stats[(100, 97)] == 1

# %% [markdown]
# `aa` is the most frequent pair. **Merge** it: give it the first free id, 256, and replace
# every occurrence left to right (in `aaa` the first two merge, the third `a` stays):

# %%
ids = merge(ids, (97, 97), 256)
print(ids)
assert ids == [256, 97, 98, 100, 256, 97, 98, 97, 99]

# %% [markdown]
# ## 3. The loop: count, pick, merge, repeat
#
# Training repeats those two steps until the vocabulary is big enough. Each new id stands for
# the concatenation of the bytes of the two ids it merged, so the vocabulary is a table from id
# to bytes that grows by one row per merge. Ties go to the lowest pair, so training is
# deterministic.

# %%
def train_by_hand(text: str, vocab_size: int) -> tuple[dict, dict, list[int]]:
    ids = list(text.encode("utf-8"))
    merges: dict[tuple[int, int], int] = {}
    vocab = {i: bytes([i]) for i in range(256)}
    for new_id in range(256, vocab_size):
        stats = get_stats(ids)
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))  # most frequent, then lowest
        ids = merge(ids, pair, new_id)
        merges[pair] = new_id
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        print(f"merge {pair} -> {new_id} = {vocab[new_id]!r:10} sequence: {ids}")
    return merges, vocab, ids


merges, vocab, ids = train_by_hand("aaabdaaabac", 259)

# %% [markdown]
# Eleven bytes became five tokens, with three new vocabulary entries: `aa`, `ab`, and `aaab`
# (a merge of merges). `ByteBPETokenizer.train` learns the same merges, and its `encode` gives
# the same ids, because encoding replays the merges in the order they were learned:

# %%
tok = ByteBPETokenizer.train("aaabdaaabac", vocab_size=259)
print(tok.merges)
assert tok.merges == merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
assert tok.encode("aaabdaaabac") == ids == [258, 100, 258, 97, 99]
assert tok.decode(ids) == "aaabdaaabac"

# %% [markdown]
# ## 4. Shakespeare
#
# On real text the merges never cross a *chunk* boundary: GPT-2 first splits the text with a
# regular expression into words, numbers, punctuation runs and spaces (`pattern="gpt2"`), so
# `dog.`, `dog!` and `dog?` share the token for ` dog` instead of learning three. Training
# counts identical chunks once, weighted by how often they occur. The split keeps a word's
# leading space with it, so the first merges join a space to a common first letter (` t`,
# ` a`) and frequent pairs inside words (`he`, `ou`) — and within a handful of merges they
# combine into ` the`.

# %%
corpus = SHAKESPEARE.read_text(encoding="utf-8")
n_train = 30_000 if QUICK else 300_000
train_text = corpus[:n_train]
held_out = corpus[-(5_000 if QUICK else 50_000):]  # the end of the play cycle, unseen
max_vocab = 320 if QUICK else 1024
bpe = ByteBPETokenizer.train(train_text, vocab_size=max_vocab, pattern="gpt2")
print(f"trained on {len(train_text):,} characters: {bpe.vocab_size} tokens")
for pair, new_id in list(bpe.merges.items())[:12]:
    print(f"  {new_id}: {bpe.vocab[pair[0]]!r} + {bpe.vocab[pair[1]]!r} -> {bpe.vocab[new_id]!r}")
assert bpe.decode(bpe.encode(held_out)) == held_out

# %% [markdown]
# ## 5. Compression against vocabulary size
#
# Training is greedy: the first $k$ merges learned for a vocabulary of 1024 are exactly the
# merges a training run for $256 + k$ would learn. So one run gives every smaller tokenizer,
# by truncating the merge list — check that once, then measure each on the held-out text. The
# figure of merit is characters per token: how much text one position of the model's context
# holds.

# %%
def truncated(tokenizer: ByteBPETokenizer, vocab_size: int) -> ByteBPETokenizer:
    merges = dict(list(tokenizer.merges.items())[: vocab_size - 256])
    return ByteBPETokenizer(merges, pattern=tokenizer.pattern)


small = ByteBPETokenizer.train(train_text, vocab_size=288, pattern="gpt2")
assert truncated(bpe, 288).merges == small.merges

sizes = [256, 264, 288, 320] if QUICK else [256, 288, 320, 384, 512, 768, 1024]
chars_per_token = []
for size in sizes:
    n_tokens = len(truncated(bpe, size).encode(held_out))
    chars_per_token.append(len(held_out) / n_tokens)
    print(f"vocab {size:5d}: {n_tokens:6,} tokens, {chars_per_token[-1]:.2f} characters/token")
assert all(np.diff(chars_per_token) > 0)  # every merge removes at least one token somewhere
# no merges: one token per byte (Shakespeare is ASCII, so one per character)
assert chars_per_token[0] == len(held_out) / len(held_out.encode("utf-8"))

char_tok = CharTokenizer.train(corpus)
fig = Figure(figsize=(7, 4), layout="constrained")
ax = fig.subplots()
ax.plot(sizes, chars_per_token, "o-", label="byte-level BPE (gpt2 split)")
ax.scatter([char_tok.vocab_size], [1.0], color="C3", zorder=3,
           label=f"character-level ({char_tok.vocab_size} tokens)")
ax.set(xscale="log", xlabel="vocabulary size", ylabel="characters per token (held-out text)",
       title="BPE compression grows with the vocabulary")
ax.legend()
fig.savefig(FIGURES / "08_compression.png", dpi=100)

# %% [markdown]
# The first few dozen merges pay the most (frequent letter pairs and short words); later ones
# add rarer, longer words, each saving less. A bigger vocabulary means shorter sequences —
# more text per context window, less attention cost per character — but a larger embedding
# table and output layer, and rarer tokens with fewer training examples each. GPT-2 settled on
# 50,257 for web text; nanoGPT's Shakespeare demo uses the 65 characters.
#
# ## 6. Any text round-trips
#
# Because the base vocabulary is the bytes, text the tokenizer never saw — other scripts,
# emoji, the empty string — still encodes, into more tokens, and decodes back exactly. The
# character tokenizer trained on Shakespeare cannot encode `👋`. Special tokens get ids of
# their own and are never split; and the tokenizer saves to, and loads from, a plain-text file.

# %%
samples = ["", "a", "Hello, world!", "naïve café", "Здравствуй, мир", "日本語のテキスト",
           "👋🏽 family: 👨‍👩‍👧", "tabs\tand\nnewlines  "]
for s in samples:
    encoded = bpe.encode(s)
    assert bpe.decode(encoded) == s
    print(f"{s!r:34} {len(s.encode('utf-8')):3d} bytes -> {len(encoded):3d} tokens")
assert bpe.encode("") == []
try:
    char_tok.encode("👋")
except (KeyError, ValueError) as err:
    print("character tokenizer:", type(err).__name__, err)
else:
    raise AssertionError("the character tokenizer should refuse an unseen character")

bpe.register_special_tokens({"<|endoftext|>": bpe.vocab_size})
ids = bpe.encode("To be<|endoftext|>or not")
assert bpe.special_tokens["<|endoftext|>"] in ids
assert bpe.decode(ids) == "To be<|endoftext|>or not"

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "shakespeare.tok"
    bpe.save(path)
    loaded = ByteBPETokenizer.load(path)
    print(path.read_text(encoding="utf-8").splitlines()[:3], "...")
assert loaded.merges == bpe.merges and loaded.special_tokens == bpe.special_tokens
assert loaded.encode(held_out) == bpe.encode(held_out)

# %% [markdown]
# ## Summary
#
# - Text is bytes; BPE repeatedly merges the most frequent adjacent pair into a new id,
#   ties broken by the lowest pair.
# - On Shakespeare a few hundred merges already shorten the text a lot; larger vocabularies
#   compress more, with diminishing returns.
# - Every string round-trips: decoding joins the tokens' bytes and decodes them as UTF-8.
#
# ## Check your understanding
#
# ??? question "Why decode all the bytes together rather than each token separately?"
#     A multi-byte character may be split across two tokens; each half alone is invalid UTF-8,
#     together they are one character.
#
# ??? question "In `aaa`, how many times does the pair `aa` occur?"
#     Twice: counting overlapping pairs, positions 0–1 and 1–2. (One merge can then replace only
#     one of them: `Za`.)
#
# ## Exercises
#
# <!-- nima: exercises tutorial_08 -->
