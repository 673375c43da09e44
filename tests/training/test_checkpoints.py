"""Checkpoints: a round trip restores model, optimizer, scheduler and RNG so that a resumed run
continues exactly as an uninterrupted one; pruning, best tracking, and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import nima
from nima.models.gpt import GPT, GPTConfig
from nima.optim import AdamW, WarmupCosine, param_groups_for_decay
from nima.serialization import CheckpointError, load, load_metadata, save
from nima.training import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint

CONFIG = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.1)


def build(seed: int = 0) -> tuple[GPT, AdamW, WarmupCosine]:
    nima.manual_seed(seed)
    model = GPT(GPTConfig(**CONFIG))
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-2, betas=(0.9, 0.99))
    return model, opt, WarmupCosine(opt, warmup=2, total=20, min_lr=1e-3)


def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(step)
    return rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))


def train_step(model: GPT, opt: AdamW, sched: WarmupCosine, step: int) -> float:
    x, y = batch(step)
    _, loss = model(x, y)  # dropout draws from nima's generator
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.data)


def params(model: GPT) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    model, opt, sched = build()
    losses = [train_step(model, opt, sched, s) for s in range(3)]
    save_checkpoint(tmp_path, 3, model, opt, sched, config={"lr": 1e-2, "name": "t"},
                    metrics={"train_loss": np.float32(losses[-1])})
    uninterrupted = [train_step(model, opt, sched, s) for s in range(3, 6)]

    fresh, fresh_opt, fresh_sched = build(seed=123)  # different weights, empty state
    nima.manual_seed(999)  # a different RNG stream, to be overwritten
    info = load_checkpoint(latest_checkpoint(tmp_path), fresh, fresh_opt, fresh_sched)
    assert info["step"] == 3 and info["config"] == {"lr": 1e-2, "name": "t"}
    assert info["metrics"]["train_loss"] == pytest.approx(losses[-1])
    assert set(info["rng_states"]) == {"nima"}
    assert fresh_sched.last_step == 3 and fresh_opt.param_groups[0]["lr"] == sched.lr_at(3)
    resumed = [train_step(fresh, fresh_opt, fresh_sched, s) for s in range(3, 6)]
    assert resumed == uninterrupted  # bit-exact: dropout masks, AdamW moments, LR, all
    for key, value in params(model).items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value)


def test_model_outputs_and_optimizer_arrays_are_stored(tmp_path: Path) -> None:
    model, opt, sched = build()
    train_step(model, opt, sched, 0)
    path = save_checkpoint(tmp_path, 1, model, opt, sched)
    assert path.name == "ckpt-0000001.safetensors"
    tensors = load(path)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert {f"optim.state.{i}.exp_avg" for i in range(n_params)} <= set(tensors)
    assert {f"model.{k}" for k in model.state_dict()} <= set(tensors)
    assert load_metadata(path)["kind"] == "nima-checkpoint"

    model.eval()
    x, _ = batch(7)
    expected = model(x)[0].data
    other, _, _ = build(seed=5)
    load_checkpoint(path, other.eval())
    np.testing.assert_array_equal(other(x)[0].data, expected)


def test_keep_last_prunes_old_checkpoints(tmp_path: Path) -> None:
    model, opt, _ = build()
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(tmp_path, step, model, opt, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt-0000040.safetensors", "ckpt-0000050.safetensors"]
    assert latest_checkpoint(tmp_path).name == "ckpt-0000050.safetensors"
    assert latest_checkpoint(tmp_path / "nothing") is None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_best_follows_the_lowest_metric(tmp_path: Path) -> None:
    model, opt, _ = build()
    for step, val in [(1, 3.0), (2, 2.0), (3, 2.5), (4, 1.5), (5, 1.9)]:
        save_checkpoint(tmp_path, step, model, opt, metrics={"val_loss": val}, best_metric=val,
                        keep_last=1)
    info = load_checkpoint(tmp_path / "best.safetensors", model)
    assert info["step"] == 4 and info["best_metric"] == 1.5
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000005.safetensors"]


def test_kill_during_checkpoint_save_keeps_the_last_good_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, sched = build()
    save_checkpoint(tmp_path, 1, model, opt, sched, metrics={"m": 1})
    save_checkpoint(tmp_path, 2, model, opt, sched, metrics={"m": 2}, best_metric=1.0)
    train_step(model, opt, sched, 0)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("SIGKILL stand-in")

    for target in ("ckpt", "best"):
        monkeypatch.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            if target == "ckpt":  # overwrite the same step: the old file must survive intact
                save_checkpoint(tmp_path, 2, model, opt, sched, metrics={"m": 3})
            else:  # dies while copying to best.safetensors
                save_checkpoint(tmp_path, 2, model, opt, sched, best_metric=0.5)
        monkeypatch.undo()
    fresh, fresh_opt, fresh_sched = build(seed=4)
    info = load_checkpoint(latest_checkpoint(tmp_path), fresh, fresh_opt, fresh_sched)
    assert info["step"] == 2 and info["metrics"] == {"m": 2}
    assert load_checkpoint(tmp_path / "best.safetensors", fresh)["best_metric"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.safetensors", "ckpt-0000001.safetensors", "ckpt-0000002.safetensors"]


def test_a_plain_safetensors_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    model, _, _ = build()
    save(model.state_dict(), tmp_path / "weights.safetensors")
    with pytest.raises(CheckpointError, match="not a Nima checkpoint"):
        load_checkpoint(tmp_path / "weights.safetensors", model)


def test_mismatched_model_names_the_keys(tmp_path: Path) -> None:
    model, opt, _ = build()
    path = save_checkpoint(tmp_path, 1, model, opt)
    bigger = GPT(GPTConfig(**{**CONFIG, "n_embd": 16}))
    with pytest.raises(CheckpointError, match=r"shape mismatch for .*wte.weight"):
        load_checkpoint(path, bigger)
    deeper = GPT(GPTConfig(**{**CONFIG, "n_layer": 2}))
    with pytest.raises(CheckpointError, match=r"missing keys \[.*blocks\.1"):
        load_checkpoint(path, deeper)


def test_missing_optimizer_state_and_tampering(tmp_path: Path) -> None:
    model, opt, _ = build()
    path = save_checkpoint(tmp_path, 1, model, None)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, model, opt)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="digest of the header and data does not match"):
        load_checkpoint(path, model)
