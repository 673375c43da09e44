"""`nima train` for the encoder-decoder: the model kind switch validated in the YAML, a run on
the reversal task that learns, `nima sample` and `nima eval` on it, and the shipped config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_runs import tiny_config

from nima import cli
from nima.models import Transformer
from nima.training import Config, ConfigError, Trainer, load_config, load_run
from nima.training.config import Seq2SeqModelConfig
from nima.training.evaluate import evaluate_pairs

ROOT = Path(__file__).resolve().parents[2]


def seq2seq_config(tmp_path: Path, **training) -> Config:
    """`tiny_config`'s run, with a 1 + 1 layer, 32-wide encoder-decoder on 300 reversal pairs."""
    raw = tiny_config(tmp_path).to_dict()
    raw["model"] = {"kind": "seq2seq", "max_len": 10, "d_model": 32, "n_head": 4,
                    "n_encoder_layers": 1, "n_decoder_layers": 1, "ffn_hidden": 64}
    raw["data"].update(corpus="reversal", synthetic_pairs=300, val_fraction=0.2)
    raw["optimizer"].update(lr=3e-3, betas=[0.9, 0.98], weight_decay=0.0)
    raw["training"].update({"batch_size": 32, "max_iters": 60, "eval_interval": 30,
                            "eval_iters": 4, **training})
    raw["sampling"].update(strategy="greedy", max_new_tokens=10, prompt="abcdef")
    return Config.from_dict(raw)


@pytest.mark.parametrize(("model", "data", "match"), [
    ({"kind": "seq2seq", "n_layer": 2}, {}, r"model\.n_layer: unknown key; did you mean "
                                            r"'n_encoder_layers'"),
    ({"kind": "gpt", "d_model": 8}, {}, r"model\.d_model: unknown key"),
    ({"kind": "rnn"}, {}, r"model\.kind: must be one of 'gpt', 'seq2seq', got 'rnn'"),
    ({"kind": "seq2seq"}, {"corpus": "synthetic"}, r"data\.corpus: model.kind 'seq2seq' reads "
                                                   r"pairs"),
    ({"kind": "seq2seq"}, {"corpus": "x.tsv", "tokenizer": "bpe", "vocab_size": 300},
     r"data\.tokenizer: model.kind 'seq2seq'"),
    ({}, {"corpus": "reversal"}, r"data\.corpus: 'reversal' is a sequence-to-sequence task"),
    ({"kind": "seq2seq", "d_model": 30, "n_head": 4}, {}, r"model\.d_model: must be divisible"),
])
def test_the_model_kind_switch_is_validated(model, data, match) -> None:
    raw = {"model": model, "data": {"corpus": "reversal", **data}}
    if model.get("kind") != "seq2seq" and "corpus" not in data:
        raw["data"]["corpus"] = "synthetic"
    with pytest.raises(ConfigError, match=match):
        Config.from_dict(raw)


def test_init_from_is_for_a_gpt() -> None:
    with pytest.raises(ConfigError, match=r"training\.init_from: fine-tuning starts a GPT"):
        Config.from_dict({"model": {"kind": "seq2seq"}, "data": {"corpus": "reversal"},
                          "training": {"init_from": "runs/x"}})


def test_the_shipped_config() -> None:
    config = load_config(ROOT / "configs" / "reverse_seq2seq.yaml")
    assert isinstance(config.model, Seq2SeqModelConfig) and config.model.kind == "seq2seq"
    assert config.data.corpus == "reversal" and config.model.max_len == 10
    assert Config.from_dict(config.to_dict()) == config  # the kind survives a round trip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s2s")
    trainer = Trainer(seq2seq_config(tmp))
    result = trainer.fit()
    return tmp, trainer, result


def test_a_seq2seq_run_learns(run) -> None:
    tmp, trainer, result = run
    assert isinstance(trainer.model, Transformer)
    assert trainer.config.model.src_vocab_size == trainer.meta["vocab_size"] == 13
    first = trainer.metrics.records[0]["val_loss"]
    assert result.val_loss < first - 1.0, (first, result.val_loss)
    model, _, config = load_run(tmp / "run")
    assert isinstance(model, Transformer) and config.model.kind == "seq2seq"
    full = evaluate_pairs(model, trainer.val_data)
    assert full.tokens == sum(len(t) + 1 for t in trainer.val_data.targets)  # with EOS
    assert full.loss == pytest.approx(result.val_loss, rel=0.5)  # random batches vs all pairs


def test_nima_sample_and_eval_on_a_seq2seq_run(run, capsys) -> None:
    tmp, trainer, _ = run
    cli.main(["sample", str(tmp / "run"), "--prompt", "abcdef", "--strategy", "beam",
              "--num-beams", "3", "--num-return-sequences", "2"])
    out = capsys.readouterr().out
    texts = [line for line in out.splitlines() if not line.startswith("---")]
    assert len(texts) == 2 and all(set(t) <= set("abcdefghij") for t in texts)
    assert "log-probability" in out
    sample = trainer.sample()  # greedy, as the config says
    assert set(sample) <= set("abcdefghij") and len(sample) <= 10
    cli.main(["eval", str(tmp / "run")])
    captured = capsys.readouterr()
    assert f"{len(trainer.val_data)} pairs" in captured.out
    assert "bits per character" in captured.out
    with pytest.raises(SystemExit, match=r"nima repl: .* holds an encoder-decoder"):
        cli.main(["repl", str(tmp / "run")])
    with pytest.raises(SystemExit, match="the NumPy script runs a GPT"):
        cli.main(["export", str(tmp / "run")])
    with pytest.raises(SystemExit, match="not in the vocabulary"):
        cli.main(["sample", str(tmp / "run"), "--prompt", "xyz"])


def test_pairs_longer_than_max_len_are_named(tmp_path) -> None:
    config = seq2seq_config(tmp_path)
    config = Config.from_dict({**config.to_dict(),
                               "model": {**config.to_dict()["model"], "max_len": 6}})
    with pytest.raises(ConfigError, match=r"model\.max_len: the pairs need 9 positions"):
        Trainer(config)


def test_a_pairs_file(tmp_path) -> None:
    """Any source<TAB>target file: here upper-casing, a translation of sorts."""
    words = ["sea", "ship", "wave", "gull", "fox", "owl", "tree", "path", "tower", "train"]
    rng = np.random.default_rng(0)
    lines = ["".join(rng.choice(words, 2)) for _ in range(60)]
    corpus = tmp_path / "upper.tsv"
    corpus.write_text("".join(f"{w}\t{w.upper()}\n" for w in lines))
    config = seq2seq_config(tmp_path, max_iters=6)
    raw = config.to_dict()
    raw["data"]["corpus"] = str(corpus)
    raw["model"]["max_len"] = 12
    trainer = Trainer(Config.from_dict(raw))
    assert len(trainer.train_data) == 48 and trainer.fit().step == 6
