"""Starting a run from another model (`training.init_from`): from a run directory or a Hugging
Face folder, with the context cropped, the source's tokenizer, the architecture checked and
resume working; and a config's paths resolved against its own folder (or Nima's data/), so
`nima train path/to/config.yaml` works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_runs import tiny_config

import nima
from nima.data import ByteBPETokenizer
from nima.data.synthetic import generate_corpus
from nima.models import GPT, GPTConfig
from nima.models.pretrained import save_pretrained
from nima.training import ConfigError, Trainer, load_config, load_run
from nima.training.config import BUNDLED_DATA

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A tiny trained run to fine-tune: 1 layer, 16 wide, context 16."""
    tmp = tmp_path_factory.mktemp("source")
    Trainer(tiny_config(tmp, training={"max_iters": 10})).fit()
    return tmp / "run"


def write_config(folder: Path, **sections: dict) -> Path:
    """A YAML config in `folder` whose paths are relative to it."""
    raw = tiny_config(folder).to_dict()
    raw["data"].update(out_dir="data", corpus="synthetic")
    raw["training"].update(run_dir="run", max_iters=6, eval_interval=3, checkpoint_interval=3)
    raw["sampling"]["max_new_tokens"] = 0
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_fine_tuning_from_a_run_crops_the_context(source_run, tmp_path) -> None:
    source, tokenizer, _ = load_run(source_run)
    config = load_config(write_config(tmp_path, model={"block_size": 8, "dropout": 0.1},
                                      training={"init_from": str(source_run)}))
    trainer = Trainer(config)
    model = trainer.model
    assert model.config.block_size == 8 and model.wpe.weight.shape == (8, 16)
    assert model.config.dropout == 0.1 and trainer.config.model.block_size == 8
    np.testing.assert_array_equal(model.wpe.weight.data, source.wpe.weight.data[:8])
    np.testing.assert_array_equal(model.wte.weight.data, source.wte.weight.data)
    idx = np.array([trainer.val_data.data[:8].astype(np.int64)])
    with nima.no_grad():  # the same logits as the source on a sequence that fits
        np.testing.assert_allclose(model.eval()(idx)[0].data, source(idx)[0].data, rtol=1e-6)
    assert (tmp_path / "run" / "tokenizer.txt").read_text() == \
        (source_run / "tokenizer.txt").read_text()
    result = trainer.fit()
    assert result.step == 6
    assert "starting from the weights of" in (tmp_path / "run" / "log.txt").read_text()
    # the run directory describes the model it holds, and resumes
    reloaded, _, saved = load_run(tmp_path / "run")
    assert saved.model.block_size == 8 and saved.model.n_layer == 1
    resumed = Trainer(load_config(tmp_path / "run" / "config.yaml",
                                  ["training.max_iters=8"]), resume=True)
    assert resumed.step == 6 and resumed.fit().step == 8
    assert tokenizer.vocab_size == reloaded.config.vocab_size


def test_architecture_that_differs_from_the_source_is_named(source_run, tmp_path) -> None:
    config = load_config(write_config(tmp_path, model={"n_layer": 3},
                                      training={"init_from": str(source_run)}))
    with pytest.raises(ConfigError, match=r"model.n_layer: 3 differs from training.init_from's "
                                          r"1"):
        Trainer(config)
    longer = load_config(write_config(tmp_path, model={"block_size": 64},
                                      training={"init_from": str(source_run)}))
    trainer = Trainer(longer)
    assert trainer.model.config.block_size == 16  # never grown, only cropped
    trainer.close()  # the run directory is free again
    missing = load_config(write_config(tmp_path, training={"init_from": "nowhere"}))
    with pytest.raises(ConfigError, match=r"training\.init_from: no such run directory"):
        Trainer(missing, overwrite=True)


def test_fine_tuning_a_hugging_face_folder_encodes_with_its_tokenizer(tmp_path) -> None:
    """A tiny GPT-2 folder with its vocab.json / merges.txt: the corpus is encoded with GPT-2's
    byte-level BPE, the model keeps its 300-token vocabulary."""
    text = generate_corpus(n_sections=40, seed=0)
    tokenizer = ByteBPETokenizer.train(text, 300, pattern="gpt2")
    folder = tmp_path / "gpt2"
    nima.manual_seed(0)
    save_pretrained(GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2,
                                  n_embd=16)), folder)
    tokenizer.save_files(folder / "vocab.json", folder / "merges.txt")
    config = load_config(write_config(tmp_path, model={"block_size": 16, "bias": True},
                                      training={"init_from": "gpt2"}))  # beside the config
    trainer = Trainer(config)
    assert trainer.meta["tokenizer"] == "given" and trainer.meta["vocab_size"] == 300
    assert trainer.model.config.vocab_size == 300 and trainer.model.config.bias
    gpt2 = ByteBPETokenizer.from_files(folder / "vocab.json", folder / "merges.txt")
    corpus = (tmp_path / "data" / "corpus.txt").read_text()
    encoded = gpt2.encode(corpus[:trainer.meta["split_char"]])
    np.testing.assert_array_equal(trainer.train_data.data, encoded)
    trainer.fit()
    no_tokenizer = tmp_path / "bare"
    save_pretrained(GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2,
                                  n_embd=16)), no_tokenizer)
    with pytest.raises(ConfigError, match="has no tokenizer"):
        Trainer(load_config(write_config(tmp_path, training={"init_from": "bare"}),
                            ["training.run_dir=" + str(tmp_path / "run2")]))


def test_paths_resolve_against_the_config_folder_and_bundled_data(tmp_path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    path = write_config(folder, data={"corpus": "tinyshakespeare.txt", "out_dir": "../data"},
                        training={"run_dir": "runs/a", "init_from": "../src"})
    config = load_config(path)
    assert config.data.corpus == str(BUNDLED_DATA / "tinyshakespeare.txt")  # not beside it
    assert config.data.out_dir == str(tmp_path / "data")
    assert config.training.run_dir == str(folder / "runs" / "a")
    assert config.training.init_from == str(tmp_path / "src")
    (folder / "tinyshakespeare.txt").write_text("beside the config wins\n")
    assert load_config(path).data.corpus == str(folder / "tinyshakespeare.txt")
    # an override is a command-line path: taken as given, from the current directory
    assert load_config(path, ["training.run_dir=elsewhere"]).training.run_dir == "elsewhere"
    shipped = load_config(ROOT / "configs" / "shakespeare_char.yaml")
    assert shipped.training.run_dir == str(ROOT / "runs" / "shakespeare_char")
    assert Path(shipped.data.corpus).is_file()
    finetune = load_config(ROOT / "configs" / "finetune_shakespeare.yaml")
    assert finetune.training.init_from == shipped.training.run_dir
    assert finetune.model.block_size == 32


def test_nima_train_from_another_directory(tmp_path) -> None:
    """A subprocess started in an unrelated folder trains a config kept elsewhere on the bundled
    corpus; the run and the data land beside the config."""
    folder = tmp_path / "project"
    folder.mkdir()
    path = write_config(folder, model={"block_size": 8},
                        data={"corpus": "tinyshakespeare.txt"}, schedule={"warmup": 1},
                        training={"max_iters": 2, "eval_interval": 2, "eval_iters": 1})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    paths = [str(ROOT), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    done = subprocess.run([sys.executable, "-m", "nima", "train", str(path)], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (folder / "run" / "best.safetensors").exists()
    assert (folder / "data" / "train.bin").exists() and not any(elsewhere.iterdir())
