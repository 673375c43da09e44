"""Generating 200 tokens with nanoGPT's Shakespeare baby GPT: KV-cached vs uncached, and beams.

Model: `GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)`,
float32, random weights (speed does not depend on training), a one-token prompt, 200 new tokens
sampled at temperature 1 (nanoGPT's `generate` defaults). Contestants:

* `nima cached` — `nima.generation.generate(..., do_sample=True)`: the KV cache through
  `GPT.forward` (the one forward training uses), the window sliding to its last 32 tokens when
  full; with the numba kernels (the default backend) and with the NumPy references;
* `nima uncached` — nanoGPT's loop written with Nima: crop to the last 64 tokens, a full
  forward, softmax, sample; every step;
* `torch uncached` — the same loop in PyTorch (nanoGPT's `generate`), with Nima's weights,
  when `import torch` works (it is optional; nothing installs it); with PyTorch's default
  threads, and with one thread (`torch.set_num_threads(1)`, restored after), as Nima's cached
  decoding runs its small kernels on the calling thread;
* `nima beam x4` — beam search with 4 beams, 200 tokens: its time and tokens/s.

The target: cached generation in at most 0.5x the time of PyTorch's uncached loop.
Contestants alternate in blocks (`timing.race`), so load from elsewhere hits all of them.

Run: `python benchmarks/bench_generate.py [--quick]`; writes `benchmarks/results/generate.md`
and `generate.json` (via a temporary file and a rename).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from timing import machine, publish, race

import nima
from nima.generation import generate, sample_tokens, softmax
from nima.models import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
NEW_TOKENS = 200
PROMPT = np.zeros((1, 1), dtype=np.int64)


def numpy_kernels(run: Callable[[], object]) -> Callable[[], object]:
    """`run` with the NumPy references instead of the numba kernels."""
    def with_numpy() -> object:
        with nima.runtime.using(backend="numpy"):
            return run()
    return with_numpy


def nima_uncached(model: GPT) -> Callable[[], np.ndarray]:
    """nanoGPT's `generate` loop in Nima: the cropped window re-run in full every step."""
    rng = np.random.default_rng(0)

    def run() -> np.ndarray:
        idx = PROMPT
        with nima.no_grad():
            for _ in range(NEW_TOKENS):
                logits, _ = model(idx[:, -CONFIG.block_size:])  # (1, t, V)
                token = sample_tokens(softmax(logits.data[:, -1, :]), rng)
                idx = np.concatenate([idx, token[:, None]], axis=1)
        return idx

    return run


def torch_uncached(model: GPT) -> Callable[[], object] | None:  # pragma: no cover - optional
    """nanoGPT's `generate` in PyTorch with Nima's weights, or None without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    c = CONFIG
    p = {k: torch.from_numpy(np.array(v.data)) for k, v in model.named_parameters()}

    def forward(idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        x = p["wte.weight"][idx] + p["wpe.weight"][:T]
        for i in range(c.n_layer):
            pre = f"blocks.{i}."
            h = F.layer_norm(x, (c.n_embd,), p[pre + "ln_1.weight"])
            q, k, v = (h @ p[pre + "attn.qkv.weight"].T).split(c.n_embd, dim=2)
            q, k, v = (t.view(B, T, c.n_head, -1).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + a.transpose(1, 2).reshape(B, T, c.n_embd) @ p[pre + "attn.proj.weight"].T
            h = F.layer_norm(x, (c.n_embd,), p[pre + "ln_2.weight"])
            h = F.gelu(h @ p[pre + "ffn.fc.weight"].T, approximate="tanh")
            x = x + h @ p[pre + "ffn.proj.weight"].T
        x = F.layer_norm(x, (c.n_embd,), p["ln_f.weight"])
        return x @ p["wte.weight"].T  # (B, T, V)

    torch.manual_seed(0)

    @torch.no_grad()
    def run() -> torch.Tensor:
        idx = torch.from_numpy(PROMPT)
        for _ in range(NEW_TOKENS):
            logits = forward(idx[:, -c.block_size:])[:, -1, :]
            token = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, token), dim=1)
        return idx

    return run


def one_torch_thread(run: Callable[[], object]) -> Callable[[], object]:  # pragma: no cover
    """`run` with PyTorch's intra-op threads set to one, and set back after."""
    import torch

    def single() -> object:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run()
        finally:
            torch.set_num_threads(threads)
    return single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short time budget")
    args = parser.parse_args()
    budget, rounds = (3.0, 2) if args.quick else (30.0, 5)

    nima.manual_seed(0)
    model = GPT(CONFIG).eval()
    contestants: dict[str, Callable[[], object]] = {
        "nima cached (numba kernels)": lambda: generate(
            model, PROMPT, NEW_TOKENS, do_sample=True, seed=0, stats=False),
        "nima cached (numpy kernels)": numpy_kernels(lambda: generate(
            model, PROMPT, NEW_TOKENS, do_sample=True, seed=0, stats=False)),
        "nima uncached": nima_uncached(model),
    }
    torch_run = None
    try:
        torch_run = torch_uncached(model)
    except Exception as exc:  # a torch mismatch should not hide Nima's numbers
        print(f"torch comparison skipped: {exc}")
    if torch_run is not None:
        contestants["torch uncached"] = torch_run
        contestants["torch uncached (1 thread)"] = one_torch_thread(torch_run)
    contestants["nima beam x4"] = lambda: generate(model, PROMPT, NEW_TOKENS, num_beams=4,
                                                   stats=False)
    seconds = race(contestants, budget, rounds)

    ref_name = "torch uncached" if torch_run is not None else "nima uncached"
    ref = seconds[ref_name]
    lines = [
        f"**Generating {NEW_TOKENS} tokens: baby GPT** (4 layers, 4 heads, 128 wide, block 64, "
        f"vocab 65)",
        "",
        f"Machine: {machine()}; medians of "
        f"{'a quick run' if args.quick else f'{rounds} alternating rounds'}. "
        f"Ratios against `{ref_name}`.",
        "",
        "| contestant | ms / 200 tokens | ms / token | tokens/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, s in seconds.items():
        lines.append(f"| {name} | {s * 1e3:.0f} | {s * 1e3 / NEW_TOKENS:.2f} | "
                     f"{NEW_TOKENS / s:.0f} | {s / ref:.2f}x |")
    lines += ["", "Beam search tokens/s counts the tokens of one sequence (each step extends 4 "
              "beams)."]
    if torch_run is not None:
        one = seconds["torch uncached (1 thread)"]
        lines += ["", f"At one thread each, Nima's cached decoding takes "
                  f"{seconds['nima cached (numba kernels)'] / one:.2f}x the time of PyTorch's "
                  f"uncached loop."]
    if torch_run is None:
        lines += ["", "PyTorch not importable: no torch row in this run (nanoGPT's uncached "
                  "generate took ~610 ms on the machine the target was set on)."]
    publish("generate", lines, {"new_tokens": NEW_TOKENS, "quick": args.quick,
                                "reference": ref_name,
                                "ms": {k: v * 1e3 for k, v in seconds.items()}})


if __name__ == "__main__":
    main()
