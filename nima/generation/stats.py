r"""Generation statistics: how uncertain each step was, for any strategy.

Every step records, for each row still generating, the distribution the token was chosen from:
its entropy $H = -\sum_i p_i \log_2 p_i$ in bits, its confidence $\max_i p_i$, and the
temperature applied to the logits (1 where none was). `GenerationStats` summarises them over
all rows and steps — mean, range and standard deviation of the entropy, mean confidence, mean
temperature — and prints them as a small boxed table:

    ┌────────────────────────────────────┐
    │ Generation statistics              │
    ├───────────────────┬────────────────┤
    │ tokens            │            200 │
    │ mean entropy      │      1.84 bits │
    ...
    └───────────────────┴────────────────┘
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nima.generation.entropy import entropy_bits

__all__ = ["GenerationStats"]


@dataclass
class GenerationStats:
    """Per-step entropy (bits), confidence (top probability) and temperature of every row,
    NaN where a row had already finished; and their summaries.

    Attributes:
        steps: one `(3, B)` array per step: entropy, confidence, temperature.
    """

    steps: list[np.ndarray] = field(default_factory=list)

    def record(self, probs: np.ndarray, temperature: float | np.ndarray,
               alive: np.ndarray | None = None) -> None:
        """Append one step: `probs` `(B, V)` the distributions chosen from, `temperature` one
        number or `(B,)`, `alive` `(B,)` bool (rows not alive are stored as NaN)."""
        row = np.empty((3, probs.shape[0]))
        row[0] = entropy_bits(probs)
        row[1] = probs.max(axis=-1)
        row[2] = temperature
        if alive is not None:
            row[:, ~alive] = np.nan
        self.steps.append(row)

    def _column(self, i: int) -> np.ndarray:
        return np.stack([row[i] for row in self.steps]) if self.steps else np.zeros((0, 0))

    @property
    def entropy(self) -> np.ndarray:
        """`(steps, B)` entropy in bits of each step's distribution."""
        return self._column(0)

    @property
    def confidence(self) -> np.ndarray:
        """`(steps, B)` top probability of each step's distribution."""
        return self._column(1)

    @property
    def temperature(self) -> np.ndarray:
        """`(steps, B)` temperature applied at each step."""
        return self._column(2)

    @property
    def num_tokens(self) -> int:
        """How many (row, step) tokens were recorded."""
        return int(np.count_nonzero(~np.isnan(self.entropy)))

    def _summary(self, values: np.ndarray, fn) -> float:
        return float(fn(values[~np.isnan(values)])) if self.num_tokens else float("nan")

    @property
    def mean_entropy(self) -> float:
        """Mean entropy in bits over every recorded token."""
        return self._summary(self.entropy, np.mean)

    @property
    def min_entropy(self) -> float:
        return self._summary(self.entropy, np.min)

    @property
    def max_entropy(self) -> float:
        return self._summary(self.entropy, np.max)

    @property
    def std_entropy(self) -> float:
        """Population standard deviation σ of the entropy (ddof 0), in bits."""
        return self._summary(self.entropy, np.std)

    @property
    def mean_confidence(self) -> float:
        """Mean probability of the most likely token."""
        return self._summary(self.confidence, np.mean)

    @property
    def mean_temperature(self) -> float:
        return self._summary(self.temperature, np.mean)

    # --8<-- [start:table]
    def table(self) -> str:
        """The summaries as a small table drawn with box-drawing characters."""
        rows = [("tokens", f"{self.num_tokens}"),
                ("mean entropy", f"{self.mean_entropy:.2f} bits"),
                ("entropy range", f"{self.min_entropy:.2f} .. {self.max_entropy:.2f} bits"),
                ("entropy std", f"{self.std_entropy:.2f} bits"),
                ("mean confidence", f"{self.mean_confidence:.1%}"),
                ("mean temperature", f"{self.mean_temperature:.2f}")]
        a = max(len(k) for k, _ in rows) + 2  # left column width, with padding
        b = max(max(len(v) for _, v in rows) + 2, 16)
        title = " Generation statistics"
        return "\n".join([
            "┌" + "─" * (a + b + 1) + "┐",
            "│" + title.ljust(a + b + 1) + "│",
            "├" + "─" * a + "┬" + "─" * b + "┤",
            *("│ " + k.ljust(a - 1) + "│" + v.rjust(b - 1) + " │" for k, v in rows),
            "└" + "─" * a + "┴" + "─" * b + "┘",
        ])
    # --8<-- [end:table]

    def __str__(self) -> str:
        return self.table()
