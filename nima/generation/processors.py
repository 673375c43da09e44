r"""Logits processors: small callables that reshape a next-token distribution before a choice.

Each takes the tokens so far and the next-token logits of every row and returns new logits,
as in Hugging Face's `LogitsProcessor`:

    processor(input_ids (B, T) ints, logits (B, V) floats) -> logits (B, V)

They work on NumPy arrays (decoding runs under `nima.no_grad`, outside the graph), never
modify their input, and compose in a `LogitsProcessorList`, applied left to right. A token a
processor rules out gets the logit $-\infty$, so its probability is exactly zero.

| here | Hugging Face |
|---|---|
| `Temperature` | `TemperatureLogitsWarper` |
| `TopK` | `TopKLogitsWarper` |
| `TopP` | `TopPLogitsWarper` |
| `RepetitionPenalty` | `RepetitionPenaltyLogitsProcessor` |

Example:
    >>> chain = LogitsProcessorList([RepetitionPenalty(1.3), Temperature(0.8), TopK(40)])
    >>> logits = chain(input_ids, logits)  # (B, T), (B, V) -> (B, V)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from nima import kernels
from nima.settings import check_int

__all__ = [
    "LogitsProcessor",
    "LogitsProcessorList",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "softmax",
]

LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def softmax(logits: np.ndarray) -> np.ndarray:
    r"""$p_i = e^{z_i - \max z} / \sum_j e^{z_j - \max z}$ over the last axis, in float64.

    Tokens at $-\infty$ get probability 0.
    """
    return kernels.softmax_forward(np.asarray(logits, dtype=np.float64))


def _check_logits(name: str, input_ids: np.ndarray, logits: np.ndarray) -> None:
    if logits.ndim != 2 or input_ids.ndim != 2 or input_ids.shape[0] != logits.shape[0]:
        raise ValueError(f"{name}: expected input_ids (B, T) and logits (B, V) with the same B, "
                         f"got {input_ids.shape} and {logits.shape}")


# --8<-- [start:temperature]
class Temperature:
    r"""Divide the logits by a temperature: $p_i \propto \exp(z_i / T)$.

    $T < 1$ sharpens the distribution (towards greedy as $T \to 0$), $T > 1$ flattens it
    (towards uniform as $T \to \infty$). `temperature` is one number, or one per row `(B,)`.

    Raises:
        ValueError: if a temperature is not a finite number > 0.
    """

    def __init__(self, temperature: float | np.ndarray) -> None:
        t = np.asarray(temperature, dtype=np.float64)
        if t.ndim > 1 or not np.all(np.isfinite(t)) or not np.all(t > 0):
            raise ValueError(f"Temperature: temperature must be a finite number > 0 (or a 1-D "
                             f"array of them), got {temperature!r}")
        self.temperature = t

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        _check_logits("Temperature", input_ids, logits)
        t = self.temperature
        if t.ndim == 1 and t.shape[0] != logits.shape[0]:
            raise ValueError(f"Temperature: {t.shape[0]} temperatures for {logits.shape[0]} rows")
        return logits / (t[:, None] if t.ndim else t)  # (B, V): $z / T$
# --8<-- [end:temperature]

    def __repr__(self) -> str:
        return f"Temperature({self.temperature.tolist()})"


# --8<-- [start:top_k]
class TopK:
    r"""Keep the `top_k` largest logits of each row, set the rest to $-\infty$:

    $$z'_i = \begin{cases} z_i & z_i \ge z_{(k)} \\ -\infty & \text{otherwise}\end{cases}$$

    with $z_{(k)}$ the $k$-th largest logit of the row (a tie at $z_{(k)}$ keeps every tied
    token, as PyTorch's and nanoGPT's `logits < v[:, [-1]]` does). `top_k >= V` keeps everything.

    Raises:
        ValueError: if `top_k` is not an int >= 1.
    """

    def __init__(self, top_k: int) -> None:
        self.top_k = check_int("TopK.top_k", top_k, ge=1)

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        _check_logits("TopK", input_ids, logits)
        V = logits.shape[-1]
        if self.top_k >= V:
            return logits.copy()
        kth = np.partition(logits, V - self.top_k, axis=-1)[:, V - self.top_k, None]  # (B, 1)
        return np.where(logits < kth, -np.inf, logits)  # (B, V)
# --8<-- [end:top_k]

    def __repr__(self) -> str:
        return f"TopK({self.top_k})"


# --8<-- [start:top_p]
class TopP:
    r"""Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches `top_p`.

    Sort each row's probabilities $p_{(1)} \ge p_{(2)} \ge \dots$; keep the $k$ most likely,

    $$k = \min\Big\{k : \sum_{j \le k} p_{(j)} \ge p\Big\},$$

    i.e. keep token $(i)$ while the mass *before* it, $\sum_{j < i} p_{(j)}$, is still below
    $p$. The most likely token is always kept; the rest get $-\infty$ (a tie at the cut-off
    keeps every tied token, as `TopK` does). `top_p = 1` keeps every token with nonzero
    probability.

    Raises:
        ValueError: if `top_p` is not in $(0, 1]$.
    """

    def __init__(self, top_p: float) -> None:
        if not isinstance(top_p, int | float | np.floating) or not 0.0 < top_p <= 1.0:
            raise ValueError(f"TopP: top_p must be in (0, 1], got {top_p!r}")
        self.top_p = float(top_p)

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        _check_logits("TopP", input_ids, logits)
        ranked = -np.sort(-logits, axis=-1)  # (B, V): most likely first
        probs = softmax(ranked)  # (B, V): $p_{(1)} \ge p_{(2)} \ge \dots$
        before = np.cumsum(probs, axis=-1) - probs  # (B, V): $\sum_{j<i} p_{(j)}$
        k = np.count_nonzero(before < self.top_p, axis=-1)  # (B,): >= 1, since before[0] = 0
        cutoff = ranked[np.arange(len(ranked)), k - 1, None]  # (B, 1): the k-th largest logit
        return np.where(logits < cutoff, -np.inf, logits)  # (B, V)
# --8<-- [end:top_p]

    def __repr__(self) -> str:
        return f"TopP({self.top_p})"


# --8<-- [start:repetition_penalty]
class RepetitionPenalty:
    r"""CTRL's repetition penalty (Keskar et al., 2019) on every token already in the row:

    $$z'_i = \begin{cases} z_i / \theta & z_i > 0 \\ z_i\,\theta & z_i \le 0 \end{cases}
    \qquad \text{for } i \in \text{input\_ids[row]},$$

    so $\theta > 1$ makes a seen token less likely whatever its sign ($\theta = 1$: no change,
    $\theta < 1$: more likely). Tokens not in the row's context are untouched.

    Raises:
        ValueError: if `penalty` is not a finite number > 0.
    """

    def __init__(self, penalty: float) -> None:
        if not isinstance(penalty, int | float | np.floating) or not np.isfinite(penalty) \
                or penalty <= 0:
            raise ValueError(f"RepetitionPenalty: penalty must be a finite number > 0, "
                             f"got {penalty!r}")
        self.penalty = float(penalty)

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        _check_logits("RepetitionPenalty", input_ids, logits)
        seen = np.take_along_axis(logits, input_ids, axis=-1)  # (B, T): logits of seen tokens
        seen = np.where(seen > 0, seen / self.penalty, seen * self.penalty)
        out = logits.copy()
        np.put_along_axis(out, input_ids, seen, axis=-1)  # a repeated id writes the same value
        return out  # (B, V)
# --8<-- [end:repetition_penalty]

    def __repr__(self) -> str:
        return f"RepetitionPenalty({self.penalty})"


class LogitsProcessorList(list):
    """Processors applied in order: `chain(ids, logits) = p_n(ids, ... p_1(ids, logits))`.

    A plain list (append, extend, index as usual) that is also a processor itself.
    """

    def __init__(self, processors: Iterable[LogitsProcessor] = ()) -> None:
        super().__init__(processors)
        for p in self:
            if not callable(p):
                raise TypeError(f"LogitsProcessorList: {p!r} is not callable")

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        for processor in self:
            logits = processor(input_ids, logits)
        return logits
