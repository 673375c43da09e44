"""The YAML config: bundled files, every kind of error naming its dotted key, overrides, docs."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nima.models.gpt import GPTConfig
from nima.settings import reference_rows
from nima.training import config as config_module
from nima.training.config import SECTIONS, Config, ConfigError, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[2]
SHAKESPEARE = ROOT / "configs" / "shakespeare_char.yaml"
TINY = ROOT / "configs" / "tiny_synthetic.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(raw)
    return str(info.value)


def test_shakespeare_config_is_nanogpts_baby_gpt():
    cfg = load_config(SHAKESPEARE)
    m, o, s, t = cfg.model, cfg.optimizer, cfg.schedule, cfg.training
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout, m.bias) == (
        4, 4, 128, 64, 0.0, False)
    assert (o.name, o.lr, o.betas, o.weight_decay) == ("adamw", 1e-3, (0.9, 0.99), 0.1)
    assert (s.name, s.warmup, s.total, s.min_lr) == ("warmup_cosine", 100, None, 1e-4)
    assert (t.batch_size, t.max_iters, t.grad_clip, t.eval_interval, t.eval_iters) == (
        12, 2000, 1.0, 250, 200)
    assert (cfg.data.tokenizer, cfg.data.val_fraction) == ("char", 0.1)
    assert (ROOT / cfg.data.corpus).is_file()
    assert cfg.sampling.max_new_tokens == 500
    gpt = m.to_gpt_config(vocab_size=65)
    assert gpt == GPTConfig.preset("baby")


def test_tiny_synthetic_config_loads():
    cfg = load_config(TINY)
    assert cfg.data.corpus == "synthetic"
    assert cfg.training.max_iters <= 200
    assert isinstance(cfg.model.to_gpt_config(vocab_size=40), GPTConfig)


def test_model_section_mirrors_gptconfig():
    names = [f.name for f in dataclasses.fields(SECTIONS["model"])]
    assert names == [f.name for f in dataclasses.fields(GPTConfig)] + ["kind"]


def test_empty_file_is_all_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


@pytest.mark.parametrize("raw, message", [
    ({"optimizer": {"lrr": 1e-3}}, "optimizer.lrr: unknown key; did you mean 'lr'?"),
    ({"training": {"max_iter": 5}}, "training.max_iter: unknown key; did you mean 'max_iters'?"),
    ({"modle": {}}, "modle: unknown key; did you mean 'model'?"),
    ({"model": {"zzz": 1}}, "model.zzz: unknown key; valid keys: vocab_size, "),
])
def test_unknown_keys_are_named_with_a_suggestion(raw, message):
    assert error_of(raw).startswith(message)


@pytest.mark.parametrize("raw, message", [
    ({"training": {"batch_size": True}}, "training.batch_size: expected int, got bool True"),
    ({"training": {"batch_size": 1.5}}, "training.batch_size: expected int, got float 1.5"),
    ({"model": {"dropout": "high"}}, "model.dropout: expected float, got str 'high'"),
    ({"model": {"bias": 1}}, "model.bias: expected bool, got int 1"),
    ({"optimizer": {"lr": False}}, "optimizer.lr: expected float, got bool False"),
    ({"optimizer": {"betas": 0.9}}, "optimizer.betas: expected a list of 2 values"),
    ({"optimizer": {"betas": [0.9, "x"]}}, "optimizer.betas[1]: expected float"),
    ({"training": {"run_dir": None}}, "training.run_dir: must not be null"),
    ({"sampling": {"prompt": 3}}, "sampling.prompt: expected str, got int 3"),
    ({"data": []}, "data: expected a mapping, got list"),
])
def test_wrong_types_are_named(raw, message):
    assert error_of(raw).startswith(message)


@pytest.mark.parametrize("raw, message", [
    ({"optimizer": {"lr": -1.0}}, "optimizer.lr: must be > 0, got -1.0"),
    ({"optimizer": {"lr": 0}}, "optimizer.lr: must be > 0, got 0.0"),
    ({"model": {"dropout": 1.0}}, "model.dropout: must be < 1, got 1.0"),
    ({"model": {"dropout": -0.1}}, "model.dropout: must be >= 0, got -0.1"),
    ({"optimizer": {"betas": [0.9, 1.0]}}, "optimizer.betas[1]: must be < 1, got 1.0"),
    ({"training": {"max_iters": 0}}, "training.max_iters: must be >= 1, got 0"),
    ({"sampling": {"top_k": 0}}, "sampling.top_k: must be >= 1, got 0"),
    ({"sampling": {"temperature": 0.0}}, "sampling.temperature: must be > 0, got 0.0"),
    ({"data": {"tokenizer": "word"}}, "data.tokenizer: must be one of 'char', 'bpe', got 'word'"),
    ({"model": {"position": "x"}}, "model.position: must be one of 'learned'"),
    ({"schedule": {"name": "cosine"}}, "schedule.name: must be one of 'warmup_cosine'"),
])
def test_out_of_range_values_are_named(raw, message):
    assert error_of(raw).startswith(message)


@pytest.mark.parametrize("raw, message", [
    ({"model": {"n_embd": 128, "n_head": 3}},
     "model.n_embd: must be divisible by n_head=3, got 128"),
    ({"model": {"n_embd": 96, "n_head": 32, "position": "rope"}}, "model.position: 'rope'"),
    ({"schedule": {"warmup": 50, "total": 50}}, "schedule.warmup: must be < schedule.total=50"),
    ({"schedule": {"warmup": 3000}}, "schedule.warmup: must be < schedule.total=2000"),
    ({"schedule": {"name": "noam", "warmup": 0}}, "schedule.warmup: must be > 0 for 'noam'"),
    ({"schedule": {"min_lr": 1e-2}}, "schedule.min_lr: must be <= optimizer.lr=0.001"),
    ({"data": {"tokenizer": "bpe"}}, "data.vocab_size: tokenizer 'bpe' needs"),
    ({"optimizer": {"nesterov": True}}, "optimizer.nesterov: needs optimizer.name 'sgd'"),
])
def test_cross_field_rules_name_the_key(raw, message):
    assert error_of(raw).startswith(message)


def test_ints_are_accepted_for_floats_and_exponents_without_a_dot():
    cfg = Config.from_dict({"optimizer": {"lr": 1, "eps": "1e-8"}, "schedule": {"min_lr": 0}})
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    assert cfg.optimizer.eps == 1e-8 and cfg.schedule.min_lr == 0.0


def test_overrides_coerce_types_and_apply_after_the_file():
    cfg = load_config(SHAKESPEARE, ["training.max_iters=10", "schedule.warmup=5",
                                    "model.dropout=0.1",
                                    "training.mixed_precision=true", "sampling.top_k=200",
                                    "optimizer.betas=[0.9, 0.95]", "training.run_dir=runs/x",
                                    "optimizer.lr=3e-4", "training.grad_clip=null"])
    assert cfg.training.max_iters == 10 and cfg.model.dropout == 0.1
    assert cfg.training.mixed_precision is True and cfg.sampling.top_k == 200
    assert cfg.optimizer.betas == (0.9, 0.95) and cfg.training.run_dir == "runs/x"
    assert cfg.optimizer.lr == 3e-4 and cfg.training.grad_clip is None
    assert load_config(SHAKESPEARE, ["model.n_layer=2", "model.n_layer=3"]).model.n_layer == 3


def test_overrides_reach_a_section_the_file_lacks(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  n_layer: 2\n"), ["sampling.prompt=ROMEO:"])
    assert cfg.sampling.prompt == "ROMEO:" and cfg.model.n_layer == 2


@pytest.mark.parametrize("override, message", [
    ("training.max_iter=10", "training.max_iter: unknown key; did you mean 'max_iters'?"),
    ("trainng.max_iters=10", "trainng: unknown key; did you mean 'training'?"),
    ("model.dropout=high", "model.dropout: expected float, got str 'high'"),
    ("training.max_iters=1.5", "training.max_iters: expected int, got float 1.5"),
    ("optimizer.lr=-1", "optimizer.lr: must be > 0, got -1.0"),
    ("model.n_head=3", "model.n_embd: must be divisible by n_head=3"),
    ("training.max_iters", "training.max_iters: an override is section.key=value"),
    ("max_iters=10", "max_iters: an override is section.key=value"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(SHAKESPEARE, [override])
    assert str(info.value).startswith(message)


def test_parse_overrides_uses_yaml_scalars():
    assert parse_overrides(["model.n_layer=10", "model.bias=true", "data.out_dir=",
                            "sampling.prompt=to be"]) == {
        "model": {"n_layer": 10, "bias": True}, "data": {"out_dir": ""},
        "sampling": {"prompt": "to be"}}


def test_not_yaml_or_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="<root>: expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


@pytest.mark.parametrize("path", [SHAKESPEARE, TINY])
def test_to_dict_round_trips_through_yaml(path, tmp_path):
    cfg = load_config(path)
    text = yaml.safe_dump(cfg.to_dict())
    assert load_config(write(tmp_path, text)) == cfg
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_every_section_has_its_reference_table():
    """docs/configuration.md asks the build for one table per section; the tables come from
    the dataclasses, a row per field, with the default as YAML writes it."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    asked = re.findall(r"^### `(\w+)`\n\n(?:.*\n)*?<!-- settings: nima.training.config:(\w+) -->",
                       text, re.MULTILINE)
    assert [section for section, _ in asked] == list(SECTIONS)
    defaults = Config().to_dict()
    for section, name in asked:
        cls = getattr(config_module, name)
        assert cls is SECTIONS[section]
        rows = reference_rows(cls)
        assert [r["key"].strip("`") for r in rows] == [f.name for f in dataclasses.fields(cls)]
        for row in rows:
            key = row["key"].strip("`")
            assert yaml.safe_load(row["default"].strip("`")) == defaults[section][key], key
            assert row["meaning"], f"{section}.{key} has no meaning"


def test_the_seq2seq_model_section_has_its_table_too():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "<!-- settings: nima.training.config:Seq2SeqModelConfig -->" in text
    rows = reference_rows(config_module.Seq2SeqModelConfig)
    assert [r["key"].strip("`") for r in rows][-1] == "kind" and all(r["meaning"] for r in rows)
    assert yaml.safe_load(rows[0]["default"].strip("`")) is None  # the tokenizer's size


# ----------------------------------------------------------------------------- hostile files
def bomb(depth: int, width: int, under: str) -> str:
    """A YAML alias bomb: `width ** depth` leaves from a few hundred bytes, under `under`."""
    lines = ["a0: &a0 [x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
    return "\n".join(lines) + f"\n{under}: *a{depth - 1}\n"


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(1, 40), width=st.integers(1, 12),
       under=st.sampled_from(["model", "training", "sampling", "zzz"]))
def test_an_alias_bomb_is_refused_in_one_short_line(tmp_path_factory, depth, width, under):
    """The field report: 295 bytes gave a 254 MB error message, one level more exhausted the
    memory. Aliases are refused where they appear, before anything is expanded."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.yaml"
    path.write_text(bomb(depth, width, under))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    assert message.startswith(f"{path}: line 2,")  # the first alias
    assert "an alias (*a0)" in message and "write the value out" in message


@settings(max_examples=60, deadline=None)
@given(value=st.recursive(st.integers() | st.floats() | st.text() | st.none(),
                          lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                          max_leaves=200))
def test_a_wrong_value_is_shown_in_a_bounded_line(value):
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"model": {"n_layer": [value, value]}})
    assert len(str(info.value)) < 160 and "\n" not in str(info.value)


def test_a_shared_structure_of_a_trillion_elements_is_shown_quickly():
    """What an alias bomb builds, made in Python: the message costs no more than a small one."""
    value: list = [1]
    for _ in range(40):
        value = [value, value]  # 2**40 leaves, 41 objects
    with pytest.raises(ConfigError, match=r"^model: expected a mapping, got list \[\[\[\[") as e:
        Config.from_dict({"model": value})
    assert len(str(e.value)) < 120


def test_a_duplicated_key_or_section_is_refused(tmp_path):
    """It used to keep the last one silently."""
    with pytest.raises(ConfigError, match=r"line 4, column 1: not valid YAML: the key 'model' "
                                          r"appears twice \(first on line 1\)"):
        load_config(write(tmp_path, "model:\n  n_layer: 2\ntraining: {}\nmodel:\n  n_layer: 3\n"))
    with pytest.raises(ConfigError, match=r"the key 'lr' appears twice \(first on line 2\)"):
        load_config(write(tmp_path, "optimizer:\n  lr: 1.0e-3\n  lr: 2.0e-3\n"))


def test_a_merge_key_is_an_alias_too(tmp_path):
    text = "base: &base {n_layer: 2}\nmodel:\n  <<: *base\n"
    with pytest.raises(ConfigError, match=r"line 3, column 7: .*an alias \(\*base\)"):
        load_config(write(tmp_path, text))


def test_a_config_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# config\nsampling:\n  prompt: \"café\"\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: line 3: not UTF-8 text "
                                          r"\(byte 0xe9\); save the file as UTF-8$"):
        load_config(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_config_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(ConfigError, match=r"fifo\.yaml: not a regular file"):
        load_config(fifo)
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        load_config("/dev/zero")


def test_a_number_too_long_for_python_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a usable YAML file"):
        load_config(write(tmp_path, f"model:\n  n_layer: {'9' * 5000}\n"))


@pytest.mark.parametrize("text, message", [
    ("optimizer:\n  lr: .nan\n", "optimizer.lr: must be a finite number, got nan"),
    ("optimizer:\n  lr: .inf\n", "optimizer.lr: must be a finite number, got inf"),
    ("optimizer:\n  lr: 1e999\n", "optimizer.lr: must be a finite number, got inf"),
    ("optimizer:\n  betas: [-.inf, 0.9]\n", "optimizer.betas[0]: must be a finite number"),
    ("model:\n  dropout: .NaN\n", "model.dropout: must be a finite number, got nan"),
    ("sampling:\n  temperature: .inf\n", "sampling.temperature: must be a finite number"),
    ("training:\n  batch_size: 1e9\n", "training.batch_size: expected int, got str '1e9'"),
])
def test_nan_and_inf_never_pass_validation(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value).startswith(message)


def test_a_bad_override_is_one_line():
    with pytest.raises(ConfigError) as info:
        load_config(SHAKESPEARE, ["model.n_layer=[unclosed"])
    assert "\n" not in str(info.value) and str(info.value).startswith(
        "model.n_layer: cannot parse '[unclosed' as YAML")


# ----------------------------------------------------------------------------- the schedule
def test_the_schedule_decays_over_max_iters_unless_told_otherwise(tmp_path):
    """The field report: --set training.max_iters=500 (the README's example) kept the shipped
    schedule.total: 2000, cutting the cosine at 25%."""
    from nima.models import GPT
    from nima.training.trainer import _start_notes, build_optimizer, build_scheduler

    config = load_config(SHAKESPEARE, ["training.max_iters=500"])
    model = GPT(config.model.to_gpt_config(vocab_size=65))
    scheduler = build_scheduler(config, build_optimizer(config, model))
    assert scheduler.total == 500
    assert scheduler.lr_at(500) == pytest.approx(config.schedule.min_lr)
    explicit = load_config(SHAKESPEARE, ["training.max_iters=500", "schedule.total=2000"])
    tokenizer = tmp_path / "tokenizer.txt"
    from nima.data import CharTokenizer
    CharTokenizer("\nabc").save(tokenizer)
    notes = _start_notes(explicit, tokenizer)
    assert notes == ["note: schedule.total=2000 but training.max_iters=500: the learning rate "
                     "follows a 2000-step schedule (25% of it); set schedule.total: null to "
                     "decay over the run"]
    assert _start_notes(config, tokenizer) == []
    with pytest.raises(ConfigError, match=r"schedule.warmup: must be < schedule.total=50 "
                                          r"\(training.max_iters\), got 100; lower schedule"):
        load_config(SHAKESPEARE, ["training.max_iters=50"])
