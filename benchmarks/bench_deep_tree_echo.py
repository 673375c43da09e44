"""The Deep Tree Echo experiment: which parts help where, against the plain GPT.

Six models, each trained with 3 seeds on 4 corpora for the same number of steps on the same
batches (all read as streams, `data.sampling: stream`, so the stateful ones carry state and all
see identical data), at equal parameter count (within 5%: the variants with an echo layer get a
narrower feed-forward, chosen with `nima.models.budget`):

| model | blocks 0-2 | block 3 |
|---|---|---|
| plain | content attention | content attention |
| tree | tree attention | content attention |
| tree + echo | tree attention | content attention + echo layer |
| tree + memory | tree attention | memory attention |
| tree + recursion | tree attention, applied twice with ACT | content attention |
| all | tree attention, twice with ACT | memory attention + echo layer |

Shape: 4 layers, 64 wide, 4 heads, context 64, tree chunk 4 (two levels), memory 256 entries
(four segments), 4 echo slots, two segments per backward (`tbptt: 2`, for every model: the same
tokens per step). Corpora: the synthetic hierarchical grammar (`synthetic`), nested brackets of
256 characters a line (pairs four times as far apart as the context), key–value recall with
every key defined 65–128 characters (one to two windows) before its query, and tiny
Shakespeare. Measured: validation loss (the first 8 segments of each of 8 validation streams,
read from a fresh state), the task metrics on the whole validation text read as one stream
(closing-bracket accuracy, also for pairs longer than the context; recall accuracy), training
tokens/s. One thread for numba and OpenBLAS (`nima.runtime.using`): the machine's two cores
are shared.

Run: `nice python benchmarks/bench_deep_tree_echo.py [--steps N] [--quick]`; writes
`benchmarks/results/deep_tree_echo.md` and `.json`, with the CPU and the CPU time it took.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from timing import machine_info, machine_lines, publish

from nima import runtime
from nima.data.dataset import TokenDataset, token_dtype
from nima.data.tokenizers import load_tokenizer
from nima.models import GPTConfig
from nima.models.budget import count_parameters
from nima.training import Config, Trainer
from nima.training.metrics import read_metrics
from nima.training.tasks import task_metrics

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "bench_deep_tree_echo"
SEEDS = (1, 2, 3)
BASE = dict(block_size=64, n_layer=4, n_head=4, n_embd=64, bias=False, dropout=0.0, tbptt=2)
TREE = dict(attention="tree", tree_layers=[0, 1, 2], tree_chunk=4)
ECHO = dict(echo_layers=[3], echo_slots=4)
MEMORY = dict(memory_layers=[3], memory_capacity=256)
RECURSION = dict(recursion_depth=2, act=True)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {}, "tree": TREE, "tree + echo": {**TREE, **ECHO},
    "tree + memory": {**TREE, **MEMORY}, "tree + recursion": {**TREE, **RECURSION},
    "all": {**TREE, **ECHO, **MEMORY, **RECURSION},
}
CORPORA: dict[str, dict[str, Any]] = {
    "hierarchical": {"corpus": "synthetic", "synthetic_sections": 600},
    "brackets": {"corpus": "brackets", "bracket_lines": 400, "bracket_length": 256},
    "recall": {"corpus": "recall", "recall_queries": 600},
    "shakespeare": {"corpus": str(ROOT / "data" / "tinyshakespeare.txt")},
}


def model_section(variant: str) -> dict[str, Any]:
    """The variant's model section, its FFN narrowed until its parameters are within the
    plain GPT's +-5% (closest match; the embedding, the same for all, does not matter)."""
    vocab = 65
    base = GPTConfig(vocab_size=vocab, **BASE)
    target = count_parameters(base)["total"]
    model = {**BASE, **VARIANTS[variant]}
    config = GPTConfig(vocab_size=vocab, **{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in model.items()})
    if count_parameters(config)["total"] > 1.05 * target:
        hidden = min(range(8, 4 * BASE["n_embd"] + 1), key=lambda h: abs(count_parameters(
            dataclasses.replace(config, ffn_hidden=h))["total"] - target))
        model["ffn_hidden"] = hidden
    return model


def run(corpus: str, variant: str, seed: int, steps: int, eval_every: int) -> dict[str, Any]:
    """Train one model; its curve, final losses, task metrics, speed and parameters."""
    run_dir = WORK / corpus / variant.replace(" + ", "_") / f"seed{seed}"
    data_dir = WORK / "data" / (corpus if corpus == "shakespeare" else f"{corpus}_{seed}")
    raw = {
        "model": {"vocab_size": None, **model_section(variant)},
        "data": {**CORPORA[corpus], "out_dir": str(data_dir), "sampling": "stream"},
        "optimizer": {"lr": 3e-3, "betas": [0.9, 0.99], "weight_decay": 0.1},
        "schedule": {"warmup": min(20, steps // 4), "min_lr": 3e-4},
        "training": {"batch_size": 8, "max_iters": steps, "eval_interval": eval_every,
                     "eval_iters": 8, "log_interval": 10, "checkpoint_interval": steps,
                     "keep_last": 1, "seed": seed, "run_dir": str(run_dir)},
        "sampling": {"max_new_tokens": 0},
    }
    trainer = Trainer(Config.from_dict(raw), overwrite=True, stream=io.StringIO())
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    evals = {r["step"]: r["val_loss"] for r in records if r["kind"] == "eval"}
    tokenizer = load_tokenizer(run_dir / "tokenizer.txt")
    val = TokenDataset(data_dir / "val.bin", token_dtype(tokenizer.vocab_size))
    text = tokenizer.decode(np.asarray(val.data).tolist())
    metrics = task_metrics(trainer.model, tokenizer, text, trainer.config.data.corpus)
    tokens = sum(r["tokens_per_s"] * r["elapsed_s"] for r in train)
    return {"corpus": corpus, "variant": variant, "seed": seed,
            "parameters": trainer.model.num_parameters(), "val_loss": evals[steps],
            "curve": evals, "metrics": metrics, "seconds": seconds,
            "tokens_per_s": tokens / sum(r["elapsed_s"] for r in train)}


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v == v]  # NaN: no qualifying item
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def tables(results: list[dict[str, Any]]) -> list[str]:
    """Per corpus: each variant's validation loss, task metrics and speed (mean ± sd)."""
    lines = []
    for corpus in CORPORA:
        rows = [r for r in results if r["corpus"] == corpus]
        if not rows:
            continue
        keys = sorted({k for r in rows for k, v in r["metrics"].items()
                       if isinstance(v, float)})
        lines += [f"### {corpus}", "", "| model | parameters | val loss | " + "".join(
            f"{k.replace('_', ' ')} | " for k in keys) + "tokens/s |",
            "|---|---|---|" + "---|" * len(keys) + "---|"]
        for variant in VARIANTS:
            group = [r for r in rows if r["variant"] == variant]
            if not group:
                continue
            cells = [mean_sd([r["metrics"][k] for r in group]) for k in keys]
            speed = statistics.mean(r["tokens_per_s"] for r in group)
            lines.append(f"| {variant} | {group[0]['parameters']:,} | "
                         f"{mean_sd([r['val_loss'] for r in group])} | "
                         + "".join(f"{c} | " for c in cells) + f"{speed:,.0f} |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="training steps per run")
    parser.add_argument("--quick", action="store_true",
                        help="one seed, 20 steps, two corpora: a smoke test (not published)")
    args = parser.parse_args()
    steps, seeds, corpora = args.steps, SEEDS, list(CORPORA)
    if args.quick:
        steps, seeds, corpora = 20, SEEDS[:1], ["brackets", "recall"]
    eval_every = max(steps // 5, 1)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    machine = machine_info()
    results = []
    with runtime.using(numba_threads=1, blas_threads=1):
        for corpus in corpora:
            for variant in VARIANTS:
                for seed in seeds:
                    result = run(corpus, variant, seed, steps, eval_every)
                    results.append(result)
                    print(f"{corpus:>12} {variant:>16} seed {seed}: val "
                          f"{result['val_loss']:.4f} {result['metrics']} "
                          f"{result['tokens_per_s']:,.0f} tok/s, {result['seconds']:.0f} s",
                          file=sys.stderr, flush=True)
    cpu_s, wall_s = time.process_time() - cpu_start, time.perf_counter() - wall_start
    load = os.getloadavg()[0]
    params = {v: sorted({r["parameters"] for r in results if r["variant"] == v})
              for v in VARIANTS}
    plain = min(params["plain"])
    spread = max(abs(p - plain) / plain for ps in params.values() for p in ps)
    if args.quick:
        print("\n".join(tables(results)))
        return
    lines = [
        f"Deep Tree Echo variants vs the plain GPT: {len(seeds)} seeds, {steps} steps each "
        f"(batch 8 streams x 2 segments of 64 tokens a step), mean ± sd over the seeds. "
        f"Parameters within {spread:.1%} of the plain GPT's on each corpus. The whole experiment "
        f"took {cpu_s / 60:.1f} min of CPU ({wall_s / 60:.1f} min wall, one thread, on two cores "
        f"shared with other work).", "", *tables(results), *machine_lines(machine, load)]
    publish("deep_tree_echo", lines, {
        "steps": steps, "seeds": list(seeds), "variants": VARIANTS, "cpu_minutes": cpu_s / 60,
        "wall_minutes": wall_s / 60, "parameter_spread": spread, "machine": machine,
        "load_after": load, "results": results})


if __name__ == "__main__":
    main()
