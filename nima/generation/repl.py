"""An interactive read-generate-print loop over a trained model.

Type text and the model continues it, streaming token by token; lines starting with `/` change
the decoding settings — a `GenerationConfig`, so every value is checked exactly as `generate`
checks it, and a bad one prints one line saying what is wrong while the loop carries on.
Ctrl-C during a generation stops that generation only. The commands are listed in `COMMANDS`
(and by `/help`).

The loop is the one of knock.knock, a small interactive text-generation program whose REPL
this follows command for command.

Example:
    >>> repl = Repl(model, tokenizer, out=sys.stdout)     # doctest: +SKIP
    >>> repl.run(["/temp 0.7", "ROMEO:", "/stats", "/quit"])  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, TextIO

import numpy as np

from nima.generation.config import BEAM_STRATEGIES, STRATEGIES, GenerationConfig
from nima.generation.decoding import generate
from nima.generation.output import GenerationOutput

__all__ = ["COMMANDS", "REPL_DEFAULTS", "Repl"]

# --8<-- [start:commands]
COMMANDS = {
    "/len N": "generate N tokens per prompt",
    "/temp X": "sampling temperature X > 0",
    "/sampling MODE": f"the strategy: {', '.join(STRATEGIES)}",
    "/topk K|off": "sample from the K likeliest tokens only",
    "/topp P|off": "sample from the smallest set of mass >= P",
    "/penalty R|off": "repetition penalty R on tokens already in the text",
    "/entropy BITS": "the target entropy of the entropy strategy",
    "/bounds MIN MAX": "the temperatures entropy-aware sampling may use",
    "/beams N": "beams of the beam and tree_beam strategies",
    "/width C": "children a hypothesis may propose per step (tree_beam)",
    "/tree": "the search tree of the last tree_beam generation",
    "/seed N|off": "a seed for reproducible samples",
    "/stats [on|off]": "the statistics of the last generation; on: after every one",
    "/config": "the current settings",
    "/help": "this list",
    "/quit": "leave (so does Ctrl-D)",
}
# --8<-- [end:commands]

# what the loop starts from when no config is given: sampling, not greedy
REPL_DEFAULTS = GenerationConfig(max_new_tokens=200, strategy="sample", temperature=0.8,
                                 top_k=40, target_entropy=2.0, min_temp=0.3, max_temp=1.5)


def _parse(kind: Callable[[str], Any], text: str, off: bool = False) -> Any:
    """`text` as a `kind` (int or float), or None for `off` where that is allowed."""
    if off and text.lower() == "off":
        return None
    try:
        return kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise ValueError(f"expected {name}{' or off' if off else ''}, got {text!r}") from None


class Repl:
    """The loop: `run(lines)` reads prompts and commands until `/quit` or the lines run out.

    Args:
        model: a language model for `nima.generation.generate` (e.g. `nima.models.GPT`).
        tokenizer: `encode(str) -> list[int]` and `decode(list[int]) -> str`.
        config: the starting settings (default `REPL_DEFAULTS`).
        out: where text goes (default `sys.stdout`).
    """

    def __init__(self, model: Any, tokenizer: Any, config: GenerationConfig | None = None,
                 out: TextIO | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.config = config or REPL_DEFAULTS
        self.beams = max(self.config.num_beams, 4)  # used whenever the strategy is beam
        self.out = out if out is not None else sys.stdout
        self.last: GenerationOutput | None = None
        self.show_stats = False

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
            command(*args)
        except TypeError as e:  # the wrong number of arguments
            if e.__traceback__.tb_next is not None:  # raised inside the command: a bug
                raise
            self.say(f"error: /{name}: wrong number of arguments; /help lists them")
        except ValueError as e:  # a bad value: SettingsError, or a parse error
            self.say(f"error: /{name}: {e}")
        return True

    # --8<-- [start:continue_text]
    def continue_text(self, prompt: str) -> None:
        """Generate after `prompt`, printing each new piece of text as it comes."""
        try:
            ids = self.tokenizer.encode(prompt)
        except ValueError as e:  # a character outside the vocabulary, named by the tokenizer
            self.say(f"error: {e}")
            return
        if not ids:
            self.say("error: the prompt encodes to no tokens")
            return
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

        try:
            self.last = generate(self.model, np.asarray([ids]), config=self.config,
                                 on_token=stream, tokenizer=self.tokenizer)
        except KeyboardInterrupt:  # Ctrl-C stops this generation, not the loop
            self.say("\n[stopped]")
            return
        if self.config.resolved_strategy in BEAM_STRATEGIES:  # chosen at the end: no streaming
            self.say(self.tokenizer.decode(self.last.tolist()[0])[len(prompt):], end="")
        self.say()
        if not np.isfinite(self.last.sequence_logprobs).all():
            self.say("warning: the model's probabilities are not finite (NaN weights?)")
        if self.show_stats and self.last.stats is not None:
            self.say(self.last.stats.table())
    # --8<-- [end:continue_text]

    def _set(self, **changes: Any) -> None:
        """Apply `changes` to the config (checked by `GenerationConfig`) and confirm them."""
        self.config = self.config.updated(**changes)
        self.say(", ".join(f"{key} = {value}" for key, value in changes.items()))

    def cmd_len(self, n: str) -> None:
        self._set(max_new_tokens=_parse(int, n))

    def cmd_temp(self, x: str) -> None:
        self._set(temperature=_parse(float, x))

    def cmd_sampling(self, mode: str) -> None:
        if mode not in STRATEGIES:
            raise ValueError(f"the strategy must be one of {', '.join(STRATEGIES)}, got {mode!r}")
        self._set(strategy=mode, num_beams=self.beams if mode in BEAM_STRATEGIES else 1)

    def cmd_topk(self, k: str) -> None:
        self._set(top_k=_parse(int, k, off=True))

    def cmd_topp(self, p: str) -> None:
        self._set(top_p=_parse(float, p, off=True))

    def cmd_penalty(self, r: str) -> None:
        self._set(repetition_penalty=_parse(float, r, off=True))

    def cmd_entropy(self, bits: str) -> None:
        self._set(target_entropy=_parse(float, bits))

    def cmd_bounds(self, low: str, high: str) -> None:
        self._set(min_temp=_parse(float, low), max_temp=_parse(float, high))

    def cmd_beams(self, n: str) -> None:
        beams = _parse(int, n)
        if self.config.resolved_strategy in BEAM_STRATEGIES:
            self._set(num_beams=beams)
        else:
            GenerationConfig(strategy="beam", num_beams=beams)  # checks the value
            self.say(f"beams = {beams} (for /sampling beam or tree_beam)")
        self.beams = beams

    def cmd_width(self, c: str) -> None:
        self._set(tree_width=_parse(int, c))

    def cmd_tree(self) -> None:
        if self.last is None or self.last.trees is None:
            self.say("no tree_beam generation yet")
            return
        self.say(self.last.trees[0].render(self.tokenizer.decode))

    def cmd_seed(self, n: str) -> None:
        self._set(seed=_parse(int, n, off=True))

    def cmd_stats(self, switch: str | None = None) -> None:
        if switch is not None:
            if switch not in ("on", "off"):
                raise ValueError(f"expected on or off, got {switch!r}")
            self.show_stats = switch == "on"
            self.say(f"stats after every generation: {switch}")
        elif self.last is None or self.last.stats is None:
            self.say("no generation yet")
        else:
            self.say(self.last.stats.table())

    def cmd_config(self) -> None:
        for f in fields(self.config):
            self.say(f"  {f.name:<22} {getattr(self.config, f.name)}")

    def cmd_help(self) -> None:
        for command, effect in COMMANDS.items():
            self.say(f"  {command:<18} {effect}")
