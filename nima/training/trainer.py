r"""The training loop: a `Config` in, a trained model, its metrics, plots and checkpoints out.

`Trainer(config).fit()` is what `nima train CONFIG.yaml` runs, for a GPT (`model.kind: gpt`,
windows of a token file) or the encoder–decoder (`model.kind: seq2seq`, batches of
`(src, tgt_in, tgt_out)` from a pairs file), and, with `training.init_from`, from another
model's weights. One optimizer step is

$$\theta \leftarrow \text{AdamW}\Bigl(\theta,\ \text{clip}\Bigl(\tfrac{1}{A}\sum_{a=1}^{A}
\nabla_\theta\,\mathcal{L}(x_a, y_a)\Bigr),\ \eta_t\Bigr)$$

over $A$ = `training.grad_accum` micro-batches of `training.batch_size` windows of
`model.block_size` tokens, with $\eta_t$ from the schedule. Around it the loop logs the batch
loss, the learning rate and tokens/s every `log_interval` steps; estimates train and validation
loss every `eval_interval` steps (and at the last step); and saves a checkpoint every
`checkpoint_interval` steps (and at the last step) into `training.run_dir`. The micro-batches
come from `data.sampling` (`nima.training.batches`): random windows, windows drawn by their
loss, or streams of consecutive segments — $A \cdot k$ segments a step, with $k$ =
`model.tbptt`, the losses of each $k$ summed into one backward (truncated backpropagation
through time for the echo state); the side losses a model adds in training (ACT's ponder cost,
InfoNCE) are part of the loss it returns.

    run_dir/
      config.yaml          the resolved configuration (vocab size filled in)
      tokenizer.txt        the tokenizer, so the run directory alone can sample
      metrics.jsonl/.csv   one record per logged step (`nima.training.metrics`)
      curves.png           loss and learning rate against the step
      log.txt              evaluations, checkpoints, interruptions
      ckpt-0000250.safetensors ... best.safetensors

Three promises:

* **Resume gives the same curve.** A checkpoint holds the weights and buffers (the echo state
  and memory bank of the training streams too), the optimizer's moments, the schedule's step,
  the loss scaler, Nima's generator (dropout), the batch sampler's generator and position;
  evaluation batches are drawn from a generator seeded by `(seed, step)` (streams: the first
  `eval_iters` segments, read from a fresh state through the decoding caches), so they never
  disturb training. Stopping at step $s$ and resuming replays steps $s+1, s+2, \dots$ exactly.
* **Ctrl-C saves and exits.** The first SIGINT only sets a flag: the step in flight finishes,
  a checkpoint is written and `fit` returns with `interrupted=True` (a second Ctrl-C stops at
  once). A half-updated set of weights is never saved.
* **Nothing is half-written.** Checkpoints, plots and rewritten metrics go through a temp file
  and a rename (`nima.serialization.atomic_write`).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from nima.data.pairs import BOS, EOS, PAD, PairDataset, prepare_pairs, read_pairs
from nima.data.tokenizers import load_tokenizer
from nima.generation import GenerationConfig, GenerationOutput, generate
from nima.models.gpt import GPT
from nima.models.seq2seq import Transformer
from nima.nn.recursive_block import ProgressiveDepth
from nima.optim import SGD, Adam, AdamW, GradScaler, clip_grad_norm_
from nima.optim.adam import param_groups_for_decay
from nima.optim.optimizer import Optimizer
from nima.optim.schedule import Constant, Linear, LRScheduler, Noam, WarmupCosine
from nima.serialization import atomic_write_text
from nima.training.batches import make_batches
from nima.training.checkpoint import (
    BEST,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    repair_run_dir,
    save_checkpoint,
)
from nima.training.config import GENERATED, Config, ConfigError, DataConfig
from nima.training.metrics import PLOT, MetricsLog, perplexity, plot_curves
from nima.training.progress import ProgressBar, format_duration
from nima.training.sources import build_model, fine_tune_config, load_run, load_source
from nima.training.tasks import corpus_text, stream_loss

__all__ = ["FitResult", "Trainer", "TrainingError", "build_optimizer", "build_scheduler",
           "complete", "load_run", "prepare_data", "sample_text"]

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"


class TrainingError(RuntimeError):
    """The run cannot go on: a non-finite loss, or a run directory that would be overwritten."""


# --8<-- [start:prepare_data]
def prepare_data(data: DataConfig, seed: int = 0, block_size: int = 256, *,
                 pairs: bool = False, tokenizer: Any = None) -> dict[str, Any]:
    """Tokenize the corpus into `data.out_dir` unless a matching preparation is already there.

    A preparation matches when its `meta.json` records the same corpus text (sha256), tokenizer,
    vocabulary target and validation fraction; anything else is prepared again. A generated
    corpus (`synthetic`, `brackets`, `recall`, `reversal`: `nima.training.tasks.corpus_text`,
    seeded; the recall distances default to `block_size`) is written into `out_dir/corpus.txt`
    first. With `pairs` the corpus is a pairs file, split by `prepare_pairs`; with a `tokenizer`
    (a fine-tuning run keeps its source's) the text is encoded with it, always afresh.

    Returns:
        The preparation's `meta.json`, plus `out_dir`.

    Raises:
        ConfigError: the corpus file does not exist, or a pairs file is malformed.
    """
    out = Path(data.out_dir)
    if data.corpus in GENERATED:
        out.mkdir(parents=True, exist_ok=True)
        source = out / "corpus.txt"
        text = corpus_text(data, seed, block_size)
        if not source.exists() or source.read_text(encoding="utf-8") != text:
            atomic_write_text(source, text)
    else:
        source = Path(data.corpus)
        if not source.is_file():
            raise ConfigError(f"data.corpus: no such file {str(source)!r} (a config's relative "
                              f"paths are taken from its folder, then from Nima's data/ folder)")
    meta_path = out / "meta.json"
    wanted = {"tokenizer": data.tokenizer, "val_fraction": data.val_fraction,
              "kind": "pairs" if pairs else None}
    if meta_path.exists() and tokenizer is None:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        digest = text_digest(source.read_text(encoding="utf-8"))
        same_vocab = data.tokenizer == "char" or meta.get("vocab_size") == data.vocab_size
        if (meta.get("source_sha256") == digest and same_vocab
                and all(meta.get(k) == v for k, v in wanted.items())):
            return {**meta, "out_dir": str(out)}
    try:
        meta = prepare_pairs(source, out, data.val_fraction) if pairs else \
            prepare(source, out, tokenizer or data.tokenizer, data.vocab_size, data.val_fraction)
    except ValueError as e:
        raise ConfigError(f"data.corpus: {e}") from None
    return {**meta, "out_dir": str(out)}
# --8<-- [end:prepare_data]


def load_datasets(meta: dict[str, Any]) -> tuple[Any, Any]:
    """The train and validation splits of a preparation: `TokenDataset`s, or `PairDataset`s for
    a pairs corpus."""
    out = Path(meta["out_dir"])
    if meta.get("kind") == "pairs":
        tokenizer = load_tokenizer(out / meta["tokenizer_file"])
        return tuple(PairDataset(read_pairs(out / f"{split}.tsv"), tokenizer)
                     for split in ("train", "val"))
    return tuple(TokenDataset(out / f"{split}.bin", meta["dtype"]) for split in ("train", "val"))


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

    Raises:
        TrainingError: the run directory holds checkpoints and neither `resume` nor `overwrite`
            was given.
        CheckpointError: the checkpoint to resume from is damaged or does not fit.
    """

    def __init__(self, config: Config, *, resume: bool = False, overwrite: bool = False,
                 stream: TextIO | None = None) -> None:
        t = config.training
        if config.runtime.retain_memory:  # the config's explicit, process-wide choice
            runtime.retain_freed_memory()
        self.run_dir = Path(t.run_dir)
        existing = list_checkpoints(self.run_dir) if self.run_dir.is_dir() else []
        if existing and not resume and not overwrite:
            raise TrainingError(f"{self.run_dir} already holds {len(existing)} checkpoint(s); "
                                f"resume it (nima train {self.run_dir}) or start over with "
                                f"--overwrite")
        checkpoint = latest_checkpoint(self.run_dir) if resume and existing else None
        source, tokenizer = None, None  # fine-tuning: the weights and tokenizer to start from
        if t.init_from is not None:
            if checkpoint is None:
                source, tokenizer = load_source(t.init_from)
            else:  # resuming: the data keeps the tokenizer the run started with
                tokenizer = load_tokenizer(self.run_dir / TOKENIZER_FILE)
        seq2seq = config.model.kind == "seq2seq"
        self.meta = prepare_data(config.data, t.seed, getattr(config.model, "block_size", 0),
                                 pairs=seq2seq, tokenizer=tokenizer)
        self.tokenizer_path = Path(self.meta["out_dir"]) / self.meta["tokenizer_file"]
        self.train_data, self.val_data = load_datasets(self.meta)

        resolved = Config.from_dict(config.to_dict())  # a copy; fill in the vocabulary
        if source is not None:
            resolved.model = fine_tune_config(resolved.model, source.config)
        self._resolve_vocabulary(resolved)
        self._check_lengths(resolved)
        if not seq2seq:
            resolved.model.streams = t.batch_size  # one row of echo state and memory per stream
        self.config = resolved
        self.stream = stream
        nima_random.manual_seed(t.seed)  # weights, then dropout draw from Nima's generator
        if source is None:
            self.model = build_model(resolved.model)
        else:  # the source's weights, at its context, then cropped to this run's
            self.model = GPT(dataclasses.replace(resolved.model.to_gpt_config(),
                                                 block_size=source.config.block_size))
            self.model.load_state_dict(source.state_dict())
            self.model.crop_block_size(resolved.model.block_size)
        self.optimizer = build_optimizer(resolved, self.model)
        self.scheduler = build_scheduler(resolved, self.optimizer)
        self.scaler = GradScaler(enabled=t.mixed_precision)
        self.data_rng = np.random.default_rng(t.seed)  # the batch sampler's own generator
        block_size, group = (0, 1) if seq2seq else (resolved.model.block_size,
                                                     resolved.model.tbptt)
        try:
            self.batches = make_batches(resolved.data.sampling, self.train_data, t.batch_size,
                                        block_size, self.data_rng, group=group)
            if resolved.data.sampling == "stream":
                make_batches("stream", self.val_data, t.batch_size, block_size,
                             self.data_rng)  # validation must hold a segment per stream too
        except ValueError as e:
            raise ConfigError(f"training.batch_size: {e}") from None
        self.depth = ProgressiveDepth(1, resolved.model.recursion_depth, t.progressive_depth) \
            if t.progressive_depth is not None else None
        self.step = 0
        self.best_val: float | None = None
        self.last_eval: dict[str, float] = {}
        self._stop = False
        self.bar: ProgressBar | None = None

        self.run_dir.mkdir(parents=True, exist_ok=True)
        repairs = repair_run_dir(self.run_dir)  # what a killed run left half-done
        if resume and checkpoint is None:
            checkpoint = latest_checkpoint(self.run_dir)
        if overwrite and not resume:
            for path in [*existing, self.run_dir / BEST]:
                path.unlink(missing_ok=True)
        if checkpoint is None:
            for name in ("metrics.jsonl", "metrics.csv", LOG_FILE, PLOT):
                (self.run_dir / name).unlink(missing_ok=True)
        self.metrics = MetricsLog(self.run_dir)
        atomic_write_text(self.run_dir / CONFIG_FILE,
                          yaml.safe_dump(resolved.to_dict(), sort_keys=False,
                                         allow_unicode=True))
        shutil.copyfile(self.tokenizer_path, self.run_dir / TOKENIZER_FILE)
        for note in repairs:
            self._log(note)
        if checkpoint is not None:
            self._resume(checkpoint)
        elif resume:
            self._log(f"no checkpoint in {self.run_dir}: starting from step 0")
        if source is not None:
            self._log(f"starting from the weights of {t.init_from} (context "
                      f"{source.config.block_size} -> {resolved.model.block_size})")

    def _resolve_vocabulary(self, config: Config) -> None:
        """Fill the model's null vocabularies with the tokenizer's size, which they must hold."""
        m, n = config.model, int(self.meta["vocab_size"])
        for name in ("src_vocab_size", "tgt_vocab_size") if m.kind == "seq2seq" \
                else ("vocab_size",):
            if getattr(m, name) is None:
                setattr(m, name, n)
            elif getattr(m, name) < n:
                raise ConfigError(f"model.{name}: {getattr(m, name)} is smaller than the "
                                  f"tokenizer's {n} tokens")

    def _check_lengths(self, config: Config) -> None:
        """The data must fit the model: windows longer than the context, pairs within it."""
        m = config.model
        if m.kind == "seq2seq":
            longest = max(max(d.max_source, d.max_target) for d in (self.train_data,
                                                                     self.val_data))
            if longest > m.max_len:
                raise ConfigError(f"model.max_len: the pairs need {longest} positions (the "
                                  f"longest source, or target with its start token), more "
                                  f"than max_len={m.max_len}")
            return
        for name, ds in (("train", self.train_data), ("val", self.val_data)):
            if len(ds) <= m.block_size:
                raise ConfigError(f"model.block_size: the {name} split holds {len(ds)} tokens, "
                                  f"not more than block_size={m.block_size}")

    def batch(self, data: Any, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """A random batch of `data` as the model's inputs: `(x, y)` windows of `block_size`
        tokens, or `(src, tgt_in, tgt_out)` pairs."""
        t = self.config.training
        if isinstance(data, PairDataset):
            return data.get_batch(t.batch_size, rng)
        return data.get_batch(t.batch_size, self.config.model.block_size, rng)

    # --8<-- [start:resume]
    def _resume(self, path: Path) -> None:
        info = load_checkpoint(path, self.model, self.optimizer, self.scheduler)  # + Nima's RNG
        self.data_rng.bit_generator.state = info["rng_states"]["data"]
        self.scaler.load_state_dict(info["extra"]["scaler"])
        self.batches.load_state_dict(info["extra"].get("batches", {}))
        self.step = info["step"]
        self.best_val = info["best"]["metric"] if info["best"] else None  # the run's best
        self.last_eval = info["metrics"]
        self.metrics.truncate_after(self.step)  # records past the checkpoint are replayed
        self._log(f"resumed from {path.name} at step {self.step}")
    # --8<-- [end:resume]

    def save(self) -> Path:
        """Write a checkpoint of the current step (and `best` if its validation loss is the
        lowest so far)."""
        val = self.last_eval.get("val_loss") if self.last_eval.get("step") == self.step else None
        if val is not None and (self.best_val is None or val < self.best_val):
            self.best_val = val
        path = save_checkpoint(
            self.run_dir, self.step, self.model, self.optimizer, self.scheduler,
            config=self.config.to_dict(),
            rng_states={"nima": nima_random.get_state(), "data": self.data_rng.bit_generator.state},
            metrics=self.last_eval, keep_last=self.config.training.keep_last,
            best_metric=val, extra={"scaler": self.scaler.state_dict(),
                                    "batches": self.batches.state_dict()})
        self._log(f"step {self.step}: saved {path.name}")
        return path

    # --8<-- [start:train_step]
    def train_step(self) -> float:
        """One optimizer step over `grad_accum` micro-batches (each `batches.group` batches:
        `model.tbptt` consecutive segments of a stream); returns the mean loss."""
        t = self.config.training
        self.model.train()
        if self.depth is not None:
            self.depth.apply(self.model, self.step)  # progressive depth: R for this step
        parts = t.grad_accum * self.batches.group
        total = 0.0
        self.step_tokens = 0  # target positions, for tokens/s
        for _ in range(t.grad_accum):
            loss = None
            for _ in range(self.batches.group):  # one graph: the echo state links them
                batch = self.batches.next()  # (x, y) windows, or (src, tgt_in, tgt_out) pairs
                if self.batches.starts_streams:
                    self.model.reset_state()  # the streams begin again: so does their state
                self.step_tokens += batch[-1].size
                with autocast(enabled=t.mixed_precision):
                    logits, part = self.model(*batch)
                self.batches.record(logits.data, batch[-1])
                if parts > 1:
                    part = part / parts  # the mean over micro-batches, summed by backward
                loss = part if loss is None else loss + part
            self.scaler.scale(loss).backward()
            total += loss.item()
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
        in any run, and independent of the training batches. With `data.sampling: stream`,
        the first `eval_iters` segments of each split's streams, read from a fresh state
        (`nima.training.tasks.stream_loss`)."""
        t = self.config.training
        rng = np.random.default_rng([t.seed, self.step])
        self.model.eval()
        if self.depth is not None:
            self.depth.apply(self.model, self.step)
        result = {}
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            if self.config.data.sampling == "stream":
                with autocast(enabled=t.mixed_precision):
                    result[f"{split}_loss"] = stream_loss(self.model, data, t.batch_size,
                                                          t.eval_iters)
                continue
            losses = []
            for _ in range(t.eval_iters):
                batch = self.batch(data, rng)
                with autocast(enabled=t.mixed_precision):
                    losses.append(self.model(*batch)[1].item())
            result[f"{split}_loss"] = float(np.mean(losses))
        self.model.train()
        return result
    # --8<-- [end:estimate_loss]

    def evaluate(self) -> dict[str, float]:
        """Estimate the losses at the current step, record them, redraw the plot."""
        losses = self.estimate_loss()
        ppl = {f"{split}_perplexity": perplexity(losses[f"{split}_loss"])
               for split in ("train", "val")}
        self.last_eval = {"step": self.step, **losses}
        self.metrics.append({"step": self.step, "kind": "eval", **losses, **ppl})
        self._log(f"step {self.step}: train loss {losses['train_loss']:.4f} "
                  f"(ppl {ppl['train_perplexity']:.2f}), val loss {losses['val_loss']:.4f} "
                  f"(ppl {ppl['val_perplexity']:.2f})")
        self.plot()
        return losses

    def plot(self) -> None:
        """Redraw `curves.png` from the metrics so far."""
        plot_curves(self.metrics.records, self.run_dir / PLOT,
                    title=f"{self.run_dir.name}: {self.model.num_parameters():,} parameters")

    # --8<-- [start:fit]
    def fit(self) -> FitResult:
        """Train from the current step to `training.max_iters`."""
        t = self.config.training
        unit = "pairs" if self.config.model.kind == "seq2seq" else \
            f"windows of {self.config.model.block_size} tokens"
        self._log(f"training {self.model.num_parameters():,} parameters for {t.max_iters} steps"
                  f" ({t.batch_size * t.grad_accum} {unit} each) into {self.run_dir}")
        self.bar = ProgressBar(t.max_iters, self.step, self.stream)
        saved: Path | None = None
        r = self.config.runtime
        with self._ctrl_c_saves(), runtime.using(backend=r.backend, numba_threads=r.numba_threads,
                                                 blas_threads=r.blas_threads):
            if self.step == 0:
                self.evaluate()
            interval_time, interval_tokens = 0.0, 0
            while self.step < t.max_iters and not self._stop:
                start = time.perf_counter()
                lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
                loss = self.train_step()
                self.step += 1
                interval_time += time.perf_counter() - start
                interval_tokens += self.step_tokens
                last = self.step == t.max_iters
                if self.step % t.log_interval == 0 or last:
                    speed = interval_tokens / interval_time
                    self.metrics.append({"step": self.step, "kind": "train", "loss": loss,
                                         "perplexity": perplexity(loss),
                                         "lr": lr, "tokens_per_s": speed,
                                         "elapsed_s": interval_time})
                    self.bar.update(self.step, loss, lr, speed)
                    interval_time, interval_tokens = 0.0, 0
                if self.step % t.eval_interval == 0 or last:
                    self.evaluate()
                if self.step % t.checkpoint_interval == 0 or last or self._stop:
                    saved = self.save()
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

    def _log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with (self.run_dir / LOG_FILE).open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {text}\n")
        if self.bar is not None:
            self.bar.message(text)  # clears the bar's line first on a terminal
        else:
            print(text, file=self.stream or sys.stderr, flush=True)


# --8<-- [start:complete]
def complete(model: GPT | Transformer, tokenizer: Any, prompt: str, config: GenerationConfig,
             stats: bool = True) -> tuple[list[str], GenerationOutput]:
    """What `generate` writes for `prompt` under `config`, as text, one string per returned
    sequence, and the raw output: for a GPT the prompt and its continuation; for an
    encoder-decoder the target its decoder writes for the source `prompt`, from the start
    token to the end token (which stops it unless `config` names another)."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"the prompt {prompt!r} encodes to no tokens")
    if isinstance(model, Transformer):
        config = config.updated(**{k: v for k, v in (("eos_token_id", EOS),
                                                     ("pad_token_id", PAD))
                                   if getattr(config, k) is None})
        out = generate(model.condition(np.asarray([ids])), np.array([[BOS]]), config=config,
                       tokenizer=tokenizer, stats=stats)
        texts = [tokenizer.decode([i for i in out.generated(row) if i not in (EOS, PAD)])
                 for row in range(len(out.lengths))]
        return texts, out
    out = generate(model, np.asarray([ids]), config=config, tokenizer=tokenizer, stats=stats)
    return [tokenizer.decode(row) for row in out.tolist()], out
# --8<-- [end:complete]


def sample_text(model: GPT | Transformer, tokenizer: Any, prompt: str,
                config: GenerationConfig) -> str:
    """The first text `complete` writes (statistics off)."""
    return complete(model, tokenizer, prompt, config, stats=False)[0][0]


def summary(result: FitResult, elapsed: float) -> str:
    """One line on how the run ended."""
    val = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
    best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
    state = "interrupted" if result.interrupted else "finished"
    return (f"{state} at step {result.step} in {format_duration(elapsed)}: val loss {val} "
            f"(best {best})")
