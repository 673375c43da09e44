# %% [markdown]
# # GPT-2 from a local folder
#
# OpenAI's GPT-2 small is a 124M-parameter model that anyone can download from the Hugging Face
# hub as a folder: `config.json`, the weights in `model.safetensors`, and the tokenizer's
# `vocab.json` and `merges.txt`. Nima reads such a folder directly — the weights through its own
# safetensors reader, the tokenizer with GPT-2's exact byte-level BPE — so a model trained
# elsewhere runs on Nima's hand-written transformer.
#
# This tutorial counts GPT-2 small's parameters from its configuration alone (124,439,808),
# loads a folder, checks how the names and layouts map, samples text, measures memory and
# tokens/s, decodes a batch of prompts of different lengths, measures bits per byte on a text,
# and exports the model for a NumPy-only script. Nothing is downloaded: if the
# environment variable `NIMA_GPT2_DIR` names a folder holding GPT-2 (for instance one saved with
# `transformers`' `save_pretrained`), the tutorial uses it; otherwise — and always in quick
# mode, as the tests run it — it builds a small stand-in folder of the same format itself, with
# random weights, so the text it samples is gibberish. The reference page is
# [Interoperability](../interop.md).

# %%
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import nima
from nima.data import ByteBPETokenizer
from nima.export import export_npz
from nima.generation import generate
from nima.models import GPT, GPTConfig, count_parameters, size_mb
from nima.models.pretrained import config_from_hf, load_pretrained, save_pretrained
from nima.training.evaluate import evaluate_tokens, units_of

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
ROOT = HERE.parent
WORK = Path("runs") / "tutorial_15"  # relative to where the tutorial runs

# %% [markdown]
# ## 1. GPT-2 small's size, from its config alone
#
# This is GPT-2 small's `config.json` as the hub serves it (the fields that shape the model).
# `config_from_hf` turns it into a `GPTConfig`, and `count_parameters` adds up the parameters
# without building anything: token table $V C$, position table $T C$, per block
# $12 C^2 + 13 C$ (attention $4C^2 + 4C$, MLP $8C^2 + 5C$, two LayerNorms $4C$), the final
# LayerNorm $2C$, and no head — GPT-2 ties it to the token table.

# %%
GPT2_SMALL = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257,
    "n_positions": 1024, "n_ctx": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
    "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05,
    "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
    "bos_token_id": 50256, "eos_token_id": 50256,
}
small = config_from_hf(GPT2_SMALL)
parts = count_parameters(small)
for name in ("embedding", "position", "block", "blocks", "final_norm", "head", "total"):
    print(f"{name:>11}: {parts[name]:>12,}")
assert small == GPTConfig.preset("small")
assert parts["total"] == 124_439_808
print(f"float32 weights: {size_mb(parts['total']):.1f} MB")

# %% [markdown]
# ## 2. The folder
#
# With `NIMA_GPT2_DIR` set (and not in quick mode) we read the real thing. Otherwise we write a
# stand-in: a BPE tokenizer trained on tiny Shakespeare, saved as GPT-2's `vocab.json` and
# `merges.txt`, and a small GPT-2-shaped model with random weights, saved as `config.json` and
# `model.safetensors` — the same files, by the same code paths a real folder takes.

# %%
real = os.environ.get("NIMA_GPT2_DIR")
if real and not QUICK:
    folder = Path(real)
else:
    folder = WORK / "gpt2-standin"
    folder.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    bpe = ByteBPETokenizer.train(text[: 20_000 if QUICK else 200_000], 300 if QUICK else 1024,
                                 pattern="gpt2")
    bpe.register_special_tokens({"<|endoftext|>": bpe.vocab_size})
    bpe.save_files(folder / "vocab.json", folder / "merges.txt")
    nima.manual_seed(0)
    standin = GPT(GPTConfig(vocab_size=bpe.vocab_size, block_size=128, n_layer=2, n_head=4,
                            n_embd=64))
    save_pretrained(standin, folder)
print(folder, sorted(p.name for p in folder.iterdir()))
print(json.dumps({k: v for k, v in json.loads((folder / "config.json").read_text()).items()
                  if k in ("model_type", "n_embd", "n_layer", "n_head", "vocab_size")}))

# %% [markdown]
# ## 3. Load it
#
# `load_pretrained` reads `config.json`, refuses anything it cannot compute (naming the field),
# reads the weights and maps their names: `transformer.h.0.attn.c_attn.weight` becomes
# `blocks.0.attn.qkv.weight`, transposed, because GPT-2's `Conv1D` stores its weight as
# (in, out) while a `Linear` stores (out, in). The tokenizer comes from the two text files.

# %%
start = time.perf_counter()
model = load_pretrained(folder)
tokenizer = ByteBPETokenizer.from_files(folder / "vocab.json", folder / "merges.txt")
print(f"loaded in {time.perf_counter() - start:.2f} s: {model.num_parameters():,} parameters, "
      f"vocabulary {tokenizer.vocab_size:,}")
assert model.num_parameters() == count_parameters(model.config)["total"]
assert tokenizer.vocab_size == model.config.vocab_size

raw = nima.load(folder / "model.safetensors")  # (the hub's file has no "transformer." prefix)
prefix = "transformer." if "transformer.wte.weight" in raw else ""
c_attn = raw[f"{prefix}h.0.attn.c_attn.weight"]  # (C, 3C): Conv1D, (in, out)
qkv = model.blocks[0].attn.qkv.weight.data  # (3C, C): Linear, (out, in)
print("c_attn", c_attn.shape, "-> qkv", qkv.shape)
assert np.array_equal(qkv, c_attn.T)
memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
print(f"weights: {size_mb(model.num_parameters()):.1f} MB; process peak so far: {memory:.0f} MB")

# %% [markdown]
# ## 4. Sample
#
# GPT-2's tokenizer splits the prompt with its regular expression, then merges bytes into
# tokens; `<|endoftext|>` is its one special token (id 50256 in GPT-2). `generate` decodes with
# a KV cache, so each new token costs one position of attention per layer.

# %%
prompt = "ROMEO:"
ids = tokenizer.encode(prompt)
print(prompt, "->", ids)
n_new = 20 if QUICK else 100
start = time.perf_counter()
out = generate(model, np.asarray([ids]), n_new, do_sample=True, temperature=0.8, top_k=40,
               seed=0, stats=False)
elapsed = time.perf_counter() - start
print(repr(tokenizer.decode(out.tolist()[0])))
print(f"{n_new} tokens in {elapsed:.2f} s: {n_new / elapsed:.0f} tokens/s on this CPU")
assert len(out.tolist()[0]) == len(ids) + n_new

# %% [markdown]
# ## 5. Prompts of different lengths, and bits per byte
#
# A batch of prompts of different lengths is left-padded, as Hugging Face pads it, and the
# model is given the padding mask: each row's positions count its own tokens only, so each row
# decodes exactly as its prompt alone does. To *measure* the model, `evaluate_tokens` predicts
# every token of a text once, in windows of the model's context (`nima eval FOLDER --data FILE`
# from the shell); bits per byte divide its loss by the bytes the tokens spell, the number that
# compares models with different tokenizers. (The stand-in's random weights give about
# $\log_2 V$ bits per token.)

# %%
prompts = [tokenizer.encode(p) for p in ("ROMEO:", "JULIET: O Romeo", "Ay")]
batch = generate(model, prompts, 8, stats=False)
for row, p in zip(batch.tolist(), prompts, strict=True):
    alone = generate(model, [p], 8, stats=False).tolist()[0]
    print(repr(tokenizer.decode(row)))
    assert row == alone
print("padding in front of the shorter prompts:", batch.starts.tolist())

sample_text = (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[-3000:]
tokens = np.asarray(tokenizer.encode(sample_text))
result = evaluate_tokens(model, tokens, context=min(128, model.config.block_size))
units, unit = units_of(tokenizer, tokens)
print(f"{len(sample_text.encode())} bytes, {tokens.size} tokens")
print(dataclasses.replace(result, units=units, unit=unit).summary())

# %% [markdown]
# ## 6. Take it elsewhere: NumPy alone
#
# `export_npz` writes the weights, the configuration and the tokenizer into one `.npz` (arrays
# only: no pickle). `nima/export/numpy_gpt.py` is a single file that needs nothing but NumPy —
# copy it anywhere — and runs the same forward pass. Greedy decoding there picks the same
# tokens as greedy decoding in Nima.

# %%
npz = export_npz(folder, WORK / "gpt2.npz")
script = ROOT / "nima" / "export" / "numpy_gpt.py"
n_greedy = 5 if QUICK else 20
result = subprocess.run(
    [sys.executable, str(script), str(npz), "--prompt", prompt,
     "--max-new-tokens", str(n_greedy), "--temperature", "0"],
    capture_output=True, text=True, check=True)
greedy = generate(model, np.asarray([ids]), n_greedy, stats=False)
print("numpy_gpt.py:", repr(result.stdout.rstrip("\n")))
print("Nima:        ", repr(tokenizer.decode(greedy.tolist()[0])))
assert result.stdout.rstrip("\n") == tokenizer.decode(greedy.tolist()[0])
print(f"{npz.name}: {npz.stat().st_size / 1e6:.1f} MB")

# %% [markdown]
# ## Summary
#
# - GPT-2 small's 124,439,808 parameters follow from its `config.json` alone.
# - A Hugging Face folder loads into Nima's GPT — weights through Nima's safetensors reader,
#   the tokenizer as GPT-2's byte-level BPE — and samples.
# - `export_npz` and one NumPy-only script run the model without Nima.
#
# ## Check your understanding
#
# ??? question "Which key of GPT-2's `config.json` gives the context length?"
#     `n_positions` (1024 by default): the number of learned position vectors.
#
# ??? question "Why is `gelu_new` the tanh approximation?"
#     GPT-2 was trained with the tanh approximation of GELU, which `transformers` calls
#     `gelu_new`; `gelu` is the exact $x\,\Phi(x)$.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_15 -->
