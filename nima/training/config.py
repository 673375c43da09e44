r"""The training configuration: a typed YAML schema, validated with errors that name the key.

A run is described by one YAML file with six sections — `model`, `data`, `optimizer`,
`schedule`, `training` and `sampling` — each a dataclass below. Every field has a type, a
default, an allowed range and a one-line meaning (its `metadata`); `docs/configuration.md` lists
them all, and a test keeps that page in step with this file.

`load_config` reads the file, applies `--set section.key=value` overrides (the value is parsed
with YAML's scalar rules, so `10` is an int, `0.1` a float, `true` a bool and `null` None; a
string key takes the text as written), then checks every value. A mistake is reported with
its full dotted key::

    optimizer.lr: must be > 0, got -1.0
    training.max_iter: unknown key; did you mean 'max_iters'?
    model.dropout: expected float, got str 'high'

Types are strict — `true` is not an int — except that an int is accepted where a float is
expected (`lr: 1` means 1.0), and so is `1e-3`, which YAML 1.1 (PyYAML) reads as a string
because it has no decimal point.

Example:
    >>> cfg = load_config("configs/shakespeare_char.yaml", ["training.max_iters=10"])
    >>> cfg.training.max_iters, cfg.model.n_layer
    (10, 4)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from nima.models.gpt import CHOICES as MODEL_CHOICES
from nima.models.gpt import GPTConfig

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SamplingConfig",
    "ScheduleConfig",
    "TrainingConfig",
    "load_config",
    "parse_overrides",
]


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range; the message starts
    with the dotted key (`optimizer.lr: must be > 0, got -1.0`)."""


def _field(default: Any, doc: str, *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field carrying its meaning and allowed range in `metadata`."""
    return field(default=default, metadata=dict(doc=doc, gt=gt, ge=ge, lt=lt, choices=choices))


@dataclass
class ModelConfig:
    """The `GPTConfig` fields; `vocab_size` null means "from the prepared data's tokenizer"."""

    vocab_size: int | None = _field(None, "token ids; null takes the tokenizer's size", ge=1)
    block_size: int = _field(64, "context length (also the training sequence length)", ge=1)
    n_layer: int = _field(4, "transformer blocks", ge=1)
    n_head: int = _field(4, "attention heads per block; must divide `n_embd`", ge=1)
    n_embd: int = _field(128, "width of the residual stream", ge=1)
    ffn: str = _field("gelu", "feed-forward kind", choices=MODEL_CHOICES["ffn"])
    ffn_hidden: int | None = _field(None, "FFN inner width; null is 4·n_embd", ge=1)
    norm: str = _field("layernorm", "normalization", choices=MODEL_CHOICES["norm"])
    norm_placement: str = _field("pre", "norm before (pre) or after (post) each branch",
                                 choices=MODEL_CHOICES["norm_placement"])
    position: str = _field("learned", "position encoding", choices=MODEL_CHOICES["position"])
    bias: bool = _field(False, "biases in every Linear and LayerNorm")
    dropout: float = _field(0.0, "dropout on embeddings, attention and residuals", ge=0.0,
                            lt=1.0)
    tie_weights: bool = _field(True, "output head shares the token embedding")
    attention: str = _field("content", "attention kind", choices=MODEL_CHOICES["attention"])
    gradient_checkpointing: bool = _field(False, "recompute each block in the backward")

    def to_gpt_config(self, vocab_size: int | None = None) -> GPTConfig:
        """The model's `GPTConfig`; `vocab_size` fills in a null `model.vocab_size`."""
        values = dataclasses.asdict(self)
        values["vocab_size"] = self.vocab_size if self.vocab_size is not None else vocab_size
        if values["vocab_size"] is None:
            raise ConfigError("model.vocab_size: null needs the tokenizer's vocabulary size")
        return GPTConfig(**values)


@dataclass
class DataConfig:
    """The corpus and how `nima.data.prepare` tokenizes it."""

    corpus: str = _field("data/tinyshakespeare.txt",
                         "UTF-8 text file, or `synthetic` for `nima.data.synthetic`")
    synthetic_sections: int = _field(200, "sections of the synthetic corpus", ge=1)
    tokenizer: str = _field("char", "tokenizer kind", choices=("char", "bpe"))
    vocab_size: int | None = _field(None, "BPE target vocabulary (needed for bpe)", ge=257)
    val_fraction: float = _field(0.1, "share of the text, at its end, for validation",
                                 ge=0.0, lt=1.0)
    out_dir: str = _field("data/prepared", "folder for train.bin, val.bin and the tokenizer")


@dataclass
class OptimizerConfig:
    """The optimizer of `nima.optim` and its hyper-parameters."""

    name: str = _field("adamw", "optimizer", choices=("adamw", "adam", "sgd"))
    lr: float = _field(1e-3, "peak learning rate", gt=0.0)
    betas: tuple[float, float] = _field((0.9, 0.999), "Adam's β1, β2 (each in [0, 1))",
                                        ge=0.0, lt=1.0)
    weight_decay: float = _field(0.1, "decay (decoupled for adamw; not on biases, norms, "
                                      "embeddings)", ge=0.0)
    eps: float = _field(1e-8, "Adam's ε", gt=0.0)
    momentum: float = _field(0.0, "SGD momentum μ", ge=0.0, lt=1.0)
    nesterov: bool = _field(False, "SGD Nesterov momentum (needs momentum > 0)")


@dataclass
class ScheduleConfig:
    """The learning-rate schedule of `nima.optim.schedule`."""

    name: str = _field("warmup_cosine", "schedule",
                       choices=("warmup_cosine", "linear", "constant", "noam"))
    warmup: int = _field(100, "linear-warmup steps (warmup_cosine, noam)", ge=0)
    total: int | None = _field(None, "steps to decay over; null is training.max_iters", ge=1)
    min_lr: float = _field(1e-4, "final learning rate of warmup_cosine (≤ optimizer.lr)",
                           ge=0.0)


@dataclass
class TrainingConfig:
    """The training loop: batches, evaluation, logging and checkpoints."""

    batch_size: int = _field(12, "sequences per micro-batch (of model.block_size tokens)", ge=1)
    max_iters: int = _field(2000, "optimizer steps", ge=1)
    eval_interval: int = _field(250, "steps between train/val loss estimates", ge=1)
    eval_iters: int = _field(200, "batches averaged per loss estimate", ge=1)
    log_interval: int = _field(10, "steps between progress-bar updates", ge=1)
    grad_clip: float | None = _field(1.0, "max global gradient norm; null turns clipping off",
                                     gt=0.0)
    grad_accum: int = _field(1, "micro-batches accumulated per optimizer step", ge=1)
    mixed_precision: bool = _field(False, "float16 autocast with dynamic loss scaling")
    seed: int = _field(1337, "seed of weights, batches and dropout", ge=0)
    run_dir: str = _field("runs/default", "folder for metrics, plots and checkpoints")
    keep_last: int = _field(3, "checkpoints kept besides the best", ge=1)
    checkpoint_interval: int = _field(250, "steps between checkpoints", ge=1)


@dataclass
class SamplingConfig:
    """The sample printed after training."""

    max_new_tokens: int = _field(500, "tokens to generate", ge=0)
    temperature: float = _field(1.0, "divides the logits; lower is more conservative", gt=0.0)
    top_k: int | None = _field(None, "keep only the k likeliest tokens; null keeps all", ge=1)
    prompt: str = _field("\n", "text the sample starts from")


@dataclass
class Config:
    """A whole run: one dataclass per YAML section."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dicts of YAML/JSON types (tuples become lists); `from_dict` inverts it."""
        return {name: {k: list(v) if isinstance(v, tuple) else v
                       for k, v in dataclasses.asdict(getattr(self, name)).items()}
                for name in SECTIONS}

    @classmethod
    def from_dict(cls, raw: Any) -> Config:
        """Build and validate a `Config` from nested dicts; missing keys take their defaults.

        Raises:
            ConfigError: an unknown key, a wrong type, an out-of-range value or an inconsistent
                pair of values, named by its dotted key.
        """
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"<root>: expected a mapping of sections, got {_kind(raw)}")
        sections = {}
        for name, values in raw.items():
            _check_known(str(name), name, SECTIONS)
            if values is None:
                values = {}
            if not isinstance(values, dict):
                raise ConfigError(f"{name}: expected a mapping, got {_kind(values)}")
            section_cls = SECTIONS[name]
            known = {f.name: f for f in dataclasses.fields(section_cls)}
            kwargs = {}
            for key, value in values.items():
                dotted = f"{name}.{key}"
                _check_known(dotted, key, known)
                kwargs[key] = _check_value(dotted, value, _HINTS[name][key], known[key].metadata)
            sections[name] = section_cls(**kwargs)
        config = cls(**sections)
        _check_cross_fields(config)
        return config


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}
_HINTS = {name: typing.get_type_hints(cls) for name, cls in SECTIONS.items()}


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_known(dotted: str, key: Any, known: dict[str, Any]) -> None:
    if key in known:
        return
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
    raise ConfigError(f"{dotted}: unknown key; {hint}")


def _check_value(dotted: str, value: Any, hint: Any, meta: Any) -> Any:
    """Check `value` against the type `hint` and the range in `meta`; return it normalized."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{dotted}: must not be null")
    base = next(t for t in options if t is not type(None))
    if typing.get_origin(base) is tuple:  # betas: a pair of floats
        n = len(typing.get_args(base))
        if not isinstance(value, list | tuple) or len(value) != n:
            raise ConfigError(f"{dotted}: expected a list of {n} numbers, got {_kind(value)}")
        return tuple(_check_value(f"{dotted}[{i}]", v, float, meta) for i, v in enumerate(value))
    if base is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string; mean the number
    is_bool = isinstance(value, bool)  # bool subclasses int, but `true` is not a number
    if base is float and isinstance(value, int) and not is_bool:
        value = float(value)
    if not isinstance(value, base) or (is_bool and base is not bool):
        raise ConfigError(f"{dotted}: expected {base.__name__}, got {_kind(value)}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{dotted}: must be one of {', '.join(map(repr, meta['choices']))}, "
                          f"got {value!r}")
    for op, bound, bad in (("> ", meta["gt"], lambda v, b: v <= b),
                           (">= ", meta["ge"], lambda v, b: v < b),
                           ("< ", meta["lt"], lambda v, b: v >= b)):
        if bound is not None and bad(value, bound):
            raise ConfigError(f"{dotted}: must be {op}{bound:g}, got {value!r}")
    return value


def _check_cross_fields(c: Config) -> None:
    """The rules that relate two values; each error names the key to change."""
    m, s = c.model, c.schedule
    if m.n_embd % m.n_head:
        raise ConfigError(f"model.n_embd: must be divisible by model.n_head={m.n_head}, "
                          f"got {m.n_embd}")
    if m.position == "rope" and (m.n_embd // m.n_head) % 2:
        raise ConfigError(f"model.position: 'rope' needs an even head size, got "
                          f"n_embd // n_head = {m.n_embd // m.n_head}")
    if c.data.tokenizer == "bpe" and c.data.vocab_size is None:
        raise ConfigError("data.vocab_size: tokenizer 'bpe' needs a target vocabulary size")
    if c.optimizer.nesterov and (c.optimizer.name != "sgd" or c.optimizer.momentum == 0):
        raise ConfigError("optimizer.nesterov: needs optimizer.name 'sgd' and momentum > 0")
    total = s.total if s.total is not None else c.training.max_iters
    if s.name == "warmup_cosine" and s.warmup >= total:
        raise ConfigError(f"schedule.warmup: must be < schedule.total={total}, got {s.warmup}")
    if s.name == "noam" and s.warmup == 0:
        raise ConfigError("schedule.warmup: must be > 0 for 'noam', got 0")
    if s.min_lr > c.optimizer.lr:
        raise ConfigError(f"schedule.min_lr: must be <= optimizer.lr={c.optimizer.lr}, "
                          f"got {s.min_lr}")


def parse_overrides(overrides: typing.Iterable[str]) -> dict[str, dict[str, Any]]:
    """`["training.max_iters=10", "model.dropout=0.1"]` -> `{"training": {"max_iters": 10},
    "model": {"dropout": 0.1}}`, each value parsed as a YAML scalar (`null` or nothing is None),
    except that a key of type `str` takes the text as written (`sampling.prompt=ROMEO:`)."""
    result: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name or "." in name:
            raise ConfigError(f"{key.strip() or item}: an override is section.key=value, "
                              f"got {item!r}")
        _check_known(section, section, SECTIONS)
        if _HINTS[section].get(name) is str:  # a prompt like `ROMEO:` is text, not a mapping
            result.setdefault(section, {})[name] = text
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"{key.strip()}: cannot parse {text!r} as YAML: {e}") from None
        result.setdefault(section, {})[name] = value
    return result


def load_config(path: str | os.PathLike, overrides: typing.Iterable[str] = ()) -> Config:
    """Read a YAML config, apply `--set` overrides, and validate the result.

    Args:
        path: the YAML file.
        overrides: `section.key=value` strings, applied in order after the file.

    Returns:
        The validated `Config`.

    Raises:
        ConfigError: a YAML syntax error, or any invalid key or value (named by its dotted key).
    """
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{os.fspath(path)}: not valid YAML: {e}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"<root>: expected a mapping of sections, got {_kind(raw)}")
    for section, values in parse_overrides(overrides).items():
        current = raw.get(section)
        if not isinstance(current, dict):
            current = {}
        raw[section] = {**current, **values}
    return Config.from_dict(raw)
