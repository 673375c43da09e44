r"""The training configuration: a typed YAML schema, validated with errors that name the key.

A run is described by one YAML file with seven sections — `model`, `data`, `optimizer`,
`schedule`, `training`, `sampling` and `runtime` — each a dataclass below. `model` is
`GPTConfig` itself (with `vocab_size` allowed to be null: the tokenizer's), or, with
`kind: seq2seq`, the encoder–decoder's `TransformerConfig`; `sampling` is `GenerationConfig`
plus the prompt, so a field and its default are written once, where the model or the decoder
defines it. Every field has a type, a default, an allowed range and a one-line
meaning (a `nima.settings.setting`); `docs/configuration.md` lists them all, and a test keeps
that page in step with this file.

`load_config` reads the file, resolves the paths it names (`data.corpus`, `data.out_dir`,
`training.run_dir`, `training.init_from`) against the file's own folder — or, for an input not
found there, Nima's bundled `data/` folder — so a config works from any directory; applies
`--set section.key=value` overrides (the value is parsed with YAML's scalar rules, so `10` is an
int, `0.1` a float, `true` a bool and `null` None; a string key takes the text as written;
a path given on the command line is taken from the current directory, as any command-line
path), then checks every value. A mistake is reported with
its full dotted key::

    optimizer.lr: must be > 0, got -1.0
    training.max_iter: unknown key; did you mean 'max_iters'?
    model.dropout: expected float, got str 'high'

Types are strict — `true` is not an int — except that an int is accepted where a float is
expected (`lr: 1` means 1.0), and so is `1e-3`, which YAML 1.1 (PyYAML) reads as a string
because it has no decimal point.

Example:
    >>> cfg = load_config("configs/shakespeare_char.yaml", ["training.max_iters=500"])
    >>> cfg.training.max_iters, cfg.model.n_layer
    (500, 4)
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from nima.generation.config import GenerationConfig
from nima.kernels.backend import BACKENDS
from nima.models.gpt import GPTConfig
from nima.models.seq2seq import TransformerConfig
from nima.settings import SettingsError, check_known, check_value, setting, shown
from nima.training.yaml_file import YAMLFileError, read_yaml

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RuntimeConfig",
    "SamplingConfig",
    "ScheduleConfig",
    "Seq2SeqModelConfig",
    "TrainingConfig",
    "load_config",
    "parse_overrides",
]

# The repository's data folder beside the package (a clone or an editable install): where a
# config's corpus is looked for when it is not beside the config file.
BUNDLED_DATA = Path(__file__).resolve().parents[2] / "data"
GENERATED = ("synthetic", "brackets", "recall", "reversal")  # made from the seed, not read


class ConfigError(SettingsError):
    """A configuration value is unknown, of the wrong type or out of range; the message starts
    with the dotted key (`optimizer.lr: must be > 0, got -1.0`)."""


_field = setting  # the sections below declare their fields the one way every config does


MODEL_KINDS = ("gpt", "seq2seq")


@dataclass
class ModelConfig(GPTConfig):
    """`GPTConfig`, field for field and default for default; only `vocab_size` and `streams`
    may be null, meaning "the prepared data's tokenizer's size" and "`training.batch_size`"."""

    owner: ClassVar[str] = "model"
    vocab_size: int | None = setting(None, "token ids; null takes the tokenizer's size", ge=1)
    streams: int | None = setting(None, "rows of the echo state and memory bank training "
                                        "carries; null is training.batch_size", ge=1)
    kind: str = setting("gpt", "the model: gpt (decoder-only, these fields) or seq2seq "
                               "(encoder-decoder, below)", choices=("gpt",))

    def to_gpt_config(self, vocab_size: int | None = None, streams: int = 1) -> GPTConfig:
        """The model's `GPTConfig`; `vocab_size` and `streams` fill in null fields."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(GPTConfig)}
        values["vocab_size"] = self.vocab_size if self.vocab_size is not None else vocab_size
        values["streams"] = self.streams if self.streams is not None else streams
        if values["vocab_size"] is None:
            raise ConfigError("model.vocab_size: null needs the tokenizer's vocabulary size")
        return GPTConfig(**values)


@dataclass
class Seq2SeqModelConfig(TransformerConfig):
    """`model:` with `kind: seq2seq`: `TransformerConfig`, field for field; the vocabularies
    may be null, meaning the pair tokenizer's size (sources and targets share it)."""

    owner: ClassVar[str] = "model"
    src_vocab_size: int | None = setting(None, "source token ids; null takes the tokenizer's "
                                               "size", ge=1)
    tgt_vocab_size: int | None = setting(None, "target token ids; null takes the tokenizer's "
                                               "size", ge=1)
    kind: str = setting("seq2seq", "the model: seq2seq (the encoder-decoder Transformer)",
                        choices=("seq2seq",))

    def to_transformer_config(self, vocab_size: int | None = None) -> TransformerConfig:
        """The model's `TransformerConfig`; `vocab_size` fills in null vocabularies."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(TransformerConfig)}
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if values[name] is None:
                if vocab_size is None:
                    raise ConfigError(f"model.{name}: null needs the tokenizer's vocabulary "
                                      f"size")
                values[name] = vocab_size
        return TransformerConfig(**values)

    @property
    def block_size(self) -> int:
        """The longest sequence, as `TransformerConfig.max_len`."""
        return self.max_len


@dataclass
class DataConfig:
    """The corpus and how `nima.data.prepare` tokenizes it."""

    corpus: str = _field("tinyshakespeare.txt",
                         "a UTF-8 text file, or generated: synthetic, brackets, recall, "
                         "reversal (seq2seq: source<TAB>target lines)")
    synthetic_sections: int = _field(200, "sections of the synthetic corpus", ge=1,
                                     le=100_000)
    synthetic_pairs: int = _field(4000, "pairs of the generated reversal task", ge=2)
    bracket_lines: int = _field(400, "lines of the bracket corpus", ge=1)
    bracket_length: int = _field(256, "brackets per line of the bracket corpus (even)", ge=2)
    recall_queries: int = _field(400, "key-value definitions of the recall corpus, each "
                                      "queried once", ge=1)
    recall_distance: tuple[int, int] | None = _field(None, "recall: fewest and most characters "
                                                           "to a query; null: block_size + 1, "
                                                           "2 block_size", ge=1)
    sampling: str = _field("uniform", "training windows: random, by their loss, or streams of "
                                      "segments", choices=("uniform", "loss_guided", "stream"))
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
    init_from: str | None = _field(None, "a run directory or Hugging Face model folder whose "
                                         "weights start this run (fine-tuning)")
    keep_last: int = _field(3, "checkpoints kept besides the best", ge=1)
    checkpoint_interval: int = _field(250, "steps between checkpoints", ge=1)
    progressive_depth: int | None = _field(None, "steps in which the recursion depth rises to "
                                                 "model.recursion_depth; null: none", ge=1)


@dataclass(frozen=True)
class SamplingConfig(GenerationConfig):
    """`GenerationConfig` — how `nima train` samples after training and how `nima sample` and
    `nima repl` decode by default — plus the text the sample starts from."""

    owner: ClassVar[str] = "sampling"
    prompt: str = setting("\n", "text the sample starts from")

    def generation_config(self) -> GenerationConfig:
        """These settings as a plain `GenerationConfig` (without the prompt)."""
        return GenerationConfig(**{f.name: getattr(self, f.name)
                                   for f in dataclasses.fields(GenerationConfig)})


@dataclass
class RuntimeConfig:
    """Machine settings the trainer applies with `nima.runtime.using` while it runs (null
    leaves a setting as the process has it)."""

    backend: str | None = _field(None, "kernel backend for training", choices=BACKENDS)
    numba_threads: int | None = _field(None, "numba threads for large kernels", ge=1)
    blas_threads: int | None = _field(None, "OpenBLAS threads while training", ge=1)
    retain_memory: bool = _field(False, "keep freed memory in glibc's heap for the next step "
                                        "(process-wide, for the rest of the process)")


@dataclass
class Config:
    """A whole run: one dataclass per YAML section."""

    model: ModelConfig | Seq2SeqModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

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
        try:
            return cls._from_dict(raw)
        except ConfigError:
            raise
        except SettingsError as e:  # named by its dotted key already
            raise ConfigError(str(e)) from None

    @classmethod
    def _from_dict(cls, raw: Any) -> Config:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"<root>: expected a mapping of sections, got {_kind(raw)}")
        sections = {}
        for name, values in raw.items():
            check_known(shown(name) if not isinstance(name, str) else name, name, SECTIONS)
            if values is None:
                values = {}
            if not isinstance(values, dict):
                raise ConfigError(f"{name}: expected a mapping, got {_kind(values)}")
            section_cls = SECTIONS[name]
            if name == "model":  # the kind decides which fields the section has
                kind = check_value("model.kind", values.get("kind", "gpt"), str,
                                   {"choices": MODEL_KINDS})
                section_cls = MODEL_SECTIONS[kind]
            known = {f.name: f for f in dataclasses.fields(section_cls)}
            hints = typing.get_type_hints(section_cls)
            kwargs = {}
            for key, value in values.items():
                dotted = f"{name}.{key}"
                check_known(dotted, key, known)
                kwargs[key] = check_value(dotted, value, hints[key], known[key].metadata)
            sections[name] = section_cls(**kwargs)  # rules between two values checked here
        config = cls(**sections)
        _check_cross_fields(config)
        return config


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}
MODEL_SECTIONS: dict[str, type] = {"gpt": ModelConfig, "seq2seq": Seq2SeqModelConfig}
_HINTS = {name: typing.get_type_hints(cls) for name, cls in SECTIONS.items()}
_HINTS["model"] = {**typing.get_type_hints(Seq2SeqModelConfig), **_HINTS["model"]}


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {shown(value)}"


def _check_cross_fields(c: Config) -> None:
    """The rules that relate two values; each error names the key to change."""
    s, d, m, t = c.schedule, c.data, c.model, c.training
    seq2seq = m.kind == "seq2seq"
    if seq2seq and (d.corpus in ("synthetic", "brackets", "recall") or d.tokenizer != "char"):
        field_, value = ("corpus", d.corpus) if d.tokenizer == "char" else \
            ("tokenizer", d.tokenizer)
        raise ConfigError(f"data.{field_}: model.kind 'seq2seq' reads pairs of texts as "
                          f"characters (a pairs file or 'reversal'), got {value!r}")
    if seq2seq and d.sampling != "uniform":
        raise ConfigError(f"data.sampling: model.kind 'seq2seq' draws random pairs; use "
                          f"'uniform', got {d.sampling!r}")
    if not seq2seq and d.corpus == "reversal":
        raise ConfigError("data.corpus: 'reversal' is a sequence-to-sequence task; it needs "
                          "model.kind 'seq2seq'")
    if seq2seq and t.init_from is not None:
        raise ConfigError("training.init_from: fine-tuning starts a GPT (model.kind 'gpt'), "
                          "got model.kind 'seq2seq'")
    if not seq2seq and m.carries_state and d.sampling != "stream":
        raise ConfigError(f"data.sampling: a model with echo or memory layers carries state "
                          f"from one segment to the next, so it trains on streams; use "
                          f"'stream', got {d.sampling!r}")
    if not seq2seq and m.streams is not None and m.streams != t.batch_size:
        raise ConfigError(f"model.streams: the training state holds one row per stream, "
                          f"training.batch_size={t.batch_size}; use null, got {m.streams}")
    if t.progressive_depth is not None and (seq2seq or m.recursion_depth == 1):
        raise ConfigError(f"training.progressive_depth: needs model.recursion_depth > 1, got "
                          f"{t.progressive_depth}")
    if d.bracket_length % 2:
        raise ConfigError(f"data.bracket_length: must be even, got {d.bracket_length}")
    if d.recall_distance is not None and d.recall_distance[0] > d.recall_distance[1]:
        raise ConfigError(f"data.recall_distance: the fewest characters must not exceed the "
                          f"most, got {list(d.recall_distance)}")
    if c.data.tokenizer == "bpe" and c.data.vocab_size is None:
        raise ConfigError("data.vocab_size: tokenizer 'bpe' needs a target vocabulary size")
    if c.optimizer.nesterov and (c.optimizer.name != "sgd" or c.optimizer.momentum == 0):
        raise ConfigError("optimizer.nesterov: needs optimizer.name 'sgd' and momentum > 0")
    total = s.total if s.total is not None else c.training.max_iters
    if s.name == "warmup_cosine" and s.warmup >= total:
        source = " (training.max_iters)" if s.total is None else ""
        raise ConfigError(f"schedule.warmup: must be < schedule.total={total}{source}, got "
                          f"{s.warmup}; lower schedule.warmup")
    if s.name == "noam" and s.warmup == 0:
        raise ConfigError("schedule.warmup: must be > 0 for 'noam', got 0")
    if s.min_lr > c.optimizer.lr:
        raise ConfigError(f"schedule.min_lr: must be <= optimizer.lr={c.optimizer.lr}, "
                          f"got {s.min_lr}")
    for key, path in (("data.corpus", c.data.corpus), ("data.out_dir", c.data.out_dir),
                      ("training.run_dir", c.training.run_dir)):
        if not path.strip():
            raise ConfigError(f"{key}: must not be empty (that would be the current "
                              f"directory), got {path!r}")


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
        try:
            check_known(section, section, SECTIONS)
        except SettingsError as e:
            raise ConfigError(str(e)) from None
        if _HINTS[section].get(name) is str:  # a prompt like `ROMEO:` is text, not a mapping
            result.setdefault(section, {})[name] = text
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{key.strip()}: cannot parse {shown(text)} as YAML: "
                              f"{problem}") from None
        result.setdefault(section, {})[name] = value
    return result


# --8<-- [start:resolve_paths]
def resolve_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The raw config `raw` with its relative paths made absolute: outputs (`data.out_dir`,
    `training.run_dir`) in `folder`, the config file's; inputs (`data.corpus`,
    `training.init_from`) there too, or else in `BUNDLED_DATA` when they are found there and
    not in `folder`. Generated corpora (`synthetic`, `reversal`) and absolute paths stay."""
    wanted = {("data", "corpus"): True, ("training", "init_from"): True,
              ("data", "out_dir"): False, ("training", "run_dir"): False}
    resolved = {name: dict(values) if isinstance(values, dict) else values
                for name, values in raw.items()}
    for (section, key), is_input in wanted.items():
        values = resolved.get(section)
        value = values.get(key) if isinstance(values, dict) else None
        if not isinstance(value, str) or Path(value).is_absolute() or (
                key == "corpus" and value in GENERATED):
            continue
        path = folder / value
        if is_input and not path.exists() and (BUNDLED_DATA / value).exists():
            path = BUNDLED_DATA / value
        values[key] = os.path.normpath(path)
    return resolved
# --8<-- [end:resolve_paths]


def load_config(path: str | os.PathLike, overrides: typing.Iterable[str] = ()) -> Config:
    """Read a YAML config, resolve its paths against its folder (`resolve_paths`), apply
    `--set` overrides, and validate the result.

    Args:
        path: the YAML file.
        overrides: `section.key=value` strings, applied in order after the file (a path among
            them is taken from the current directory).

    Returns:
        The validated `Config`.

    Raises:
        ConfigError: a file that is not UTF-8 YAML (or holds aliases or duplicated keys, see
            `nima.training.yaml_file`), or any invalid key or value (named by its dotted key).
        FileNotFoundError: there is no such file.
    """
    try:
        raw = read_yaml(path)
    except YAMLFileError as e:
        raise ConfigError(str(e)) from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"<root>: expected a mapping of sections, got {_kind(raw)}")
    raw = resolve_paths(raw, Path(path).resolve().parent)
    for section, values in parse_overrides(overrides).items():
        current = raw.get(section)
        if not isinstance(current, dict):
            current = {}
        raw[section] = {**current, **values}
    return Config.from_dict(raw)
