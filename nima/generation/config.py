r"""`GenerationConfig`: how to decode — the strategy and its parameters, in one validated type.

Every way of asking for text reads the same settings: `generate(model, idx, config=...)` and
its keyword arguments, beam search, the REPL's `/` commands, `nima sample`'s flags, and the
`sampling:` section of a training config. They are checked here, once, so a bad value gets the
same one-line error wherever it comes from (`GenerationConfig.top_p: must be <= 1, got 1.5`).

The strategy, when not named, is chosen as Hugging Face chooses it: `"beam"` if
`num_beams > 1`, `"entropy"` if `target_entropy` is set, `"sample"` if `do_sample`, else
`"greedy"`.

Example:
    >>> config = GenerationConfig(max_new_tokens=200, do_sample=True, temperature=0.8, top_k=40)
    >>> config.resolved_strategy
    'sample'
    >>> dataclasses.replace(config, top_p=1.5)
    Traceback (most recent call last):
    SettingsError: GenerationConfig.top_p: must be <= 1, got 1.5
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from nima.settings import SettingsError, check_known, setting, validate

__all__ = ["BEAM_STRATEGIES", "MAX_NEW_TOKENS", "STRATEGIES", "GenerationConfig"]

STRATEGIES = ("greedy", "sample", "entropy", "beam", "tree_beam")
BEAM_STRATEGIES = ("beam", "tree_beam")
MAX_NEW_TOKENS = 1_000_000  # a bound, so a typo (1e12) is an error, not days of decoding


# --8<-- [start:generation_config]
@dataclass(frozen=True)
class GenerationConfig:
    """The settings of one decoding run; every field is checked when the config is made."""

    owner: ClassVar[str] = "GenerationConfig"  # how errors name a field

    max_new_tokens: int = setting(100, "tokens to generate at most", ge=0, le=MAX_NEW_TOKENS)
    strategy: str | None = setting(None, "greedy, sample, entropy, beam or tree_beam; null "
                                         "chooses from num_beams, target_entropy and do_sample",
                                   choices=STRATEGIES)
    do_sample: bool = setting(False, "sample instead of taking the argmax (strategy null)")
    temperature: float = setting(1.0, "divides the logits before sampling", gt=0.0)
    top_k: int | None = setting(None, "sample from the k likeliest tokens only; null keeps all",
                                ge=1)
    top_p: float | None = setting(None, "sample from the smallest set of mass >= top_p; null "
                                        "keeps all", gt=0.0, le=1.0)
    repetition_penalty: float | None = setting(None, "CTRL's penalty θ on tokens already in "
                                                     "the text (every strategy)", gt=0.0)
    target_entropy: float | None = setting(None, "entropy strategy: bits of entropy each "
                                                 "step's distribution is tempered to", ge=0.0)
    min_temp: float = setting(0.1, "entropy strategy: the coldest temperature", gt=0.0)
    max_temp: float = setting(2.0, "entropy strategy: the hottest temperature", gt=0.0)
    num_beams: int = setting(1, "beams per prompt (beam search)", ge=1)
    tree_width: int = setting(2, "tree beam search: the most children a hypothesis proposes "
                                 "per step, c (c >= num_beams is beam search)", ge=1)
    length_penalty: float = setting(1.0, "beam search: alpha in score = log p / length^alpha")
    early_stopping: bool = setting(False, "beam search: a prompt is done once num_beams "
                                          "hypotheses have finished")
    num_return_sequences: int = setting(1, "sequences per prompt", ge=1)
    eos_token_id: int | None = setting(None, "a row stops after this token", ge=0)
    pad_token_id: int | None = setting(None, "fills finished rows; null is eos_token_id, else "
                                             "0", ge=0)
    stop_strings: tuple[str, ...] = setting((), "a row stops once its text contains one of "
                                                "these (needs a tokenizer)")
    seed: int | None = setting(None, "seed of the sampler's own generator", ge=0)
    window_keep: int | None = setting(None, "tokens kept when the full context window slides; "
                                            "null is block_size // 2", ge=1)

    def __post_init__(self) -> None:
        name = self.owner
        validate(self, name)
        strategy = self.resolved_strategy
        beams = strategy in BEAM_STRATEGIES
        if not beams and self.num_beams > 1:
            raise SettingsError(f"{name}.num_beams: {self.num_beams} beams need strategy "
                                f"'beam' or 'tree_beam', got {strategy!r}")
        if strategy == "entropy" and self.target_entropy is None:
            raise SettingsError(f"{name}.target_entropy: strategy 'entropy' needs a target in "
                                f"bits, got None")
        if self.min_temp > self.max_temp:
            raise SettingsError(f"{name}.min_temp: must be <= max_temp={self.max_temp}, got "
                                f"{self.min_temp}")
        if strategy == "greedy" and self.num_return_sequences > 1:
            raise SettingsError(f"{name}.num_return_sequences: greedy decoding gives one "
                                f"sequence per prompt, got {self.num_return_sequences}")
        if beams and self.num_return_sequences > self.num_beams:
            raise SettingsError(f"{name}.num_return_sequences: at most num_beams="
                                f"{self.num_beams} for beam search, got "
                                f"{self.num_return_sequences}")
        if beams and self.stop_strings:
            raise SettingsError(f"{name}.stop_strings: not supported with beam search; use "
                                f"eos_token_id")
        if any(not s for s in self.stop_strings):
            raise SettingsError(f"{name}.stop_strings: must be non-empty strings, got "
                                f"{self.stop_strings!r}")
# --8<-- [end:generation_config]

    @property
    def resolved_strategy(self) -> str:
        """The strategy that will run: `strategy`, or the one the other fields imply."""
        if self.strategy is not None:
            return self.strategy
        if self.num_beams > 1:
            return "beam"
        if self.target_entropy is not None:
            return "entropy"
        return "sample" if self.do_sample else "greedy"

    @property
    def pad_id(self) -> int:
        """`pad_token_id`, else `eos_token_id`, else 0."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return 0 if self.eos_token_id is None else self.eos_token_id

    def updated(self, **changes: Any) -> GenerationConfig:
        """A copy with `changes` applied (each checked); an unknown name is an error that
        suggests the closest field."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            check_known(f"{self.owner}.{key}", key, names)
        if isinstance(changes.get("stop_strings"), str):
            changes["stop_strings"] = (changes["stop_strings"],)
        return dataclasses.replace(self, **changes)
