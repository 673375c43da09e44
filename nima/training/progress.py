"""A text progress bar for the training loop (and `nima eval`): step, loss and perplexity,
learning rate, tokens/s and time left.

On a terminal the bar redraws one line in place (`\\r`); into a file or a pipe (CI, `| tee`) it
prints one plain line per update instead, so logs stay readable::

    step  120/2000 [#-------]   6% | loss 2.4127 ppl 11.15 | lr 1.00e-03 | 11.2k tok/s | 2:31 left
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from nima.training.metrics import perplexity

__all__ = ["ProgressBar", "format_duration"]


def format_duration(seconds: float) -> str:
    """`75.4` -> `"1:15"`, `3725` -> `"1:02:05"`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Shows training progress from `start` to `total` steps.

    Args:
        total: the last step.
        start: the step the run starts (or resumes) from.
        stream: where to write (default `sys.stderr`).
        width: characters of the bar itself.
        label: what is counted (`"step"`; `nima eval` counts windows).
    """

    def __init__(self, total: int, start: int = 0, stream: TextIO | None = None,
                 width: int = 22, label: str = "step") -> None:
        self.total, self.start, self.width, self.label = total, start, width, label
        self.stream = stream if stream is not None else sys.stderr
        self.inline = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._drawn = False

    def update(self, step: int, loss: float, lr: float | None, tokens_per_s: float) -> None:
        """Redraw for `step` (steps done so far), with the perplexity `exp(loss)`; `lr` None
        leaves the learning rate out."""
        done = step / self.total if self.total else 1.0
        filled = int(self.width * done)
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.start) / elapsed if elapsed > 0 and step > self.start else 0.0
        left = format_duration((self.total - step) / rate) if rate else "?"
        digits = len(str(self.total))
        ppl = perplexity(loss)
        rate = "" if lr is None else f" | lr {lr:.2e}"
        line = (f"{self.label} {step:>{digits}}/{self.total} "
                f"[{'#' * filled}{'-' * (self.width - filled)}] {done:4.0%} | "
                f"loss {loss:.4f} ppl {ppl:.2f}{rate} | {tokens_per_s / 1e3:.1f}k tok/s | "
                f"{left} left")
        if self.inline:
            self.stream.write("\r" + line + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print `text` on a line of its own (above the bar on a terminal)."""
        if self.inline and self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.inline and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
