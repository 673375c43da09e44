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
      run.lock             held while a process uses the directory (`nima.training.rundir`)

The promises (the fault model is in `docs/promises.md`):

* **Resume gives the same curve.** A checkpoint holds the weights and buffers (the echo state
  and memory bank of the training streams too), the optimizer's moments, the schedule's step,
  the loss scaler, Nima's generator (dropout), the batch sampler's generator and position;
  evaluation batches are drawn from a generator seeded by `(seed, step)` (streams: the first
  `eval_iters` segments, read from a fresh state through the decoding caches), so they never
  disturb training. Stopping at step $s$ and resuming replays steps $s+1, s+2, \dots$ exactly.
* **Ctrl-C saves and exits**, and so do SIGTERM and SIGHUP (a scheduler's stop, a closed
  terminal). The first signal only sets a flag: the step in flight finishes, a checkpoint is
  written and `fit` returns with `interrupted=True`; a second one stops at once. Before the
  first step of a `fit` there is nothing new to save, so a signal there stops at once. A
  half-updated set of weights is never saved.
* **Nothing is half-written.** Checkpoints, plots, the config, the tokenizer copy and rewritten
  metrics go through a temp file and a rename (`nima.serialization.atomic_write`); the metrics
  and the log are appended a line at a time.
* **One process per run directory, and nothing written until everything fits.** The directory
  is locked before it is read; the config, the data, the memory the model needs, the checkpoint
  to resume and its tokenizer are all checked before the first byte is written into it.
* **Divergence stops the run.** A non-finite loss, in any precision, stops it with the cause
  named (diverged weights, or an overflowing forward); weights that are not finite are never
  saved.

Under `mpiexec -n N` the same loop is one rank of a data-parallel job, and the promises hold
for the job; `nima.training.parallel` says what each rank does differently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
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
from nima.data.tokenizers import TokenizerFileError, load_tokenizer
from nima.distributed import Communicator
from nima.generation import GenerationConfig, GenerationOutput, generate
from nima.models.gpt import GPT
from nima.models.memory import available_bytes, format_bytes, training_bytes
from nima.models.seq2seq import Transformer
from nima.nn.recursive_block import ProgressiveDepth
from nima.optim import SGD, Adam, AdamW, GradScaler, clip_grad_norm_
from nima.optim.adam import param_groups_for_decay
from nima.optim.optimizer import Optimizer
from nima.optim.schedule import Constant, Linear, LRScheduler, Noam, WarmupCosine
from nima.serialization import CheckpointError, atomic_write, atomic_write_text
from nima.settings import check_value
from nima.training.batches import make_batches
from nima.training.checkpoint import (
    BEST,
    checkpoint_info,
    checkpoint_path,
    file_sha256,
    first_nonfinite,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    repair_run_dir,
    save_checkpoint,
)
from nima.training.config import GENERATED, Config, ConfigError, DataConfig
from nima.training.errors import TrainingError
from nima.training.metrics import CSV, JSONL, PLOT, MetricsLog, perplexity, plot_curves
from nima.training.parallel import Ranks, check_processes
from nima.training.progress import ProgressBar, format_duration
from nima.training.rundir import CONFIG_FILE, LOG_FILE, RunLock, check_run_dir, claim, writing
from nima.training.sources import build_model, fine_tune_config, load_run, load_source
from nima.training.tasks import corpus_text, stream_loss

__all__ = ["FitResult", "Trainer", "TrainingError", "build_optimizer", "build_scheduler",
           "complete", "load_run", "prepare_data", "sample_text"]

# the signals that save and stop a run, as Ctrl-C does: a scheduler's stop, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


_SHA256 = re.compile(r"[0-9a-f]{64}")


class _StopAtOnce(KeyboardInterrupt):
    """A stop signal before the first step of a `fit`: nothing new to save, so no waiting."""


# --8<-- [start:prepare_data]
def prepare_data(data: DataConfig, seed: int = 0, block_size: int = 256, *,
                 pairs: bool = False, tokenizer: Any = None) -> dict[str, Any]:
    """Tokenize the corpus into `data.out_dir` unless a matching preparation is already there.

    A preparation matches when its `meta.json` records the same corpus text (sha256), tokenizer,
    vocabulary target and validation fraction, and its files are all there (the tokenizer
    readable); anything else is prepared again. A generated corpus (`synthetic`, `brackets`,
    `recall`, `reversal`: `nima.training.tasks.corpus_text`, seeded; the recall distances
    default to `block_size`) is written into `out_dir/corpus.txt` first. With `pairs` the
    corpus is a pairs file, split by `prepare_pairs`; with a `tokenizer` (a fine-tuning run
    keeps its source's) the text is encoded with it, always afresh.

    Returns:
        The preparation's `meta.json`, plus `out_dir`.

    Raises:
        ConfigError: the corpus file does not exist (a config's relative paths are taken
            from its folder, then from Nima's data/ folder), is not UTF-8 text, or is a
            malformed pairs file.
        TrainingError: `out_dir` cannot be written.
    """
    out = Path(data.out_dir)
    try:
        if data.corpus in GENERATED:
            out.mkdir(parents=True, exist_ok=True)
            source = out / "corpus.txt"
            text = corpus_text(data, seed, block_size)
            if not source.is_file() or source.read_bytes() != text.encode("utf-8"):
                atomic_write_text(source, text)
        else:
            source = Path(data.corpus)
            if source.exists() and not source.is_file():  # a FIFO would block, a device never end
                raise ConfigError(f"data.corpus: {source} is not a regular file")
            if not source.is_file():
                raise ConfigError(f"data.corpus: no such file {str(source)!r} (a config's "
                                  f"relative paths are taken from its folder, then from Nima's "
                                  f"data/ folder)")
            text = _read_corpus(source)
        meta = None if tokenizer is not None else _prepared(out, data, text_digest(text), pairs)
        if meta is None and pairs:
            try:
                meta = prepare_pairs(source, out, data.val_fraction)
            except ValueError as e:  # a malformed pairs file
                raise ConfigError(f"data.corpus: {e}") from None
        elif meta is None:
            meta = prepare(source, out, tokenizer or data.tokenizer, data.vocab_size,
                           data.val_fraction)
    except OSError as e:
        raise TrainingError(f"cannot prepare the data in {e.filename or out}: {e.strerror or e}; "
                            f"data.out_dir must be a folder you may write, with room for the "
                            f"prepared corpus") from e
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


def _read_corpus(source: Path) -> str:
    """The corpus text; a file that is not UTF-8 is a `ConfigError` naming it and the place."""
    raw = source.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"data.corpus: {source} is not UTF-8 text (byte 0x{raw[e.start]:02x} "
                          f"on line {line}); convert it, e.g. iconv -f latin1 -t utf-8") from None


def _meta_of(out: Path) -> dict[str, Any]:
    """The `meta.json` of the preparation in `out`, plus `out_dir` (what `prepare_data`
    returned when it prepared it)."""
    return {**json.loads((out / "meta.json").read_text(encoding="utf-8")), "out_dir": str(out)}


def _prepared(out: Path, data: DataConfig, digest: str, pairs: bool) -> dict[str, Any] | None:
    """The `meta.json` of a usable preparation of this corpus in `out`, or None."""
    try:
        meta = _meta_of(out)  # not an object: TypeError
        splits = ("train.tsv", "val.tsv") if pairs else ("train.bin", "val.bin")
        files = [out / meta["tokenizer_file"], *(out / name for name in splits)]
        complete = all(f.is_file() for f in files)  # regular files: a FIFO would block
        if complete:
            load_tokenizer(files[0])  # a damaged tokenizer: prepare again
    except (OSError, ValueError, KeyError, TypeError):  # missing, not JSON, not a tokenizer
        return None
    same_vocab = data.tokenizer == "char" or meta.get("vocab_size") == data.vocab_size
    wanted = {"source_sha256": digest, "tokenizer": data.tokenizer,
              "val_fraction": data.val_fraction, "kind": "pairs" if pairs else None}
    if complete and same_vocab and all(meta.get(k) == v for k, v in wanted.items()):
        return meta
    return None


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
    """What `Trainer.fit` reports: the step reached, the last evaluation (and its step), the
    best validation loss, whether a signal stopped the run (and which), and the last checkpoint
    written."""

    step: int
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    interrupted: bool
    checkpoint: Path | None
    eval_step: int | None = None
    signal: int | None = None


class Trainer:
    """Builds the data, model, optimizer, schedule and loss scaler of a `Config`, and trains.

    The run directory is checked and locked first (`nima.training.rundir.claim`), and stays
    locked until `fit` returns or `close` is called; nothing is written into it until the whole
    start — config, data, memory, the checkpoint to resume and its tokenizer — is known to fit.

    Args:
        config: the validated configuration.
        resume: continue from the run directory's latest checkpoint (a fresh start when it has
            none).
        overwrite: start afresh even if the run directory holds a run (its files are deleted;
            files that are not a run's are left alone).
        stream: where progress and messages go (default `sys.stderr`).
        comm: the ranks of a data-parallel job (`nima.training.parallel`); default
            `nima.distributed.world()`, a single process without `mpiexec`. On several ranks,
            run the trainer inside `nima.distributed.abort_on_error`, as `nima train` does, so
            that an error on one rank ends them all.

    Raises:
        ConfigError: a setting that cannot work (data too short, a model that does not fit in
            memory, a run directory that is a file or the data directory, streams or pairs on
            several processes).
        TrainingError: the run directory is in use, holds something that is not a run, or
            holds a run and neither `resume` nor `overwrite` was given; the corpus gives another
            tokenizer than the run's; a file cannot be written.
        CheckpointError: the checkpoint to resume from is damaged or does not fit.
    """

    def __init__(self, config: Config, *, resume: bool = False, overwrite: bool = False,
                 stream: TextIO | None = None, comm: Communicator | None = None) -> None:
        t = config.training
        self.ranks = Ranks(comm)  # one process, or rank r of an mpiexec job
        check_processes(config, self.ranks.size)
        if config.runtime.retain_memory:  # the config's explicit, process-wide choice
            runtime.retain_freed_memory()
        self.run_dir = Path(t.run_dir)
        self.stream = stream
        self.bar: ProgressBar | None = None
        self._lock: RunLock | None = None  # rank 0's alone
        with self.ranks.first():  # rank 0 readies the data and the run directory; the others
            if self.ranks.writes:  # then build from what it prepared, and write nothing
                check_run_dir(self.run_dir, Path(config.data.out_dir), resume=resume,
                              overwrite=overwrite)  # reads only: refused before the data
            self._build(config, resume=resume)
            if self.ranks.writes:
                self._lock = claim(self.run_dir, Path(config.data.out_dir), resume=resume,
                                   overwrite=overwrite)  # created, locked, checked again
            try:
                self._start(resume=resume, overwrite=overwrite)
            except BaseException:
                self.close()
                raise
        self.ranks.start(self.model, {"config": self.config.to_dict(), "step": self.step})

    def _build(self, config: Config, *, resume: bool) -> None:
        """The data, the resolved config, the model, optimizer, schedule and scaler; nothing
        in the run directory is touched."""
        t = config.training
        resuming = resume and self.run_dir.is_dir() and bool(list_checkpoints(self.run_dir))
        source, tokenizer = None, None  # fine-tuning: the weights and tokenizer to start from
        if t.init_from is not None:
            if not resuming:
                source, tokenizer = load_source(t.init_from)
            elif self.ranks.writes:  # resuming: the data keeps the tokenizer the run started with
                tokenizer = load_tokenizer(self.run_dir / TOKENIZER_FILE)
        self.source = source
        seq2seq = config.model.kind == "seq2seq"
        if self.ranks.writes:
            self.meta = prepare_data(config.data, t.seed, getattr(config.model, "block_size", 0),
                                     pairs=seq2seq, tokenizer=tokenizer)
        else:  # rank 0 has prepared it
            self.meta = _meta_of(Path(config.data.out_dir))
        self.tokenizer_path = Path(self.meta["out_dir"]) / self.meta["tokenizer_file"]
        self.train_data, self.val_data = load_datasets(self.meta)

        resolved = Config.from_dict(config.to_dict())  # a copy; fill in the vocabulary
        if source is not None:
            resolved.model = fine_tune_config(resolved.model, source.config)
        self._resolve_vocabulary(resolved)
        self._check_lengths(resolved)
        if not seq2seq:
            resolved.model.streams = t.batch_size  # one row of echo state and memory per stream
            check_training_memory(resolved)  # before anything large is allocated
        self.config = resolved
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
        try:  # the global batch of every rank's rows; this rank's share of it
            self.batches = self.ranks.shard(make_batches(
                resolved.data.sampling, self.train_data, t.batch_size * self.ranks.size,
                block_size, self.data_rng, group=group))
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
        self._stop: int | None = None  # the signal that asked for a save and a stop
        self.tokenizer_sha256 = file_sha256(self.tokenizer_path)

    def _start(self, *, resume: bool, overwrite: bool) -> None:
        """Repair, resume (in memory), then write the run's files; the directory is locked.
        The ranks other than 0 only resume, from the directory rank 0 has repaired."""
        notes = []
        if self.ranks.writes:
            with writing(self.run_dir, self.run_dir):
                notes = repair_run_dir(self.run_dir)  # what a killed run left half-done
        checkpoint = latest_checkpoint(self.run_dir) if resume else None
        if checkpoint is not None:
            info = self._resume(checkpoint)  # in memory: one that does not fit writes nothing
        if not self.ranks.writes:
            return
        notes += _start_notes(self.config, self.tokenizer_path)
        if checkpoint is not None:
            notes += _length_notes(info["config"], self.config, self.scheduler.get_last_lr()[0],
                                   self.step)
            notes += self.ranks.batch_change(info, self.config.training.batch_size)

        # Everything fits: from here on the run directory is written.
        if checkpoint is None:  # a new run (or a resume with nothing to resume): a clean slate
            stale = [JSONL, CSV, LOG_FILE, PLOT]
            if overwrite and not resume:
                stale += [p.name for p in list_checkpoints(self.run_dir)] + [BEST]
            with writing(self.run_dir, self.run_dir):
                for name in stale:
                    (self.run_dir / name).unlink(missing_ok=True)
        self.metrics = MetricsLog(self.run_dir)
        if self.metrics.skipped:
            notes.append(f"{JSONL}: skipped {len(self.metrics.skipped)} damaged line(s) "
                         f"({'; '.join(self.metrics.skipped[:3])})")
        with writing(self.run_dir / JSONL, self.run_dir):
            if checkpoint is not None:
                self.metrics.truncate_after(self.step)  # records past the checkpoint replay
        with writing(self.run_dir / CONFIG_FILE, self.run_dir):
            atomic_write_text(self.run_dir / CONFIG_FILE,
                              yaml.safe_dump(self.config.to_dict(), sort_keys=False,
                                             allow_unicode=True))
        copy, tokenizer = self.run_dir / TOKENIZER_FILE, self.tokenizer_path.read_bytes()
        if file_sha256(copy) != self.tokenizer_sha256:
            with writing(copy, self.run_dir):
                atomic_write(copy, lambda f: f.write(tokenizer))
        for note in notes:
            self._log(note)
        if checkpoint is not None:
            self._log(f"resumed from {checkpoint.name} at step {self.step}")
        elif resume:
            self._log(f"no checkpoint in {self.run_dir}: starting from step 0")
        if self.source is not None:
            self._log(f"starting from the weights of {self.config.training.init_from} (context "
                      f"{self.source.config.block_size} -> {self.config.model.block_size})")

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
        tokens, or `(src, tgt_in, tgt_out)` pairs; on several ranks, this rank's rows of the
        global batch."""
        rows = self.config.training.batch_size * self.ranks.size
        if isinstance(data, PairDataset):
            return self.ranks.rows(data.get_batch(rows, rng))
        return self.ranks.rows(data.get_batch(rows, self.config.model.block_size, rng))

    def close(self) -> None:
        """Let the run directory go: another process may use it now. `fit` does this when it
        returns; a `fit` after it takes the directory again."""
        if self._lock is not None:
            self._lock.release()

    # --8<-- [start:resume]
    def _resume(self, path: Path) -> dict[str, Any]:
        """Restore the checkpoint at `path` into the model, optimizer, schedule, scaler and
        generators, and return its state (`load_checkpoint`'s answer: the config it was saved
        with, the processes that wrote it); writes nothing. Its tokenizer must be the one the
        data gives now."""
        saved = checkpoint_info(path)["extra"].get("tokenizer_sha256") or file_sha256(
            self.run_dir / TOKENIZER_FILE)  # checkpoints from before the record: the run's copy
        if saved is not None and not (isinstance(saved, str) and _SHA256.fullmatch(saved)):
            raise CheckpointError(f"{path}: its tokenizer record is not a sha256 digest: "
                                  f"{str(saved)[:20]!r}")
        if saved is not None and saved != self.tokenizer_sha256:
            raise TrainingError(
                f"{self.run_dir}: the corpus {self.config.data.corpus} gives another tokenizer "
                f"than the one this run was trained with ({TOKENIZER_FILE} sha256 "
                f"{str(saved)[:12]}..., now {self.tokenizer_sha256[:12]}...); resume with the "
                f"run's corpus, or start a new run (--overwrite, or another training.run_dir)")
        try:
            info = load_checkpoint(path, self.model, self.optimizer, self.scheduler)  # + RNG
            self.data_rng.bit_generator.state = info["rng_states"]["data"]
            self.scaler.load_state_dict(info["extra"]["scaler"])
            self.batches.load_state_dict(info["extra"].get("batches", {}))
            for key, value in info["metrics"].items():  # the last evaluation, as evaluate wrote
                check_value(f"metrics.{key}", value, int if key == "step" else float)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
            if isinstance(e, CheckpointError):
                raise
            problem = f"no {e}" if isinstance(e, KeyError) else str(e)
            raise CheckpointError(f"{path}: its state does not fit this run ({problem[:100]})"
                                  ) from e
        self.step = info["step"]
        self.best_val = info["best"]["metric"] if info["best"] else None  # the run's best
        self.last_eval = info["metrics"]
        return info
    # --8<-- [end:resume]

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (and `best` if its validation loss is the
        lowest so far); returns its path (None on the ranks that do not write).

        Raises:
            TrainingError: the weights are not all finite (nothing is written: the last
                checkpoint stays the last good state), or the file cannot be written.
        """
        bad = first_nonfinite(self.model.state_dict())
        if bad is not None:
            raise TrainingError(f"step {self.step}: the weights hold NaN or infinities ({bad}); "
                                f"not saved, so the last checkpoint stays the last good state; "
                                f"lower optimizer.lr or set training.grad_clip")
        val = self.last_eval.get("val_loss") if self.last_eval.get("step") == self.step else None
        if val is not None and (self.best_val is None or val < self.best_val):
            self.best_val = val
        if not self.ranks.writes:
            return None
        with writing(checkpoint_path(self.run_dir, self.step), self.run_dir):
            path = save_checkpoint(
                self.run_dir, self.step, self.model, self.optimizer, self.scheduler,
                config=self.config.to_dict(),
                rng_states={"nima": nima_random.get_state(),
                            "data": self.data_rng.bit_generator.state},
                metrics=self.last_eval, keep_last=self.config.training.keep_last,
                best_metric=val, extra={"scaler": self.scaler.state_dict(),
                                        "tokenizer_sha256": self.tokenizer_sha256,
                                        "batches": self.batches.state_dict(),
                                        "processes": self.ranks.size})
        self._log(f"step {self.step}: saved {path.name}")
        return path

    # --8<-- [start:train_step]
    def train_step(self) -> float:
        """One optimizer step over `grad_accum` micro-batches (each `batches.group` batches:
        `model.tbptt` consecutive segments of a stream); returns the mean loss."""
        t = self.config.training
        self.model.train()
        self.ranks.seed_dropout(t.seed, self.step)  # several ranks: each its own masks
        if self.depth is not None:
            self.depth.apply(self.model, self.step)  # progressive depth: R for this step
        parts = t.grad_accum * self.batches.group
        total = 0.0
        self.step_tokens = 0  # target positions of the global batch, for tokens/s
        for _ in range(t.grad_accum):
            loss = None
            for _ in range(self.batches.group):  # one graph: the echo state links them
                batch = self.batches.next()  # (x, y) windows, or (src, tgt_in, tgt_out) pairs
                if self.batches.starts_streams:
                    self.model.reset_state()  # the streams begin again: so does their state
                self.step_tokens += batch[-1].size * self.ranks.size
                with autocast(enabled=t.mixed_precision):
                    logits, part = self.model(*batch)
                self.batches.record(logits.data, batch[-1])
                if parts > 1:
                    part = part / parts  # the mean over micro-batches, summed by backward
                loss = part if loss is None else loss + part
            self.scaler.scale(loss).backward()
            total += loss.item()
        self.ranks.allreduce_gradients(self.model.parameters())  # the mean over ranks
        total = self.ranks.mean(total)
        if not math.isfinite(total):  # in every precision: a float16 overflow is no excuse
            raise TrainingError(f"step {self.step + 1}: the loss is {total}; "
                                f"{self._divergence()}")
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
            result[f"{split}_loss"] = self.ranks.mean(float(np.mean(losses)))
        self.model.train()
        return result
    # --8<-- [end:estimate_loss]

    def _divergence(self) -> str:
        """Why a loss is not finite, and what to change: the weights, or the forward."""
        bad = first_nonfinite(self.model.state_dict())
        if bad is not None:
            return (f"the weights hold NaN or infinities ({bad}): the updates diverged; lower "
                    f"optimizer.lr or set training.grad_clip")
        if self.config.training.mixed_precision:
            return ("the weights are finite, so the float16 forward overflowed; lower "
                    "optimizer.lr or set training.mixed_precision: false")
        return ("the weights are finite, so the forward overflowed; lower optimizer.lr or set "
                "training.grad_clip")

    def evaluate(self) -> dict[str, float]:
        """Estimate the losses at the current step, record them, redraw the plot.

        Raises:
            TrainingError: a loss is not finite (recorded first, then the run stops)."""
        losses = self.estimate_loss()
        ppl = {f"{split}_perplexity": perplexity(losses[f"{split}_loss"])
               for split in ("train", "val")}
        self.last_eval = {"step": self.step, **losses}
        self._append({"step": self.step, "kind": "eval", **losses, **ppl})
        self._log(f"step {self.step}: train loss {losses['train_loss']:.4f} "
                  f"(ppl {ppl['train_perplexity']:.2f}), val loss {losses['val_loss']:.4f} "
                  f"(ppl {ppl['val_perplexity']:.2f})")
        for name, value in losses.items():
            if not math.isfinite(value):
                raise TrainingError(f"step {self.step}: the {name.replace('_', ' ')} is {value};"
                                    f" {self._divergence()}")
        self.plot()
        return losses

    def plot(self) -> None:
        """Redraw `curves.png` from the metrics so far (rank 0)."""
        if not self.ranks.writes:
            return
        with writing(self.run_dir / PLOT, self.run_dir):
            plot_curves(self.metrics.records, self.run_dir / PLOT,
                        title=f"{self.run_dir.name}: {self.model.num_parameters():,} parameters")

    def _append(self, record: dict[str, Any]) -> None:
        """Add a record to the metrics (rank 0)."""
        if not self.ranks.writes:
            return
        with writing(self.run_dir / JSONL, self.run_dir):
            self.metrics.append(record)

    # --8<-- [start:fit]
    def fit(self) -> FitResult:
        """Train from the current step to `training.max_iters`."""
        t, n = self.config.training, self.ranks.size
        if self._lock is not None:
            self._lock.acquire()  # again, if an earlier fit let the directory go
        unit = "pairs" if self.config.model.kind == "seq2seq" else \
            f"windows of {self.config.model.block_size} tokens"
        self._stop, start = None, self.step
        stop: int | None = None  # the signal all ranks agreed to stop on
        saved: Path | None = None
        r = self.config.runtime
        try:
            self._log(f"training {self.model.num_parameters():,} parameters for {t.max_iters} "
                      f"steps ({t.batch_size * n * t.grad_accum} {unit} each"
                      f"{f', on {n} processes' if n > 1 else ''}) into {self.run_dir}")
            self.bar = ProgressBar(t.max_iters, self.step, self.stream) \
                if self.ranks.writes else None
            with self._signals_save(start), runtime.using(
                    backend=r.backend, numba_threads=r.numba_threads, blas_threads=r.blas_threads):
                if self.step == 0:
                    self._log(f"step 0: estimating the loss on {t.eval_iters} batches of each "
                              f"split (a first run also compiles the kernels, up to a minute)")
                    self.evaluate()
                if self.bar is not None:
                    self.bar.begin("first steps (a first run compiles the backward kernels)")
                interval_time, interval_tokens, timed_time, timed_steps = 0.0, 0, 0.0, 0
                while self.step < t.max_iters and not stop:
                    begin = time.perf_counter()
                    lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
                    loss = self.train_step()
                    stop = self.ranks.max(self._stop or 0) or None  # all stop after one step
                    self.step += 1
                    seconds = time.perf_counter() - begin
                    interval_time += seconds
                    interval_tokens += self.step_tokens
                    if self.step > start + 1:  # the first step compiles: not a step time
                        timed_time, timed_steps = timed_time + seconds, timed_steps + 1
                    last = self.step == t.max_iters
                    if self.step % t.log_interval == 0 or last:
                        speed = interval_tokens / interval_time
                        self._append({"step": self.step, "kind": "train", "loss": loss,
                                      "perplexity": perplexity(loss), "lr": lr,
                                      "tokens_per_s": speed,
                                      "elapsed_s": interval_time})
                        if self.bar is not None:
                            self.bar.update(self.step, loss, lr, speed,
                                            timed_time / timed_steps if timed_steps else None)
                        interval_time, interval_tokens, timed_time, timed_steps = 0.0, 0, 0.0, 0
                    if self.step % t.eval_interval == 0 or last:
                        self.evaluate()
                    if self.step % t.checkpoint_interval == 0 or last or stop:
                        saved = self.save()
        except _StopAtOnce:
            self._log(f"{signal.Signals(self._stop).name} before the first step: stopped at "
                      f"once, nothing new to save")
        finally:
            if self.bar is not None:
                self.bar.close()
            self.close()
        signum = self._stop or stop  # this rank's signal, or another rank's
        if signum:
            self._log(f"interrupted at step {self.step}; resume with: nima train {self.run_dir}")
        return FitResult(self.step, self.last_eval.get("train_loss"),
                         self.last_eval.get("val_loss"), self.best_val, bool(signum), saved,
                         self.last_eval.get("step"), signum)
    # --8<-- [end:fit]

    @contextlib.contextmanager
    def _signals_save(self, start: int) -> Iterator[None]:
        """While training, the first Ctrl-C, SIGTERM or SIGHUP asks for a save and a clean stop
        (or, in a single process, stops at once while no step has been taken since `start`:
        nothing to save; on several ranks the others would wait for this one in the step's
        allreduce, so the step is taken); a second one interrupts at once. A signal the
        process ignores stays ignored (`nohup` ignores SIGHUP; a shell's background job,
        SIGINT). The previous handlers come back afterwards."""
        def on_signal(signum: int, frame: Any) -> None:
            if self._stop:
                raise KeyboardInterrupt
            self._stop = signum
            if self.step == start and self.ranks.size == 1:
                raise _StopAtOnce
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            with contextlib.suppress(OSError, TrainingError):  # a full disk, a closed terminal
                self._log(f"{name}: finishing this step, then saving ({name} again to stop "
                          f"at once)")

        previous = {}
        try:
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    previous[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread: no signal handling
            pass
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

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
        """Show `text` and add it to the log (rank 0)."""
        if not self.ranks.writes:
            return
        if self.bar is not None:
            self.bar.message(text)  # clears the bar's line first on a terminal
        else:
            with contextlib.suppress(OSError, ValueError):  # a closed terminal loses no step
                print(text, file=self.stream or sys.stderr, flush=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with writing(self.run_dir / LOG_FILE, self.run_dir), \
                (self.run_dir / LOG_FILE).open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {text}\n")


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


def sample_text(model: GPT | Transformer, tokenizer: Any, prompt: str,
                config: GenerationConfig) -> str:
    """The first text `complete` writes (statistics off)."""
    return complete(model, tokenizer, prompt, config, stats=False)[0][0]


def summary(result: FitResult, elapsed: float) -> str:
    """One line on how the run ended; the validation loss says at which step it was measured
    when that is not the last step."""
    val = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
    if result.val_loss is not None and result.eval_step not in (None, result.step):
        val += f" at step {result.eval_step}"
    best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
    state = "finished"
    if result.interrupted:
        state = ("interrupted" if result.signal in (None, signal.SIGINT)
                 else f"stopped by {signal.Signals(result.signal).name}")
    return (f"{state} at step {result.step} in {format_duration(elapsed)}: val loss {val} "
            f"(best {best})")


def check_training_memory(config: Config) -> None:
    """Refuse a run whose training step would not fit in the memory available, before any of
    it is allocated (`nima.models.memory.training_bytes`).

    Raises:
        ConfigError: naming the estimate, its biggest part and what to lower.
    """
    o = config.optimizer
    slots = 2 if o.name in ("adam", "adamw") else int(o.momentum > 0)
    need = training_bytes(config.model.to_gpt_config(), config.training.batch_size, slots)
    have = available_bytes()
    if have is None or need["total"] <= have:
        return
    parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in need.items() if k != "total")
    key = "model" if need["total"] - need["activations"] > have else "training.batch_size"
    raise ConfigError(f"{key}: a training step would need about {format_bytes(need['total'])} "
                      f"({parts}), but {format_bytes(have)} of memory are available; lower "
                      f"training.batch_size or model.block_size, or use a smaller model")


def _length_notes(saved: Any, config: Config, lr: float, step: int) -> list[str]:
    """A note when a resume changes `max_iters` under a schedule that follows it."""
    before = saved.get("training", {}).get("max_iters") if isinstance(saved, dict) else None
    s, now = config.schedule, config.training.max_iters
    if before in (None, now) or s.total is not None or s.name not in ("warmup_cosine", "linear"):
        return []
    return [f"note: training.max_iters is {now}, was {before}: the schedule now spans the new "
            f"length (learning rate {lr:.2e} at step {step}); set schedule.total to keep the "
            f"old one"]


def _start_notes(config: Config, tokenizer_path: Path) -> list[str]:
    """Warnings worth a line in the log at the start: a schedule cut short or stretched, a
    prompt the sample after training cannot encode."""
    notes = []
    s, t = config.schedule, config.training
    if s.total is not None and s.total != t.max_iters and s.name in ("warmup_cosine", "linear"):
        notes.append(f"note: schedule.total={s.total} but training.max_iters={t.max_iters}: the "
                     f"learning rate follows a {s.total}-step schedule "
                     f"({100 * t.max_iters / s.total:.0f}% of it); set schedule.total: null "
                     f"to decay over the run")
    try:
        load_tokenizer(tokenizer_path).encode(config.sampling.prompt)
    except (ValueError, TokenizerFileError) as e:
        notes.append(f"note: sampling.prompt cannot be encoded ({e}); the sample after "
                     f"training will be skipped")
    return notes
