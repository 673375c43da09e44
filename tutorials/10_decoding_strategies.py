# %% [markdown]
# # Decoding strategies compared
#
# A trained language model gives, for the text so far, one logit $z_i$ per token of the
# vocabulary. *Decoding* turns those into text: choose a token, append it, ask again. How the
# token is chosen matters as much as the model. Always taking the likeliest gets stuck in loops,
# and sampling freely babbles.
#
# This tutorial runs every strategy of `nima.generation` on the Shakespeare character model of
# [tutorial 7](07_training_a_char_gpt.md): greedy decoding, temperature sampling, top-k, top-p, the
# repetition penalty, entropy-aware sampling (from the knock.knock design of a small interactive
# text model, see [where the ideas come from](../index.md#where-the-ideas-come-from)) and beam
# search. For each it prints a sample and the generation statistics (`GenerationStats.table()`). It
# ends with two plots of how uncertain the model was: the entropy of every step, and the entropy of
# one distribution as the temperature changes.
#
# The reference pages are [Decoding](../generation.md) (each processor's code beside its
# formula) and [Beam search](../beam_search.md). With `NIMA_TUTORIAL_QUICK=1` (as the tests
# run it) the model is trained for only 40 steps and the samples are short.

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nima
from nima.generation import (
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    entropy_bits,
    entropy_temperature,
    generate,
    softmax,
)
from nima.training import Trainer, load_config, load_run

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
ROOT = HERE.parent
FIGURES = Path(os.environ.get("NIMA_TUTORIAL_FIGURES", HERE / "figures"))  # tests redirect it
FIGURES.mkdir(parents=True, exist_ok=True)
N_NEW = 40 if QUICK else 300  # tokens (characters) per sample

# %% [markdown]
# ## 1. The model
#
# The model is the baby GPT of [tutorial 7](07_training_a_char_gpt.md), trained for 2000 steps
# into `runs/shakespeare_char/` — by that tutorial or by the README's first command,
# `python -m nima train configs/shakespeare_char.yaml`, which make the same run in the same
# place. `load_run` reads its best checkpoint and returns the model, its tokenizer and its
# config. If the run is missing or unfinished, the same `Trainer` call as in tutorial 7 trains
# (or resumes) it first: about four minutes on a quiet 2-core machine. In quick mode we train
# a fresh model for 40 steps only, under `runs/` in the current directory, and that model
# barely knows where the spaces go.

# %%
overrides = [
    f"data.corpus={ROOT / 'data' / 'tinyshakespeare.txt'}",
    f"data.out_dir={ROOT / 'data' / 'shakespeare_char'}",
    f"training.run_dir={ROOT / 'runs' / 'shakespeare_char'}",
]
if QUICK:
    overrides[1:] = ["data.out_dir=runs/tutorial_10/data", "training.run_dir=runs/tutorial_10/run"]
    overrides += ["training.max_iters=40", "schedule.total=40", "schedule.warmup=10",
                  "training.eval_interval=40", "training.eval_iters=5",
                  "training.checkpoint_interval=40"]
trainer = Trainer(load_config(ROOT / "configs" / "shakespeare_char.yaml", overrides),
                  overwrite=QUICK, resume=not QUICK)
print(trainer.fit())  # a finished run returns at once
model, tokenizer, config = load_run(trainer.run_dir)
print(f"{model.num_parameters():,} parameters, vocabulary {tokenizer.vocab_size}, "
      f"context {model.config.block_size}")

PROMPT = "ROMEO:"
prompt = np.array([tokenizer.encode(PROMPT)])  # (1, T0): one prompt
T0 = prompt.shape[1]
samples = {}  # name -> GenerationOutput, for the comparison at the end


def distinct_4grams(tokens: list[int]) -> float:
    """The fraction of the text's character 4-grams that are distinct: 1 = no repeats."""
    grams = [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)]
    return len(set(grams)) / max(len(grams), 1)


def show(name: str, out) -> None:
    """Print the sample and its statistics, and keep it for the comparison."""
    samples[name] = out
    print(f"--- {name} ---")
    print(tokenizer.decode(out.tolist()[0]))
    print(out.stats.table())


# %% [markdown]
# ## 2. Greedy decoding
#
# $$x_{t+1} = \arg\max_i z_i$$
#
# Deterministic, and the likeliest choice at every step. It is not the likeliest *text*
# (section 8), and it soon repeats itself: once the model is in a loop, the loop is the
# likeliest continuation.

# %%
greedy = generate(model, prompt, N_NEW)  # strategy="greedy" is the default
show("greedy", greedy)

# %% [markdown]
# Greedy decoding uses the KV cache: each step feeds one new token. As a check, the same path
# computed the slow way, with a full forward over the whole text for every token:

# %%
seq = prompt.copy()
with nima.no_grad():
    for _ in range(min(N_NEW, model.config.block_size - T0)):
        logits, _ = model(seq)  # (1, n, V), no cache
        seq = np.concatenate([seq, [[int(np.argmax(logits.data[0, -1]))]]], axis=1)
assert seq[0].tolist() == greedy.tolist()[0][:seq.shape[1]]
print(f"the first {seq.shape[1] - T0} greedy tokens match the uncached argmax path")

# %% [markdown]
# ## 3. Temperature
#
# Sampling draws the next token from the softmax of the logits divided by a temperature $T$:
#
# $$p_i = \frac{e^{z_i / T}}{\sum_j e^{z_j / T}}.$$
#
# $T = 1$ samples from the model's own beliefs. $T < 1$ sharpens them (greedy as $T \to 0$),
# and $T > 1$ flattens them (uniform as $T \to \infty$). The same `seed` gives the same text.
# Sampling uses its own random generator, so it never disturbs Nima's global one.

# %%
for T in (0.5, 1.0, 1.5):
    out = generate(model, prompt, N_NEW, do_sample=True, temperature=T, seed=0)
    show(f"T = {T}", out)
    assert np.allclose(out.stats.temperature, T)
again = generate(model, prompt, N_NEW, do_sample=True, temperature=1.5, seed=0)
assert np.array_equal(again.sequences, samples["T = 1.5"].sequences)  # seeded: reproducible

# %% [markdown]
# As a processor, temperature is just a division of the logits. Processors take the tokens
# so far `(B, T)` and the logits `(B, V)` and return new logits:

# %%
z = np.array([[2.0, 1.0, 0.0, -1.0]])
ids = np.zeros((1, 1), dtype=np.int64)
for T in (0.5, 1.0, 2.0):
    print(f"T = {T}: p =", np.round(softmax(Temperature(T)(ids, z)), 3),
          f" H = {entropy_bits(softmax(z / T))[0]:.2f} bits")
assert np.allclose(Temperature(2.0)(ids, z), z / 2)

# %% [markdown]
# ## 4. Top-k
#
# Even a good model puts a little probability on each of many wrong tokens. Together, that
# long tail is likely enough to derail a sample now and then. Top-k keeps only the $k$
# largest logits and sets the rest to $-\infty$:
#
# $$z'_i = \begin{cases} z_i & z_i \ge z_{(k)} \\ -\infty & \text{otherwise,}\end{cases}$$
#
# with $z_{(k)}$ the $k$-th largest logit. Any extra processor passed as `logits_processor`
# runs before temperature, top-k and top-p. Here we pass one that only records the logits
# it sees, so we can check afterwards that every sampled token was among the top $k$:


# %%
class Recorder:
    """A do-nothing logits processor that remembers each step's logits."""

    def __init__(self) -> None:
        self.logits = []

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        self.logits.append(logits[0].copy())  # (V,): row 0
        return logits


K = 5
seen = Recorder()
out = generate(model, prompt, N_NEW, do_sample=True, top_k=K, seed=0, logits_processor=[seen])
show(f"top-k, k = {K}", out)
for step, token in enumerate(out.generated(0)):
    rank = int((seen.logits[step] > seen.logits[step][token]).sum())  # 0 = the top token
    assert rank < K, (step, rank)
print(z, "-> top-2:", TopK(2)(ids, z))
assert np.array_equal(TopK(2)(ids, z), [[2.0, 1.0, -np.inf, -np.inf]])

# %% [markdown]
# ## 5. Top-p (nucleus)
#
# A fixed $k$ is too many where the model is sure and too few where it is not. Holtzman et
# al. (2020) keep instead the *smallest* set of the likeliest tokens whose probability
# reaches $p$. Sort $p_{(1)} \ge p_{(2)} \ge \dots$ and keep
#
# $$k = \min\Big\{k : \sum_{j \le k} p_{(j)} \ge p\Big\}$$
#
# tokens. Token $(i)$ stays while the mass before it, $\sum_{j<i} p_{(j)}$, is below $p$, so
# the top token always stays. The nucleus shrinks where the model is confident and grows
# where it is not. We check every sampled token against a nucleus computed by hand:

# %%
P = 0.9
seen = Recorder()
out = generate(model, prompt, N_NEW, do_sample=True, top_p=P, seed=0, logits_processor=[seen])
show(f"top-p, p = {P}", out)
sizes = []
for step, token in enumerate(out.generated(0)):
    probs = softmax(seen.logits[step])  # (V,): temperature 1
    order = np.argsort(-probs)
    before = np.cumsum(probs[order]) - probs[order]  # mass of the likelier tokens
    nucleus = order[before < P]
    sizes.append(len(nucleus))
    assert token in nucleus, (step, token)
print(f"nucleus size: min {min(sizes)}, mean {np.mean(sizes):.1f}, max {max(sizes)} "
      f"of {tokenizer.vocab_size} characters")
print("p =", np.round(softmax(z), 3), "-> top-p 0.7:", TopP(0.7)(ids, z))
assert np.array_equal(TopP(0.7)(ids, z), [[2.0, 1.0, -np.inf, -np.inf]])  # 0.64 < 0.7 <= 0.88

# %% [markdown]
# ## 6. Repetition penalty
#
# CTRL (Keskar et al., 2019) makes every token already in the context less likely by a
# factor $\theta > 1$. A positive logit is divided by $\theta$ and a negative one multiplied by
# it, so both move down:
#
# $$z'_i = \begin{cases} z_i / \theta & z_i > 0 \\ z_i\,\theta & z_i \le 0 \end{cases}
# \qquad i \in \text{context}.$$
#
# By hand, with the context holding tokens 0 and 3:

# %%
context = np.array([[0, 3, 3]])
print(z, "->", RepetitionPenalty(2.0)(context, z))
assert np.allclose(RepetitionPenalty(2.0)(context, z), [[1.0, 1.0, 0.0, -2.0]])

# %% [markdown]
# On a character model the penalty is blunt. After one line of text, nearly every common
# letter is "in the context", so all of them are penalised and the rare characters gain. It
# suits word or BPE vocabularies better. Here it loosens greedy decoding's loops without
# breaking them: compare the distinct 4-grams with greedy's above.

# %%
out = generate(model, prompt, N_NEW, repetition_penalty=1.3)
show("greedy + repetition penalty 1.3", out)
print(f"distinct 4-grams: greedy {distinct_4grams(greedy.generated(0)):.2f}, "
      f"with the penalty {distinct_4grams(out.generated(0)):.2f}")

# %% [markdown]
# ## 7. Entropy-aware sampling
#
# A fixed temperature is too hot where the model is unsure and too cold where it is sure.
# knock.knock's entropy-aware sampling fixes how *uncertain* each step should be instead: a
# target entropy $H^\star$ bits. With $\beta = 1/T$ and $p = \operatorname{softmax}(\beta z)$,
#
# $$H(\beta) = -\sum_i p_i \log_2 p_i, \qquad
# \frac{dH}{d\beta} = -\frac{\beta}{\ln 2}\operatorname{Var}_p(z) \le 0,$$
#
# so the entropy rises with $T$, from 0 bits (argmax) towards $\log_2 V$ (uniform). Every step
# has one temperature that gives exactly $H^\star$. `entropy_temperature` finds it with
# Newton's method on $\beta$, falling back to bisection inside $[1/T_{\max}, 1/T_{\min}]$. When
# $H^\star$ is out of reach it takes the nearer bound.

# %%
TARGET, T_MIN, T_MAX = 1.5, 0.1, 2.0
out = generate(model, prompt, N_NEW, target_entropy=TARGET, min_temp=T_MIN, max_temp=T_MAX,
               seed=0)
show(f"entropy-aware, target {TARGET} bits", out)
H, temps = out.stats.entropy[:, 0], out.stats.temperature[:, 0]  # (steps,) each
inside = (temps > T_MIN * 1.001) & (temps < T_MAX * 0.999)
print(f"{inside.sum()} of {len(temps)} steps hit the target; the others sat at a bound "
      f"(T = {T_MIN} or {T_MAX})")
assert np.all(np.abs(H[inside] - TARGET) < 1e-3)
assert np.all(H[~inside & (temps >= T_MAX * 0.999)] <= TARGET + 1e-3)  # even T_max too sure
assert np.all(H[~inside & (temps <= T_MIN * 1.001)] >= TARGET - 1e-3)  # even T_min too unsure

# %% [markdown]
# ## 8. Beam search
#
# Beam search keeps the $K$ likeliest partial texts instead of one and returns the best
# finished ones, ranked by $\sum_t \log p(x_t \mid x_{<t}) / L^\alpha$ (the length penalty
# $\alpha$). [Tutorial 11](11_beam_search_by_hand.md) works through it step by step. It looks
# for the likeliest text, which is what translation wants. For open-ended writing, the
# likeliest text is dull and repetitive, just as greedy's is.

# %%
beam = generate(model, prompt, N_NEW, num_beams=4, num_return_sequences=2)
show("beam search, 4 beams", beam)
print("second best:", repr(tokenizer.decode(beam.generated(1))))
print(f"log p of the generated text: greedy {greedy.sequence_logprobs[0]:.2f}, "
      f"beam search {beam.sequence_logprobs[0]:.2f} (best) and {beam.sequence_logprobs[1]:.2f}")
assert beam.sequence_logprobs[0] >= beam.sequence_logprobs[1]  # best first (same length)

# %% [markdown]
# ## 9. The statistics side by side
#
# `out.stats` holds every step's entropy (bits), confidence (the top token's probability) and
# temperature. Its summaries, and the distinct 4-grams of each text, for every strategy:

# %%
print(f"{'strategy':<34}{'H mean':>8}{'H std':>7}{'conf.':>7}{'T mean':>8}{'distinct':>10}")
for name, out in samples.items():
    s = out.stats
    print(f"{name:<34}{s.mean_entropy:8.2f}{s.std_entropy:7.2f}{s.mean_confidence:7.2f}"
          f"{s.mean_temperature:8.2f}{distinct_4grams(out.generated(0)):10.2f}")
assert samples["T = 0.5"].stats.mean_entropy < samples["T = 1.5"].stats.mean_entropy

# %% [markdown]
# ## 10. Entropy, step by step
#
# The entropy of each step's distribution for four strategies, over the first 100 steps.
# Greedy and plain sampling show the model's own uncertainty, which is low inside a word and
# high at its start. Top-p cuts the tail, so its entropy is lower. The entropy-aware sampler
# holds the line at its target, except at the few steps where no temperature in
# $[T_{\min}, T_{\max}]$ reaches it. It lands above the target where even $T_{\min}$ leaves several
# characters nearly tied, and below it where even $T_{\max}$ leaves the model too sure.

# %%
shown = ("greedy", "T = 1.0", f"top-p, p = {P}", f"entropy-aware, target {TARGET} bits")
fig = Figure(figsize=(9, 7), layout="constrained")
axes = fig.subplots(len(shown), 1, sharex=True, sharey=True)
for i, (ax, name) in enumerate(zip(axes, shown, strict=True)):
    H = samples[name].stats.entropy[:100, 0]  # (steps,)
    ax.plot(H, color=f"C{i}", lw=1.2)
    ax.axhline(H.mean(), color=f"C{i}", ls=":", lw=0.8)
    ax.axhline(TARGET, color="k", ls="--", lw=0.8)
    ax.set(ylabel="bits", title=f"{name}: mean {H.mean():.2f} bits (dotted)")
axes[-1].set(xlabel="generated token")
fig.suptitle(f"Entropy of each step's distribution (dashed: the target, {TARGET} bits)")
fig.savefig(FIGURES / "10_entropy_per_step.png", dpi=100)
print("saved", FIGURES / "10_entropy_per_step.png")

# %% [markdown]
# ## 11. Entropy against temperature
#
# One context, one distribution: its entropy as a function of $T$. The curve rises
# monotonically from 0 towards $\log_2 V$, so it crosses the target once, at the temperature
# the solver picks. A target above $\log_2 V$ is out of reach, and the solver returns
# $T_{\max}$.

# %%
CONTEXT = "Before we proceed any further, hear me "
with nima.no_grad():
    logits, _ = model(np.array([tokenizer.encode(CONTEXT)]))
z = logits.data[:, -1].astype(np.float64)  # (1, V): the next character's logits
Ts = np.geomspace(0.05, 10.0, 300)
curve = np.array([entropy_bits(softmax(z / T))[0] for T in Ts])  # (300,)
T_star = float(entropy_temperature(z, TARGET, T_MIN, T_MAX)[0])
H_star = float(entropy_bits(softmax(z / T_star))[0])
print(f"after {CONTEXT!r}: H(T=1) = {entropy_bits(softmax(z))[0]:.2f} bits; "
      f"T* = {T_star:.3f} gives H = {H_star:.4f} bits (target {TARGET})")
assert np.all(np.diff(curve) > -1e-9)  # monotone in T
if curve[np.searchsorted(Ts, T_MIN)] < TARGET < curve[np.searchsorted(Ts, T_MAX)]:
    assert abs(H_star - TARGET) < 1e-3
too_high = np.log2(tokenizer.vocab_size) + 0.5
assert np.isclose(entropy_temperature(z, too_high, T_MIN, T_MAX)[0], T_MAX)

fig = Figure(figsize=(7, 4), layout="constrained")
ax = fig.subplots()
ax.semilogx(Ts, curve, label=r"$H(\mathrm{softmax}(z/T))$")
ax.axhline(TARGET, color="k", ls="--", lw=0.8, label=f"target {TARGET} bits")
ax.axhline(np.log2(tokenizer.vocab_size), color="gray", ls=":", lw=0.8,
           label=r"$\log_2 V$ (uniform)")
ax.axvspan(T_MIN, T_MAX, color="C0", alpha=0.08, label="allowed temperatures")
ax.plot([T_star], [H_star], "o", color="C3", label=f"solver: T = {T_star:.2f}")
ax.set(xlabel="temperature T", ylabel="entropy (bits)", title=f"after {CONTEXT!r}")
ax.legend(fontsize=8)
fig.savefig(FIGURES / "10_entropy_vs_temperature.png", dpi=100)
print("saved", FIGURES / "10_entropy_vs_temperature.png")

# %% [markdown]
# ## Summary
#
# - Greedy decoding loops; temperature trades variety against correctness; top-k and top-p
#   cut the unlikely tail, top-p adaptively.
# - The repetition penalty lowers seen tokens; entropy-aware sampling holds each step's
#   uncertainty at a target.
# - Beam search finds likely sequences rather than likely tokens; the statistics show how
#   uncertain each strategy's steps were.
#
# ## Check your understanding
#
# ??? question "Why does inverse-CDF sampling never choose a token of probability 0?"
#     Its cumulative sum equals the previous one; the first index whose cumulative probability
#     reaches $u F_V$ is always a token where the sum grew.
#
# ??? question "Why can top-k keep more than $k$ tokens?"
#     Ties: every logit equal to the $k$-th largest stays, as in PyTorch and nanoGPT.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_10 -->
