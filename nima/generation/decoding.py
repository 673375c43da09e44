r"""`generate`: greedy decoding, sampling, entropy-aware sampling and (via `beam.py`) beam search
and tree beam search.

One loop serves the token-by-token strategies. Each step takes the next-token logits $z$ of
every row from the KV-cached `ContextWindow`, lets the processors reshape them, and chooses:

* **greedy** — $x_{t+1} = \arg\max_i z_i$;
* **sample** — $x_{t+1} \sim \operatorname{softmax}(\operatorname{filter}(z / T))$, with the
  filters top-k and top-p;
* **entropy** — the same, with $T$ chosen per row and step so that the tempered distribution
  has a target entropy (`nima.generation.entropy`).

Sampling draws from its own `numpy.random.Generator` (from `seed`, or the one passed in), never
from Nima's global generator, so generating in the middle of training changes nothing there.
A row stops at `eos_token_id` or once its text contains a stop string; finished rows are
padded with `pad_token_id` until every row has finished or `max_new_tokens` are generated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from nima.autograd import no_grad
from nima.generation.beam import beam_search
from nima.generation.config import BEAM_STRATEGIES, STRATEGIES, GenerationConfig
from nima.generation.entropy import entropy_temperature
from nima.generation.output import GenerationOutput
from nima.generation.processors import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    softmax,
)
from nima.generation.stats import GenerationStats
from nima.generation.window import ContextWindow, Prompts, as_prompts

__all__ = ["STRATEGIES", "generate", "sample_tokens"]


# --8<-- [start:sample_tokens]
def sample_tokens(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""One token per row of `probs` `(B, V)`: the first $i$ with $F_i \ge u \cdot F_V$, where
    $F_i = \sum_{j \le i} p_j$ and $u \sim U(0, 1]$ (inverse-CDF sampling; a token of
    probability 0 is never drawn)."""
    cdf = np.cumsum(probs, axis=-1)  # (B, V): $F_i$
    u = (1.0 - rng.random(probs.shape[0])) * cdf[:, -1]  # (B,): in $(0, F_V]$
    return np.minimum((cdf < u[:, None]).sum(axis=-1), probs.shape[-1] - 1)  # (B,)
# --8<-- [end:sample_tokens]


def _decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    if hasattr(tokenizer, "decode"):
        return tokenizer.decode
    if callable(tokenizer):
        return tokenizer
    raise ValueError(f"generate: stop_strings need a tokenizer (an object with .decode, or a "
                     f"function from token ids to text), got {tokenizer!r}")


def generate(model: Any, idx: Any, max_new_tokens: int | None = None, *,
             config: GenerationConfig | None = None, tokenizer: Any = None,
             generator: np.random.Generator | None = None,
             logits_processor: Iterable[LogitsProcessor] | None = None,
             on_token: Callable[[np.ndarray], None] | None = None, stats: bool = True,
             **settings: Any) -> GenerationOutput:
    r"""Continue each prompt of `idx` by up to `max_new_tokens` tokens.

    The settings are a `GenerationConfig`: pass one as `config`, or its fields as keyword
    arguments (`do_sample=True, temperature=0.8, top_k=40`), or both — the keywords then
    override the config's fields, as in Hugging Face's `generate`. The model needs only
    `forward(idx, caches=...) -> (logits, _)`, `new_caches()`, `config.block_size` and
    `eval()` / `train(mode)`; it runs in eval mode under `no_grad` and gets its previous mode
    back afterwards. Kernel backend and threads are the caller's (see `nima.runtime`).

    Prompts of different lengths — a list of token lists, or a pair `(ids, attention_mask)`
    — are left-padded to one length, and the model is given their `attention_mask`: each row
    then decodes exactly as it would alone (greedy and beam search token for token), until
    the window first slides. The output's `sequences` keep the padding (`pad_token_id`, before
    `starts[row]`); `tolist()` leaves it out.

    Args:
        model: the language model (e.g. `nima.models.GPT`).
        idx: the prompts: `(B, T0)` token ids, a list of token lists of any lengths, or a pair
            `(ids, attention_mask)` (see `as_prompts`).
        max_new_tokens: how many tokens to generate at most (overrides the config's).
        config: the decoding settings (default `GenerationConfig()`: greedy).
        tokenizer: an object with `.decode(ids) -> str`, or such a function; needed for
            `stop_strings`.
        generator: a `numpy.random.Generator` to sample from (else one seeded by `seed`).
        logits_processor: extra processors, applied after the repetition penalty and before
            temperature / top-k / top-p.
        on_token: called after each step with the `(B,)` tokens just chosen (pad for rows
            already finished), e.g. to stream text; not called by beam search.
        stats: record per-step entropy, confidence and temperature.
        **settings: fields of `GenerationConfig`.

    Returns:
        A `GenerationOutput` (`sequences`, `lengths`, `sequence_logprobs`, `scores`, `stats`).

    Raises:
        ValueError: bad prompts; `SettingsError` (a ValueError) naming a bad setting.

    Example:
        >>> out = generate(model, prompt, 100, do_sample=True, temperature=0.8, top_k=40, seed=0)
        >>> text = tokenizer.decode(out.generated(0))
    """
    prompts = as_prompts("generate", idx)  # left-padded to one length
    if max_new_tokens is not None:
        settings["max_new_tokens"] = max_new_tokens
    config = (config or GenerationConfig()).updated(**settings)
    decode = _decoder(tokenizer) if config.stop_strings else None
    pre = LogitsProcessorList(
        ([RepetitionPenalty(config.repetition_penalty)]
         if config.repetition_penalty is not None else []) + list(logits_processor or ()))
    rng = generator if generator is not None else np.random.default_rng(config.seed)

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with no_grad():
            if config.resolved_strategy in BEAM_STRATEGIES:
                return beam_search(model, prompts, config, logits_processor=pre, stats=stats)
            return _token_by_token(
                model, prompts.repeat(config.num_return_sequences), config,
                pre=pre, rng=rng, decode=decode, on_token=on_token, stats=stats)
    finally:
        model.train(was_training)


def _token_by_token(model: Any, prompts: Prompts, config: GenerationConfig, *,
                    pre: LogitsProcessorList, rng: np.random.Generator,
                    decode: Callable[[list[int]], str] | None,
                    on_token: Callable[[np.ndarray], None] | None,
                    stats: bool) -> GenerationOutput:
    """The greedy / sample / entropy loop on prompts `(B, T0)` (already repeated per return)."""
    B, T0 = prompts.ids.shape
    mode, eos_token_id, pad_token_id = config.resolved_strategy, config.eos_token_id, config.pad_id
    post = LogitsProcessorList(([TopK(config.top_k)] if config.top_k is not None else [])
                               + ([TopP(config.top_p)] if config.top_p is not None else []))
    seq = np.empty((B, T0 + config.max_new_tokens), dtype=np.int64)  # filled left to right
    seq[:, :T0] = prompts.ids
    window = ContextWindow(model, config.window_keep, prompts.starts)
    record = GenerationStats() if stats else None
    lengths = np.full(B, T0)
    logprobs = np.zeros(B)
    finished = np.zeros(B, dtype=bool)
    rows = np.arange(B)
    n = T0
    for _ in range(config.max_new_tokens):
        context = seq[:, :n]  # (B, n), a view: no copy
        logits = pre(context, window.next_logits(context))  # (B, V)
        # --8<-- [start:choose]
        if mode == "greedy":
            T = 1.0
            probs = softmax(logits)  # (B, V): for the log-probability and the statistics
            token = np.argmax(logits, axis=-1)  # (B,): $\arg\max_i z_i$
        else:
            T = config.temperature if mode == "sample" else entropy_temperature(
                logits, config.target_entropy, config.min_temp, config.max_temp)  # (B,)
            probs = softmax(post(context, Temperature(T)(context, logits)))  # (B, V)
            token = sample_tokens(probs, rng)  # (B,): $x \sim p$
        # --8<-- [end:choose]
        alive = ~finished
        token = np.where(alive, token, pad_token_id)
        logprobs += np.where(alive, np.log(np.maximum(probs[rows, token], 1e-300)), 0.0)
        if record is not None:
            record.record(probs, T, alive)
        seq[:, n] = token
        n += 1
        lengths[alive] = n
        if eos_token_id is not None:
            finished |= alive & (token == eos_token_id)
        for r in np.flatnonzero(~finished) if decode is not None else ():
            text = decode(seq[r, T0:n].tolist())
            finished[r] = any(s in text for s in config.stop_strings)
        if on_token is not None:
            on_token(token)
        if finished.all():
            break
    return GenerationOutput(sequences=prompts.with_padding(seq[:, :n], pad_token_id),
                            lengths=lengths, sequence_logprobs=logprobs,
                            scores=logprobs.copy(), prompt_length=T0, strategy=mode,
                            stats=record, starts=prompts.starts)
