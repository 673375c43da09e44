r"""Beam search: keep the `num_beams` most likely continuations of each prompt, step by step.

Each step, every beam $b$ with summed log-probability $s_b$ proposes every token $i$, scored
$s_b + \log p(i \mid \text{beam}_b)$. Of these $K \cdot V$ candidates per prompt the best $2K$
are read in order: a candidate ending in `eos_token_id` (among the first $K$) becomes a
finished *hypothesis*, scored with the length penalty

$$\text{score} = \frac{\sum_t \log p(x_t \mid x_{<t})}{L^{\alpha}}$$

($L$ the number of generated tokens, $\alpha$ = `length_penalty`, as in Hugging Face:
$\alpha > 0$ favours longer sequences, $\alpha < 0$ shorter ones); the others fill the $K$
beams of the next step (reading $2K$ guarantees $K$ of them even if $K$ end). The KV caches
follow: row $i$ of the next step's caches is a copy of the row its beam came from
(`KVCache.reorder`).

A prompt is done when it holds $K$ hypotheses and — with `early_stopping` — at once, or —
without — once no running beam can beat the worst of them any more (Hugging Face's heuristic:
the best running sum divided by the current length$^\alpha$). Whenever a prompt is done, and
for every prompt after the last step, its $K$ running beams join the hypotheses too, scored
the same way over the tokens they have — so the best sequence returned never scores worse than
a beam the search held. The best `num_return_sequences` are returned with their summed
log-probabilities and scores.

With `strategy="tree_beam"` each beam may propose only its `tree_width` best continuations
(and the end token), and the search records its tree of hypotheses (`nima.generation.tree_beam`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima.generation.config import GenerationConfig
from nima.generation.output import GenerationOutput
from nima.generation.processors import LogitsProcessor, softmax
from nima.generation.stats import GenerationStats
from nima.generation.tree_beam import SearchTree, expand
from nima.generation.window import ContextWindow, Prompts, as_prompts

__all__ = ["BeamHypotheses", "beam_search"]


class BeamHypotheses:
    """The best `num_beams` finished sequences of one prompt, as `(score, logprob, tokens)`."""

    def __init__(self, num_beams: int, length_penalty: float, early_stopping: bool) -> None:
        self.num_beams, self.alpha, self.early_stopping = num_beams, length_penalty, early_stopping
        self.hyps: list[tuple[float, float, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.hyps)

    # --8<-- [start:hyp_add]
    def add(self, tokens: np.ndarray, logprob: float) -> None:
        r"""Keep `tokens` (the generated ones) if among the best: score $= \log p / L^\alpha$."""
        score = logprob / max(len(tokens), 1) ** self.alpha
        self.hyps.append((score, logprob, tokens))
        self.hyps.sort(key=lambda h: -h[0])
        del self.hyps[self.num_beams:]
    # --8<-- [end:hyp_add]

    def is_done(self, best_running: float, length: int) -> bool:
        """No running beam (best summed log-probability `best_running`, `length` tokens
        generated) can still enter."""
        if len(self) < self.num_beams:
            return False
        if self.early_stopping:
            return True
        return self.hyps[-1][0] >= best_running / length ** self.alpha


def beam_search(model: Any, idx: Any, config: GenerationConfig, *,
                logits_processor: LogitsProcessor | None = None,
                stats: bool = True) -> GenerationOutput:
    r"""Beam search from prompts `idx` `(B, T0)` with the beam settings of `config`
    (`num_beams` $K$, `length_penalty` $\alpha$, `early_stopping`, `num_return_sequences`
    $\le K$, `eos_token_id`, `pad_token_id`, `window_keep`; for `strategy="tree_beam"`,
    `tree_width` $c$); see the module docstring.

    Call it through `generate(..., num_beams=K)`, which also sets eval mode and `no_grad`.

    Args:
        model: as for `generate`.
        idx: the prompts, as for `generate` (of different lengths too).
        config: the decoding settings.
        logits_processor: applied to each beam's logits before the log-softmax.
        stats: record the entropy and confidence of every running beam's distribution.

    Returns:
        A `GenerationOutput` with `B * num_return_sequences` rows, best first per prompt;
        `sequence_logprobs` the summed log-probabilities, `scores` the length-penalised ones;
        for tree beam search, `trees`, one `SearchTree` per prompt.
    """
    prompts = as_prompts("beam_search", idx)
    K, eos_token_id, pad_token_id = config.num_beams, config.eos_token_id, config.pad_id
    max_new_tokens = config.max_new_tokens
    B, T0 = prompts.ids.shape
    beams = prompts.repeat(K)
    seq = np.empty((B * K, T0 + max_new_tokens), dtype=np.int64)
    seq[:, :T0] = beams.ids  # (B K, T0): K copies of each prompt
    beam_scores = np.zeros((B, K))
    beam_scores[:, 1:] = -np.inf  # all beams start equal: let only the first propose
    hyps = [BeamHypotheses(K, config.length_penalty, config.early_stopping) for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    retired = np.zeros(B, dtype=bool)  # done, and its running beams already offered
    window = ContextWindow(model, config.window_keep, beams.starts)
    record = GenerationStats() if stats else None
    strategy = config.resolved_strategy
    trees = [SearchTree(prompts.ids[b, prompts.starts[b]:].tolist()) for b in range(B)] \
        if strategy == "tree_beam" else None  # each prompt without its padding
    nodes = np.zeros(B * K, dtype=np.int64)  # each beam's node in its prompt's tree
    n = T0
    for _ in range(max_new_tokens):
        context = seq[:, :n]
        logits = window.next_logits(context)  # (B K, V)
        if logits_processor is not None:
            logits = logits_processor(context, logits)
        V = logits.shape[-1]
        if V < 2:
            raise ValueError(f"beam_search: needs a vocabulary of at least 2 tokens, got {V}")
        probs = softmax(logits)  # (B K, V)
        if record is not None:
            record.record(probs, 1.0, np.repeat(~done, K))
        # --8<-- [start:candidates]
        with np.errstate(divide="ignore"):
            logp = np.log(probs)  # (B K, V): $\log p(i \mid \text{beam})$
        if trees is not None:
            logp = expand(logp, config.tree_width, eos_token_id)  # at most c children each
        cand = (beam_scores.reshape(B * K, 1) + logp).reshape(B, K * V)  # $s_b + \log p$
        top = np.argpartition(-cand, 2 * K - 1, axis=-1)[:, :2 * K]  # (B, 2K), unordered
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(cand, top, -1), -1), -1)
        top_scores = np.take_along_axis(cand, top, -1)  # (B, 2K), best first
        from_beam, token = top // V, top % V  # (B, 2K) each
        # --8<-- [end:candidates]
        rows = np.arange(B * K)  # next step's row i continues row rows[i]
        tokens = np.full(B * K, pad_token_id, dtype=np.int64)
        for b in np.flatnonzero(~done):
            proposed = None if trees is None else _propose(trees[b], nodes[b * K:(b + 1) * K],
                                                           beam_scores[b], logp[b * K:(b + 1) * K])
            # --8<-- [start:select]
            j = 0
            for rank in range(2 * K):
                src = b * K + from_beam[b, rank]
                if eos_token_id is not None and token[b, rank] == eos_token_id:
                    if rank < K:  # a finished hypothesis, if among the K best candidates
                        hyps[b].add(np.append(seq[src, T0:n], eos_token_id),
                                    float(top_scores[b, rank]))
                        _mark(trees, b, proposed, from_beam[b, rank], eos_token_id, "end")
                    continue
                rows[b * K + j], tokens[b * K + j] = src, token[b, rank]
                beam_scores[b, j] = top_scores[b, rank]
                nodes[b * K + j] = _mark(trees, b, proposed, from_beam[b, rank], token[b, rank],
                                         "beam")
                j += 1
                if j == K:
                    break
            done[b] = hyps[b].is_done(float(top_scores[b].max()), n - T0 + 1)
            # --8<-- [end:select]
        seq = seq[rows]  # (B K, T0 + max_new): each beam's history follows it
        seq[:, n] = tokens
        n += 1
        window.reorder(rows)
        for b in np.flatnonzero(done & ~retired):  # done now: its running beams compete too
            _retire(hyps[b], seq[b * K:(b + 1) * K, T0:n], beam_scores[b])
        retired |= done
        if done.all():
            break
    for b in np.flatnonzero(~retired):  # after the last step, every running beam competes
        _retire(hyps[b], seq[b * K:(b + 1) * K, T0:n], beam_scores[b])
    out = _collect(hyps, prompts, config.num_return_sequences, pad_token_id, record, strategy)
    out.trees = trees
    return out


def _propose(tree: SearchTree, nodes: np.ndarray, scores: np.ndarray,
             logp: np.ndarray) -> dict[tuple[int, int], int]:
    """Add every live beam's proposals (its finite candidates) to `tree` as pruned nodes;
    return their indices by `(beam, token)`."""
    proposed = {}
    for beam in np.flatnonzero(np.isfinite(scores)):
        for token in np.flatnonzero(np.isfinite(logp[beam])):
            proposed[beam, token] = tree.add(int(nodes[beam]), token,
                                             scores[beam] + logp[beam, token])
    return proposed


def _mark(trees: list[SearchTree] | None, b: int, proposed: dict[tuple[int, int], int] | None,
          beam: int, token: int, status: str) -> int:
    """Set the status of beam `beam`'s proposal `token` in prompt `b`'s tree; its node (0 for
    plain beam search, or a candidate of score -inf, which no tree holds)."""
    node = None if trees is None else proposed.get((beam, token))
    if node is None:
        return 0
    trees[b].nodes[node].status = status
    return node


def _retire(hyps: BeamHypotheses, beams: np.ndarray, scores: np.ndarray) -> None:
    """Offer a prompt's running beams `(K, L)` with summed log-probabilities `scores` `(K,)`
    to its hypotheses, which keep the best."""
    for tokens, score in zip(beams, scores, strict=True):
        if np.isfinite(score):
            hyps.add(tokens.copy(), float(score))


def _collect(hyps: list[BeamHypotheses], prompts: Prompts, n_ret: int, pad: int,
              record: GenerationStats | None, strategy: str) -> GenerationOutput:
    """The best `n_ret` hypotheses of each prompt, padded into one array."""
    best = [h.hyps[:n_ret] for h in hyps]
    B, T0 = prompts.ids.shape
    L = max(len(t) for row in best for _, _, t in row)
    seq = np.full((B * n_ret, T0 + L), pad, dtype=np.int64)
    lengths = np.zeros(B * n_ret, dtype=np.int64)
    scores, logprobs = np.zeros(B * n_ret), np.zeros(B * n_ret)
    for b, row in enumerate(best):
        for j, (score, logprob, tokens) in enumerate(row):
            i = b * n_ret + j
            seq[i, :T0], seq[i, T0:T0 + len(tokens)] = prompts.ids[b], tokens
            lengths[i], scores[i], logprobs[i] = T0 + len(tokens), score, logprob
    return GenerationOutput(sequences=prompts.with_padding(seq, pad), lengths=lengths,
                            sequence_logprobs=logprobs, scores=scores, prompt_length=T0,
                            strategy=strategy, stats=record,
                            starts=np.repeat(prompts.starts, n_ret))
