"""One full training step of nanoGPT's CPU "baby GPT": forward, backward, clip, AdamW.

Model: `GPTConfig.preset("baby", vocab_size=65)` (4 layers, 4 heads, 128 dims, block 64, no
bias, dropout 0), batch 12, float32, random token ids; `--preset tiny` races the ~10M model
instead (256 wide, 4 layers, FFN 1024, vocabulary 32,000; context 128, batch 8), where the
matrix products fill the step. A step is `zero_grad`, `model(x, y)`,
`loss.backward()`, `clip_grad_norm_(params, 1.0)`, `AdamW.step()` (lr 1e-3, betas (0.9, 0.99),
weight decay 0.1 on the matrices, none on embeddings/norms, as nanoGPT). Reported: the median of
the whole step, `zero_grad` included (it frees the gradients, which costs what giving memory
back costs), and of each phase, in milliseconds. `--profile` also prints a cProfile top-15 by
tottime over the Nima loop's timed steps.

The Nima contestant is the loop a user writes by hand, nanoGPT style. Beside it runs
`nima.training.Trainer.train_step` on the same model shape (its batches drawn from a synthetic
corpus), to show that the Trainer has no speed the hand-written loop lacks. If PyTorch is
importable, the same model (same weights, tanh-GELU, SDPA attention, tied head) is timed in the
same run. Each contestant runs in fresh processes of its own, as a user's script would: in one
shared process, PyTorch's large allocations change when glibc's malloc gives freed memory back
(and its thread pool competes with numba's). Contestants alternate in rounds so load from
elsewhere hits them all. PyTorch is optional; nothing installs it.

glibc's malloc is left as the user's process has it unless `--retain-memory` opts in to
`nima.runtime.retain_freed_memory` (what `runtime.retain_memory: true` does in a config).
`--busy` runs the race while another process spins on one core (a Python `while True` loop),
as a test runner or a second training run would: a kernel that waits for that core stalls.

Run: `python benchmarks/bench_train_step.py [--preset tiny] [--retain-memory] [--busy]
[--quick] [--profile]`; writes `benchmarks/results/train_step.md` (`train_step_tiny.md`,
`train_step_busy.md`, `train_step_retain.md`).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import machine, publish

import nima
from nima.models import GPT, GPTConfig
from nima.optim import AdamW, clip_grad_norm_
from nima.optim.adam import param_groups_for_decay
from nima.runtime import retain_freed_memory
from nima.training import Config, Trainer

B = 12
CONFIG = GPTConfig.preset("baby", vocab_size=65)
SHAPES = {"baby": (12, CONFIG),
          "tiny": (8, GPTConfig.preset("tiny", block_size=128, bias=False))}
PHASES = ("zero_grad", "forward", "backward", "clip", "optimizer", "step")


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, CONFIG.vocab_size, size=(B, CONFIG.block_size + 1))
    return data[:, :-1].astype(np.int64), data[:, 1:].astype(np.int64)


def record(times: dict[str, list[float]], t: list[float]) -> None:
    """Milliseconds of each phase from the time stamps between them, and of the whole step."""
    for name, a, b in zip(PHASES, t, t[1:], strict=False):
        times[name].append((b - a) * 1e3)
    times["step"].append((t[-1] - t[0]) * 1e3)


class NimaStep:
    def __init__(self) -> None:
        nima.manual_seed(0)
        self.model = GPT(CONFIG)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = AdamW(param_groups_for_decay(self.model, 0.1), lr=1e-3, betas=(0.9, 0.99))
        self.x, self.y = batch()

    def __call__(self, times: dict[str, list[float]]) -> None:
        t = [time.perf_counter()]
        self.opt.zero_grad()
        t.append(time.perf_counter())
        _, loss = self.model(self.x, self.y)
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        clip_grad_norm_(self.params, 1.0)
        t.append(time.perf_counter())
        self.opt.step()
        t.append(time.perf_counter())
        record(times, t)


def trainer_step(folder: Path):
    """`Trainer.train_step` with the hand-written loop's model, batch and optimizer settings."""
    fields = {f: getattr(CONFIG, f) for f in ("vocab_size", "block_size", "n_layer", "n_head",
                                              "n_embd", "bias")}
    config = Config.from_dict({
        "model": fields,
        "data": {"corpus": "synthetic", "synthetic_sections": 200, "out_dir": str(folder)},
        "optimizer": {"lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.1},
        "training": {"batch_size": B, "grad_clip": 1.0, "run_dir": str(folder / "run")}})
    trainer = Trainer(config)

    def step(times: dict[str, list[float]]) -> None:
        t0 = time.perf_counter()
        trainer.train_step()
        times["step"].append((time.perf_counter() - t0) * 1e3)

    return step


def torch_step(nima_model: GPT):  # pragma: no cover - only when torch is installed
    """The same model in PyTorch with nima's weights, or None without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.manual_seed(0)
    c = CONFIG
    sd = {k: torch.from_numpy(np.array(v.data)) for k, v in nima_model.named_parameters()}

    class TorchGPT(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.ParameterDict(
                {k.replace(".", "__"): torch.nn.Parameter(v.clone()) for k, v in sd.items()})

        def forward(self, idx, targets):
            p = {k.replace("__", "."): v for k, v in self.p.items()}
            Bb, T = idx.shape
            wte = p["wte.weight"]
            x = wte[idx]
            if "wpe.weight" in p:
                x = x + p["wpe.weight"][:T]
            for i in range(c.n_layer):
                pre = f"blocks.{i}."
                h = F.layer_norm(x, (c.n_embd,), p[pre + "ln_1.weight"])
                qkv = h @ p[pre + "attn.qkv.weight"].T
                q, k, v = qkv.split(c.n_embd, dim=2)
                q, k, v = (t.view(Bb, T, c.n_head, -1).transpose(1, 2) for t in (q, k, v))
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                a = a.transpose(1, 2).reshape(Bb, T, c.n_embd)
                x = x + a @ p[pre + "attn.proj.weight"].T
                h = F.layer_norm(x, (c.n_embd,), p[pre + "ln_2.weight"])
                h = F.gelu(h @ p[pre + "ffn.fc.weight"].T, approximate="tanh")
                x = x + h @ p[pre + "ffn.proj.weight"].T
            x = F.layer_norm(x, (c.n_embd,), p["ln_f.weight"])
            logits = x @ wte.T
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    model = TorchGPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    xs, ys = (torch.from_numpy(a) for a in batch())

    def step(times: dict[str, list[float]]) -> None:
        t = [time.perf_counter()]
        opt.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        loss = model(xs, ys)
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        record(times, t)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile top-15 by tottime")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--preset", choices=sorted(SHAPES), default="baby")
    parser.add_argument("--retain-memory", action="store_true",
                        help="tune glibc malloc as runtime.retain_memory does")
    parser.add_argument("--busy", action="store_true",
                        help="another process keeps one core busy throughout")
    parser.add_argument("--worker", choices=CONTESTANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global B, CONFIG
    B, CONFIG = SHAPES[args.preset]
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.repeats = args.repeats or (5 if args.quick else 10)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        race(args)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


CONTESTANTS = ("nima", "trainer", "torch")


def worker(args: argparse.Namespace) -> dict[str, list[float]]:
    """One contestant in a process of its own: two untimed steps, then `repeats` timed ones."""
    if args.retain_memory:  # an explicit opt-in, process-wide
        retain_freed_memory()
    nstep = NimaStep()
    folder = tempfile.TemporaryDirectory()
    step = {"nima": lambda: nstep, "trainer": lambda: trainer_step(Path(folder.name)),
            "torch": lambda: torch_step(nstep.model)}[args.worker]()
    times: dict[str, list[float]] = {k: [] for k in PHASES}
    for _ in range(2):  # compile or load numba's kernels, allocate the optimizer's state
        step({k: [] for k in PHASES})
    profile = cProfile.Profile() if args.profile and args.worker == "nima" else None
    if profile is not None:
        profile.enable()
    for _ in range(args.repeats):
        step(times)
    if profile is not None:
        profile.disable()
        buf = io.StringIO()
        pstats.Stats(profile, stream=buf).sort_stats("tottime").print_stats(15)
        print(buf.getvalue(), file=sys.stderr)
    return times


def race(args: argparse.Namespace) -> None:
    """Each contestant in fresh processes, alternating over the rounds; publish the table.

    A process of its own keeps one contestant's allocations from shaping glibc's malloc for
    another (PyTorch's large blocks raise the threshold below which freed memory stays in the
    heap, which sped Nima's step up by a fifth in a shared process) and their thread pools
    apart.
    """
    contestants = [c for c in CONTESTANTS
                   if c != "torch" or importlib.util.find_spec("torch") is not None]
    results: dict[str, dict[str, list[float]]] = {c: {k: [] for k in PHASES}
                                                  for c in contestants}
    flags = [f"--preset={args.preset}", f"--repeats={args.repeats}"]
    flags += ["--retain-memory"] * args.retain_memory + ["--profile"] * args.profile
    for _ in range(args.rounds):  # alternate so that machine load hits all
        for name in contestants:
            out = subprocess.run([sys.executable, __file__, f"--worker={name}", *flags],
                                 capture_output=True, text=True, check=False)
            if out.returncode:
                if name == "torch":  # a torch mismatch should not hide nima's numbers
                    print(f"torch comparison skipped: {out.stderr.strip()[-300:]}")
                    contestants.remove(name)
                    break
                raise RuntimeError(f"the {name} worker failed:\n{out.stderr}")
            sys.stderr.write(out.stderr)
            for k, v in json.loads(out.stdout.splitlines()[-1]).items():
                results[name][k] += v
    torch_ran = "torch" in contestants
    nima_t = results["nima"]
    med = {k: statistics.median(v) for k, v in nima_t.items()}
    lines = [
        f"**One training step: {args.preset} preset** (vocab {CONFIG.vocab_size}, "
        f"{CONFIG.n_layer} layers x {CONFIG.n_embd} wide, batch {B} x {CONFIG.block_size})",
        "",
        f"Machine: {machine()}; each contestant in its own processes, {args.rounds} rounds x "
        f"{args.repeats} steps, medians in ms (min..max of the whole step: "
        f"{min(nima_t['step']):.1f}..{max(nima_t['step']):.1f}).",
        "",
        "| phase | nima, loop by hand (ms) |" + (" torch (ms) | ratio |" if torch_ran else ""),
        "|---|---|" + ("---|---|" if torch_ran else ""),
    ]
    for k in PHASES:
        row = f"| {k} | {med[k]:.2f} |"
        if torch_ran:
            tm = statistics.median(results["torch"][k])
            row += f" {tm:.2f} | {med[k] / tm:.2f}x |"
        lines.append(row)
    trainer_ms = statistics.median(results["trainer"]["step"])
    lines += ["", f"`Trainer.train_step` on the same model: {trainer_ms:.2f} ms, "
              f"{trainer_ms / med['step']:.2f}x the hand-written loop."]
    lines += ["", "glibc malloc: " + ("tuned by `nima.runtime.retain_freed_memory` (what "
                                      "`runtime.retain_memory: true` does), for every "
                                      "contestant" if args.retain_memory else "as the process "
                                      "has it (no setting)")]
    if args.busy:
        lines += ["", "Another process spun on one core throughout (`--busy`)."]
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    if malloc:  # glibc malloc tuning changes the numbers a lot (page faults of fresh arrays)
        lines += ["", "Environment: " + ", ".join(f"{k}={v}" for k, v in sorted(malloc.items()))]
    if not torch_ran:
        lines += ["", "PyTorch not importable: no comparison in this run."]
    name = "train_step" + ("" if args.preset == "baby" else f"_{args.preset}")
    publish(name + ("_busy" if args.busy else "") + ("_retain" if args.retain_memory else ""),
            lines)


if __name__ == "__main__":
    main()
