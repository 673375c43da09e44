r"""The training loop: a `Config` in, a trained GPT, its metrics, plots and checkpoints out.

`Trainer(config).fit()` is what `nima train CONFIG.yaml` runs. One optimizer step is

$$\theta \leftarrow \text{AdamW}\Bigl(\theta,\ \text{clip}\Bigl(\tfrac{1}{A}\sum_{a=1}^{A}
\nabla_\theta\,\mathcal{L}(x_a, y_a)\Bigr),\ \eta_t\Bigr)$$

over $A$ = `training.grad_accum` micro-batches of `training.batch_size` windows of
`model.block_size` tokens, with $\eta_t$ from the schedule. Around it the loop logs the batch
loss, the learning rate and tokens/s every `log_interval` steps; estimates train and validation
loss every `eval_interval` steps (and at the last step); and saves a checkpoint every
`checkpoint_interval` steps (and at the last step) into `training.run_dir`:

    run_dir/
      config.yaml          the resolved configuration (vocab size filled in)
      tokenizer.txt        the tokenizer, so the run directory alone can sample
      metrics.jsonl/.csv   one record per logged step (`nima.training.metrics`)
      curves.png           loss and learning rate against the step
      log.txt              evaluations, checkpoints, interruptions
      ckpt-0000250.safetensors ... best.safetensors

Three promises:

* **Resume gives the same curve.** A checkpoint holds the weights, the optimizer's moments, the
  schedule's step, the loss scaler, Nima's generator (dropout) and the batch sampler's generator;
  evaluation batches are drawn from a generator seeded by `(seed, step)`, so they never disturb
  training. Stopping at step $s$ and resuming replays steps $s+1, s+2, \dots$ exactly.
* **Ctrl-C saves and exits.** The first SIGINT only sets a flag: the step in flight finishes,
  a checkpoint is written and `fit` returns with `interrupted=True` (a second Ctrl-C stops at
  once). A half-updated set of weights is never saved.
* **Nothing is half-written.** Checkpoints, plots and rewritten metrics go through a temp file
  and a rename (`nima.serialization.atomic_write`).

Under `mpiexec -n N` the same loop is one rank of a data-parallel job, and all three promises
hold for the job; `nima.training.parallel` says what each rank does differently.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from nima import random as nima_random
from nima import runtime
from nima.amp import autocast
from nima.autograd import no_grad
from nima.data.dataset import TOKENIZER_FILE, TokenDataset, prepare, text_digest
from nima.data.synthetic import generate_corpus
from nima.data.tokenizers import load_tokenizer
from nima.distributed import Communicator
from nima.generation import GenerationConfig, generate
from nima.models.gpt import GPT
from nima.optim import SGD, Adam, AdamW, GradScaler, clip_grad_norm_
from nima.optim.adam import param_groups_for_decay
from nima.optim.optimizer import Optimizer
from nima.optim.schedule import Constant, Linear, LRScheduler, Noam, WarmupCosine
from nima.serialization import CheckpointError, PathLike, atomic_write_text
from nima.training.checkpoint import (
    BEST,
    best_checkpoint,
    checkpoint_info,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    repair_run_dir,
    save_checkpoint,
)
from nima.training.config import Config, ConfigError, DataConfig
from nima.training.metrics import PLOT, MetricsLog, plot_curves
from nima.training.parallel import Ranks
from nima.training.progress import ProgressBar, format_duration

__all__ = ["FitResult", "Trainer", "TrainingError", "build_optimizer", "build_scheduler",
           "load_run", "prepare_data"]

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"


class TrainingError(RuntimeError):
    """The run cannot go on: a non-finite loss, or a run directory that would be overwritten."""


# --8<-- [start:prepare_data]
def prepare_data(data: DataConfig, seed: int = 0) -> dict[str, Any]:
    """Tokenize the corpus into `data.out_dir` unless a matching preparation is already there.

    A preparation matches when its `meta.json` records the same corpus text (sha256), tokenizer,
    vocabulary target and validation fraction; anything else is prepared again. The corpus
    `synthetic` is generated (`nima.data.synthetic`, seeded) into `out_dir/corpus.txt` first.

    Returns:
        The preparation's `meta.json`, plus `out_dir`.

    Raises:
        ConfigError: the corpus file does not exist (relative paths are taken from the current
            directory).
    """
    out = Path(data.out_dir)
    if data.corpus == "synthetic":
        out.mkdir(parents=True, exist_ok=True)
        source = out / "corpus.txt"
        text = generate_corpus(n_sections=data.synthetic_sections, seed=seed)
        if not source.exists() or source.read_text(encoding="utf-8") != text:
            atomic_write_text(source, text)
    else:
        source = Path(data.corpus)
        if not source.is_file():
            raise ConfigError(f"data.corpus: no such file {str(source)!r} (relative paths are "
                              f"taken from the current directory, {Path.cwd()})")
    meta_path = out / "meta.json"
    wanted = {"tokenizer": data.tokenizer, "val_fraction": data.val_fraction}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        digest = text_digest(source.read_text(encoding="utf-8"))
        same_vocab = data.tokenizer == "char" or meta.get("vocab_size") == data.vocab_size
        if (meta.get("source_sha256") == digest and same_vocab
                and all(meta.get(k) == v for k, v in wanted.items())):
            return {**meta, "out_dir": str(out)}
    meta = prepare(source, out, data.tokenizer, data.vocab_size, data.val_fraction)
    return {**meta, "out_dir": str(out)}
# --8<-- [end:prepare_data]


# --8<-- [start:build]
def build_optimizer(config: Config, model: GPT) -> Optimizer:
    """The optimizer named by `optimizer.name`, with nanoGPT's two groups for weight decay
    (matrices decayed; biases, norms and embeddings not)."""
    o = config.optimizer
    groups = param_groups_for_decay(model, o.weight_decay)
    if o.name == "adamw":
        return AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps)
    if o.name == "adam":
        return Adam(groups, lr=o.lr, betas=o.betas, eps=o.eps)
    return SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)


def build_scheduler(config: Config, optimizer: Optimizer) -> LRScheduler:
    """The schedule named by `schedule.name`; `schedule.total` null means `max_iters`."""
    s = config.schedule
    total = s.total if s.total is not None else config.training.max_iters
    if s.name == "warmup_cosine":
        return WarmupCosine(optimizer, warmup=s.warmup, total=total, min_lr=s.min_lr)
    if s.name == "linear":
        return Linear(optimizer, total=total, end_factor=s.min_lr / config.optimizer.lr)
    if s.name == "noam":
        return Noam(optimizer, d_model=config.model.n_embd, warmup=s.warmup)
    return Constant(optimizer)
# --8<-- [end:build]


@dataclass
class FitResult:
    """What `Trainer.fit` reports: the step reached, the last evaluation, the best validation
    loss, whether Ctrl-C stopped the run, and the last checkpoint written."""

    step: int
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    interrupted: bool
    checkpoint: Path | None


class Trainer:
    """Builds the data, model, optimizer, schedule and loss scaler of a `Config`, and trains.

    Args:
        config: the validated configuration.
        resume: continue from the run directory's latest checkpoint (a fresh start when it has
            none).
        overwrite: start afresh even if the run directory holds checkpoints (they are deleted).
        stream: where progress and messages go (default `sys.stderr`).
        comm: the ranks of a data-parallel job (`nima.training.parallel`); default
            `nima.distributed.world()`, a single process without `mpiexec`. On several ranks,
            run the trainer inside `nima.distributed.abort_on_error`, as `nima train` does, so
            that an error on one rank ends them all.

    Raises:
        TrainingError: the run directory holds checkpoints and neither `resume` nor `overwrite`
            was given.
        CheckpointError: the checkpoint to resume from is damaged or does not fit.
    """

    def __init__(self, config: Config, *, resume: bool = False, overwrite: bool = False,
                 stream: TextIO | None = None, comm: Communicator | None = None) -> None:
        t = config.training
        if config.runtime.retain_memory:  # the config's explicit, process-wide choice
            runtime.retain_freed_memory()
        self.ranks = Ranks(comm)  # one process, or rank r of an mpiexec job
        self.run_dir = Path(t.run_dir)
        existing = list_checkpoints(self.run_dir) if self.run_dir.is_dir() else []
        if existing and not resume and not overwrite:
            raise TrainingError(f"{self.run_dir} already holds {len(existing)} checkpoint(s); "
                                f"resume it (nima train {self.run_dir}) or start over with "
                                f"--overwrite")
        with self.ranks.first():  # rank 0 prepares the data; the others find it prepared
            self.meta = prepare_data(config.data, t.seed)
        out = Path(self.meta["out_dir"])
        self.tokenizer_path = out / self.meta["tokenizer_file"]
        self.train_data = self.ranks.shard(TokenDataset(out / "train.bin", self.meta["dtype"]))
        self.val_data = self.ranks.shard(TokenDataset(out / "val.bin", self.meta["dtype"]))
        for name, ds in (("train", self.train_data), ("val", self.val_data)):
            if len(ds) <= config.model.block_size:
                raise ConfigError(f"model.block_size: the {name} split holds {len(ds)} tokens, "
                                  f"not more than block_size={config.model.block_size}")

        resolved = Config.from_dict(config.to_dict())  # a copy; fill in the vocabulary
        resolved.model.vocab_size = config.model.vocab_size or int(self.meta["vocab_size"])
        if resolved.model.vocab_size < self.meta["vocab_size"]:
            raise ConfigError(f"model.vocab_size: {resolved.model.vocab_size} is smaller than "
                              f"the tokenizer's {self.meta['vocab_size']} tokens")
        self.config = resolved
        self.stream = stream
        nima_random.manual_seed(t.seed)  # weights, then dropout draw from Nima's generator
        self.model = GPT(resolved.model.to_gpt_config())
        self.ranks.start(self.model, resolved.to_dict())  # the same config; rank 0's weights
        self.optimizer = build_optimizer(resolved, self.model)
        self.scheduler = build_scheduler(resolved, self.optimizer)
        self.scaler = GradScaler(enabled=t.mixed_precision)
        self.data_rng = np.random.default_rng(t.seed)  # the batch sampler's own generator
        self.step = 0
        self.best_val: float | None = None
        self.last_eval: dict[str, float] = {}
        self._stop = False
        self.bar: ProgressBar | None = None

        with self.ranks.first():  # rank 0 alone writes the run directory, before others read
            repairs = self._prepare_run_dir(existing, resume, overwrite)
            checkpoint = latest_checkpoint(self.run_dir) if resume else None
        self.metrics = MetricsLog(self.run_dir)
        for note in repairs:
            self._log(note)
        if checkpoint is not None:
            self._resume(checkpoint)
        elif resume:
            self._log(f"no checkpoint in {self.run_dir}: starting from step 0")

    def _prepare_run_dir(self, existing: list[Path], resume: bool, overwrite: bool) -> list[str]:
        """Repair, clear and fill the run directory (rank 0 only; nothing on other ranks);
        returns the repairs made, for the log."""
        if not self.ranks.writes:
            return []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        repairs = repair_run_dir(self.run_dir)  # what a killed run left half-done
        if overwrite and not resume:
            for path in [*existing, self.run_dir / BEST]:
                path.unlink(missing_ok=True)
        if not resume or latest_checkpoint(self.run_dir) is None:
            for name in ("metrics.jsonl", "metrics.csv", LOG_FILE, PLOT):
                (self.run_dir / name).unlink(missing_ok=True)
        atomic_write_text(self.run_dir / CONFIG_FILE,
                          yaml.safe_dump(self.config.to_dict(), sort_keys=False,
                                         allow_unicode=True))
        shutil.copyfile(self.tokenizer_path, self.run_dir / TOKENIZER_FILE)
        return repairs

    # --8<-- [start:resume]
    def _resume(self, path: Path) -> None:
        info = load_checkpoint(path, self.model, self.optimizer, self.scheduler)  # + Nima's RNG
        self.data_rng.bit_generator.state = info["rng_states"]["data"]
        self.scaler.load_state_dict(info["extra"]["scaler"])
        self.step = info["step"]
        self.best_val = info["best"]["metric"] if info["best"] else None  # the run's best
        self.last_eval = info["metrics"]
        if self.ranks.writes:
            self.metrics.truncate_after(self.step)  # records past the checkpoint are replayed
        self.ranks.check_same("the checkpoint resumed from", [path.name, self.step])
        self._log(f"resumed from {path.name} at step {self.step}")
        change = self.ranks.batch_change(info, self.config.training.batch_size)
        if change:
            self._log(change)
    # --8<-- [end:resume]

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (and `best` if its validation loss is the
        lowest so far); returns its path (None on the ranks that do not write)."""
        val = self.last_eval.get("val_loss") if self.last_eval.get("step") == self.step else None
        if val is not None and (self.best_val is None or val < self.best_val):
            self.best_val = val
        if not self.ranks.writes:
            return None
        path = save_checkpoint(
            self.run_dir, self.step, self.model, self.optimizer, self.scheduler,
            config=self.config.to_dict(),
            rng_states={"nima": nima_random.get_state(), "data": self.data_rng.bit_generator.state},
            metrics=self.last_eval, keep_last=self.config.training.keep_last,
            best_metric=val, extra={"scaler": self.scaler.state_dict(),
                                    "processes": self.ranks.size})
        self._log(f"step {self.step}: saved {path.name}")
        return path

    # --8<-- [start:train_step]
    def train_step(self) -> float:
        """One optimizer step over `grad_accum` micro-batches; returns the mean loss."""
        t, m = self.config.training, self.config.model
        self.model.train()
        self.ranks.seed_dropout(t.seed, self.step)  # several ranks: each its own masks
        total = 0.0
        for _ in range(t.grad_accum):
            x, y = self.train_data.get_batch(t.batch_size, m.block_size, self.data_rng)
            with autocast(enabled=t.mixed_precision):
                _, loss = self.model(x, y)
            if t.grad_accum > 1:
                loss = loss / t.grad_accum  # the mean over micro-batches, summed by backward
            self.scaler.scale(loss).backward()
            total += loss.item()
        self.ranks.allreduce_gradients(self.model.parameters())  # the mean over ranks
        total = self.ranks.mean(total)
        if not math.isfinite(total) and not t.mixed_precision:
            raise TrainingError(f"step {self.step + 1}: the loss is {total}; lower "
                                f"optimizer.lr or set training.grad_clip")
        if t.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)  # skipped if a float16 gradient overflowed
        self.scaler.update()
        self.optimizer.zero_grad()
        self.scheduler.step()
        return total
    # --8<-- [end:train_step]

    # --8<-- [start:estimate_loss]
    @no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over `eval_iters` random batches of each split, in eval mode (no dropout).

        The batches come from a generator seeded by `(seed, step)`: the same at a given step
        in any run, and independent of the training batches."""
        t, m = self.config.training, self.config.model
        rng = np.random.default_rng([t.seed, self.step])
        self.model.eval()
        result = {}
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            losses = []
            for _ in range(t.eval_iters):
                x, y = data.get_batch(t.batch_size, m.block_size, rng)
                with autocast(enabled=t.mixed_precision):
                    losses.append(self.model(x, y)[1].item())
            result[f"{split}_loss"] = self.ranks.mean(float(np.mean(losses)))
        self.model.train()
        return result
    # --8<-- [end:estimate_loss]

    def evaluate(self) -> dict[str, float]:
        """Estimate the losses at the current step, record them, redraw the plot."""
        losses = self.estimate_loss()
        self.last_eval = {"step": self.step, **losses}
        self._append({"step": self.step, "kind": "eval", **losses})
        self._log(f"step {self.step}: train loss {losses['train_loss']:.4f}, "
                  f"val loss {losses['val_loss']:.4f}")
        self.plot()
        return losses

    def plot(self) -> None:
        """Redraw `curves.png` from the metrics so far (rank 0)."""
        if not self.ranks.writes:
            return
        plot_curves(self.metrics.records, self.run_dir / PLOT,
                    title=f"{self.run_dir.name}: {self.model.num_parameters():,} parameters")

    # --8<-- [start:fit]
    def fit(self) -> FitResult:
        """Train from the current step to `training.max_iters`."""
        t = self.config.training
        tokens_per_step = (t.batch_size * self.ranks.size * self.config.model.block_size
                           * t.grad_accum)
        self._log(f"training {self.model.num_parameters():,} parameters for {t.max_iters} steps"
                  f" ({tokens_per_step:,} tokens each) into {self.run_dir}")
        self.bar = ProgressBar(t.max_iters, self.step, self.stream) if self.ranks.writes else None
        saved: Path | None = None
        r = self.config.runtime
        with self._ctrl_c_saves(), runtime.using(backend=r.backend, numba_threads=r.numba_threads,
                                                 blas_threads=r.blas_threads):
            if self.step == 0:
                self.evaluate()
            interval_time, interval_steps, stop = 0.0, 0, False
            while self.step < t.max_iters and not stop:
                start = time.perf_counter()
                lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
                loss = self.train_step()
                stop = self._stop = self.ranks.any(self._stop)  # all stop after the same step
                self.step += 1
                interval_time += time.perf_counter() - start
                interval_steps += 1
                last = self.step == t.max_iters
                if self.step % t.log_interval == 0 or last:
                    speed = interval_steps * tokens_per_step / interval_time
                    self._append({"step": self.step, "kind": "train", "loss": loss, "lr": lr,
                                  "tokens_per_s": speed, "elapsed_s": interval_time})
                    if self.bar is not None:
                        self.bar.update(self.step, loss, lr, speed)
                    interval_time, interval_steps = 0.0, 0
                if self.step % t.eval_interval == 0 or last:
                    self.evaluate()
                if self.step % t.checkpoint_interval == 0 or last or stop:
                    saved = self.save()
        if self.bar is not None:
            self.bar.close()
        if self._stop:
            self._log(f"interrupted at step {self.step}; resume with: nima train {self.run_dir}")
        return FitResult(self.step, self.last_eval.get("train_loss"),
                         self.last_eval.get("val_loss"), self.best_val, self._stop, saved)
    # --8<-- [end:fit]

    @contextlib.contextmanager
    def _ctrl_c_saves(self) -> Iterator[None]:
        """While training, the first Ctrl-C asks for a save and a clean stop; the second one
        interrupts at once."""
        def on_sigint(signum: int, frame: Any) -> None:
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True
            self._log("Ctrl-C: finishing this step, then saving (Ctrl-C again to abort)")

        try:
            previous = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread: no signal handling
            previous = None
        try:
            yield
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def sample(self, prompt: str | None = None, **settings: Any) -> str:
        """Text generated from `prompt` (default the config's) with the `sampling` settings of
        the config, any of them overridden by `settings` (`max_new_tokens=50`); the seed is
        the training seed unless the config or `settings` give one."""
        s = self.config.sampling
        config = s.generation_config().updated(**{"seed": self.config.training.seed,
                                                  **({} if s.seed is None else {"seed": s.seed}),
                                                  **settings})
        tokenizer = load_tokenizer(self.tokenizer_path)
        return sample_text(self.model, tokenizer, s.prompt if prompt is None else prompt, config)

    def _append(self, record: dict[str, Any]) -> None:
        """Add a record to the metrics (rank 0)."""
        if self.ranks.writes:
            self.metrics.append(record)

    def _log(self, text: str) -> None:
        if not self.ranks.writes:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with (self.run_dir / LOG_FILE).open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {text}\n")
        if self.bar is not None:
            self.bar.message(text)  # clears the bar's line first on a terminal
        else:
            print(text, file=self.stream or sys.stderr, flush=True)


def sample_text(model: GPT, tokenizer: Any, prompt: str, config: GenerationConfig) -> str:
    """The prompt and the text `generate` continues it with under `config`."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("sample: the prompt must hold at least one token, got an empty one")
    out = generate(model, np.asarray([ids]), config=config, stats=False)
    return tokenizer.decode(out.tolist()[0])


def load_run(path: PathLike, which: str = "best") -> tuple[GPT, Any, Config]:
    """A trained model, its tokenizer and its config, from a run directory (`which`: `"best"`
    or `"latest"` checkpoint) or from a checkpoint file (its folder must hold
    `tokenizer.txt`).

    Raises:
        CheckpointError: no checkpoint, or a damaged one.
    """
    path = Path(path)
    if path.is_dir():
        ckpt = (best_checkpoint(path) if which == "best" else None) or latest_checkpoint(path)
        if ckpt is None:
            raise CheckpointError(f"{path}: no checkpoint in this run directory")
    else:
        ckpt = path
    config = Config.from_dict(checkpoint_info(ckpt)["config"])
    model = GPT(config.model.to_gpt_config())
    load_checkpoint(ckpt, model)
    model.eval()
    tokenizer_file = ckpt.parent / TOKENIZER_FILE
    if not tokenizer_file.exists():
        raise CheckpointError(f"{ckpt}: no {TOKENIZER_FILE} beside it to decode tokens")
    return model, load_tokenizer(tokenizer_file), config


def summary(result: FitResult, elapsed: float) -> str:
    """One line on how the run ended."""
    val = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
    best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
    state = "interrupted" if result.interrupted else "finished"
    return (f"{state} at step {result.step} in {format_duration(elapsed)}: val loss {val} "
            f"(best {best})")
