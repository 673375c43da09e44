"""The modern recipe against nanoGPT's: what each change to the baby GPT buys at 2000 steps.

Every variant is the baby GPT (`configs/shakespeare_char.yaml`) or the modern recipe
(`configs/shakespeare_char_modern.yaml`) with a list of `--set`-style overrides, trained by
`bench_shakespeare.worker` — `nima train`'s code, a process per run — for the same 2000 steps
of 768 tokens. The ablation runs seed 1337 and estimates the loss at the end only (the
estimate draws its own batches, so it never changes training); the two recipes run seeds
1337–1339 with the loss every 250 steps, the curves the docs draw. Pin the process to one core
to compare the milliseconds per step fairly:

    taskset -c 1 env NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        python benchmarks/bench_shakespeare_modern.py

A finished run is kept under `runs/bench_shakespeare/modern/` with its config and overrides,
and reused while they are unchanged (`--fresh` trains everything again); writes
`benchmarks/results/shakespeare_modern.md` and `.json` (via a temporary file and a rename).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml
from bench_shakespeare import BABY, EVAL_EVERY, EVAL_ITERS, ROOT, STEPS, WORK, worker
from timing import machine, publish, race

from nima.serialization import atomic_write_text
from nima.training import Trainer, load_config

MODERN = ROOT / "configs" / "shakespeare_char_modern.yaml"
CACHE = WORK / "modern"
SEEDS = (1337, 1338, 1339)


@dataclass(frozen=True)
class Variant:
    """A config plus overrides; `change` says what differs from the variant `against`."""

    name: str
    change: str
    against: str | None
    config: Path = BABY
    overrides: tuple[str, ...] = ()


def on(base: Variant, name: str, change: str, *overrides: str) -> Variant:
    """`base` with more overrides (a later one wins), measured against it."""
    return Variant(name, change, base.name, base.config, base.overrides + overrides)


BASE = Variant("baby", "nanoGPT's baby GPT as shipped", None)
LR4 = on(BASE, "lr 4e-3", "peak learning rate 4e-3 (was 1e-3)", "optimizer.lr=4e-3")
ROPE = on(LR4, "+ rope", "RoPE instead of learned positions", "model.position=rope")
SWIGLU = on(ROPE, "+ swiglu", "SwiGLU FFN, hidden 341 (GELU's is 512)", "model.ffn=swiglu",
            "model.ffn_hidden=341")
RMS = on(SWIGLU, "+ rmsnorm", "RMSNorm instead of LayerNorm", "model.norm=rmsnorm")
FAST = on(ROPE, "+ rmsnorm, GELU kept", "RMSNorm instead of LayerNorm, the FFN kept GELU",
          "model.norm=rmsnorm")
NORM = on(LR4, "lr 4e-3 + rmsnorm", "RMSNorm instead of LayerNorm", "model.norm=rmsnorm")
BETA = on(LR4, "lr 4e-3 + beta2 0.95", "AdamW β2 0.95 (was 0.99)",
          "optimizer.betas=[0.9, 0.95]")
VARIANTS = (
    # each change alone on the baby GPT
    BASE,
    on(BASE, "rope", "RoPE instead of learned positions", "model.position=rope"),
    on(BASE, "swiglu", "SwiGLU FFN, hidden 341 (GELU's is 512)", "model.ffn=swiglu",
       "model.ffn_hidden=341"),
    on(BASE, "rmsnorm", "RMSNorm instead of LayerNorm", "model.norm=rmsnorm"),
    on(BASE, "beta2 0.95", "AdamW β2 0.95 (was 0.99)", "optimizer.betas=[0.9, 0.95]"),
    # the learning rate
    on(BASE, "lr 2e-3", "peak learning rate 2e-3 (was 1e-3)", "optimizer.lr=2e-3"),
    LR4,
    on(LR4, "lr 5e-3", "peak learning rate 5e-3 (was 4e-3)", "optimizer.lr=5e-3"),
    on(LR4, "lr 6e-3", "peak learning rate 6e-3", "optimizer.lr=6e-3"),
    # the architecture, one change on top of another at lr 4e-3
    ROPE,
    SWIGLU,
    RMS,
    on(RMS, "+ beta2 0.95", "AdamW β2 0.95 (was 0.99)", "optimizer.betas=[0.9, 0.95]"),
    # SwiGLU costs more time than the baby GPT's step has: RoPE without it, and fewer heads
    FAST,
    on(FAST, "rope, rms: 2 heads", "2 heads of 64 (was 4 of 32)", "model.n_head=2"),
    on(FAST, "rope, rms: beta2 0.95", "AdamW β2 0.95 (was 0.99)",
       "optimizer.betas=[0.9, 0.95]"),
    # the baby GPT's model at lr 4e-3: what else is free
    NORM,
    BETA,
    on(LR4, "lr 4e-3: warmup 200", "200 warmup steps (was 100)", "schedule.warmup=200"),
    on(LR4, "lr 4e-3: min_lr 4e-4", "cosine down to 4e-4, a tenth of the peak (was 1e-4)",
       "schedule.min_lr=4e-4"),
    on(LR4, "lr 4e-3: untied", "output head apart from the token embedding (+8,320 "
       "parameters)", "model.tie_weights=false"),
    on(LR4, "lr 4e-3: xavier", "Glorot-uniform init (was GPT-2's)", "model.init=xavier"),
    on(LR4, "lr 4e-3: no clipping", "no gradient clipping (was 1.0)", "training.grad_clip=null"),
    on(LR4, "lr 4e-3: 24 x 32", "batch 24 windows of 32 (was 12 of 64)",
       "training.batch_size=24", "model.block_size=32"),
    Variant("modern", "the shipped recipe: lr 4e-3 and Glorot init", "baby", config=MODERN),
)
RECIPES = ("baby", "modern")


def key(variant: Variant, curve: bool) -> str:
    """What a cached run must match: the config file's values (not its comments), the
    overrides, the eval cadence."""
    values = yaml.safe_load(variant.config.read_text(encoding="utf-8"))
    return hashlib.sha256(json.dumps([values, variant.overrides, curve]).encode()).hexdigest()


def run(variant: Variant, seed: int, fresh: bool) -> dict:
    """One training run of `variant`, from the cache when its config and overrides match."""
    curve = variant.name in RECIPES
    slug = "".join(c if c.isalnum() else "_" for c in variant.name)
    path = CACHE / f"{slug}_{seed}.json"
    want = key(variant, curve)
    if not fresh and path.exists():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached["key"] == want:
            return cached["run"]
    every = EVAL_EVERY if curve else STEPS
    result = worker("nima", seed, variant.config,
                    (*variant.overrides, f"training.eval_interval={every}",
                     f"training.eval_iters={EVAL_ITERS}", f"training.max_iters={STEPS}"),
                    tag=f"modern_{slug}")
    result["evals"] = {str(s): v for s, v in result["evals"].items()}
    CACHE.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": want, "run": result}) + "\n")
    return result


def raced_step_ms(variants: list[Variant], budget_s: float) -> dict[str, float]:
    """Milliseconds per training step of each variant, raced in this one process: a
    `Trainer.train_step` per distinct model and batch shape (the optimizer's numbers do not
    change the work), in alternating rounds, so load from elsewhere hits them all alike."""
    trainers: dict[str, Trainer] = {}
    shape_of: dict[str, str] = {}
    for v in variants:
        slug = "".join(c if c.isalnum() else "_" for c in v.name)
        config = load_config(v.config, [
            f"data.corpus={ROOT / 'data' / 'tinyshakespeare.txt'}", f"data.out_dir={WORK / 'data'}",
            f"training.run_dir={WORK / 'race' / slug}", *v.overrides])
        shape = json.dumps([config.to_dict()["model"], config.training.batch_size])
        if shape not in trainers:
            trainers[shape] = Trainer(config, overwrite=True)
        shape_of[v.name] = shape
    seconds = race({s: t.train_step for s, t in trainers.items()}, budget_s * len(trainers),
                   rounds=5)
    for trainer in trainers.values():
        trainer.close()
    return {name: 1e3 * seconds[shape] for name, shape in shape_of.items()}


def val(run: dict) -> float:
    return run["evals"][str(STEPS)][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="train again what is cached")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="runs per recipe")
    parser.add_argument("--race-s", type=float, default=6.0,
                        help="seconds of the step-time race per model and batch shape")
    args = parser.parse_args()
    variants = VARIANTS
    results: dict[str, list[dict]] = {}
    for v in variants:
        for seed in SEEDS[:args.seeds] if v.name in RECIPES else SEEDS[:1]:
            results.setdefault(v.name, []).append(run(v, seed, args.fresh))
            print(f"{v.name}, seed {seed}: val {val(results[v.name][-1]):.4f}, "
                  f"{results[v.name][-1]['step_ms']:.1f} ms/step", flush=True)

    raced = raced_step_ms(variants, args.race_s)
    publish("shakespeare_modern", report(variants, results, raced, SEEDS[:args.seeds]), {
        "variants": [{"name": v.name, "change": v.change, "against": v.against,
                      "config": str(v.config.relative_to(ROOT)), "overrides": list(v.overrides),
                      "raced_step_ms": raced[v.name], "runs": results[v.name]}
                     for v in variants]})


def report(variants: list[Variant], results: dict[str, list[dict]], raced: dict[str, float],
           seeds: tuple[int, ...]) -> list[str]:
    """The markdown: the ablation (seed 1337), the two recipes over `seeds`, their curves."""
    first = {name: runs[0] for name, runs in results.items()}
    lines = ["**The modern recipe against nanoGPT's: 2000 steps of 768 tokens**", "",
             f"Machine: {machine()}; one core (`taskset -c 1`), one thread. Loss estimated over "
             f"{EVAL_ITERS} batches of each split at step {STEPS}, seed 1337. Δ is against the "
             "variant in the *against* column. *ms per step* is the median of a race of "
             "`Trainer.train_step` between all the models and batch shapes in one process (the "
             "runs' own times are in the JSON).", "",
             "| variant | change | against | val loss @ 2000 | Δ val | ms per step | Δ ms |",
             "|---|---|---|---|---|---|---|"]
    for v in variants:
        r = first[v.name]
        d_val, d_ms = (f"{val(r) - val(first[v.against]):+.4f}",
                       f"{raced[v.name] - raced[v.against]:+.1f}") if v.against else ("", "")
        lines.append(f"| {v.name} | {v.change} | {v.against or ''} | {val(r):.4f} | {d_val} | "
                     f"{raced[v.name]:.1f} | {d_ms} |")
    lines += ["", f"The two recipes over seeds {list(seeds)}:", "",
              "| recipe | val loss @ 2000, mean ± sd | per seed | train loss @ 2000, mean | "
              "ms per step | in its runs, mean | run time (s), mean |",
              "|---|---|---|---|---|---|---|"]
    for name in RECIPES:
        runs = results[name]
        vals = [val(r) for r in runs]
        sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        lines.append(f"| {name} | {statistics.mean(vals):.4f} ± {sd:.4f} | "
                     f"{', '.join(f'{x:.4f}' for x in vals)} | "
                     f"{statistics.mean(r['evals'][str(STEPS)][0] for r in runs):.4f} | "
                     f"{raced[name]:.1f} | {statistics.mean(r['step_ms'] for r in runs):.1f} | "
                     f"{statistics.mean(r['total_s'] for r in runs):.0f} |")
    columns = [(name, r) for name in RECIPES for r in results[name]]
    lines += ["", f"Validation loss every {EVAL_EVERY} steps:", "",
              "| step | " + " | ".join(f"{n} {r['seed']}" for n, r in columns) + " |",
              "|---|" + "---|" * len(columns)]
    for step in range(0, STEPS + 1, EVAL_EVERY):
        lines.append(f"| {step} | " + " | ".join(
            f"{r['evals'][str(step)][1]:.4f}" for _, r in columns) + " |")
    return lines


if __name__ == "__main__":
    main()
