"""Tiny training configurations shared by the trainer, CLI and REPL tests: seconds-long runs on
the synthetic corpus, everything written under a pytest `tmp_path`."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nima.training import Config


def tiny_config(tmp_path: Path, **sections: dict) -> Config:
    """A 1-layer, 16-wide GPT on 40 sections of the synthetic corpus, 40 steps; `sections`
    override keys section by section (`training={"max_iters": 10}`)."""
    raw = {
        "model": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16, "bias": False},
        "data": {"corpus": "synthetic", "synthetic_sections": 40,
                 "out_dir": str(tmp_path / "data")},
        "optimizer": {"lr": 3e-3, "betas": [0.9, 0.99]},
        "schedule": {"warmup": 5, "min_lr": 3e-4},
        "training": {"batch_size": 8, "max_iters": 40, "eval_interval": 10, "eval_iters": 3,
                     "log_interval": 5, "checkpoint_interval": 10, "keep_last": 2,
                     "run_dir": str(tmp_path / "run")},
        "sampling": {"strategy": "sample", "max_new_tokens": 20},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return Config.from_dict(raw)


def on_stop_signal(signum: int, frame: object) -> None:
    """A handler of the test's own for the stop signals: what the trainer must restore."""
    raise AssertionError(f"signal {signum} reached the test's own handler")


@contextlib.contextmanager
def own_stop_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP handled by `on_stop_signal` inside the block, whatever the
    process inherited (a background job starts with SIGINT ignored), then as they were."""
    previous = {s: signal.signal(s, on_stop_signal)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupt_at(trainer: Any, step: int) -> None:
    """A real Ctrl-C (SIGINT) while `trainer` computes step `step`: it finishes, saves and
    stops."""
    original = trainer.train_step

    def train_step() -> float:
        if trainer.step + 1 == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original()

    trainer.train_step = train_step
