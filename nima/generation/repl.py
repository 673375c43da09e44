"""An interactive read-generate-print loop over a trained model (knock.knock's REPL).

Type text and the model continues it, streaming token by token; lines starting with `/` change
the settings:

| command | effect |
|---|---|
| `/len N` | generate N tokens per prompt |
| `/temp X` | sampling temperature X > 0 |
| `/sampling MODE` | `basic` (temperature only), `top_k`, `top_p`, `entropy` or `beam` |
| `/topk K` | keep the K likeliest tokens (mode `top_k`) |
| `/topp P` | keep the smallest set of mass ≥ P (mode `top_p`) |
| `/entropy T` | target entropy in bits (mode `entropy`) |
| `/bounds MIN MAX` | the temperature range entropy-aware sampling may use |
| `/stats` | the statistics of the last generation (entropy, confidence, temperature) |
| `/config` | the current settings |
| `/help` | this list |
| `/quit` | leave (so do Ctrl-D and Ctrl-C) |

A bad command or value prints one line saying what is wrong, and the loop carries on.

Example:
    >>> repl = Repl(model, tokenizer, out=sys.stdout)     # doctest: +SKIP
    >>> repl.run(["/temp 0.7", "ROMEO:", "/stats", "/quit"])  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import numpy as np

from nima.generation.decoding import generate
from nima.generation.output import GenerationOutput

__all__ = ["MODES", "Repl", "ReplSettings"]

MODES = ("basic", "top_k", "top_p", "entropy", "beam")


def _help_text(doc: str) -> str:
    """The command table of this module's docstring, as aligned plain text."""
    rows = [line.strip().strip("|").split("|") for line in doc.splitlines()
            if line.startswith("| `/")]
    return "\n".join(f"  {cmd.strip().strip('`'):<18} {effect.strip().replace('`', '')}"
                     for cmd, effect in rows)


HELP = _help_text(__doc__)


@dataclass
class ReplSettings:
    """What the next generation uses; the `/` commands change it."""

    length: int = 200
    temperature: float = 0.8
    sampling: str = "top_k"
    top_k: int = 40
    top_p: float = 0.9
    entropy: float = 2.0
    min_temp: float = 0.3
    max_temp: float = 1.5
    num_beams: int = 4
    seed: int | None = None

    def generate_kwargs(self) -> dict[str, Any]:
        """The `generate` arguments of these settings."""
        if self.sampling == "beam":
            return {"strategy": "beam", "num_beams": self.num_beams}
        if self.sampling == "entropy":
            return {"strategy": "entropy", "target_entropy": self.entropy,
                    "min_temp": self.min_temp, "max_temp": self.max_temp}
        kwargs: dict[str, Any] = {"strategy": "sample", "temperature": self.temperature}
        if self.sampling == "top_k":
            kwargs["top_k"] = self.top_k
        elif self.sampling == "top_p":
            kwargs["top_p"] = self.top_p
        return kwargs


def _number(kind: Callable[[str], Any], text: str, name: str, check: Callable[[Any], bool],
            rule: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}: expected {rule}, got {text!r}") from None
    if not check(value):
        raise ValueError(f"{name}: expected {rule}, got {text!r}")
    return value


class Repl:
    """The loop: `run(lines)` reads prompts and commands until `/quit` or the lines run out.

    Args:
        model: a language model for `nima.generation.generate` (e.g. `nima.models.GPT`).
        tokenizer: `encode(str) -> list[int]` and `decode(list[int]) -> str`.
        settings: the starting settings.
        out: where text goes (default `sys.stdout`).
    """

    def __init__(self, model: Any, tokenizer: Any, settings: ReplSettings | None = None,
                 out: TextIO | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings or ReplSettings()
        self.out = out if out is not None else sys.stdout
        self.last: GenerationOutput | None = None

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def run(self, lines: Iterable[str]) -> None:
        """Handle each line; stop at `/quit`."""
        for line in lines:
            if not self.handle(line.rstrip("\n")):
                return

    def handle(self, line: str) -> bool:
        """One line: a command or a prompt. Returns False when the loop should end."""
        if not line.startswith("/"):
            if line.strip():
                self.continue_text(line)
            return True
        name, *args = line[1:].split() or [""]
        if name in ("quit", "exit", "q"):
            return False
        command = getattr(self, f"cmd_{name}", None)
        if command is None:
            self.say(f"error: unknown command /{name}; /help lists them")
            return True
        try:
            inspect.signature(command).bind(*args)
        except TypeError:  # only the arity: a TypeError inside a command is a bug, not input
            self.say(f"error: /{name}: wrong number of arguments")
            return True
        try:
            command(*args)
        except ValueError as e:
            self.say(f"error: /{name}: {e}")
        return True

    # --8<-- [start:continue_text]
    def continue_text(self, prompt: str) -> None:
        """Generate after `prompt`, printing each new piece of text as it comes."""
        ids = self.tokenizer.encode(prompt)
        if not ids:
            self.say("error: the prompt encodes to no tokens")
            return
        s = self.settings
        shown = prompt
        self.say(prompt, end="")
        tokens: list[int] = list(ids)

        def stream(new: np.ndarray) -> None:  # (1,) the token just chosen
            nonlocal shown
            tokens.append(int(new[0]))
            text = self.tokenizer.decode(tokens)  # whole text: a byte-level token may end
            if not text.endswith("\ufffd"):       # mid-character; wait for the rest
                self.say(text[len(shown):], end="")
                shown = text

        self.last = generate(self.model, np.asarray([ids]), s.length, seed=s.seed,
                             on_token=stream, tokenizer=self.tokenizer,
                             **s.generate_kwargs())
        if s.sampling == "beam":  # beam search picks its sequence at the end: no streaming
            self.say(self.tokenizer.decode(self.last.tolist()[0])[len(prompt):], end="")
        self.say()
    # --8<-- [end:continue_text]

    def cmd_len(self, n: str) -> None:
        self.settings.length = _number(int, n, "length", lambda v: v >= 1, "an integer >= 1")

    def cmd_temp(self, x: str) -> None:
        self.settings.temperature = _number(float, x, "temperature", lambda v: v > 0,
                                            "a number > 0")

    def cmd_sampling(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.settings.sampling = mode

    def cmd_topk(self, k: str) -> None:
        self.settings.top_k = _number(int, k, "top-k", lambda v: v >= 1, "an integer >= 1")

    def cmd_topp(self, p: str) -> None:
        self.settings.top_p = _number(float, p, "top-p", lambda v: 0 < v <= 1,
                                      "a number in (0, 1]")

    def cmd_entropy(self, t: str) -> None:
        self.settings.entropy = _number(float, t, "entropy", lambda v: v >= 0,
                                        "a number of bits >= 0")

    def cmd_bounds(self, low: str, high: str) -> None:
        lo = _number(float, low, "min", lambda v: v > 0, "a temperature > 0")
        hi = _number(float, high, "max", lambda v: v >= lo, f"a temperature >= min ({lo})")
        self.settings.min_temp, self.settings.max_temp = lo, hi

    def cmd_stats(self) -> None:
        if self.last is None or self.last.stats is None:
            self.say("no generation yet")
        else:
            self.say(self.last.stats.table())

    def cmd_config(self) -> None:
        for key, value in asdict(self.settings).items():
            self.say(f"  {key:<12} {value}")

    def cmd_help(self) -> None:
        self.say(HELP)
