"""The `nima` command: `nima train`, `nima sample`, `nima repl`, `nima demo` and `nima params`.

`nima train CONFIG.yaml [--set section.key=value ...]` trains the GPT a YAML config describes
(see `docs/configuration.md`), writing metrics, plots and checkpoints into `training.run_dir`,
then prints a sample; `nima train RUN_DIR` resumes a run from its latest checkpoint.
`nima sample RUN_DIR --prompt TEXT` prints generated text (for scripts); `nima repl RUN_DIR`
is the interactive loop of `nima.generation.repl`.

`python -m nima demo` builds a small graph, runs backward, checks the gradients against central
differences, and races the fused softmax kernel against NumPy — Nima's main job in one minute.

`nima params` is the parameter budget: `--preset tiny` (or `--n-layer 6 --n-embd 384 ...`)
counts a GPT's parameters part by part; `--micro` prints the Micro-Transformer design's three
configurations; `--explore --target 2.0M-2.5M` lists the configurations of a grid in a range.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def demo(quick: bool = False) -> None:
    """Graph → backward → gradcheck → a kernel race, printed step by step."""
    import nima
    import nima.functional as F
    from nima import kernels

    nima.manual_seed(0)
    print("1. A two-layer MLP and a cross-entropy loss, recorded as a graph")
    x = nima.randn(8, 5, dtype=nima.float64)
    w1 = nima.randn(5, 16, dtype=nima.float64, requires_grad=True)
    w2 = nima.randn(16, 3, dtype=nima.float64, requires_grad=True)
    target = nima.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def loss_fn(w1: nima.Tensor, w2: nima.Tensor) -> nima.Tensor:
        return F.cross_entropy((x @ w1).gelu() @ w2, target)

    loss = loss_fn(w1, w2)
    print(f"   loss = {loss.item():.6f}   ({loss!r})")

    print("2. backward(): vector-Jacobian products from the loss down to the weights")
    loss.backward()
    print(f"   |dL/dw1| = {np.linalg.norm(w1.grad):.6f}, |dL/dw2| = {np.linalg.norm(w2.grad):.6f}")

    print("3. gradcheck: the same gradients by central differences in float64")
    nima.gradcheck(loss_fn, [w1, w2])
    print("   analytic and numeric gradients agree (atol 1e-5, rtol 1e-3)")

    rows, cols = (96, 50257 // 8) if quick else (768, 50257)
    print(f"4. A kernel race: softmax forward on a ({rows}, {cols}) float32 array")
    logits = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
    with kernels.backend("numba"):
        fused = kernels.softmax_forward(logits)  # first call compiles (or loads the cache)
        t_numba = _median_ms(lambda: kernels.softmax_forward(logits), 5)
    with kernels.backend("numpy"):
        reference = kernels.softmax_forward(logits)
        t_numpy = _median_ms(lambda: kernels.softmax_forward(logits), 5)
    err = float(np.max(np.abs(fused - reference)))
    print(f"   numpy {t_numpy:.1f} ms, numba {t_numba:.1f} ms: {t_numpy / t_numba:.1f}x faster; "
          f"max |difference| {err:.1e}")


# the fields `nima params` can set, with their types (None: a choice, kept as a string)
CONFIG_FLAGS: dict[str, type | None] = {
    "vocab_size": int, "block_size": int, "n_layer": int, "n_head": int, "n_embd": int,
    "ffn": None, "ffn_hidden": int, "norm": None, "norm_placement": None, "position": None,
    "attention": None,
}
EXPLORE_GRID = {"n_layer": [2, 3, 4, 5, 6, 7, 8], "n_embd": [128, 160, 192, 224, 256],
                "head_dim": [32], "ffn_hidden": [512, 640, 768, 1024]}


def parse_count(text: str) -> float:
    """`"2.5M"` -> 2.5e6, `"300K"`/`"300k"` -> 3e5, `"1.2B"` -> 1.2e9, `"1e6"` -> 1e6."""
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}.get(text[-1:].upper(), 1.0)
    number = text[:-1] if scale != 1.0 else text
    try:
        return float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a parameter count: {text!r} (try 2.5M)") from None


def parse_range(text: str) -> tuple[float, float]:
    """`"2.0M-2.5M"` -> (2e6, 2.5e6)."""
    low, sep, high = text.partition("-")
    if not sep:
        raise argparse.ArgumentTypeError(f"a range looks like 2.0M-2.5M, got {text!r}")
    return parse_count(low), parse_count(high)


def parse_grid_item(text: str) -> tuple[str, list[int]]:
    """`"n_layer=2,4,6"` -> ("n_layer", [2, 4, 6])."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in {**CONFIG_FLAGS, "head_dim": int}:
        raise argparse.ArgumentTypeError(
            f"--grid takes FIELD=V1,V2,... with FIELD one of {', '.join(CONFIG_FLAGS)} or "
            f"head_dim; got {text!r}")
    kind = int if name == "head_dim" else CONFIG_FLAGS[name] or str
    return name, [kind(v) for v in values.split(",") if v]


def params(args: argparse.Namespace) -> None:
    """The parameter budget: one config's breakdown, the Micro-Transformer table, or a search."""
    from nima.models import GPT, GPTConfig, budget

    if args.micro:
        print("The Micro-Transformer design (vocab 5000, context 512, learned positions, tied "
              "head; biases in every Linear and LayerNorm, pre-norm, final LayerNorm):\n")
        print(budget.micro_transformer_table())
        return
    overrides: dict[str, Any] = {k: getattr(args, k) for k in CONFIG_FLAGS
                                 if getattr(args, k) is not None}
    for flag in ("bias", "tie_weights"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    try:
        if args.preset:
            config = GPTConfig.preset(args.preset, **overrides)
        else:
            base = budget.MICRO_BASE if args.explore else GPTConfig()
            config = dataclasses.replace(base, **overrides)
    except ValueError as e:
        raise SystemExit(f"nima params: {e}") from None

    if args.explore:
        grid: dict[str, list[Any]] = dict(EXPLORE_GRID)
        grid.update(dict(args.grid or []))
        if "n_head" in grid or "n_head" in overrides:
            grid.pop("head_dim", None)
        for name in overrides:  # a field set by a flag is fixed, not searched
            grid.pop(name, None)
        low, high = args.target
        found = budget.explore(grid, (low, high), base=config)
        searched = ", ".join(f"{k} in {v}" for k, v in grid.items())
        print(f"{len(found)} configurations with {low:,.0f} to {high:,.0f} parameters "
              f"(searched {searched}; vocab {config.vocab_size}, context "
              f"{config.block_size}):\n")
        rows = [budget.summary_row(f"#{i + 1}", c) for i, (c, _) in enumerate(found[:args.top])]
        print(budget.table(rows))
        if len(found) > args.top:
            print(f"\n... and {len(found) - args.top} more (--top N to see them)")
        return

    parts = budget.count_parameters(config)
    total = parts["total"]
    L = config.n_layer
    rows = [
        ("token embedding", parts["embedding"]), ("positions", parts["position"]),
        (f"attention ({L} x {parts['attention']:,})", L * parts["attention"]),
        (f"feed-forward ({L} x {parts['ffn']:,})", L * parts["ffn"]),
        (f"block norms ({L} x {parts['norms']:,})", L * parts["norms"]),
        ("final norm", parts["final_norm"]), ("output head", parts["head"]),
    ]
    print(f"{config}\n")
    print(budget.table([{"part": name, "parameters": f"{n:,}", "share": f"{n / total:.1%}"}
                        for name, n in rows]))
    print(f"\ntotal: {total:,} parameters = {budget.size_mb(total, 'float32'):,.1f} MB in "
          f"float32, {budget.size_mb(total, 'float16'):,.1f} MB in float16")
    if args.instantiate:
        counted = GPT(config).num_parameters()
        verdict = "agrees" if counted == total else "DISAGREES"
        print(f"instantiated: {counted:,} parameters ({verdict} with the formula)")
        if counted != total:
            raise SystemExit(1)


def add_params_parser(commands: Any) -> None:
    p = commands.add_parser("params", help="count a GPT's parameters; explore configurations",
                            description="The parameter budget of a GPT configuration.")
    p.add_argument("--preset", choices=["tiny", "small", "medium"],
                   help="start from a preset (default: GPT-2 small's shape; for --explore, the "
                        "Micro-Transformer's vocab 5000 and context 512)")
    for name, kind in CONFIG_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind or str, default=None)
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--instantiate", action="store_true",
                   help="also build the model and count its parameters (both must agree)")
    p.add_argument("--micro", action="store_true",
                   help="the Micro-Transformer design's three configurations")
    p.add_argument("--explore", action="store_true",
                   help="search a grid for configurations inside --target")
    p.add_argument("--target", type=parse_range, default=(2.0e6, 2.5e6),
                   help="for --explore: a range such as 2.0M-2.5M (the default)")
    p.add_argument("--grid", type=parse_grid_item, action="append", metavar="FIELD=V1,V2",
                   help=f"for --explore: values to try for a field, replacing the default "
                        f"grid's ({', '.join(f'{k}={v}' for k, v in EXPLORE_GRID.items())})")
    p.add_argument("--top", type=int, default=20, help="for --explore: rows to show")


def train(args: argparse.Namespace) -> None:
    """Train from a config file, or resume a run directory; then print a sample."""
    from pathlib import Path

    from nima.serialization import CheckpointError
    from nima.training import ConfigError, Trainer, TrainingError, load_config
    from nima.training.trainer import CONFIG_FILE, summary

    target = Path(args.target)
    try:
        if target.is_dir():  # a run directory: its own config, then continue where it stopped
            config = load_config(target / CONFIG_FILE, [*args.set, f"training.run_dir={target}"])
            trainer = Trainer(config, resume=True)
        else:
            config = load_config(target, args.set)
            trainer = Trainer(config, resume=args.resume, overwrite=args.overwrite)
        start = time.perf_counter()
        result = trainer.fit()
    except (ConfigError, TrainingError, CheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"nima train: {e}") from None
    print(summary(result, time.perf_counter() - start))
    if result.interrupted:
        raise SystemExit(130)
    s = trainer.config.sampling
    if args.sample and s.max_new_tokens > 0:
        print(f"\n--- a sample: {s.max_new_tokens} tokens, temperature {s.temperature}"
              f"{f', top-k {s.top_k}' if s.top_k else ''} ---")
        print(trainer.sample())


def add_train_parser(commands: Any) -> None:
    p = commands.add_parser("train", help="train a GPT from a YAML config (or resume a run)",
                            description="Train the GPT a YAML config describes; metrics, "
                                        "plots and checkpoints go into training.run_dir.")
    p.add_argument("target", help="a config file (configs/shakespeare_char.yaml), or a run "
                                  "directory to resume")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set training.max_iters=500")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run directory's latest checkpoint, if any")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh, deleting the run directory's checkpoints")
    p.add_argument("--sample", action=argparse.BooleanOptionalAction, default=True,
                   help="print a sample after training (default: yes)")


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from nima.serialization import CheckpointError
    from nima.training import load_run

    try:
        model, tokenizer, _ = load_run(args.run, which=args.checkpoint)
    except (CheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"nima {args.command}: {e}") from None
    return model, tokenizer


def _settings(args: argparse.Namespace) -> Any:
    from nima.generation.repl import ReplSettings

    return ReplSettings(length=args.length, temperature=args.temperature,
                        sampling=args.sampling, top_k=args.top_k, top_p=args.top_p,
                        entropy=args.entropy, min_temp=args.bounds[0], max_temp=args.bounds[1],
                        num_beams=args.num_beams, seed=args.seed)


def sample(args: argparse.Namespace) -> None:
    """Print `--num-samples` continuations of `--prompt`."""
    from nima.generation import generate

    model, tokenizer = _load(args)
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise SystemExit("nima sample: --prompt encodes to no tokens")
    settings = _settings(args)
    try:
        out = generate(model, np.asarray([ids]), settings.length, seed=settings.seed,
                       num_return_sequences=args.num_samples, tokenizer=tokenizer,
                       repetition_penalty=args.repetition_penalty,
                       stop_strings=args.stop or None, **settings.generate_kwargs())
    except ValueError as e:
        raise SystemExit(f"nima sample: {e}") from None
    for i, row in enumerate(out.tolist()):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} (log-probability {out.sequence_logprobs[i]:.2f}) ---")
        print(tokenizer.decode(row))
    if args.stats and out.stats is not None:
        print(out.stats.table())


def repl(args: argparse.Namespace) -> None:
    """The interactive loop; reads stdin line by line (with line editing on a terminal)."""
    from nima.generation.repl import Repl

    model, tokenizer = _load(args)
    loop = Repl(model, tokenizer, _settings(args))
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Nima REPL: {model.num_parameters():,} parameters. Type text to continue it; "
              f"/help lists the commands, /quit leaves.")

    def lines() -> Any:
        while True:
            try:
                yield input("> ") if interactive else next(sys.stdin)
            except (EOFError, StopIteration, KeyboardInterrupt):
                return

    loop.run(lines())


def add_generation_parsers(commands: Any) -> None:
    from nima.generation.repl import MODES, ReplSettings

    d = ReplSettings()
    for name, help_text in (("sample", "print generated text from a trained run"),
                            ("repl", "an interactive generation loop over a trained run")):
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("run", help="a run directory (runs/shakespeare_char) or a checkpoint")
        p.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                       help="which checkpoint of a run directory (default: best)")
        p.add_argument("--length", "--max-new-tokens", type=int, default=d.length,
                       help=f"tokens to generate (default {d.length})")
        p.add_argument("--temperature", type=float, default=d.temperature)
        p.add_argument("--sampling", choices=MODES, default=d.sampling)
        p.add_argument("--top-k", type=int, default=d.top_k)
        p.add_argument("--top-p", type=float, default=d.top_p)
        p.add_argument("--entropy", type=float, default=d.entropy,
                       help="target entropy in bits for --sampling entropy")
        p.add_argument("--bounds", type=float, nargs=2, default=(d.min_temp, d.max_temp),
                       metavar=("MIN", "MAX"), help="temperature range of entropy sampling")
        p.add_argument("--num-beams", type=int, default=d.num_beams)
        p.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
        if name == "sample":
            p.add_argument("--prompt", default="\n", help="the text to continue")
            p.add_argument("--num-samples", type=int, default=1)
            p.add_argument("--repetition-penalty", type=float, default=None)
            p.add_argument("--stop", action="append", default=[],
                           help="stop a sample once it contains this text (repeatable)")
            p.add_argument("--stats", action="store_true",
                           help="print the generation statistics table")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nima", description="Nima: deep learning from scratch.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="graph, backward, gradcheck and a kernel race")
    demo_parser.add_argument("--quick", action="store_true", help="a smaller kernel race")
    add_params_parser(commands)
    add_train_parser(commands)
    add_generation_parsers(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(quick=args.quick)
    elif args.command == "params":
        params(args)
    elif args.command == "train":
        train(args)
    elif args.command == "sample":
        sample(args)
    elif args.command == "repl":
        repl(args)


if __name__ == "__main__":
    main()
