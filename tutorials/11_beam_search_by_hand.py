# %% [markdown]
# # Beam search by hand
#
# Greedy decoding takes the most likely token at every step and never looks back. The most
# likely *sequence* can start with a token that looked only second best. Beam search keeps
# the $K$ best partial sequences ("beams") at every step instead of one.
#
# This tutorial works through it step by step on a made-up language model with five tokens,
# small enough to print every candidate. We see greedy decoding miss the best sentence, beam
# search find it, and the length penalty change which finished sentence wins. Then we write
# the same algorithm in plain NumPy, run it on a small random GPT and check that it returns
# exactly what `nima.generation.beam_search` returns: the same sequences, summed
# log-probabilities and scores. Finally we recompute those scores with one uncached forward
# pass over each whole sequence.
#
# The reference pages are [Beam search](../beam_search.md) (the algorithm and the length
# penalty) and [Decoding](../generation.md) (the other strategies and the KV cache).

# %%
import itertools
from types import SimpleNamespace

import numpy as np

import nima
from nima.generation import GenerationConfig, beam_search, generate
from nima.models import GPT, GPTConfig

# %% [markdown]
# ## 1. A language model made of one table
#
# The smallest model that still predicts the next token is a *bigram* model. It is one table:
# the probability of each next token given only the last one. The vocabulary is a start token
# `<s>` (the prompt, never generated), three "words" `a`, `b`, `c` and the end token `</s>`.
#
# `generate` needs very little from a model: `forward(idx, caches=...)` returning logits
# `(B, T, V)`, `new_caches()`, `config.block_size`, and `eval()` / `train(mode)`. A bigram
# model has nothing to cache: each position's logits depend only on its own token. So
# `new_caches()` can return an empty list, and the decoding loop, which feeds only the tokens
# the caches have not seen, gives it just the newest token at each step. Its logits are the
# log-probabilities from the table, since $\operatorname{softmax}(\log p) = p$.

# %%
VOCAB = ["<s>", "a", "b", "c", "</s>"]
BOS, A, B, C, EOS = range(5)
#                   <s>   a     b     c     </s>      (next token)
TABLE = np.array([[0.0, 0.50, 0.40, 0.10, 0.00],   # after <s>
                  [0.0, 0.10, 0.30, 0.35, 0.25],   # after a
                  [0.0, 0.03, 0.02, 0.50, 0.45],   # after b
                  [0.0, 0.20, 0.10, 0.10, 0.60],   # after c
                  [0.0, 0.00, 0.00, 0.00, 1.00]])  # after </s>
assert np.allclose(TABLE.sum(axis=1), 1.0)


class BigramLM:
    """A language model given by a table: $p(x_{t+1} = j \\mid x_t = i) = $ `table[i, j]`."""

    def __init__(self, table: np.ndarray) -> None:
        with np.errstate(divide="ignore"):
            self.logp = np.log(table)  # (V, V); log 0 = -inf: never chosen
        self.config = SimpleNamespace(block_size=32)
        self.training = False

    def forward(self, idx, caches=None):
        idx = np.asarray(idx)  # (B, T) token ids
        return nima.Tensor(self.logp[idx]), None  # logits (B, T, V)

    def new_caches(self) -> list:
        return []  # nothing to remember: a bigram looks at the last token only

    def eval(self):
        return self.train(False)

    def train(self, mode: bool = True):
        self.training = mode
        return self


toy = BigramLM(TABLE)


def words(tokens) -> str:
    return " ".join(VOCAB[t] for t in tokens)


def logprob_of(tokens, prompt=(BOS,)) -> float:
    """$\\sum_t \\log p(x_t \\mid x_{t-1})$ of the generated `tokens` after `prompt`."""
    path = [*prompt, *tokens]
    return float(sum(toy.logp[i, j] for i, j in itertools.pairwise(path)))


prompt = np.array([[BOS]])  # (1, 1): one prompt, the start token
print("after <s>:", dict(zip(VOCAB, TABLE[BOS].tolist(), strict=True)))

# %% [markdown]
# ## 2. Greedy decoding
#
# Greedy takes $x_{t+1} = \arg\max_i p(i \mid x_{\le t})$. After `<s>` that is `a` (0.5).
# After `a` the model is unsure, and the best it offers is `c` (0.35). Then `</s>` (0.6):

# %%
greedy = generate(toy, prompt, 6, eos_token_id=EOS)
print("greedy:", words(greedy.generated(0)),
      f"  p = {np.exp(greedy.sequence_logprobs[0]):.4f}")

tokens, last = [], BOS  # the same by hand
while last != EOS:
    last = int(np.argmax(TABLE[last]))
    tokens.append(last)
assert greedy.generated(0) == tokens == [A, C, EOS]
assert np.isclose(greedy.sequence_logprobs[0], np.log(0.5 * 0.35 * 0.6))

# %% [markdown]
# Is that the best sentence? The model is small enough to list every sentence of at most
# four tokens and rank them all. This exhaustive search is the oracle for the rest of the
# tutorial:

# %%
finished = [[*s, EOS] for n in range(4) for s in itertools.product([A, B, C], repeat=n)]
ranked = sorted(finished, key=logprob_of, reverse=True)
for s in ranked[:5]:
    print(f"  {words(s):<14} p = {np.exp(logprob_of(s)):.4f}  log p = {logprob_of(s):+.3f}")
best = ranked[0]
assert best == [B, EOS] and logprob_of(best) > logprob_of(greedy.generated(0))

# %% [markdown]
# The most likely sentence, `b </s>` ($0.4 \cdot 0.45 = 0.18$), starts with `b`: 0.4 against
# `a`'s 0.5 at the first step. Greedy discarded it at once and ended with
# $0.5 \cdot 0.35 \cdot 0.6 = 0.105$.
#
# ## 3. Beam search, one step at a time
#
# Each beam $b$ carries its generated tokens and its summed log-probability $s_b$. One step:
#
# 1. **expand**: every beam proposes every token $i$, scored $s_b + \log p(i \mid
#    \text{beam}_b)$;
# 2. **rank** the $K \cdot V$ candidates and read the best $2K$ in order. A candidate ending
#    in `</s>` becomes a finished **hypothesis** if it is among the $K$ best. The others
#    become the next step's beams, until there are $K$. Reading $2K$ candidates guarantees
#    $K$ beams even if $K$ of them end;
# 3. **stop** once $K$ hypotheses are kept and no running beam can still beat the worst of
#    them. Nima follows Hugging Face's test: the best candidate of the step, scored at the
#    current length, is no better than the worst hypothesis. For $\alpha = 0$ that is exact,
#    since adding tokens only lowers a sum of log-probabilities. For $\alpha > 0$ it is a
#    heuristic, because a longer sequence is divided by a larger $L^\alpha$.
#
# Finished hypotheses of different lengths are compared by the *length-penalised* score
#
# $$\text{score} = \frac{\sum_{t=1}^{L} \log p(x_t \mid x_{<t})}{L^{\alpha}},$$
#
# with $L$ the number of generated tokens (the end token included) and $\alpha$ the
# `length_penalty`. The running beams are ranked by the plain sum.
#
# Here is the whole algorithm in plain Python and NumPy. It does not vectorise anything and it
# does not use a KV cache: `next_logprobs` gets the full sequences of the current beams and
# returns $\log p$ of every next token `(beams, V)`. `show=True` prints every step.


# %%
def beam_search_by_hand(next_logprobs, prompt: list[int], num_beams: int, max_new_tokens: int,
                        eos: int | None, alpha: float = 1.0, show: bool = False,
                        name=str) -> list[tuple[float, float, list[int]]]:
    """The best `num_beams` hypotheses `(score, summed log p, tokens)`, best first."""
    K = num_beams
    beams = [(0.0, [])]  # (s_b, generated tokens); at first one beam: the prompt
    hyps = []  # finished: (score, summed log p, tokens)
    for step in range(1, max_new_tokens + 1):
        logp = next_logprobs(np.array([prompt + toks for _, toks in beams]))  # (beams, V)
        # expand: s_b + log p(i | beam b), for every beam b and token i
        cands = [(s + logp[b, i], [*toks, i]) for b, (s, toks) in enumerate(beams)
                 for i in range(logp.shape[1])]
        cands.sort(key=lambda c: -c[0])
        if show:
            print(f"step {step}: {len(cands)} candidates, the best {2 * K}:")
        new_beams = []
        for rank, (s, toks) in enumerate(cands[:2 * K]):
            if len(new_beams) == K:
                verdict = "not needed"
            elif toks[-1] == eos:
                if rank < K:
                    hyps.append((s / len(toks) ** alpha, s, toks))
                    verdict = f"finished: hypothesis, score {s:.3f} / {len(toks)}^{alpha:g}" \
                              f" = {s / len(toks) ** alpha:.3f}"
                else:
                    verdict = f"ends, but not among the {K} best: dropped"
            else:
                new_beams.append((s, toks))
                verdict = "beam"
            if show and np.isfinite(s):
                print(f"  {name(toks):<16} log p = {s:+.3f}  -> {verdict}")
        beams = new_beams
        hyps = sorted(hyps, key=lambda h: -h[0])[:K]  # keep the K best hypotheses
        # stop? the best candidate of this step, at this length, cannot beat the worst kept
        best_now = cands[0][0] / step ** alpha
        if show:
            print("  beams:", ", ".join(f"{name(t)} ({s:+.3f})" for s, t in beams),
                  "| hypotheses:", ", ".join(f"{name(t)} ({sc:+.3f})" for sc, _, t in hyps))
        if len(hyps) == K and hyps[-1][0] >= best_now:
            if show:
                print(f"  done: worst hypothesis {hyps[-1][0]:+.3f} >= best possible "
                      f"{best_now:+.3f}")
            return hyps
    # out of steps: the running beams compete with the finished hypotheses
    hyps += [(s / len(toks) ** alpha, s, toks) for s, toks in beams]
    return sorted(hyps, key=lambda h: -h[0])[:K]


def toy_logprobs(seqs: np.ndarray) -> np.ndarray:
    logits, _ = toy.forward(seqs)  # (beams, T, V)
    return logits.data[:, -1]  # (beams, V): the table row of each beam's last token


hand = beam_search_by_hand(toy_logprobs, [BOS], num_beams=2, max_new_tokens=6, eos=EOS,
                           alpha=0.0, show=True, name=words)

# %% [markdown]
# At step 2, `b </s>` (log 0.18 = −1.715) is the second best candidate, so it becomes the first
# hypothesis. The two best continuations, `b c` and `a c`, become the beams. At step 3 both of
# them end, and with $\alpha = 0$ (the plain sum) the two best hypotheses are `b </s>` and
# `b c </s>`. No running beam can beat them any more, so the search stops. Beam search found
# the sentence that greedy missed. `nima.generation.beam_search` (what
# `generate(..., num_beams=2)` calls) agrees, including the summed log-probabilities:

# %%
out = generate(toy, prompt, 6, num_beams=2, eos_token_id=EOS, length_penalty=0.0,
               num_return_sequences=2)
for row in range(2):
    print(f"  {words(out.generated(row)):<14} log p = {out.sequence_logprobs[row]:+.4f}"
          f"  score = {out.scores[row]:+.4f}")
assert [out.generated(r) for r in range(2)] == [t for _, _, t in hand] == [[B, EOS], [B, C, EOS]]
assert np.allclose(out.sequence_logprobs, [lp for _, lp, _ in hand])
assert np.allclose(out.sequence_logprobs, [logprob_of(t) for _, _, t in hand])
assert out.generated(0) == best  # the exhaustive search's best

# %% [markdown]
# ## 4. The length penalty changes the winner
#
# Every token multiplies in a probability below one, so a raw sum always prefers short
# sentences. With $\alpha = 1$ the score is the *mean* log-probability per token instead.
# `b c </s>` has three fairly likely tokens ($-2.12 / 3 = -0.71$ per token). That beats
# `b </s>`, whose two tokens average $-1.715 / 2 = -0.86$:

# %%
for alpha in (0.0, 1.0):
    hand = beam_search_by_hand(toy_logprobs, [BOS], 2, 6, EOS, alpha=alpha)
    out = generate(toy, prompt, 6, num_beams=2, eos_token_id=EOS, length_penalty=alpha)
    scores = [logprob_of(s) / len(s) ** alpha for s in finished]  # exhaustive, same scoring
    oracle = finished[int(np.argmax(scores))]
    print(f"alpha = {alpha:g}: beam search -> {words(out.generated(0)):<12} "
          f"(score {out.scores[0]:+.3f}); exhaustive best -> {words(oracle)}")
    assert out.generated(0) == hand[0][2] == oracle
    assert np.isclose(out.scores[0], hand[0][0]) and np.isclose(out.scores[0], max(scores))
    assert oracle == ([B, EOS] if alpha == 0.0 else [B, C, EOS])

# %% [markdown]
# A larger $\alpha$ favours length more. With $\alpha = 2$ the best sentence of at most four
# tokens is `a b c </s>` ($-3.10 / 4^2 = -0.194$). Two beams miss it. The beams are ranked by
# the plain sum, and at step 2 `a b` ($-1.90$) came after `b c` and `a c`, so it was pruned
# before its good ending could count. Three beams keep `a b` and find the sentence:

# %%
scores = [logprob_of(s) / len(s) ** 2 for s in finished]
oracle = finished[int(np.argmax(scores))]
for K in (2, 3):
    out = generate(toy, prompt, 4, num_beams=K, eos_token_id=EOS, length_penalty=2.0)
    hand = beam_search_by_hand(toy_logprobs, [BOS], K, 4, EOS, alpha=2.0)
    print(f"alpha = 2, {K} beams: {words(out.generated(0)):<12} (score {out.scores[0]:+.3f}); "
          f"exhaustive best: {words(oracle)} ({max(scores):+.3f})")
    assert out.generated(0) == hand[0][2] and np.isclose(out.scores[0], hand[0][0])
assert oracle == [A, B, C, EOS] == out.generated(0)

# %% [markdown]
# Beam search only searches: a narrow beam can miss the best sequence, as greedy did. And given
# more tokens, $\alpha = 2$ rewards length for its own sake. With `max_new_tokens=6`, six-token
# sequences win, and one of the best three is cut off unfinished (the running beams join the
# hypotheses when the tokens run out). Hugging Face's default is $\alpha = 1$, and so is
# Nima's.

# %%
long = generate(toy, prompt, 6, num_beams=3, eos_token_id=EOS, length_penalty=2.0,
                num_return_sequences=3)
for row in range(3):
    print(f"  {words(long.generated(row)):<16} score = {long.scores[row]:+.3f}")
assert all(len(long.generated(row)) == 6 for row in range(3))
assert any(long.generated(row)[-1] != EOS for row in range(3))

# %% [markdown]
#
# And here is the $\alpha = 1$ search printed in full. At step 2 `b </s>` enters with
# score $-0.857$. At step 3 both `b c </s>` ($-0.707$) and `a c </s>` ($-0.751$) beat it, and
# the two of them are kept:

# %%
hand = beam_search_by_hand(toy_logprobs, [BOS], 2, 6, EOS, alpha=1.0, show=True, name=words)
assert [t for _, _, t in hand] == [[B, C, EOS], [A, C, EOS]]

# %% [markdown]
# With $K = 1$ beam search *is* greedy decoding: one beam, extended by its best token each
# step.

# %%
one = generate(toy, prompt, 6, num_beams=1, strategy="beam", eos_token_id=EOS)
assert one.generated(0) == greedy.generated(0) == [A, C, EOS]

# %% [markdown]
# ## 5. The same on a GPT: plain NumPy against `nima.generation.beam_search`
#
# Now a real model: a small GPT with random weights. A freshly initialised GPT predicts
# almost uniform distributions, because its logits are all close to zero. That makes every
# beam nearly equally good, so we scale the output head's weights up (untied from the token
# embeddings; with tied weights an untrained GPT mostly predicts the token it just saw). Then
# each step has clear favourites. The model runs in float64, so the by-hand search and Nima's
# search rank the same candidates in the same order.
#
# The by-hand version's `next_logprobs` runs the **full, uncached** forward over every beam's
# whole sequence at each step: $\log p = z - \log\sum_j e^{z_j}$ of the last position. Nima's
# `beam_search` feeds one token per beam per step and reorders the KV caches to follow the
# beams. The two must still agree.

# %%
nima.manual_seed(1)
config = GPTConfig(vocab_size=12, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=False,
                   tie_weights=False)
gpt = GPT(config).double()
gpt.lm_head.weight.data *= 20.0  # sharper distributions than at initialisation
gpt.eval()
END = 0  # token 0 plays the end token


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def gpt_logprobs(seqs: np.ndarray) -> np.ndarray:
    with nima.no_grad():
        logits, _ = gpt(seqs)  # (beams, n, V): one full forward, no cache
    return log_softmax(logits.data[:, -1])  # (beams, V)


prompts = np.array([[3, 5, 7], [11, 2, 2]])  # (2, 3): a batch of two prompts
K, NEW, ALPHA = 3, 10, 1.0
config = GenerationConfig(max_new_tokens=NEW, num_beams=K, length_penalty=ALPHA,
                          eos_token_id=END, num_return_sequences=K)
with nima.no_grad():
    out = beam_search(gpt.eval(), prompts, config)
via_generate = generate(gpt, prompts, config=config)
assert np.array_equal(via_generate.sequences, out.sequences)

for b, p in enumerate(prompts.tolist()):
    hand = beam_search_by_hand(gpt_logprobs, p, K, NEW, END, alpha=ALPHA)
    print(f"prompt {p}:")
    for j, (score, logprob, toks) in enumerate(hand):
        row = b * K + j  # rows are grouped by prompt, best first
        print(f"  {toks!s:<24} log p = {logprob:+.4f}  score = {score:+.4f}  "
              f"| nima: log p = {out.sequence_logprobs[row]:+.4f}  "
              f"score = {out.scores[row]:+.4f}")
        assert out.generated(row) == toks
        assert np.isclose(out.sequence_logprobs[row], logprob, rtol=0, atol=1e-9)
        assert np.isclose(out.scores[row], score, rtol=0, atol=1e-9)
ends = sum(out.generated(r)[-1] == END for r in range(len(out.lengths)))
print(f"{ends} of {len(out.lengths)} returned sequences ended with the end token")
assert ends > 0  # the end-token path was exercised, not only the max_new_tokens cut-off

# %% [markdown]
# ## 6. The scores, recomputed from one forward pass
#
# The last check is independent of both searches. Run the model once, uncached, over each
# returned sequence (prompt and generated tokens). Then sum the log-probabilities that the
# log-softmax at each position gives the *next* token, over the generated tokens only:
#
# $$\log p(x_{T_0+1:T_0+L} \mid x_{1:T_0}) = \sum_{t=T_0}^{T_0+L-1}
# \log\operatorname{softmax}(z_t)_{x_{t+1}}.$$
#
# Divided by $L^\alpha$, that must give the returned score.

# %%
T0 = prompts.shape[1]
for row, seq in enumerate(out.tolist()):
    with nima.no_grad():
        logits, _ = gpt(np.array([seq]))  # (1, n, V): the whole sequence at once
    logp = log_softmax(logits.data[0])  # (n, V)
    L = len(seq) - T0
    total = sum(logp[t, seq[t + 1]] for t in range(T0 - 1, len(seq) - 1))
    assert np.isclose(total, out.sequence_logprobs[row], rtol=0, atol=1e-9), (row, total)
    assert np.isclose(total / L ** ALPHA, out.scores[row], rtol=0, atol=1e-9)
print(f"all {len(out.lengths)} summed log-probabilities and scores match the uncached forward")

# %% [markdown]
# Within each prompt the returned sequences come best first by score. A wide enough beam
# cannot miss the best sequence: with $K \ge V^{L-1}$ beams every prefix of $L - 1$ tokens
# survives, and the tests use that to check beam search against an exhaustive search.

# %%
for b in range(len(prompts)):
    scores = out.scores[b * K:(b + 1) * K]
    assert np.all(np.diff(scores) <= 0), scores

# %% [markdown]
# ## Summary
#
# - Greedy decoding can miss the most likely sentence; beam search keeps $K$ candidates and
#   finds it when $K$ is wide enough.
# - The length penalty $\alpha$ decides between short and long sentences; a narrow beam can
#   prune the best one before its good ending counts.
# - The same algorithm in plain NumPy reproduces `nima.generation.beam_search` exactly, and one
#   uncached forward pass recomputes its scores.
#
# ## Check your understanding
#
# ??? question "Why does beam search with one beam equal greedy decoding?"
#     One beam, extended each step by its best token, is exactly the argmax at every step.
#
# ??? question "What must be shifted to score a sequence with one forward pass?"
#     The logits at position $i$ predict the token at position $i + 1$: a generated token is
#     scored by the logits one position before it.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_11 -->
