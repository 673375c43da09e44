"""The memory estimate: close to what a training step allocates, and a config that cannot fit
is refused before anything is allocated."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from tiny_runs import tiny_config

import nima
from nima import kernels
from nima.models import GPT, GPTConfig
from nima.models import memory as memory_module
from nima.models.budget import count_parameters
from nima.models.memory import available_bytes, format_bytes, inference_bytes, training_bytes
from nima.optim import AdamW
from nima.training import ConfigError, Trainer
from nima.training import trainer as trainer_module


def measured_step(config: GPTConfig, batch: int) -> int:
    """Bytes a training step allocates at its peak beyond what it starts with (NumPy backend:
    every array goes through NumPy's allocator, which tracemalloc sees)."""
    nima.manual_seed(0)
    model = GPT(config)
    opt = AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = (rng.integers(0, config.vocab_size, (batch, config.block_size)) for _ in range(2))
    with kernels.backend("numpy"):
        for first in (True, False):  # the first step creates the optimizer state
            if not first:
                tracemalloc.start()
                start = tracemalloc.get_traced_memory()[0]
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
        peak = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("shape", [
    dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),   # the baby GPT
    dict(vocab_size=65, block_size=128, n_layer=2, n_head=8, n_embd=128),  # longer, more heads
    dict(vocab_size=2000, block_size=32, n_layer=1, n_head=2, n_embd=64),  # vocabulary-bound
    dict(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=128, ffn="swiglu"),
])
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(shape):
    config = GPTConfig(bias=False, **shape)
    need = training_bytes(config, batch_size=12)
    P = count_parameters(config)["total"]
    assert need["parameters"] == need["gradients"] == 4 * P and need["optimizer"] == 8 * P
    step = need["gradients"] + need["activations"]  # the parameters and moments exist already
    assert 0.75 < step / measured_step(config, 12) < 1.25


def test_checkpointing_keeps_one_block_of_activations():
    plain = GPTConfig.preset("baby")
    checkpointed = GPTConfig.preset("baby", gradient_checkpointing=True)
    a, b = (training_bytes(c, 12)["activations"] for c in (plain, checkpointed))
    assert b < a / 2


def test_inference_needs_parameters_caches_and_logits():
    config = GPTConfig.preset("baby", vocab_size=65)
    need = inference_bytes(config, batch_size=2)
    assert need["caches"] == 2 * 4 * 2 * 64 * 128 * 4 and need["logits"] == 2 * 65 * 4
    assert need["total"] == need["parameters"] + need["caches"] + need["logits"]


def test_available_memory_and_formatting():
    have = available_bytes()
    assert have is None or have > 0
    assert [format_bytes(n) for n in (999, 70_087_680, 2.8e15, 5e18)] == [
        "999 B", "70.1 MB", "2.8 PB", "5000.0 PB"]


@pytest.mark.parametrize("change, key", [
    ({"training": {"batch_size": 1_000_000_000}}, "training.batch_size"),
    ({"model": {"n_layer": 100_000_000}}, "model"),
    ({"model": {"n_embd": 200_000, "n_head": 1}}, "model"),
])
def test_a_run_that_cannot_fit_is_refused_with_the_estimate(tmp_path, change, key):
    """The field report: batch_size=1e9 raised MemoryError deep inside; n_layer=1e8 allocated
    until the memory ran out. Refused before the model is built (or the run directory made)."""
    with pytest.raises(ConfigError, match=rf"^{key}: a training step would need about [\d.]+ "
                                          r"[kMGTP]?B \(parameters .*, activations .*\), but "):
        Trainer(tiny_config(tmp_path, **change))
    assert not (tmp_path / "run").exists()


def test_the_refusal_follows_the_memory_the_machine_has(tmp_path, monkeypatch):
    config, estimates = tiny_config(tmp_path), []

    def recorded(*args):
        estimates.append(training_bytes(*args)["total"])
        return training_bytes(*args)

    monkeypatch.setattr(trainer_module, "training_bytes", recorded)
    monkeypatch.setattr(trainer_module, "available_bytes", lambda: None)  # unknown: no check
    Trainer(config).close()
    need = estimates[-1]
    monkeypatch.setattr(trainer_module, "available_bytes", lambda: need - 1)
    with pytest.raises(ConfigError, match=rf"but {format_bytes(need - 1)} of memory are "):
        Trainer(config, overwrite=True)
    monkeypatch.setattr(trainer_module, "available_bytes", lambda: need + 1)
    Trainer(config, overwrite=True).close()
    monkeypatch.setattr(memory_module.Path, "read_text", lambda *a, **k: "no meminfo")
    assert available_bytes() is None
