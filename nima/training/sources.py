"""Where a model comes from: a config's `model:` section, a run directory (or one of its
checkpoints), or a Hugging Face model folder — what `nima train`, `nima eval`, `nima export`,
`nima sample` and a config's `training.init_from` read.

`load_model(path)` tells a run from a Hugging Face folder by the folder's `config.json` and
returns the model, its tokenizer and, for a run, the run's `Config`. `fine_tune_config` is how
`training.init_from` decides the architecture of a fine-tuning run: the source's, with the
config's `block_size` (cropped, never grown) and `dropout`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nima.data.dataset import TOKENIZER_FILE
from nima.data.tokenizers import ByteBPETokenizer, load_tokenizer
from nima.models.gpt import GPT, GPTConfig
from nima.models.memory import available_bytes, format_bytes, inference_bytes
from nima.models.pretrained import CONFIG, load_pretrained
from nima.models.seq2seq import Transformer
from nima.serialization import CheckpointError, PathLike
from nima.training.checkpoint import (
    best_checkpoint,
    checkpoint_info,
    file_sha256,
    first_nonfinite,
    latest_checkpoint,
    load_checkpoint,
)
from nima.training.config import Config, ConfigError, ModelConfig, Seq2SeqModelConfig

__all__ = ["build_model", "fine_tune_config", "is_pretrained_folder", "load_model", "load_run",
           "load_source"]

# what a fine-tuning run sets itself; every other field of the architecture is the source's
OWN_FIELDS = ("block_size", "dropout", "gradient_checkpointing", "init")


def build_model(model: ModelConfig | Seq2SeqModelConfig,
                vocab_size: int | None = None) -> GPT | Transformer:
    """The model a config's `model:` section describes (`vocab_size` fills null
    vocabularies)."""
    if isinstance(model, Seq2SeqModelConfig):
        return Transformer(model.to_transformer_config(vocab_size))
    return GPT(model.to_gpt_config(vocab_size))


def is_pretrained_folder(path: PathLike) -> bool:
    """Whether `path` is a Hugging Face model folder (it holds `config.json`)."""
    return (Path(path) / CONFIG).is_file()


def load_run(path: PathLike, which: str = "best") -> tuple[GPT | Transformer, Any, Config]:
    """A trained model, its tokenizer and its config, from a run directory (`which`: `"best"`
    or `"latest"` checkpoint) or from a checkpoint file (its folder must hold
    `tokenizer.txt`). The model is in eval mode.

    Raises:
        CheckpointError: no checkpoint, a damaged one, one whose config does not validate or
            would not fit in memory, one whose weights are not all finite, or one whose
            `tokenizer.txt` is missing or is not the tokenizer it was trained with.
        TokenizerFileError: `tokenizer.txt` is malformed.
    """
    path = Path(path)
    if path.is_dir():
        ckpt = (best_checkpoint(path) if which == "best" else None) or latest_checkpoint(path)
        if ckpt is None:
            raise CheckpointError(f"{path}: no checkpoint in this run directory")
    else:
        ckpt = path
    info = checkpoint_info(ckpt)
    try:
        config = Config.from_dict(info["config"])
        model_config = config.model.to_gpt_config() if isinstance(config.model, ModelConfig) \
            else None
    except ConfigError as e:
        raise CheckpointError(f"{ckpt}: its config is not valid: {e}") from None
    if model_config is not None:
        need, have = inference_bytes(model_config)["total"], available_bytes()
        if have is not None and need > have:
            raise CheckpointError(f"{ckpt}: its model would need about {format_bytes(need)} of "
                                  f"memory, but {format_bytes(have)} are available")
    tokenizer_file = ckpt.parent / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise CheckpointError(f"{ckpt}: no {TOKENIZER_FILE} beside it to decode tokens")
    trained_with = info["extra"].get("tokenizer_sha256")
    if trained_with is not None and trained_with != file_sha256(tokenizer_file):
        raise CheckpointError(f"{ckpt}: the {TOKENIZER_FILE} beside it is not the tokenizer it "
                              f"was trained with (sha256 {str(trained_with)[:12]}...)")
    model = build_model(config.model)
    load_checkpoint(ckpt, model)
    bad = first_nonfinite(model.state_dict())
    if bad is not None:
        raise CheckpointError(f"{ckpt}: the weights hold NaN or infinities ({bad}), so this "
                              f"model cannot generate text; use an earlier checkpoint")
    model.eval()
    return model, load_tokenizer(tokenizer_file), config


def load_model(path: PathLike, which: str = "best"
               ) -> tuple[GPT | Transformer, Any | None, Config | None]:
    """`(model, tokenizer, config)` from a run directory or checkpoint (`load_run`), or from
    a Hugging Face folder (GPT-2's `vocab.json` and `merges.txt` beside it give the tokenizer,
    else None; no config). The model is in eval mode.

    Raises:
        CheckpointError, PretrainedError: nothing loadable at `path`.
    """
    path = Path(path)
    if is_pretrained_folder(path):
        vocab, merges = path / "vocab.json", path / "merges.txt"
        tokenizer = ByteBPETokenizer.from_files(vocab, merges) \
            if vocab.exists() and merges.exists() else None
        return load_pretrained(path), tokenizer, None
    return load_run(path, which)


# --8<-- [start:fine_tune_config]
def fine_tune_config(model: ModelConfig, source: GPTConfig) -> ModelConfig:
    """The `model:` section of a run that starts from a model of config `source`: the source's
    architecture, with the config's `dropout`, and `block_size` the smaller of the two (a
    shorter context crops the source's position tables; a longer one cannot be made up).

    Raises:
        ConfigError: the config sets an architecture field (away from its default) to a value
            other than the source's — named, since the weights could not fit it.
    """
    default = ModelConfig()
    for f in dataclasses.fields(GPTConfig):
        mine, theirs = getattr(model, f.name), getattr(source, f.name)
        if f.name in OWN_FIELDS or mine in (theirs, getattr(default, f.name)):
            continue
        raise ConfigError(f"model.{f.name}: {mine!r} differs from training.init_from's "
                          f"{theirs!r}; a fine-tuned model keeps its source's architecture")
    values = {f.name: getattr(source, f.name) for f in dataclasses.fields(GPTConfig)}
    values.update(block_size=min(model.block_size, source.block_size), dropout=model.dropout,
                  gradient_checkpointing=model.gradient_checkpointing, init=model.init)
    return ModelConfig(**values)
# --8<-- [end:fine_tune_config]


def load_source(path: PathLike) -> tuple[GPT, Any]:
    """The model and tokenizer a fine-tuning run starts from (`training.init_from`).

    Raises:
        ConfigError: nothing there, not a GPT, or no tokenizer to encode the new data with.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"training.init_from: no such run directory or model folder "
                          f"{str(path)!r} (relative paths are taken from the config file's "
                          f"folder)")
    model, tokenizer, _ = load_model(path)
    if not isinstance(model, GPT):
        raise ConfigError(f"training.init_from: {path} holds a {type(model).__name__}; "
                          f"fine-tuning starts a GPT")
    if tokenizer is None:
        raise ConfigError(f"training.init_from: {path} has no tokenizer (a model folder needs "
                          f"vocab.json and merges.txt) to encode data.corpus with")
    return model, tokenizer
