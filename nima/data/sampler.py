r"""Loss-guided window sampling: draw training windows in proportion to the model's recent loss
on them — prioritised replay of the hard parts of the corpus.

The corpus of $N$ tokens is cut into windows of `block_size + 1` tokens starting every
`stride` tokens. Window $i$ has a priority $p_i$, the model's recent loss on it (an
exponential moving average with `momentum`), and is drawn with probability

$$P(i) = \frac{(p_i + \epsilon)^\alpha}{\sum_j (p_j + \epsilon)^\alpha},$$

as in prioritised experience replay (Schaul et al., 2016): $\alpha = 0$ is uniform sampling,
$\alpha = 1$ proportional to the loss; $\epsilon$ keeps every window drawable. A window not
trained on yet gets the highest priority seen so far, so every window is visited early on. The
training loop reports the per-window losses of each batch with `update`.

Uniform sampling spends most steps on windows the model already predicts well; this spends
them where the loss is — at the price of a biased estimate of the average loss (the
importance-sampling weights of prioritised replay would correct it; they are not applied here).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LossGuidedSampler"]


class LossGuidedSampler:
    """Windows of a token array, drawn with probability growing with their recent loss.

    Args:
        n_tokens: length of the token array the windows come from.
        block_size: tokens per input window (each window holds `block_size + 1`, for targets).
        stride: distance between window starts (default `block_size`: windows tile the data).
        alpha: $\\alpha \\ge 0$, how strongly the loss shapes the draw.
        momentum: in $[0, 1)$: weight of the old priority when a new loss arrives (0: the latest
            loss alone).
        eps: $\\epsilon > 0$, added to every priority.
        seed: seeds the sampler's own `np.random.default_rng`.
    """

    def __init__(self, n_tokens: int, block_size: int, *, stride: int | None = None,
                 alpha: float = 1.0, momentum: float = 0.0, eps: float = 0.01,
                 seed: int = 0) -> None:
        name = "LossGuidedSampler"
        stride = block_size if stride is None else stride
        if block_size < 1 or stride < 1:
            raise ValueError(f"{name}: block_size and stride must be >= 1, got block_size="
                             f"{block_size}, stride={stride}")
        if n_tokens < block_size + 1:
            raise ValueError(f"{name}: n_tokens={n_tokens} is fewer than block_size + 1 = "
                             f"{block_size + 1}")
        if alpha < 0 or not 0 <= momentum < 1 or eps <= 0:
            raise ValueError(f"{name}: expected alpha >= 0, 0 <= momentum < 1, eps > 0; got "
                             f"alpha={alpha}, momentum={momentum}, eps={eps}")
        self.block_size, self.alpha, self.momentum, self.eps = block_size, alpha, momentum, eps
        self.starts = np.arange(0, n_tokens - block_size, stride)  # (W,) window offsets
        self.priorities = np.zeros(len(self.starts))  # (W,) recent loss of each window
        self.seen = np.zeros(len(self.starts), dtype=bool)  # trained on at least once
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.starts)

    # --8<-- [start:probabilities]
    def probabilities(self) -> np.ndarray:
        r"""$P(i) \propto (p_i + \epsilon)^\alpha$ for every window, `(W,)`; unseen windows
        count with the highest priority seen (1.0 before any loss is known)."""
        top = self.priorities[self.seen].max() if self.seen.any() else 1.0
        p = np.where(self.seen, self.priorities, top)  # (W,)
        w = (p + self.eps) ** self.alpha
        return w / w.sum()
    # --8<-- [end:probabilities]

    def sample(self, batch_size: int) -> np.ndarray:
        """Indices `(batch_size,)` of windows, drawn independently from `probabilities()`."""
        if batch_size < 1:
            raise ValueError(f"LossGuidedSampler: batch_size must be >= 1, got {batch_size}")
        return self.rng.choice(len(self.starts), size=batch_size, p=self.probabilities())

    def get_batch(self, data: np.ndarray,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw windows of `data` (the token array, e.g. `TokenDataset.data`): inputs and
        next-token targets, int64 `(B, block_size)` each, and the windows' indices `(B,)` for
        `update`."""
        if len(data) < self.starts[-1] + self.block_size + 1:
            raise ValueError(f"LossGuidedSampler.get_batch: data has {len(data)} tokens, the "
                             f"windows need {self.starts[-1] + self.block_size + 1}")
        indices = self.sample(batch_size)
        window = self.starts[indices, None] + np.arange(self.block_size + 1)  # (B, T+1)
        chunk = np.asarray(data[window], dtype=np.int64)
        return chunk[:, :-1], chunk[:, 1:], indices

    def update(self, indices: np.ndarray, losses: np.ndarray) -> None:
        """Record the loss `losses[j]` of window `indices[j]` (a NaN loss is refused)."""
        indices, losses = np.asarray(indices), np.asarray(losses, dtype=np.float64)
        if indices.shape != losses.shape or indices.ndim != 1:
            raise ValueError(f"LossGuidedSampler.update: indices and losses must be 1-D of one "
                             f"length, got {indices.shape} and {losses.shape}")
        if not np.isfinite(losses).all() or (losses < 0).any():
            raise ValueError(f"LossGuidedSampler.update: losses must be finite and >= 0, got "
                             f"{losses}")
        for i, loss in zip(indices, losses, strict=True):
            old = self.priorities[i] if self.seen[i] else loss
            self.priorities[i] = self.momentum * old + (1 - self.momentum) * loss
            self.seen[i] = True

    def state_dict(self) -> dict[str, np.ndarray]:
        """The priorities, for a checkpoint (the generator's state is the trainer's to keep)."""
        return {"priorities": self.priorities.copy(), "seen": self.seen.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for key in ("priorities", "seen"):
            if np.shape(state[key]) != (len(self),):
                raise ValueError(f"LossGuidedSampler.load_state_dict: {key} has shape "
                                 f"{np.shape(state[key])}, this sampler has {len(self)} windows")
        self.priorities = np.array(state["priorities"], dtype=np.float64)
        self.seen = np.array(state["seen"], dtype=bool)
