# %% [markdown]
# # Learning the inference parameters
#
# Temperature, top-p and the repetition penalty are usually turned by hand. Here they are *learned*,
# as in the Echo Adventure design (see [where the ideas come
# from](../index.md#where-the-ideas-come-from)): `LearnedInference` wraps a trained GPT and holds
# them as constrained parameters — together with a softmax mix of the layers feeding the head and a
# gate per attention head — and `fit_inference_params` trains them by gradient descent on held-out
# text, with the transformer frozen. The objective is the NLL of the next character
# under the distribution decoding would sample from: the penalty on seen characters, the
# temperature, and a soft nucleus (see [Learned inference parameters](../learned_inference.md)).
#
# We train a small character-level GPT on Shakespeare, learn its inference parameters, then
# make it over-confident on purpose (logits $\times 3$) and watch the learned temperature undo
# that. With `NIMA_TUTORIAL_QUICK=1` every stage is much shorter.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import nima
from nima.data import CharTokenizer
from nima.generation.learned import LearnedInference, fit_inference_params, held_out_nll
from nima.models import GPT, GPTConfig

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
TRAIN_STEPS = 20 if QUICK else 600
FIT_STEPS = 10 if QUICK else 150
nima.manual_seed(0)

# %% [markdown]
# ## 1. Characters of Shakespeare and a small GPT
#
# The first 90% of the text trains the model; the last 10% is the held-out text the inference
# parameters learn from (a validation split is what they should see: on the training text a
# model looks better calibrated than it is). A fixed set of held-out batches measures the NLL
# before and after.

# %%
text = (HERE.parent / "data" / "tinyshakespeare.txt").read_text()
if QUICK:
    text = text[:60_000]
tokenizer = CharTokenizer.train(text)
data = np.array(tokenizer.encode(text), dtype=np.int64)
split = int(0.9 * len(data))
train_data, val_data = data[:split], data[split:]
config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=4,
                   n_embd=64, bias=False)
print(f"{len(train_data):,} training and {len(val_data):,} held-out characters, "
      f"vocabulary {tokenizer.vocab_size}")


def batch(source: np.ndarray, B: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """B random windows of block_size characters and the characters that follow them."""
    starts = rng.integers(0, len(source) - config.block_size - 1, B)
    window = starts[:, None] + np.arange(config.block_size + 1)  # (B, T + 1)
    return source[window[:, :-1]], source[window[:, 1:]]  # (B, T) each


rng = np.random.default_rng(0)
held_out = [batch(val_data, 16, rng) for _ in range(4)]  # fixed, for before/after numbers
fit_batches = [batch(val_data, 16, rng) for _ in range(16 if not QUICK else 2)]

# %% [markdown]
# Training is the plain loop: AdamW on the cross-entropy.

# %%
model = GPT(config)
optimizer = nima.optim.AdamW(model.parameters(), lr=3e-3)
for step in range(1, TRAIN_STEPS + 1):
    x, y = batch(train_data, 16, rng)
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % max(1, TRAIN_STEPS // 5) == 0:
        print(f"step {step:4d}  train loss {loss.item():.3f}")
model.eval()
with nima.no_grad():
    plain_nll = float(np.mean([model(x, y)[1].item() for x, y in held_out]))
print(f"held-out cross-entropy of the trained model: {plain_nll:.3f} nats per character")

# %% [markdown]
# ## 2. The inference parameters of the trained model
#
# At initialisation the wrapper is the plain model as closely as the constraints allow:
# $T = 1$, $p = 0.99$, $r = 1.001$, every head gate exactly 1 and 99.9% of the layer mix on the
# last block. Its objective is therefore close to the cross-entropy above (the soft nucleus
# still trims the last 1% of the mass a little). Fitting with the model frozen moves only the
# inference parameters.

# %%
learned = LearnedInference(model)


def show(params: dict) -> None:
    print(f"  temperature {params['temperature']:.3f}   top-p {params['top_p']:.4f}   "
          f"repetition penalty {params['repetition_penalty']:.4f}")
    print("  layer weights (embeddings, block 1, block 2):",
          np.array2string(params["layer_weights"], precision=3))
    print("  head gates:", np.array2string(params["head_weights"], precision=2).replace("\n", ""))


before = held_out_nll(learned, held_out)
show(learned.get_inference_params())
fit_inference_params(learned, fit_batches, steps=FIT_STEPS, lr=0.05)
after = held_out_nll(learned, held_out)
print(f"held-out objective: {before:.3f} -> {after:.3f}")
show(learned.get_inference_params())

# %% [markdown]
# A model trained on the cross-entropy is close to calibrated, so the temperature stays near
# 1; what moves is what the cross-entropy never tuned — the layer mix and the head gates — and
# top-p, which likelihood always pushes up (every cut-off token is a token the text sometimes
# uses; top-p earns its keep in the *quality* of samples, not in likelihood).
#
# ## 3. An over-confident model
#
# Multiplying the final norm's gain by 3 multiplies every logit by 3 (the model has no
# biases): the same ranking, far too sure of it. The best temperature for it is about 3.

# %%
OVERCONFIDENCE = 3.0
model.ln_f.weight.data *= OVERCONFIDENCE
sharp = LearnedInference(model)
sharp_before = held_out_nll(sharp, held_out)
temperatures: list[float] = []
losses = fit_inference_params(
    sharp, fit_batches, steps=FIT_STEPS, lr=0.05,
    on_step=lambda step, loss: temperatures.append(sharp.get_inference_params()["temperature"]))
sharp_after = held_out_nll(sharp, held_out)
print(f"held-out objective of the x{OVERCONFIDENCE:g} model: {sharp_before:.3f} -> "
      f"{sharp_after:.3f}")
show(sharp.get_inference_params())
assert temperatures[-1] > 1 and sharp_after < sharp_before
model.ln_f.weight.data /= OVERCONFIDENCE  # the trained model back

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.plot(range(1, len(temperatures) + 1), temperatures)
ax1.axhline(OVERCONFIDENCE, ls="--", c="gray", label=f"x{OVERCONFIDENCE:g}")
ax1.set(xlabel="step", ylabel="learned temperature", title="T rises toward the over-scaling")
ax1.legend()
ax2.plot(range(1, len(losses) + 1), losses)
ax2.set(xlabel="step", ylabel="objective (nats)", title="training objective")
fig.tight_layout()
FIGURES.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURES / "12_learned_temperature.png", dpi=110)
print("saved", FIGURES / "12_learned_temperature.png")

# %% [markdown]
# ## 4. Sampling with the learned parameters
#
# `learned.generate` calls `nima.generation.generate` with the learned temperature, top-p and
# repetition penalty (each can still be overridden).

# %%
prompt = np.array([tokenizer.encode("ROMEO:\n")])
out = learned.generate(prompt, 40 if QUICK else 300, seed=0)
print(tokenizer.decode(out.sequences[0].tolist()))

# %% [markdown]
# ## Summary
#
# - `LearnedInference` learns temperature, top-p, the repetition penalty, a layer mix and head
#   gates on held-out text, with the GPT frozen.
# - A model trained on cross-entropy is nearly calibrated: its learned temperature stays near 1.
# - Made three times over-confident, it learns a temperature near 3, undoing the distortion;
#   top-p rises, as likelihood wants.
#
# ## Check your understanding
#
# ??? question "Why learn the inference parameters on held-out text, not training text?"
#     On the training text the model is over-confident — it has partly memorised it — so the
#     learned temperature would be too low for new text.
#
# ??? question "Why is the mean NLL convex in $\beta = 1/T$?"
#     It is $\operatorname{lse}(\beta z) - \beta z_y$ averaged: the log-sum-exp of a linear
#     function of $\beta$ is convex and the second term is linear.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_12 -->
