"""`configs/shakespeare_char_modern.yaml`: the baby GPT's budget, and it trains."""

from __future__ import annotations

import math
from pathlib import Path

from nima.models import GPT
from nima.training import Trainer, load_config
from nima.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
BABY = ROOT / "configs" / "shakespeare_char.yaml"
MODERN = ROOT / "configs" / "shakespeare_char_modern.yaml"


def parameters(path: Path) -> int:
    return GPT(load_config(path).model.to_gpt_config(vocab_size=65)).num_parameters()


def test_the_modern_recipe_keeps_the_baby_gpts_parameters_and_tokens():
    baby, modern = load_config(BABY), load_config(MODERN)
    assert abs(parameters(MODERN) / parameters(BABY) - 1) <= 0.05
    tokens = [c.training.batch_size * c.model.block_size * c.training.max_iters
              for c in (baby, modern)]
    assert tokens[0] == tokens[1] == 768 * 2000
    assert modern.schedule.total is None  # the cosine follows max_iters, as the baby's does


def test_the_modern_recipe_trains_a_few_steps(tmp_path):
    config = load_config(MODERN, [
        f"data.out_dir={tmp_path / 'data'}", f"training.run_dir={tmp_path / 'run'}",
        "training.max_iters=30", "training.eval_interval=15", "training.eval_iters=4",
        "training.log_interval=5", "training.checkpoint_interval=30", "schedule.warmup=5",
        "sampling.max_new_tokens=0", "runtime.retain_memory=false"])
    Trainer(config).fit()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train = [r["loss"] for r in records if r["kind"] == "train"]
    val = [r["val_loss"] for r in records if r["kind"] == "eval"]
    assert all(math.isfinite(x) for x in train + val)
    assert len(val) == 3 and val[0] > val[1] > val[2]
    assert train[-1] < train[0]
