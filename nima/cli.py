"""The `nima` command: `nima train`, `nima sample`, `nima repl`, `nima demo` and `nima params`.

`nima train CONFIG.yaml [--set section.key=value ...]` trains the GPT a YAML config describes
(see `docs/configuration.md`), writing metrics, plots and checkpoints into `training.run_dir`,
then prints a sample; `nima train RUN_DIR` resumes a run from its latest checkpoint. Under
`mpiexec -n N` it is one rank of a data-parallel job (`nima.training.parallel`), and
`--nproc N` starts that job itself.
`nima sample RUN_DIR --prompt TEXT` prints generated text (for scripts); `nima repl RUN_DIR`
is the interactive loop of `nima.generation.repl`.

`python -m nima demo` builds a small graph, runs backward, checks the gradients against central
differences, and races the fused softmax kernel against NumPy — Nima's main job in one minute.

`nima params` is the parameter budget of `nima.models.budget`: `--preset tiny` (or
`--n-layer 6 --n-embd 384 ...`) counts a GPT's parameters part by part; `--micro` prints the
Micro-Transformer design (a study of how to spend about 2.4M parameters) in its three
configurations; `--explore --target 2.0M-2.5M` lists the configurations of a grid in a range.

The flags of `nima params` are `GPTConfig`'s fields and those of `nima sample` and `nima repl`
are `GenerationConfig`'s, made from the dataclasses themselves (`setting_flags`): one list of
settings, with one validation, whichever way they are given.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import time
import types
import typing
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
    print("   analytic and numeric gradients agree (eps 1e-5, rtol 1e-6, atol 1e-8)")

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


def _maybe(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: `kind(text)`, or None for `none` / `null` / `off`."""
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "off") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _argtype(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError with its own message."""
    def typed(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return typed


def setting_flags(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = (),
                  aliases: dict[str, str] | None = None) -> list[str]:
    """A `--field-name` flag for every field of the settings dataclass `cls`, with its meaning,
    choices and default in the help. Flags not given are absent from the namespace, so they
    can override a config's values one by one. Returns the field names."""
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = next(t for t in options if t is not type(None))
        flags = ["--" + f.name.replace("_", "-")] + \
            [a for a, name in (aliases or {}).items() if name == f.name]
        choices = f.metadata.get("choices")
        help_text = f.metadata.get("doc", "") + (f" ({', '.join(map(str, choices))})"
                                                 if choices else "") + f"; default {f.default!r}"
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text.replace("%", "%%"))
        if base is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(base) is tuple:  # stop strings: repeat the flag
            parser.add_argument(*flags, action="append", metavar="TEXT", **common)
        else:
            kind = _maybe(base) if type(None) in options else base
            parser.add_argument(*flags, type=kind, metavar=f.name.upper(), **common)
        names.append(f.name)
    return names


def params(args: argparse.Namespace) -> None:
    """The parameter budget: one config's breakdown, the Micro-Transformer table, or a search."""
    from nima.models import GPT, GPTConfig, budget

    if args.micro:
        print("The Micro-Transformer design (vocab 5000, context 512, learned positions, tied "
              "head; biases in every Linear and LayerNorm, pre-norm, final LayerNorm):\n")
        print(budget.micro_transformer_table())
        return
    overrides = {name: getattr(args, name) for name in args.fields if hasattr(args, name)}
    try:
        if args.preset:
            config = GPTConfig.preset(args.preset, **overrides)
        else:
            base = budget.MICRO_BASE if args.explore else GPTConfig()
            config = dataclasses.replace(base, **overrides)
    except ValueError as e:
        raise SystemExit(f"nima params: {e}") from None

    if args.explore:
        grid: dict[str, list[Any]] = dict(budget.EXPLORE_GRID)
        grid.update(dict(args.grid or []))
        if "n_head" in grid or "n_head" in overrides:
            grid.pop("head_dim", None)
        for name in overrides:  # a field set by a flag is fixed, not searched
            grid.pop(name, None)
        print(budget.explore_report(grid, args.target, config, args.top))
        return
    print(f"{config}\n")
    print(budget.breakdown(config))
    if args.instantiate:
        total = budget.count_parameters(config)["total"]
        counted = GPT(config).num_parameters()
        verdict = "agrees" if counted == total else "DISAGREES"
        print(f"instantiated: {counted:,} parameters ({verdict} with the formula)")
        if counted != total:
            raise SystemExit(1)


def add_params_parser(commands: Any) -> None:
    from nima.models import GPTConfig, budget

    p = commands.add_parser("params", help="count a GPT's parameters; explore configurations",
                            description="The parameter budget of a GPT configuration.")
    p.add_argument("--preset", choices=list(GPTConfig.PRESETS),
                   help="start from a preset (default: GPT-2 small's shape; for --explore, the "
                        "Micro-Transformer's vocab 5000 and context 512)")
    p.set_defaults(fields=setting_flags(p, GPTConfig))
    p.add_argument("--instantiate", action="store_true",
                   help="also build the model and count its parameters (both must agree)")
    p.add_argument("--micro", action="store_true",
                   help="the Micro-Transformer design's three configurations")
    p.add_argument("--explore", action="store_true",
                   help="search a grid for configurations inside --target")
    p.add_argument("--target", type=_argtype(budget.parse_range), default=(2.0e6, 2.5e6),
                   help="for --explore: a range such as 2.0M-2.5M (the default)")
    p.add_argument("--grid", type=_argtype(budget.parse_grid_item), action="append",
                   metavar="FIELD=V1,V2",
                   help=f"for --explore: values to try for a field, replacing the default "
                        f"grid's ({', '.join(f'{k}={v}' for k, v in budget.EXPLORE_GRID.items())})")
    p.add_argument("--top", type=_argtype(_positive), default=20,
                   help="for --explore: rows to show (default 20)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {text!r}")
    return value


def _train_config(args: argparse.Namespace, processes: int) -> tuple[Any, bool]:
    """The config `nima train` runs on `processes` ranks, and whether it resumes a run.

    A run directory is resumed with its own config; unless `--set training.batch_size=...`
    says otherwise, each rank then takes its share of the run's global batch
    (`resume_batch_size`), so a run written by N processes continues on M along the same
    curve."""
    from pathlib import Path

    from nima.training import load_config
    from nima.training.parallel import resume_batch_size
    from nima.training.trainer import CONFIG_FILE

    target = Path(args.target)
    if not target.is_dir():
        return load_config(target, args.set), args.resume
    overrides = [*args.set, f"training.run_dir={target}"]
    if not any(item.partition("=")[0].strip() == "training.batch_size" for item in args.set):
        batch = resume_batch_size(target, processes)
        if batch is not None:
            overrides.insert(0, f"training.batch_size={batch}")
    return load_config(target / CONFIG_FILE, overrides), True


# --8<-- [start:train]
def train(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Train from a config file, or resume a run directory; then print a sample.

    With `--nproc N` (N > 1) outside `mpiexec`, check the config, then run this same command
    line as N processes of one numba thread each (`run_job`) and exit with the job's code.
    Under `mpiexec`, this process is one rank of the job: an error on any rank ends them all
    (`abort_on_error`), and rank 0 alone prints."""
    from nima.distributed import DistributedError, abort_on_error, launched_size, run_job, world
    from nima.serialization import CheckpointError
    from nima.training import ConfigError, Trainer, TrainingError
    from nima.training.trainer import summary

    errors = (ConfigError, TrainingError, CheckpointError, FileNotFoundError, DistributedError)
    if args.nproc is not None and args.nproc > 1 and launched_size() == 1:
        env = {**os.environ, "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "1")}
        try:
            _train_config(args, args.nproc)  # a mistake is reported once, before any start
            code = run_job(args.nproc, [sys.executable, "-m", "nima", *argv], env)
        except errors as e:
            raise SystemExit(f"nima train: {e}") from None
        raise SystemExit(code)
    try:
        comm = world()
    except DistributedError as e:
        raise SystemExit(f"nima train: {e}") from None
    if args.nproc is not None and args.nproc != comm.size:
        raise SystemExit(f"nima train: --nproc {args.nproc}, but mpiexec started {comm.size} "
                         f"process(es)")
    with abort_on_error(comm):
        try:
            config, resume = _train_config(args, comm.size)
            trainer = Trainer(config, resume=resume, overwrite=args.overwrite, comm=comm)
            start = time.perf_counter()
            result = trainer.fit()
        except errors as e:
            raise SystemExit(f"nima train: {e}") from None
    if trainer.ranks.writes:  # rank 0 alone prints; every rank exits with the same code
        print(summary(result, time.perf_counter() - start))
    if result.interrupted:
        raise SystemExit(130)
    s = trainer.config.sampling
    if trainer.ranks.writes and args.sample and s.max_new_tokens > 0:
        print(f"\n--- a sample: {s.max_new_tokens} tokens, temperature {s.temperature}"
              f"{f', top-k {s.top_k}' if s.top_k else ''} ---")
        print(trainer.sample())
# --8<-- [end:train]


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
    p.add_argument("--nproc", type=_argtype(_positive), default=None, metavar="N",
                   help="train data-parallel on N processes, started with mpiexec (needs "
                        "pip install \"nima[mpi]\"); training.batch_size is per process")


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The run's model and tokenizer, and its decoding settings with the flags given applied."""
    from nima.serialization import CheckpointError
    from nima.training import load_run

    try:
        model, tokenizer, config = load_run(args.run, which=args.checkpoint)
        changes = {name: getattr(args, name) for name in args.fields if hasattr(args, name)}
        settings = config.sampling.generation_config().updated(**changes)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"nima {args.command}: {e}") from None
    return model, tokenizer, settings


def sample(args: argparse.Namespace) -> None:
    """Print `--num-return-sequences` continuations of `--prompt`."""
    from nima.generation import generate

    model, tokenizer, settings = _load(args)
    try:
        ids = tokenizer.encode(args.prompt)
        if not ids:
            raise ValueError("--prompt encodes to no tokens")
        out = generate(model, np.asarray([ids]), config=settings, tokenizer=tokenizer)
    except ValueError as e:
        raise SystemExit(f"nima sample: {e}") from None
    for i, row in enumerate(out.tolist()):
        if len(out.tolist()) > 1:
            print(f"--- sample {i + 1} (log-probability {out.sequence_logprobs[i]:.2f}) ---")
        print(tokenizer.decode(row))
    if args.stats and out.stats is not None:
        print(out.stats.table())


def repl(args: argparse.Namespace) -> None:
    """The interactive loop; reads stdin line by line (with line editing on a terminal)."""
    from nima.generation.repl import Repl

    model, tokenizer, settings = _load(args)
    loop = Repl(model, tokenizer, settings)
    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 become U+FFFD, not a crash
        sys.stdin.reconfigure(errors="replace")
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):  # not on every platform
            import readline  # noqa: F401  (input() gains line editing and history)
        print(f"Nima REPL: {model.num_parameters():,} parameters. Type text to continue it; "
              f"/help lists the commands, /quit leaves.")

    def lines() -> Any:
        while True:
            try:
                yield input("> ") if interactive else next(sys.stdin)
            except (EOFError, StopIteration):
                if interactive:
                    print()  # leave the shell's prompt on a line of its own
                return
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh prompt, as a shell does
                print()

    loop.run(lines())


def add_generation_parsers(commands: Any) -> None:
    from nima.generation import GenerationConfig

    for name, help_text in (("sample", "print generated text from a trained run"),
                            ("repl", "an interactive generation loop over a trained run")):
        p = commands.add_parser(name, help=help_text, description=f"{help_text}. Decoding "
                                "settings start from the run's `sampling` section; each flag "
                                "given overrides one.")
        p.add_argument("run", help="a run directory (runs/shakespeare_char) or a checkpoint")
        p.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                       help="which checkpoint of a run directory (default: best)")
        p.set_defaults(fields=setting_flags(
            p, GenerationConfig, aliases={"--length": "max_new_tokens", "--stop": "stop_strings",
                                          "--num-samples": "num_return_sequences"}))
        if name == "sample":
            p.add_argument("--prompt", default="\n", help="the text to continue")
            p.add_argument("--stats", action="store_true",
                           help="print the generation statistics table")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
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
        train(args, argv)
    elif args.command == "sample":
        sample(args)
    elif args.command == "repl":
        repl(args)


if __name__ == "__main__":
    main()
