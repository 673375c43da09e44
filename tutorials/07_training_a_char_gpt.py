# %% [markdown]
# # Training a character-level GPT
#
# This is Nima's main job: nanoGPT's CPU "baby GPT" (4 blocks, 4 heads, 128 wide, a context of
# 64 characters, 0.8M parameters) trained on the characters of tiny Shakespeare, then asked to
# write. The 2000 steps take about four minutes on a quiet 2-core machine and reach a
# validation loss of 1.92 with the configuration's seed, 1337 (nanoGPT's own figure for this
# configuration is 1.8857; [the benchmarks](../benchmarks.md) compare three seeds of each).
#
# The tutorial goes step by step: the data and what one batch is, the loss of an untrained model
# (and why it is $\ln 65$), one training step by hand, then the whole run with `Trainer`, its
# loss curve, and samples at two temperatures. The reference pages are
# [the training loop](../training.md), [optimizers](../optim.md) and [data](../data.md).
#
# The run is the one the README's first command makes, in the same place
# (`runs/shakespeare_char/`): if that command or an earlier run of this tutorial already
# trained it, the trainer resumes from its last checkpoint, and a finished run has nothing left
# to train. [Tutorial 10](10_decoding_strategies.md) decodes with the same model. With
# `NIMA_TUTORIAL_QUICK=1` the run is 60 steps instead of 2000, made afresh under `runs/` in
# the current directory.

# %%
import math
import os
import shutil
from pathlib import Path

import numpy as np

import nima
from nima.data import TokenDataset, load_tokenizer
from nima.training import Trainer, load_config
from nima.training.metrics import read_metrics

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
ROOT = HERE.parent
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
FIGURES.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The configuration
#
# `configs/shakespeare_char.yaml` holds nanoGPT's settings. Paths in it are relative to the
# file's own folder (the corpus, not found there, comes from Nima's `data/` folder), so it
# works from any directory; paths given as overrides are taken from the current directory, so
# the tutorial puts the prepared data and the run under `runs/` wherever it is started.

# %%
overrides = [
    "data.out_dir=runs/tutorial_07/data",
    "training.run_dir=runs/tutorial_07/run",
]
if QUICK:
    overrides[1:] = ["data.out_dir=runs/tutorial_07/data", "training.run_dir=runs/tutorial_07/run"]
    overrides += ["training.max_iters=60", "schedule.total=60", "schedule.warmup=10",
                  "training.eval_interval=30", "training.eval_iters=10",
                  "training.checkpoint_interval=30", "sampling.max_new_tokens=100"]
config = load_config(ROOT / "configs" / "shakespeare_char.yaml", overrides)
for section in ("model", "optimizer", "schedule", "training"):
    print(section, getattr(config, section))

# %% [markdown]
# ## 2. The data
#
# Building the trainer prepares the data: the 65 distinct characters become the vocabulary, the
# first 90% of the text is encoded into `train.bin` and the rest into `val.bin`, as raw `uint16`
# token ids. A batch is 12 random windows of 64 characters, `x`, and the same windows shifted by
# one, `y`: at every position the model must predict the next character.

# %%
trainer = Trainer(config, overwrite=QUICK, resume=not QUICK)  # full mode: reuse a finished run
tokenizer = load_tokenizer(trainer.tokenizer_path)
print(f"vocabulary: {tokenizer.vocab_size} characters: {''.join(tokenizer.chars)!r}")
print(f"train: {len(trainer.train_data):,} tokens, val: {len(trainer.val_data):,} tokens")

x, y = trainer.train_data.get_batch(12, 64, np.random.default_rng(0))
print("x[0]:", repr(tokenizer.decode(x[0].tolist())))
print("y[0]:", repr(tokenizer.decode(y[0].tolist())))
assert (x[0, 1:] == y[0, :-1]).all()  # y is x shifted left by one
assert isinstance(trainer.val_data, TokenDataset)

# %% [markdown]
# ## 3. The loss of an untrained model
#
# A freshly initialised GPT spreads its probability almost evenly over the 65 characters, so its
# cross-entropy is close to $-\ln \frac{1}{65} = \ln 65 \approx 4.17$ nats. Anything above that
# after training would mean the model learned less than a uniform guess. (The trainer's own
# model may already be trained, if the run is being resumed, so we build a fresh one with the
# same configuration and seed.)

# %%
from nima.models import GPT  # noqa: E402

nima.manual_seed(config.training.seed)
model = GPT(trainer.model.config)
with nima.no_grad():
    _, loss = model(x, y)
print(f"initial loss {loss.item():.4f}, ln 65 = {math.log(65):.4f}")
assert abs(loss.item() - math.log(65)) < 0.15

# %% [markdown]
# ## 4. One step by hand
#
# `Trainer.train_step` is forward, backward, clip, AdamW, schedule. Here is the same by hand on
# the fresh model, to see every piece (the trainer's own model is left untouched):

# %%
from nima.optim import AdamW, WarmupCosine, clip_grad_norm_  # noqa: E402
from nima.optim.adam import param_groups_for_decay  # noqa: E402

opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
sched = WarmupCosine(opt, warmup=100, total=2000, min_lr=1e-4)

_, loss = model(x, y)                                 # forward: logits and mean cross-entropy
loss.backward()                                       # backward: .grad on every parameter
norm = clip_grad_norm_(model.parameters(), 1.0)       # rescale if the global norm exceeds 1
opt.step()                                            # AdamW update at the schedule's lr
opt.zero_grad()
sched.step()                                          # the next step's learning rate
with nima.no_grad():
    _, after = model(x, y)
print(f"loss {loss.item():.4f} -> {after.item():.4f} on the same batch; gradient norm {norm:.3f}; "
      f"next lr {sched.get_last_lr()[0]:.2e}")
assert after.item() < loss.item()

# %% [markdown]
# ## 5. The whole run
#
# `fit()` trains to `max_iters`, printing a progress bar; every 250 steps it averages the loss
# over 200 batches of each split and saves a checkpoint. Everything lands in the run directory:
# `metrics.jsonl`/`.csv`, `curves.png`, `log.txt`, the checkpoints and `best.safetensors`.
# A run that is already finished returns at once.

# %%
result = trainer.fit()
print(result)
assert not result.interrupted and result.step == config.training.max_iters
for name in ("metrics.jsonl", "metrics.csv", "curves.png", "log.txt", "best.safetensors"):
    assert (trainer.run_dir / name).exists(), name

# %% [markdown]
# ## 6. The loss curve
#
# The trainer draws `curves.png` itself; here the same records are read back from
# `metrics.jsonl`. The batch loss (thin line) is noisy; the evaluated train and validation
# losses (dots) are averages over many batches. They stay close together: 0.8M parameters do
# not overfit a million characters in 2000 steps.

# %%
records = read_metrics(trainer.run_dir / "metrics.jsonl")
evals = [r for r in records if r["kind"] == "eval"]
for r in evals:
    print(f"step {r['step']:>5}: train {r['train_loss']:.4f}  val {r['val_loss']:.4f}")
shutil.copyfile(trainer.run_dir / "curves.png", FIGURES / "07_loss_curve.png")
print("saved", FIGURES / "07_loss_curve.png")
assert evals[-1]["val_loss"] < evals[0]["val_loss"] - (0.5 if QUICK else 2.0)
if not QUICK:
    assert evals[-1]["val_loss"] < 1.95, evals[-1]  # seed 1337 gives 1.92; nanoGPT 1.8857

# %% [markdown]
# ## 7. Samples
#
# Generation feeds the model its own output, one character at a time, sampling each from the
# softmax of the logits divided by a temperature. At 1.0 the text is as varied as the model's
# beliefs; at 0.5 it sticks to the likeliest characters — more correct words, more repetition.

# %%
for temperature in (1.0, 0.5):
    text = trainer.sample("ROMEO:", max_new_tokens=100 if QUICK else 300, seed=0,
                          temperature=temperature)
    print(f"--- temperature {temperature} ---\n{text}\n")
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")

# %% [markdown]
# ## Summary
#
# - The baby GPT trains on 12 windows of 64 characters per step; `y` is `x` shifted by one.
# - An untrained model's loss is about $\ln 65$; one step is forward, backward, clip, AdamW,
#   schedule.
# - `Trainer.fit` runs 2000 steps with evaluations and checkpoints; the samples improve from
#   noise to Shakespeare-like text.
#
# ## Check your understanding
#
# ??? question "Why clip the gradient's global norm rather than each gradient on its own?"
#     One factor for all keeps the step's direction and caps only its length; clipping each
#     gradient separately would rescale parts of the step differently.
#
# ??? question "Why does temperature 0.5 give more correct words but more repetition than 1.0?"
#     Dividing logits by 0.5 sharpens the distribution toward the likeliest characters: fewer
#     misspellings, but the same likely continuations again and again.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_07 -->
