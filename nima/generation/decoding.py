r"""`generate`: greedy decoding, sampling, entropy-aware sampling and (via `beam.py`) beam search.

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

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from nima import kernels
from nima.autograd import no_grad
from nima.generation.beam import beam_search
from nima.generation.entropy import check_entropy_target, entropy_temperature
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
from nima.generation.window import ContextWindow, as_prompts
from nima.kernels import threads

__all__ = ["STRATEGIES", "decoding_kernels", "generate", "sample_tokens"]

STRATEGIES = ("greedy", "sample", "entropy", "beam")


# --8<-- [start:sample_tokens]
def sample_tokens(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""One token per row of `probs` `(B, V)`: the first $i$ with $F_i \ge u \cdot F_V$, where
    $F_i = \sum_{j \le i} p_j$ and $u \sim U(0, 1]$ (inverse-CDF sampling; a token of
    probability 0 is never drawn)."""
    cdf = np.cumsum(probs, axis=-1)  # (B, V): $F_i$
    u = (1.0 - rng.random(probs.shape[0])) * cdf[:, -1]  # (B,): in $(0, F_V]$
    return np.minimum((cdf < u[:, None]).sum(axis=-1), probs.shape[-1] - 1)  # (B,)
# --8<-- [end:sample_tokens]


def _strategy(strategy: str | None, do_sample: bool, num_beams: int,
              target_entropy: float | None) -> str:
    if strategy is None:
        if num_beams > 1:
            return "beam"
        if target_entropy is not None:
            return "entropy"
        return "sample" if do_sample else "greedy"
    if strategy not in STRATEGIES:
        raise ValueError(f"generate: strategy must be one of {', '.join(STRATEGIES)}, "
                         f"got {strategy!r}")
    if strategy != "beam" and num_beams > 1:
        raise ValueError(f"generate: num_beams={num_beams} needs strategy='beam', "
                         f"got {strategy!r}")
    if strategy == "entropy" and target_entropy is None:
        raise ValueError("generate: strategy='entropy' needs target_entropy (bits)")
    return strategy


# --8<-- [start:decoding_kernels]
@contextmanager
def decoding_kernels(backend: str | None) -> Iterator[None]:
    """Kernel backend `backend` (None: the current one) for a decoding loop; with "numpy",
    OpenBLAS on one thread: a step's `(1, C) @ (C, 3C)` products are far too small to share,
    and on a busy machine waking a second BLAS thread for each costs more than the product."""
    if backend is None:
        yield
        return
    with kernels.backend(backend):
        if backend != "numpy":
            yield
            return
        threads.restore_blas_threads()  # drop Nima's own limit, so the kernels keep ours
        with threadpool_limits(limits=1, user_api="blas"):
            yield
# --8<-- [end:decoding_kernels]


def _decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    if hasattr(tokenizer, "decode"):
        return tokenizer.decode
    if callable(tokenizer):
        return tokenizer
    raise ValueError(f"generate: stop_strings need a tokenizer (an object with .decode, or a "
                     f"function from token ids to text), got {tokenizer!r}")


def generate(model: Any, idx: Any, max_new_tokens: int, *, strategy: str | None = None,
             do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, repetition_penalty: float | None = None,
             target_entropy: float | None = None, min_temp: float = 0.1, max_temp: float = 2.0,
             num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool = False,
             num_return_sequences: int = 1, eos_token_id: int | None = None,
             pad_token_id: int | None = None, stop_strings: str | Sequence[str] | None = None,
             tokenizer: Any = None, seed: int | None = None,
             generator: np.random.Generator | None = None,
             logits_processor: Iterable[LogitsProcessor] | None = None,
             window_keep: int | None = None,
             on_token: Callable[[np.ndarray], None] | None = None,
             stats: bool = True, backend: str | None = "numpy") -> GenerationOutput:
    r"""Continue each prompt of `idx` by up to `max_new_tokens` tokens.

    The model needs only `forward(idx, caches=...) -> (logits, _)`, `new_caches()`,
    `config.block_size` and `eval()` / `train(mode)`; it runs in eval mode under `no_grad`
    and gets its previous mode back afterwards.

    Args:
        model: the language model (e.g. `nima.models.GPT`).
        idx: `(B, T0)` prompt token ids, all prompts the same length.
        max_new_tokens: how many tokens to generate at most (>= 0).
        strategy: `"greedy"`, `"sample"`, `"entropy"` or `"beam"`; None picks as Hugging
            Face does: beam if `num_beams > 1`, entropy if `target_entropy` is set, sample if
            `do_sample`, else greedy.
        do_sample: sample instead of taking the argmax (when `strategy` is None).
        temperature: $T > 0$ for sampling; logits are divided by it.
        top_k: keep only the `top_k` most likely tokens when sampling.
        top_p: keep the smallest set of most likely tokens of mass >= `top_p` when sampling.
        repetition_penalty: CTRL's $\theta$ on tokens already in the row (every strategy).
        target_entropy: entropy strategy: the wanted entropy in bits of each step's tempered
            distribution (before top-k / top-p).
        min_temp: entropy strategy: the coldest temperature it may choose.
        max_temp: entropy strategy: the hottest.
        num_beams: beams per prompt for beam search.
        length_penalty: beam search: $\alpha$ in score $= \log p / \text{len}^\alpha$.
        early_stopping: beam search: stop a prompt once `num_beams` hypotheses are finished.
        num_return_sequences: sequences per prompt (sampling: independent draws; beam: the
            best ones, at most `num_beams`). Greedy returns one.
        eos_token_id: a row stops after emitting this token.
        pad_token_id: fills finished rows; default `eos_token_id`, else 0.
        stop_strings: a row stops once its generated text contains one of them (needs
            `tokenizer`); not for beam search.
        tokenizer: an object with `.decode(ids) -> str`, or such a function.
        seed: seed of the sampler's own generator (ignored when `generator` is given).
        generator: a `numpy.random.Generator` to draw from.
        logits_processor: extra processors, applied after the repetition penalty and before
            temperature / top-k / top-p.
        window_keep: tokens kept when the full context window slides (`ContextWindow`).
        on_token: called after each step with the `(B,)` tokens just chosen (pad for rows
            already finished), e.g. to stream text; not called by beam search.
        stats: record per-step entropy, confidence and temperature.
        backend: the kernel backend (`nima.kernels.backend`) while decoding; None keeps the
            current one. NumPy with single-threaded OpenBLAS by default (`decoding_kernels`):
            the fastest for one token's small products.

    Returns:
        A `GenerationOutput` (`sequences`, `lengths`, `sequence_logprobs`, `scores`, `stats`).

    Raises:
        ValueError: on bad shapes or values, naming the argument.

    Example:
        >>> out = generate(model, prompt, 100, do_sample=True, temperature=0.8, top_k=40, seed=0)
        >>> text = tokenizer.decode(out.generated(0))
    """
    prompts = as_prompts("generate", idx)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int | np.integer) \
            or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if isinstance(num_beams, bool) or not isinstance(num_beams, int | np.integer) or \
            num_beams < 1:
        raise ValueError(f"generate: num_beams must be an int >= 1, got {num_beams!r}")
    if isinstance(num_return_sequences, bool) or \
            not isinstance(num_return_sequences, int | np.integer) or num_return_sequences < 1:
        raise ValueError(f"generate: num_return_sequences must be an int >= 1, "
                         f"got {num_return_sequences!r}")
    mode = _strategy(strategy, do_sample, num_beams, target_entropy)
    if mode == "greedy" and num_return_sequences > 1:
        raise ValueError(f"generate: greedy decoding gives one sequence per prompt, got "
                         f"num_return_sequences={num_return_sequences}")
    if pad_token_id is None:
        pad_token_id = 0 if eos_token_id is None else eos_token_id
    stops = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings or ())
    if any(not isinstance(s, str) or not s for s in stops):
        raise ValueError(f"generate: stop_strings must be non-empty strings, got {stop_strings!r}")
    decode = _decoder(tokenizer) if stops else None
    if stops and mode == "beam":
        raise ValueError("generate: stop_strings are not supported with beam search; "
                         "use eos_token_id")
    pre = LogitsProcessorList(
        ([RepetitionPenalty(repetition_penalty)] if repetition_penalty is not None else [])
        + list(logits_processor or ()))
    Temperature(temperature)  # validates
    post = LogitsProcessorList(([TopK(top_k)] if top_k is not None else [])
                               + ([TopP(top_p)] if top_p is not None else []))
    if mode == "entropy":
        check_entropy_target(target_entropy, min_temp, max_temp)
    rng = generator if generator is not None else np.random.default_rng(seed)

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with no_grad(), decoding_kernels(backend):
            if mode == "beam":
                return beam_search(
                    model, prompts, max_new_tokens, num_beams=num_beams,
                    length_penalty=length_penalty, early_stopping=early_stopping,
                    num_return_sequences=num_return_sequences, eos_token_id=eos_token_id,
                    pad_token_id=pad_token_id, logits_processor=pre, window_keep=window_keep,
                    stats=stats)
            return _token_by_token(
                model, np.repeat(prompts, num_return_sequences, axis=0), max_new_tokens, mode,
                pre=pre, post=post, temperature=temperature,
                entropy=(target_entropy, min_temp, max_temp), rng=rng,
                eos_token_id=eos_token_id, pad_token_id=pad_token_id, stops=stops,
                decode=decode, window_keep=window_keep, on_token=on_token, stats=stats)
    finally:
        model.train(was_training)


def _token_by_token(model: Any, prompts: np.ndarray, max_new_tokens: int, mode: str, *,
                    pre: LogitsProcessorList, post: LogitsProcessorList, temperature: float,
                    entropy: tuple[float | None, float, float], rng: np.random.Generator,
                    eos_token_id: int | None, pad_token_id: int, stops: list[str],
                    decode: Callable[[list[int]], str] | None, window_keep: int | None,
                    on_token: Callable[[np.ndarray], None] | None,
                    stats: bool) -> GenerationOutput:
    """The greedy / sample / entropy loop on prompts `(B, T0)` (already repeated per return)."""
    B, T0 = prompts.shape
    seq = np.empty((B, T0 + max_new_tokens), dtype=np.int64)  # filled left to right
    seq[:, :T0] = prompts
    window = ContextWindow(model, window_keep)
    record = GenerationStats() if stats else None
    lengths = np.full(B, T0)
    logprobs = np.zeros(B)
    finished = np.zeros(B, dtype=bool)
    rows = np.arange(B)
    target, min_temp, max_temp = entropy
    n = T0
    for _ in range(max_new_tokens):
        context = seq[:, :n]  # (B, n), a view: no copy
        logits = pre(context, window.next_logits(context))  # (B, V)
        # --8<-- [start:choose]
        if mode == "greedy":
            T = 1.0
            probs = softmax(logits)  # (B, V): for the log-probability and the statistics
            token = np.argmax(logits, axis=-1)  # (B,): $\arg\max_i z_i$
        else:
            T = temperature if mode == "sample" else \
                entropy_temperature(logits, target, min_temp, max_temp)  # (B,) per row
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
        for r in np.flatnonzero(~finished) if stops else ():
            text = decode(seq[r, T0:n].tolist())
            finished[r] = any(s in text for s in stops)
        if on_token is not None:
            on_token(token)
        if finished.all():
            break
    return GenerationOutput(sequences=seq[:, :n], lengths=lengths, sequence_logprobs=logprobs,
                            scores=logprobs.copy(), prompt_length=T0, strategy=mode,
                            stats=record)
