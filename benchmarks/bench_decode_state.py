"""Decoding cost per token with the Deep Tree Echo parts, against the plain GPT, same run.

Model: the baby GPT's shape (`GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4,
n_embd=128, bias=False)`), float32, random weights, and the same shape with

* `echo + memory` — block 3's attention a memory layer (a bank of 256 entries, every entry
  read) and an echo layer of 4 slots in block 3: the state that carries context past the window;
* `tree` — tree attention (chunk 8) in blocks 0-2;
* `all` — both, and blocks 0-2 applied twice with ACT.

Each contestant samples after a one-token prompt (`generate(..., do_sample=True)`), twice:

* **one window**: 63 tokens, every step one token through the caches — the cost of a step;
* **four windows**: 256 tokens — the plain GPT slides its window (keeping the last 32 tokens,
  re-fed in one forward), the models with echo and memory go on segment by segment with their
  state: the cost of decoding as each model decodes.

The cost per token is the median time of a generation divided by its tokens; contestants
alternate in blocks (`timing.race`), so load from elsewhere hits every one. One numba and one
OpenBLAS thread (`nima.runtime.using`): small work on the calling thread, on a machine whose two
cores are shared. The goal: echo + memory at most 1.5x the plain GPT's cost per token.

Run: `python benchmarks/bench_decode_state.py [--quick]`; writes
`benchmarks/results/decode_state.md` and `.json`, with the CPU (`lscpu`).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from timing import machine_info, machine_lines, publish, race

import nima
from nima import runtime
from nima.generation import generate
from nima.models import GPT, GPTConfig

BASE = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
STATE = dict(memory_layers=(3,), memory_capacity=256, echo_layers=(3,), echo_slots=4)
TREE = dict(attention="tree", tree_layers=(0, 1, 2), tree_chunk=8)
MODELS = {"plain": {}, "echo + memory": STATE, "tree": TREE,
          "all": {**TREE, **STATE, "recursion_depth": 2, "act": True}}
SPANS = {"one window": 63, "four windows": 256}
PROMPT = np.zeros((1, 1), dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short time budget")
    args = parser.parse_args()
    budget, rounds = (4.0, 2) if args.quick else (40.0, 5)
    machine = machine_info()
    contestants = {}
    for name, parts in MODELS.items():
        nima.manual_seed(0)
        model = GPT(GPTConfig(**BASE, **parts)).eval()
        for span, n in SPANS.items():
            contestants[name, span] = lambda model=model, n=n: generate(
                model, PROMPT, n, do_sample=True, seed=0, stats=False)
    with runtime.using(numba_threads=1, blas_threads=1):
        seconds = race(contestants, budget_s=budget, rounds=rounds)
    ms = {span: {name: seconds[name, span] / n * 1e3 for name in MODELS}
          for span, n in SPANS.items()}
    load = os.getloadavg()[0]
    lines = ["Decoding after a one-token prompt, sampled, float32, baby-GPT shape, one thread; "
             "median of alternating blocks (two cores, shared with other work).", "",
             "| model | " + " | ".join(f"ms per token, {span} | vs plain" for span in SPANS)
             + " |", "|---|" + "---|---|" * len(SPANS)]
    lines += [f"| {name} | " + " | ".join(
        f"{ms[span][name]:.3f} | {ms[span][name] / ms[span]['plain']:.2f}x" for span in SPANS)
        + " |" for name in MODELS]
    ratios = {span: ms[span]["echo + memory"] / ms[span]["plain"] for span in SPANS}
    met = all(r <= 1.5 for r in ratios.values())
    lines += ["", "Echo + memory per token, relative to the plain GPT: " + ", ".join(
        f"{r:.2f}x ({span})" for span, r in ratios.items()) + f"; goal at most 1.5x: "
        f"{'met' if met else 'NOT met'}.", "", *machine_lines(machine, load)]
    publish("decode_state", lines, {"ms_per_token": ms, "ratio_echo_memory": ratios,
                                    "machine": machine, "load_after": load, "tokens": SPANS})


if __name__ == "__main__":
    main()
