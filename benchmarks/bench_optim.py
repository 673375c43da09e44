"""AdamW's step over the baby GPT's parameters: the fused numba kernel against the NumPy path.

Model: `GPTConfig.preset("baby", vocab_size=65)` (4 layers x 128 dims, 0.8M parameters in 27
tensors), AdamW with nanoGPT's groups (weight decay 0.1 on the matrices), a fixed random
gradient on every parameter. Timed: `opt.step()` alone, `fused=False` (the NumPy reference:
about ten whole-array passes per parameter) against `fused=True` (one pass per parameter),
in alternating blocks (`timing.race`).

Run: `python benchmarks/bench_optim.py [--quick]`; writes `benchmarks/results/optim.md`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from timing import machine, publish, race

import nima
from nima.models import GPT, GPTConfig
from nima.optim import AdamW
from nima.optim.adam import param_groups_for_decay

CONFIG = GPTConfig.preset("baby", vocab_size=65)


def make_step(fused: bool) -> tuple[Callable[[], None], int, int]:
    """`opt.step` over a fresh baby GPT with fixed gradients; also (#tensors, #values)."""
    nima.manual_seed(0)
    model = GPT(CONFIG)
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng(0)
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(p.dtype) * np.float32(1e-2)
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-3, betas=(0.9, 0.99), fused=fused)
    return opt.step, len(params), sum(p.size for p in params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller time budget")
    args = parser.parse_args()
    budget, rounds = (2.0, 2) if args.quick else (12.0, 6)

    unfused, n_tensors, n_values = make_step(fused=False)
    fused, _, _ = make_step(fused=True)
    med = race({"unfused (NumPy)": unfused, "fused (numba)": fused}, budget, rounds)
    t_ref, t_fused = med["unfused (NumPy)"] * 1e3, med["fused (numba)"] * 1e3
    lines = [
        f"**AdamW step, baby GPT** ({n_tensors} tensors, {n_values:,} values, float32)",
        "",
        f"Machine: {machine()} (at the end); medians over {rounds} alternating rounds.",
        "",
        "| path | ms per step | ratio |",
        "|---|---|---|",
        f"| unfused (NumPy reference) | {t_ref:.3f} | 1.00x |",
        f"| fused (numba kernel) | {t_fused:.3f} | {t_fused / t_ref:.2f}x "
        f"({t_ref / t_fused:.1f}x faster) |",
    ]
    publish("optim", lines)


if __name__ == "__main__":
    main()
