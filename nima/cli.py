"""The `nima` command: `nima train`, `nima sample`, `nima repl`, `nima eval`, `nima export`,
`nima demo` and `nima params`.

`nima train CONFIG.yaml [--set section.key=value ...]` trains the model a YAML config describes
(see `docs/configuration.md`), writing metrics, plots and checkpoints into `training.run_dir`,
then prints a sample; `nima train RUN_DIR` resumes a run from its latest checkpoint. Under
`mpiexec -n N` it is one rank of a data-parallel job (`nima.training.parallel`), and
`--nproc N` starts that job itself. `nima build` is the same command under the name NetRain's
Deep Tree Echo gives it.
`nima sample RUN_DIR --prompt TEXT` prints generated text (for scripts); `nima repl RUN_DIR`
is the interactive loop of `nima.generation.repl`. `nima eval RUN_DIR_OR_MODEL` measures loss,
perplexity and bits per character over a whole split or text file
(`nima.training.evaluate`); `nima export RUN_DIR --format npz` writes the NumPy-only `.npz`
of `nima.export`.

`python -m nima demo` builds a small graph, runs backward, checks the gradients against central
differences, and races the fused softmax kernel against NumPy — Nima's main job in one minute.

`nima params` is the parameter budget of `nima.models.budget`: `--preset baby` (or
`--n-layer 6 --n-embd 384 ...`, or `--config CONFIG.yaml` for a training config's model)
counts a GPT's parameters part by part; `--micro` prints the Micro-Transformer design (a study
of how to spend about 2.4M parameters) in its three configurations; `--explore --target
2.0M-2.5M` lists the configurations of a grid in a range.

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
from collections.abc import Callable, Iterator, Sequence
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
        elif typing.get_origin(base) is tuple and typing.get_args(base)[0] is str:
            parser.add_argument(*flags, action="append", metavar="TEXT", **common)  # repeated
        elif typing.get_origin(base) is tuple:  # block indices: --echo-layers 2 3
            parser.add_argument(*flags, nargs="*", type=typing.get_args(base)[0], metavar="N",
                                **common)
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
        if args.config:
            config = dataclasses.replace(_model_of(args.config, overrides.get("vocab_size")),
                                         **overrides)
        elif args.preset:
            config = GPTConfig.preset(args.preset, **overrides)
        else:
            base = budget.MICRO_BASE if args.explore else GPTConfig()
            config = dataclasses.replace(base, **overrides)
    except (ValueError, FileNotFoundError) as e:
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
        from nima.models.memory import available_bytes, format_bytes, inference_bytes

        need, have = inference_bytes(config)["parameters"], available_bytes()
        if have is not None and need > have:  # refused before a byte of it is allocated
            raise SystemExit(f"nima params: --instantiate would need about {format_bytes(need)}"
                             f" for the parameters, but {format_bytes(have)} are available")
        total = budget.count_parameters(config)["total"]
        counted = GPT(config).num_parameters()
        verdict = "agrees" if counted == total else "DISAGREES"
        print(f"instantiated: {counted:,} parameters ({verdict} with the formula)")
        if counted != total:
            raise SystemExit(1)


def _model_of(path: str, vocab_size: int | None) -> Any:
    """The `GPTConfig` of a training config file (or a run directory's `config.yaml`)."""
    from pathlib import Path

    from nima.training import load_config
    from nima.training.trainer import CONFIG_FILE

    target = Path(path)
    model = load_config(target / CONFIG_FILE if target.is_dir() else target).model
    if model.vocab_size is None and vocab_size is None:
        raise ValueError(f"model.vocab_size: null in {path} (the tokenizer's size); give "
                         f"--vocab-size")
    return model.to_gpt_config(vocab_size)


def add_params_parser(commands: Any) -> None:
    from nima.models import GPTConfig, budget

    p = commands.add_parser("params", help="count a GPT's parameters; explore configurations",
                            description="The parameter budget of a GPT configuration.")
    p.add_argument("--preset", choices=list(GPTConfig.PRESETS),
                   help="start from a preset (default: GPT-2 small's shape; for --explore, the "
                        "Micro-Transformer's vocab 5000 and context 512)")
    p.add_argument("--config", metavar="CONFIG",
                   help="start from the model section of a training config (a YAML file or a "
                        "run directory)")
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

    A run directory is resumed with its own config (or started over, with `--overwrite`);
    unless `--set training.batch_size=...` says otherwise, each rank of a resumed run takes its
    share of the run's global batch (`resume_batch_size`), so a run written by N processes
    continues on M along the same curve.

    Raises:
        ConfigError: a config that does not load, or cannot run on `processes` ranks.
    """
    from pathlib import Path

    from nima.training import ConfigError, load_config
    from nima.training.parallel import check_processes, resume_batch_size
    from nima.training.trainer import CONFIG_FILE

    target = Path(args.target)
    if not target.is_dir():
        config = load_config(target, args.set)
        check_processes(config, processes)
        return config, args.resume
    path = target / CONFIG_FILE  # a run directory: its own config, then on where it stopped
    if not path.is_file():
        raise ConfigError(f"{target}: not a run directory (no {CONFIG_FILE}); give a config "
                          f"file, or the folder of a run")
    overrides = [*args.set, f"training.run_dir={target}"]
    config, resume = load_config(path, overrides), not args.overwrite
    check_processes(config, processes)
    chosen = any(item.partition("=")[0].strip() == "training.batch_size" for item in args.set)
    batch = resume_batch_size(target, processes) if resume and not chosen else None
    if batch not in (None, config.training.batch_size):  # streams: one per row, resolved anew
        config = load_config(path, [f"training.batch_size={batch}", "model.streams=null",
                                    *overrides])
    return config, resume


def train(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Train from a config file, or resume a run directory (or start it over, with
    `--overwrite`); then print a sample.

    With `--nproc N` (N > 1) outside `mpiexec`, check the config, then run this same command
    line `argv` as N processes of one numba thread each (`run_job`) and exit with the job's
    code. Under `mpiexec`, this process is one rank of the job: an error on any rank ends them
    all (`abort_on_error`), and rank 0 alone prints."""
    import signal

    from nima.distributed import DistributedError, abort_on_error, launched_size, run_job, world
    from nima.training import Trainer
    from nima.training.trainer import summary

    if args.nproc is not None and args.nproc > 1 and launched_size() == 1:
        _train_config(args, args.nproc)  # a mistake is reported once, before any start
        env = {**os.environ, "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "1")}
        raise SystemExit(run_job(args.nproc, [sys.executable, "-m", "nima", *argv], env))
    comm = world()
    with abort_on_error(comm), reporting(f"nima {args.command}"):
        if args.nproc is not None and args.nproc != comm.size:
            raise DistributedError(f"--nproc {args.nproc}, but mpiexec started {comm.size} "
                                   f"process(es)")
        config, resume = _train_config(args, comm.size)
        trainer = Trainer(config, resume=resume, overwrite=args.overwrite, comm=comm)
        start = time.perf_counter()
        result = trainer.fit()
    if trainer.ranks.writes:  # rank 0 alone prints; every rank exits with the same code
        print(summary(result, time.perf_counter() - start))
    if result.interrupted:
        raise SystemExit(128 + (result.signal or signal.SIGINT))  # 130 for Ctrl-C, as shells do
    s = trainer.config.sampling
    if trainer.ranks.writes and args.sample and s.max_new_tokens > 0:
        try:
            text = trainer.sample()
        except ValueError as e:  # a prompt outside the vocabulary: the run itself is done
            print(f"nima train: no sample: sampling.prompt: {e}", file=sys.stderr)
            return
        print(f"\n--- a sample: {s.max_new_tokens} tokens, temperature {s.temperature}"
              f"{f', top-k {s.top_k}' if s.top_k else ''} ---")
        print(text)


def add_train_parser(commands: Any) -> None:
    p = commands.add_parser("train", aliases=["build"],
                            help="train a GPT from a YAML config (or resume a run); build is "
                                 "the same command",
                            description="Train the GPT a YAML config describes; metrics, "
                                        "plots and checkpoints go into training.run_dir.")
    p.add_argument("target", help="a config file (configs/shakespeare_char.yaml), or a run "
                                  "directory to resume")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set training.max_iters=500")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run directory's latest checkpoint, if any")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh, deleting the run directory's run (its checkpoints, "
                        "metrics, log and plot; nothing else in it)")
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
    """Print `--num-return-sequences` continuations of `--prompt` (for an encoder-decoder run,
    the targets it writes for the source `--prompt`)."""
    from nima.training.trainer import complete

    model, tokenizer, settings = _load(args)
    try:
        texts, out = complete(model, tokenizer, args.prompt, settings)
    except ValueError as e:
        raise SystemExit(f"nima sample: {e}") from None
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1} (log-probability {out.sequence_logprobs[i]:.2f}) ---")
        print(text)
    if args.stats and out.stats is not None:
        print(out.stats.table())
    if args.tree and out.trees is not None:
        for tree in out.trees:
            print("--- the search tree ---")
            print(tree.render(tokenizer.decode))


def repl(args: argparse.Namespace) -> None:
    """The interactive loop; reads stdin line by line (with line editing on a terminal)."""
    from nima.generation.repl import Repl
    from nima.models import GPT

    model, tokenizer, settings = _load(args)
    if not isinstance(model, GPT):
        raise SystemExit(f"nima repl: {args.run} holds an encoder-decoder, which writes a "
                         f"target for a source; use nima sample {args.run} --prompt SOURCE")
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
            p.add_argument("--tree", action="store_true",
                           help="print the search tree (strategy tree_beam)")


def evaluate(args: argparse.Namespace) -> None:
    """Loss, perplexity and bits per character (or byte) of a model over a whole text, in
    order."""
    from pathlib import Path

    from nima.data.pairs import PairDataset, read_pairs
    from nima.models import Transformer
    from nima.models.pretrained import PretrainedError
    from nima.serialization import CheckpointError
    from nima.training import ConfigError, prepare_data
    from nima.training.evaluate import evaluate_pairs, evaluate_tokens, units_of
    from nima.training.sources import load_model
    from nima.training.trainer import load_datasets

    try:
        model, tokenizer, config = load_model(args.source, args.checkpoint)
        if isinstance(model, Transformer):  # pairs, in order
            if args.data is not None:
                data = PairDataset(read_pairs(args.data), tokenizer)
                what = args.data
            else:
                meta = prepare_data(config.data, config.training.seed, pairs=True)
                data = load_datasets(meta)[0 if args.split == "train" else 1]
                what = f"the {args.split} split of {config.data.corpus}"
            print(f"nima eval: {args.source} on {what} ({len(data):,} pairs)", file=sys.stderr)
            result = evaluate_pairs(model, data, batch_size=args.batch_size, stream=sys.stderr)
        else:
            if args.data is not None:
                if tokenizer is None:
                    raise ValueError(f"{args.source} has no tokenizer to encode {args.data} "
                                     f"with (a model folder needs vocab.json and merges.txt)")
                text = Path(args.data).read_text(encoding="utf-8")
                tokens, what = np.asarray(tokenizer.encode(text)), args.data
            elif config is None:
                raise ValueError(f"{args.source} is a model folder: give the text to evaluate "
                                 f"with --data FILE")
            else:
                meta = prepare_data(config.data, config.training.seed)  # as the run did
                tokens = load_datasets(meta)[0 if args.split == "train" else 1].data
                what = f"the {args.split} split of {config.data.corpus}"
            context = args.context or model.config.block_size
            print(f"nima eval: {args.source} on {what} (context {context}, stride "
                  f"{args.stride or context})", file=sys.stderr)
            result = evaluate_tokens(model, tokens, context=args.context, stride=args.stride,
                                     batch_size=args.batch_size, stream=sys.stderr)
            if tokenizer is not None:
                units, unit = units_of(tokenizer, tokens)
                result = dataclasses.replace(result, units=units, unit=unit)
    except (CheckpointError, PretrainedError, ConfigError, FileNotFoundError,
            ValueError) as e:
        raise SystemExit(f"nima eval: {e}") from None
    print(result.summary())


SOURCE_HELP = "a run directory or checkpoint, or a Hugging Face model folder"


def add_eval_parser(commands: Any) -> None:
    p = commands.add_parser("eval", help="loss, perplexity and bits per character over a text",
                            description="Evaluate a model on every token of a split or text "
                                        "file, in order: loss, perplexity, bits per token and "
                                        "per character (per byte for byte-level BPE).")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--data", metavar="FILE", help="a UTF-8 text file to evaluate, or a pairs "
                                                  "file for an encoder-decoder (default: the "
                                                  "run's own split)")
    p.add_argument("--split", choices=["val", "train"], default="val",
                   help="the run's split, without --data (default: val)")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                   help="which checkpoint of a run directory (default: best)")
    p.add_argument("--context", type=_argtype(_positive), default=None,
                   help="tokens per window (default: the model's block_size)")
    p.add_argument("--stride", type=_argtype(_positive), default=None,
                   help="tokens between window starts; below the context, windows overlap and "
                        "each scored token sees at least context - stride before it (default: "
                        "the context, no overlap)")
    p.add_argument("--batch-size", type=_argtype(_positive), default=8,
                   help="windows (or pairs) per forward (default 8)")


def export(args: argparse.Namespace) -> None:
    """Write a run (or a Hugging Face folder) as a NumPy-only `.npz`."""
    from pathlib import Path

    from nima.export import export_npz
    from nima.models.pretrained import PretrainedError
    from nima.serialization import CheckpointError

    source = Path(args.source)
    out = Path(args.out) if args.out else \
        (source / "model.npz" if source.is_dir() else source.with_suffix(".npz"))
    try:
        path = export_npz(source, out, which=args.checkpoint)
    except (CheckpointError, PretrainedError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"nima export: {e}") from None
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); run it with NumPy alone:\n"
          f"  python nima/export/numpy_gpt.py {path} --prompt TEXT")


def add_export_parser(commands: Any) -> None:
    p = commands.add_parser("export", help="write a run as a NumPy-only .npz",
                            description="Export a run's model, config and tokenizer into one "
                                        "file that nima/export/numpy_gpt.py runs with NumPy "
                                        "alone.")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--format", choices=["npz"], default="npz",
                   help="the file format (npz: arrays only, no pickle)")
    p.add_argument("--out", metavar="FILE", help="where to write (default: model.npz in the "
                                                 "run directory, or the checkpoint's name "
                                                 "with .npz)")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                   help="which checkpoint of a run directory (default: best)")


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are about the input — a setting, a file, a run directory — rather
    than a bug: `main` prints them as one line. Anything else keeps its traceback."""
    from nima.data.tokenizers import TokenizerFileError
    from nima.distributed.comm import DistributedError
    from nima.models.pretrained import PretrainedError
    from nima.serialization import CheckpointError
    from nima.settings import SettingsError
    from nima.training.errors import TrainingError

    return (SettingsError, CheckpointError, TokenizerFileError, PretrainedError, TrainingError,
            DistributedError)


# --8<-- [start:main]
def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the command, `reporting` its errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="nima", description="Nima: deep learning from scratch.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="graph, backward, gradcheck and a kernel race")
    demo_parser.add_argument("--quick", action="store_true", help="a smaller kernel race")
    add_params_parser(commands)
    add_train_parser(commands)
    add_generation_parsers(commands)
    add_eval_parser(commands)
    add_export_parser(commands)
    args = parser.parse_args(argv)
    from nima import kernels

    run = {"demo": lambda: demo(quick=args.quick), "params": lambda: params(args),
           "train": lambda: train(args, argv), "sample": lambda: sample(args),
           "build": lambda: train(args, argv), "repl": lambda: repl(args),
           "eval": lambda: evaluate(args), "export": lambda: export(args)}[args.command]
    name = f"nima {args.command}"
    try:
        kernels.current()  # reads NIMA_KERNELS: a bad value is reported here, not mid-run
    except ValueError as e:
        raise SystemExit(f"{name}: {e}") from None
    with reporting(name):
        run()


@contextlib.contextmanager
def reporting(name: str) -> Iterator[None]:
    """Run the block of the command `name`. Nima's own errors (`user_errors`), a file that
    cannot be read, running out of memory and a second Ctrl-C end it with one line on stderr
    — exit status 1, or 130 for Ctrl-C; any other exception is a bug and shows its
    traceback. (`nima train` on several ranks reports inside `abort_on_error`, so the line
    ends the job.)"""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\n{name}: stopped (Ctrl-C)", file=sys.stderr)
        raise SystemExit(130) from None
    except user_errors() as e:
        raise SystemExit(f"{name}: {_one_line(e)}") from None
    except OSError as e:
        if e.filename is None:  # not about a file the user named: a bug, with its traceback
            raise
        raise SystemExit(f"{name}: {e.filename}: {e.strerror or e}") from None
    except MemoryError:
        raise SystemExit(f"{name}: out of memory; lower training.batch_size or the model's "
                         f"size") from None
# --8<-- [end:main]


def _one_line(error: BaseException) -> str:
    """The error's message on one line, at most a few hundred characters."""
    text = str(error).replace("\n", " ") or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


if __name__ == "__main__":
    main()
