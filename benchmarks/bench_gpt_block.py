"""One GPT block, forward + backward, at nanoGPT's CPU "baby GPT" size.

Shape: batch 12 x 64 tokens, 4 heads, 128 dims (the `baby` preset: pre-norm, GELU FFN of 512,
no biases), float32. A step is `y = block(x)`, then `y.backward(g)` with a fixed random `g`.
Reported: the median of each phase (forward, backward, the step) and the forward split by
sublayer (`ln_1`, attention, `ln_2`, FFN, each timed on its own input), plus the number of
graph nodes one forward records — at this size Nima's per-op overhead is a visible share.

If PyTorch is importable, the same block (same weights, `F.scaled_dot_product_attention`,
tanh-GELU) is built in PyTorch, checked to agree, and timed in the same run, in alternating
rounds so that load from elsewhere hits both. PyTorch is optional; nothing installs it.

Run: `python benchmarks/bench_gpt_block.py [--quick]`; writes `benchmarks/results/gpt_block.md`
and `gpt_block.json` (via a temporary file and a rename).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from timing import publish

import nima
from nima.autograd import Context
from nima.models import GPT, GPTConfig
from nima.models.gpt import Block

B, T = 12, 64
CONFIG = GPTConfig.preset("baby")


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds of `repeats` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def count_nodes(y: nima.Tensor) -> int:
    """Recorded ops below `y` (each `Context` once)."""
    seen, stack = set(), [y._ctx]
    while stack:
        ctx = stack.pop()
        if ctx is None or id(ctx) in seen:
            continue
        seen.add(id(ctx))
        stack.extend(p for p in ctx.parents if isinstance(p, Context))
    return len(seen)


def nima_block() -> tuple[Block, nima.Tensor, np.ndarray]:
    nima.manual_seed(0)
    block = GPT(CONFIG).blocks[0]  # with GPT-2's init
    x = nima.randn(B, T, CONFIG.n_embd, requires_grad=True)
    g = np.random.default_rng(1).standard_normal((B, T, CONFIG.n_embd)).astype(np.float32)
    return block, x, g


def nima_rounds(rounds: int, repeats: int) -> dict[str, list[float]]:
    block, x, g = nima_block()
    phases: dict[str, list[float]] = {k: [] for k in ("forward", "backward", "step", "ln_1",
                                                      "attention", "ln_2", "ffn")}

    def step() -> None:
        block.zero_grad()
        t0 = time.perf_counter()
        y = block(x)
        t1 = time.perf_counter()
        y.backward(g)
        t2 = time.perf_counter()
        phases["forward"].append((t1 - t0) * 1e3)
        phases["backward"].append((t2 - t1) * 1e3)
        phases["step"].append((t2 - t0) * 1e3)

    h1 = block.ln_1(x)
    a = x + block.attn(h1)
    h2 = block.ln_2(a)
    sublayers = {"ln_1": lambda: block.ln_1(x), "attention": lambda: block.attn(h1),
                 "ln_2": lambda: block.ln_2(a), "ffn": lambda: block.ffn(h2)}
    for _ in range(rounds):
        step()  # untimed warm-up of the round
        for name in ("forward", "backward", "step"):
            phases[name].pop()
        for _ in range(repeats):
            step()
        for name, fn in sublayers.items():
            phases[name] += timed(fn, repeats)
    return phases


def torch_rounds(rounds: int, repeats: int) -> dict[str, list[float]] | None:
    """The same block in PyTorch, if it is installed; None otherwise."""
    try:
        import torch
        import torch.nn.functional as tF
    except ImportError:
        return None
    block, x, g = nima_block()
    p = {k: torch.tensor(v.copy()) for k, v in block.state_dict().items()}
    for t in p.values():
        t.requires_grad_(True)
    C, nh = CONFIG.n_embd, CONFIG.n_head
    tx = torch.tensor(x.data.copy(), requires_grad=True)
    tg = torch.tensor(g)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        h = tF.layer_norm(inp, (C,), p["ln_1.weight"], None, 1e-5)
        q, k, v = (h @ p["attn.qkv.weight"].T).split(C, dim=2)
        q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v))
        y = tF.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C) @ p["attn.proj.weight"].T
        inp = inp + y
        h = tF.layer_norm(inp, (C,), p["ln_2.weight"], None, 1e-5)
        h = tF.gelu(h @ p["ffn.fc.weight"].T, approximate="tanh") @ p["ffn.proj.weight"].T
        return inp + h

    with nima.no_grad():
        expected = block(x).data
    got = forward(tx).detach().numpy()
    if not np.allclose(got, expected, atol=1e-4, rtol=1e-3):
        raise AssertionError(f"PyTorch and Nima blocks disagree: max |diff| "
                             f"{np.abs(got - expected).max():.2e}")
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "step": []}
    for _ in range(rounds):
        for i in range(repeats + 1):
            for t in (*p.values(), tx):
                t.grad = None
            t0 = time.perf_counter()
            y = forward(tx)
            t1 = time.perf_counter()
            y.backward(tg)
            t2 = time.perf_counter()
            if i:  # the first call of a round is a warm-up
                phases["forward"].append((t1 - t0) * 1e3)
                phases["backward"].append((t2 - t1) * 1e3)
                phases["step"].append((t2 - t0) * 1e3)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and repeats")
    args = parser.parse_args()
    rounds, repeats = (2, 5) if args.quick else (5, 20)
    ours = nima_rounds(rounds, repeats)
    theirs = torch_rounds(rounds, repeats)
    block, x, _ = nima_block()
    nodes = count_nodes(block(x))
    med = {k: statistics.median(v) for k, v in ours.items()}
    lines = [
        f"One GPT block (`baby` preset: d=128, 4 heads, FFN 512, pre-norm, no biases), "
        f"batch {B} x {T} tokens, float32; forward + backward; median of {rounds} rounds x "
        f"{repeats} steps. One forward records {nodes} graph nodes.",
        "",
        "| phase | Nima ms |" + (" PyTorch ms |" if theirs else ""),
        "|---|---|" + ("---|" if theirs else ""),
    ]
    for name in ("forward", "backward", "step"):
        row = f"| {name} | {med[name]:.2f} |"
        if theirs:
            row += f" {statistics.median(theirs[name]):.2f} |"
        lines.append(row)
    lines += ["", "Forward by sublayer (each timed alone, with grad recording):", "",
              "| sublayer | ms | share of their sum |", "|---|---|---|"]
    total = sum(med[k] for k in ("ln_1", "attention", "ln_2", "ffn"))
    for name in ("ln_1", "attention", "ln_2", "ffn"):
        lines.append(f"| {name} | {med[name]:.2f} | {med[name] / total:.0%} |")
    if theirs is None:
        lines += ["", "PyTorch is not installed here, so there is no race in this run."]
    else:
        ratio = med["step"] / statistics.median(theirs["step"])
        lines += ["", f"Nima / PyTorch, forward + backward: {ratio:.2f}x."]
    publish("gpt_block", lines, {
        "shape": {"B": B, "T": T, "n_embd": CONFIG.n_embd, "n_head": CONFIG.n_head},
        "rounds": rounds, "repeats": repeats, "graph_nodes": nodes, "nima_ms": med,
        "torch_ms": None if theirs is None else
        {k: statistics.median(v) for k, v in theirs.items()}})




if __name__ == "__main__":
    main()
