"""The Shakespeare result: nanoGPT's CPU baby GPT trained for 2000 steps, by Nima and by PyTorch.

Nima runs `configs/shakespeare_char.yaml` through `nima.training.Trainer` (what the README's
first command does). PyTorch, when importable, runs the same recipe written the nanoGPT way —
`nn.Module`s, GPT-2 init, exact GELU, `F.scaled_dot_product_attention`, AdamW over two groups
(weight decay on every matrix, embeddings included, as nanoGPT's `configure_optimizers` does),
warmup + cosine, clipping at 1.0 — on the same `train.bin`/`val.bin`, with its own seeds and
batches. Both estimate the loss every 250 steps over 200 batches of each split.

The two runs share no random numbers, so their curves differ by seed noise as well as by
implementation; `--seeds N` repeats each run with N seeds to show how large that noise is. Every
run is a process of its own: numba's and PyTorch's thread pools in one process fight over the
two cores (PyTorch ran 6x slower after a Nima run in the same process).

Run: `python benchmarks/bench_shakespeare.py [--seeds N] [--skip-torch] [--skip-nima]`; writes
`benchmarks/results/shakespeare.md` and `.json` (via a temporary file and a rename).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from timing import machine, publish

from nima.training import Trainer, load_config
from nima.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "bench_shakespeare"
BABY = ROOT / "configs" / "shakespeare_char.yaml"
EVAL_EVERY, EVAL_ITERS, STEPS = 250, 200, 2000


def nima_run(seed: int, config_path: Path = BABY, overrides: Sequence[str] = (),
             tag: str = "nima") -> dict:
    """Train with a shipped config (the baby GPT's unless told), `overrides` (`--set`'s
    `section.key=value`) applied on top; the eval curve and the training time per step."""
    config = load_config(config_path, [
        f"data.corpus={ROOT / 'data' / 'tinyshakespeare.txt'}",
        f"data.out_dir={WORK / 'data'}", f"training.run_dir={WORK / f'{tag}_{seed}'}",
        f"training.seed={seed}", "sampling.max_new_tokens=0", *overrides])
    trainer = Trainer(config, overwrite=True)
    start = time.perf_counter()
    trainer.fit()
    total = time.perf_counter() - start
    records = read_metrics(trainer.run_dir / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    step_ms = 1e3 * sum(r["elapsed_s"] for r in train) / STEPS
    evals = {r["step"]: (r["train_loss"], r["val_loss"]) for r in records if r["kind"] == "eval"}
    return {"seed": seed, "evals": evals, "step_ms": step_ms, "total_s": total}


def torch_run(seed: int) -> dict | None:  # pragma: no cover - only when torch is installed
    """nanoGPT's recipe in PyTorch on the data Nima prepared, or None without torch."""
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn
    except ImportError:
        return None
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    meta = json.loads((WORK / "data" / "meta.json").read_text())
    data = {s: torch.from_numpy(np.fromfile(WORK / "data" / f"{s}.bin", dtype=meta["dtype"])
                                .astype(np.int64)) for s in ("train", "val")}
    V, T, C, L, H, B = meta["vocab_size"], 64, 128, 4, 4, 12

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
            self.c_attn = nn.Linear(C, 3 * C, bias=False)
            self.attn_proj = nn.Linear(C, C, bias=False)
            self.c_fc = nn.Linear(C, 4 * C, bias=False)
            self.mlp_proj = nn.Linear(4 * C, C, bias=False)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (z.view(b, t, H, C // H).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C, bias=False)
            self.head = nn.Linear(C, V, bias=False)
            self.head.weight = self.wte.weight
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    def batch(split: str):
        d = data[split]
        i = torch.randint(len(d) - T, (B,))
        return torch.stack([d[j:j + T] for j in i]), torch.stack([d[j + 1:j + 1 + T] for j in i])

    def lr_at(it: int) -> float:
        if it < 100:
            return 1e-3 * (it + 1) / 101
        ratio = (it - 100) / (STEPS - 100)
        return 1e-4 + 0.5 * (1 + math.cos(math.pi * min(ratio, 1.0))) * (1e-3 - 1e-4)

    model = GPT()
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    evals, step_time = {}, 0.0
    for it in range(STEPS + 1):
        if it % EVAL_EVERY == 0:
            model.eval()
            with torch.no_grad():
                evals[it] = tuple(
                    float(np.mean([model(*batch(s)).item() for _ in range(EVAL_ITERS)]))
                    for s in ("train", "val"))
            model.train()
        if it == STEPS:
            break
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        loss = model(*batch("train"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step_time += time.perf_counter() - start
    return {"seed": seed, "evals": evals, "step_ms": 1e3 * step_time / STEPS}


def worker(name: str, seed: int, config_path: Path = BABY, overrides: Sequence[str] = (),
           tag: str = "nima") -> dict | None:
    """One run in a fresh process; its result comes back as the last line of stdout. A Nima
    run trains `config_path` with `overrides` into the run directory `tag`_`seed`."""
    command = [sys.executable, __file__, "--worker", name, str(seed), "--config",
               str(config_path), "--tag", tag, *(f"--set={o}" for o in overrides)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result is not None:
        result["evals"] = {int(k): tuple(v) for k, v in result["evals"].items()}
    return result


def summary(runs: list[dict]) -> tuple[float, float]:
    vals = [r["evals"][STEPS][1] for r in runs]
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="runs per implementation")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-nima", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=BABY, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="nima", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # a child process: one run, printed as JSON
        name, seed = args.worker[0], int(args.worker[1])
        run = nima_run(seed, args.config, args.set, args.tag) if name == "nima" \
            else torch_run(seed)
        print(json.dumps(run))
        return
    seeds = [1337 + i for i in range(args.seeds)]
    results: dict[str, list[dict]] = {"nima": [], "torch": []}
    for seed in seeds:
        if not args.skip_nima:
            results["nima"].append(worker("nima", seed))
            print("nima", seed, results["nima"][-1]["evals"][STEPS])
        if not args.skip_torch:
            if not (WORK / "data" / "meta.json").exists():
                raise SystemExit("run Nima once first: it prepares the data both runs use")
            run = worker("torch", seed)
            if run is not None:
                results["torch"].append(run)
                print("torch", seed, run["evals"][STEPS])

    lines = ["**The Shakespeare result: baby GPT, 2000 steps**", "",
             f"Machine: {machine()}; seeds {seeds}. Loss estimated over {EVAL_ITERS} "
             f"batches of each split every {EVAL_EVERY} steps.", "",
             "| run | val loss @ 2000 | train loss @ 2000 | ms per step (training only) |",
             "|---|---|---|---|"]
    for name, runs in results.items():
        for r in runs:
            tr, va = r["evals"][STEPS]
            lines.append(f"| {name}, seed {r['seed']} | {va:.4f} | {tr:.4f} | {r['step_ms']:.1f} |")
    for name, runs in results.items():
        if len(runs) > 1:
            mean, sd = summary(runs)
            lines.append(f"| {name}, mean ± sd | {mean:.4f} ± {sd:.4f} | | |")
    lines += ["", "Validation loss every 250 steps:", "",
              "| step | " + " | ".join(f"{n} {r['seed']}" for n, rs in results.items() for r in rs)
              + " |", "|---|" + "---|" * sum(len(rs) for rs in results.values())]
    for step in range(0, STEPS + 1, EVAL_EVERY):
        lines.append(f"| {step} | " + " | ".join(f"{r['evals'][step][1]:.4f}"
                                                 for rs in results.values() for r in rs) + " |")
    publish("shakespeare", lines, {
        k: [{**r, "evals": {str(s): v for s, v in r["evals"].items()}} for r in rs]
        for k, rs in results.items()})


if __name__ == "__main__":
    main()
