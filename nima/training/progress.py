"""A text progress bar for the training loop: step, loss and perplexity, learning rate, tokens/s
and time left.

On a terminal the bar redraws one line in place (`\\r`), never wider than the terminal, so it
never wraps (a wrapped line would leave a stale copy at every update): the bar itself shrinks
first, then the perplexity, the learning rate and the speed give way. Into a file or a pipe
(CI, `| tee`) it prints one plain line per update instead, so logs stay readable::

    step  120/2000 [#---]   6% | loss 2.4127 | ppl 11.16 | lr 1.00e-03 | 11.2k tok/s | 2:31 left

The time left is the steps to go times the time of a recent step — training steps only, so
the step-0 evaluation and a first run's kernel compilation do not inflate it. Writing to a
terminal that has gone away (a closed ssh session) is not an error: training goes on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from nima.training.metrics import perplexity

__all__ = ["ProgressBar", "format_duration"]

_MIN_BAR = 10  # narrower than this, the bar is left out


def format_duration(seconds: float) -> str:
    """`75.4` -> `"1:15"`, `3725` -> `"1:02:05"`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _loss(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.3g}"  # nan and inf too


def _ppl(value: float) -> str:
    return f"{value:.2f}" if value < 1e5 else f"{value:.3g}"  # nan and inf too


class ProgressBar:
    """Shows training progress from `start` to `total` steps.

    Args:
        total: the last step.
        start: the step the run starts (or resumes) from.
        stream: where to write (default `sys.stderr`).
        width: characters of the bar itself, at most (on a terminal, less when it is narrow).
        label: what is counted (`"step"`; `nima eval` counts windows).
    """

    def __init__(self, total: int, start: int = 0, stream: TextIO | None = None,
                 width: int = 22, label: str = "step") -> None:
        self.total, self.start, self.width, self.label = total, start, width, label
        self.stream = stream if stream is not None else sys.stderr
        self.inline = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._drawn = False

    def begin(self, note: str) -> None:
        """Draw the bar at the starting step with `note` (what happens before the first
        update), so the first seconds are not silent."""
        self._draw(self.start, [note])

    def update(self, step: int, loss: float, lr: float | None, tokens_per_s: float,
               seconds_per_step: float | None = None) -> None:
        """Redraw for `step` (steps done so far), with the perplexity `exp(loss)`; `lr` None
        leaves the learning rate out. The time left is `seconds_per_step` times the steps to
        go; without it, the mean time per step since the bar was made."""
        if seconds_per_step is None:
            elapsed = time.perf_counter() - self.t0
            seconds_per_step = elapsed / (step - self.start) if step > self.start else None
        left = format_duration((self.total - step) * seconds_per_step) if seconds_per_step else "?"
        ppl, speed = f"ppl {_ppl(perplexity(loss))}", f"{tokens_per_s / 1e3:.1f}k tok/s"
        lr_part = [] if lr is None else [f"lr {lr:.2e}"]
        self._draw(step, [f"loss {_loss(loss)}", ppl, *lr_part, speed, f"{left} left"],
                   give_way=[ppl, *lr_part, speed])

    def _draw(self, step: int, parts: list[str], give_way: Sequence[str] = ()) -> None:
        """One line: step, bar, percentage, `parts`; on a terminal too narrow for it and a bar
        of `_MIN_BAR`, the parts in `give_way` are left out, in that order, then the bar."""
        done = step / self.total if self.total else 1.0
        head = f"{self.label} {step:>{len(str(self.total))}}/{self.total}"
        columns = self._columns() - 1 if self.inline else None  # the last column would wrap
        for dropped in range(len(give_way) + 1):
            tail = f" {done:4.0%} | " + " | ".join(p for p in parts
                                                    if p not in give_way[:dropped])
            room = self.width if columns is None else columns - len(head) - len(tail) - 3
            if room >= _MIN_BAR:
                break
        width = min(self.width, room)
        bar = ""
        if width >= _MIN_BAR:
            filled = int(width * done)
            bar = f" [{'#' * filled}{'-' * (width - filled)}]"
        line = head + bar + tail
        if columns is not None:
            self._write("\r" + line[:columns] + "\x1b[K")
            self._drawn = True
        else:
            self._write(line + "\n")

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size().columns  # $COLUMNS, or 80

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a terminal that went away
            self.stream.write(text)
            self.stream.flush()

    def message(self, text: str) -> None:
        """Print `text` on a line of its own (above the bar on a terminal)."""
        if self.inline and self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False
        self._write(text + "\n")

    def close(self) -> None:
        """End the bar's line."""
        if self.inline and self._drawn:
            self._write("\n")
            self._drawn = False
