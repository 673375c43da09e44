"""A training run under faults: a resume that does not fit writes nothing, another corpus's
tokenizer is refused, divergence stops the run in every precision, a full disk or a read-only
file system costs nothing before the last checkpoint, a damaged metrics file or a hand-edited
checkpoint is reported instead of crashing, and every file is written whole."""

from __future__ import annotations

import builtins
import errno
import io
import json
import math
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_runs import on_stop_signal, own_stop_signals, tiny_config

import nima
from nima.nn import Linear
from nima.serialization import CheckpointError, is_temporary, load, load_metadata, save
from nima.training import (
    ConfigError,
    Trainer,
    TrainingError,
    best_checkpoint,
    checkpoint_info,
    list_checkpoints,
    load_run,
    repair_run_dir,
    save_checkpoint,
)
from nima.training.metrics import read_metrics
from nima.training.trainer import FitResult, summary

FAST = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def weights(trainer: Trainer) -> dict[str, np.ndarray]:
    return trainer.model.state_dict()


class Finished:
    """A finished 40-step run: its folder, final weights and metrics (short repr for
    hypothesis's reports)."""

    def __init__(self, root: Path, final: dict, records: list) -> None:
        self.root, self.final, self.records = root, final, records

    def __repr__(self) -> str:
        return f"Finished({self.root.name})"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 40-step run, every checkpoint kept (every 10 steps)."""
    tmp = tmp_path_factory.mktemp("finished")
    trainer = Trainer(tiny_config(tmp, training={"keep_last": 10}))
    trainer.fit()
    return Finished(tmp, weights(trainer), read_metrics(tmp / "run" / "metrics.jsonl"))


def copy_at(finished, tmp_path: Path, step: int) -> Path:
    """The finished run copied into `tmp_path`, cut back to its checkpoint of `step` (and the
    prepared data beside it)."""
    source = finished.root
    shutil.copytree(source / "data", tmp_path / "data", dirs_exist_ok=True)
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(source / "run", run)
    for path in list_checkpoints(run):
        if checkpoint_info(path)["step"] > step:
            path.unlink()
    repair_run_dir(run)  # best.safetensors as a run stopped at `step` would have it
    return run


def untimed(records):
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")}
            for r in records]


# ----------------------------------------------------------------------------- #3 #4 resume
@pytest.mark.parametrize("change", [{"model": {"n_embd": 32}}, {"model": {"n_layer": 2}},
                                    {"model": {"vocab_size": 64}}])
def test_a_resume_that_does_not_fit_writes_nothing(finished, tmp_path, change):
    """The field report: config.yaml was rewritten before the checkpoint was checked, so an
    incompatible --set left a run that could never be resumed."""
    run = copy_at(finished, tmp_path, 40)
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="does not fit"):
        Trainer(tiny_config(tmp_path, **change), resume=True)
    after = snapshot(run)
    after.pop("run.lock", None)
    before.pop("run.lock", None)
    assert after == before
    assert Trainer(tiny_config(tmp_path), resume=True).step == 40  # still resumable


def test_another_corpus_is_refused_unless_a_new_run_is_asked_for(finished, tmp_path):
    run = copy_at(finished, tmp_path, 40)
    before = snapshot(run)
    other = tmp_path / "other.txt"
    other.write_text("a different corpus, with its own letters: XYZ! " * 300)
    with pytest.raises(TrainingError, match=r"the corpus .*other.txt gives another tokenizer than "
                                            r"the one this run was trained with.*--overwrite"):
        Trainer(tiny_config(tmp_path, data={"corpus": str(other), "out_dir": str(tmp_path / "o")}),
                resume=True)
    assert {k: v for k, v in snapshot(run).items() if k != "run.lock"} == {
        k: v for k, v in before.items() if k != "run.lock"}
    fresh = Trainer(tiny_config(tmp_path, data={"corpus": str(other),
                                                "out_dir": str(tmp_path / "o")}), overwrite=True)
    fresh.close()
    assert (run / "tokenizer.txt").read_bytes() == fresh.tokenizer_path.read_bytes()


def test_a_longer_resume_says_the_schedule_stretches(finished, tmp_path):
    copy_at(finished, tmp_path, 40)
    trainer = Trainer(tiny_config(tmp_path, training={"max_iters": 60}), resume=True)
    trainer.close()
    assert ("note: training.max_iters is 60, was 40: the schedule now spans the new length "
            f"(learning rate {trainer.scheduler.lr_at(40):.2e} at step 40); set schedule.total "
            "to keep the old one") in (tmp_path / "run" / "log.txt").read_text()


def test_each_checkpoint_records_its_tokenizer(finished, tmp_path):
    run = copy_at(finished, tmp_path, 40)
    recorded = checkpoint_info(list_checkpoints(run)[-1])["extra"]["tokenizer_sha256"]
    import hashlib
    assert recorded == hashlib.sha256((run / "tokenizer.txt").read_bytes()).hexdigest()
    (run / "tokenizer.txt").write_text((run / "tokenizer.txt").read_text().replace("a", "b", 1))
    with pytest.raises(CheckpointError, match="is not the tokenizer it was trained with"):
        load_run(run)


# ----------------------------------------------------------------------------- #5 divergence
@pytest.mark.parametrize("mixed", [False, True])
def test_divergence_stops_the_run_in_every_precision(tmp_path, mixed):
    """The field report: with mixed precision, lr 1e4 exited 0 with "val loss inf" and wrote
    checkpoints (and best) whose every tensor was NaN."""
    config = tiny_config(tmp_path, optimizer={"lr": 1e4}, schedule={"warmup": 0},
                         training={"mixed_precision": mixed, "grad_clip": None})
    trainer = Trainer(config)
    with pytest.raises(TrainingError, match=r"^step \d+: the (loss|train loss|val loss) is "
                                            r"(nan|inf|-inf); the weights"):
        trainer.fit()
    for path in [*list_checkpoints(tmp_path / "run"), tmp_path / "run" / "best.safetensors"]:
        if path.exists():
            assert all(np.isfinite(v).all() for v in load(path).values()), path


def test_a_nan_weight_is_named_and_never_saved(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    step = trainer.optimizer.step

    def poisoned() -> None:  # the update of step 15 puts a NaN into one weight
        step()
        if trainer.step == 14:
            trainer.model.blocks[0].ffn.fc.weight.data[0, 0] = np.nan

    trainer.optimizer.step = poisoned
    with pytest.raises(TrainingError, match=r"^step 16: the loss is nan; the weights hold NaN or "
                                            r"infinities \(blocks\.0\.ffn\.fc\.weight\)"):
        trainer.fit()
    assert [checkpoint_info(p)["step"] for p in list_checkpoints(tmp_path / "run")] == [10]
    trainer.step = 20
    with pytest.raises(TrainingError, match="not saved, so the last checkpoint stays"):
        trainer.save()
    assert [checkpoint_info(p)["step"] for p in list_checkpoints(tmp_path / "run")] == [10]


def test_a_checkpoint_with_non_finite_weights_is_never_the_best(tmp_path):
    nima.manual_seed(0)
    model = Linear(2, 2)
    save_checkpoint(tmp_path, 1, model, None, best_metric=2.0)
    model.weight.data[0, 0] = np.inf
    save_checkpoint(tmp_path, 2, model, None, best_metric=1.0)  # lower, but not finite weights
    assert checkpoint_info(best_checkpoint(tmp_path))["step"] == 1
    assert checkpoint_info(tmp_path / "best.safetensors")["step"] == 1


def test_sampling_from_a_nan_model_says_so(finished, tmp_path):
    run = copy_at(finished, tmp_path, 40)
    path = list_checkpoints(run)[-1]
    tensors, meta = load(path), load_metadata(path)
    tensors["model.blocks.0.attn.proj.weight"][:] = np.nan
    save(tensors, path, meta)
    with pytest.raises(CheckpointError, match=r"NaN or infinities \(blocks.0.attn.proj.weight\), "
                                              r"so this model cannot generate text"):
        load_run(run, which="latest")


# ----------------------------------------------------------------------------- #10 atomic
def test_no_file_of_a_run_is_ever_rewritten_in_place(finished, tmp_path, monkeypatch):
    """Every file the run writes goes through a temporary and a rename, or is appended to a
    line at a time; the field report had the tokenizer copied in place at resume, truncated by
    a kill."""
    run = copy_at(finished, tmp_path, 20)
    (run / "tokenizer.txt").unlink()  # so a resume must copy it
    appended = {"metrics.jsonl", "metrics.csv", "log.txt"}
    seen: list[tuple[str, str]] = []

    def check(path, how: str) -> None:
        path = Path(os.fsdecode(path)) if not isinstance(path, int) else None
        if path is not None and path.parent == run and not is_temporary(path.name):
            seen.append((path.name, how))
            assert how == "r" or (how == "a" and path.name in appended) or (
                how == "lock" and path.name == "run.lock"), (path.name, how)

    real_open, real_os_open = builtins.open, os.open

    def patched_open(file, mode="r", *args, **kwargs):
        check(file, "a" if "a" in mode else "w" if set(mode) & set("wx+") else "r")
        return real_open(file, mode, *args, **kwargs)

    def patched_os_open(path, flags, *args, **kwargs):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC)
        check(path, "r" if not writes else "lock" if Path(path).name == "run.lock" else "w")
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", patched_open)
    monkeypatch.setattr(io, "open", patched_open)
    monkeypatch.setattr(os, "open", patched_os_open)
    trainer = Trainer(tiny_config(tmp_path, training={"max_iters": 30}), resume=True)
    trainer.fit()
    assert ("log.txt", "a") in seen and ("metrics.jsonl", "a") in seen
    assert (run / "tokenizer.txt").read_bytes() == trainer.tokenizer_path.read_bytes()


# ----------------------------------------------------------------------------- #11 metrics
GOOD = {"step": 3, "kind": "train", "loss": 2.5, "lr": 1e-3}
DAMAGE = {
    "torn": b'{"step": 4, "kind": "tr',
    "not utf-8": b'{"step": 5, "kind": "train", "loss": 2.0}\xff\xfe',
    "no step": json.dumps({"kind": "train", "loss": 2.0}).encode(),
    "string step": json.dumps({"step": "7", "kind": "train"}).encode(),
    "bool step": json.dumps({"step": True, "kind": "eval"}).encode(),
    "negative step": json.dumps({"step": -1, "kind": "eval"}).encode(),
    "wrong type": json.dumps({"step": 8, "kind": "train", "loss": "low"}).encode(),
    "a list": b"[1, 2, 3]",
    "no kind": json.dumps({"step": 9, "loss": 1.0}).encode(),
}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.just("good"), st.sampled_from(sorted(DAMAGE))), max_size=12))
def test_read_metrics_keeps_the_good_records_and_names_the_rest(lines):
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "metrics.jsonl"
        path.write_bytes(b"\n".join(json.dumps(GOOD).encode() if kind == "good"
                                    else DAMAGE[kind] for kind in lines))
        skipped: list[str] = []
        records = read_metrics(path, skipped)
    assert records == [GOOD] * lines.count("good")
    assert [s.split(":")[0] for s in skipped] == [
        f"line {i + 1}" for i, kind in enumerate(lines) if kind != "good"]


@settings(max_examples=6, **FAST)
@given(damage=st.lists(st.sampled_from(sorted(DAMAGE)), min_size=1, max_size=4),
       where=st.integers(0, 30))
def test_a_damaged_metrics_file_never_blocks_a_resume(finished, tmp_path, damage, where):
    run = copy_at(finished, tmp_path, 20)
    lines = (run / "metrics.jsonl").read_bytes().splitlines()
    where = min(where, len(lines))
    lines[where:where] = [DAMAGE[d] for d in damage]
    (run / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    trainer = Trainer(tiny_config(tmp_path), resume=True)
    assert trainer.step == 20
    log = (run / "log.txt").read_text()
    assert f"metrics.jsonl: skipped {len(damage)} damaged line(s)" in log
    trainer.fit()
    final, records = finished.final, finished.records
    assert untimed(read_metrics(run / "metrics.jsonl")) == untimed(records)
    assert all(np.array_equal(final[k], v) for k, v in weights(trainer).items())


# ----------------------------------------------------------------------------- #13 disk faults
class Disk:
    """The file system under `run`, failing with `error` once `budget` bytes have been written
    (ENOSPC: the write that crosses it writes what fits) or from the `budget`-th file opened
    for writing on (EROFS)."""

    def __init__(self, run: Path, error: int, budget: int) -> None:
        self.run, self.error, self.budget = run, error, budget
        self.used = self.opened = 0

    def fail(self) -> OSError:
        return OSError(self.error, os.strerror(self.error))

    def opening(self) -> None:
        self.opened += 1
        if self.error == errno.EROFS and self.opened > self.budget:
            raise self.fail()

    def spend(self, f, data) -> int:
        room = self.budget - self.used
        if self.error == errno.ENOSPC and len(data) > room:
            f.write(data[:max(room, 0)])
            f.flush()
            self.used = self.budget
            raise self.fail()
        self.used += len(data)
        return f.write(data)


class Filling:
    def __init__(self, f, disk: Disk) -> None:
        self._f, self._disk = f, disk

    def write(self, data):
        return self._disk.spend(self._f, data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def install(disk: Disk, monkeypatch) -> None:
    real_open, real_fdopen = builtins.open, os.fdopen

    def inside(path) -> bool:
        return Path(os.fsdecode(path)).resolve().parent == disk.run.resolve()

    def patched_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if set(mode) & set("wax+") and not isinstance(file, int) and inside(file):
            try:
                disk.opening()
            except OSError:
                f.close()
                raise
            return Filling(f, disk)
        return f

    def patched_fdopen(fd, mode="r", *args, **kwargs):
        if set(mode) & set("wax+") and inside(os.readlink(f"/proc/self/fd/{fd}")):
            disk.opening()
            return Filling(real_fdopen(fd, mode, *args, **kwargs), disk)
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", patched_open)
    monkeypatch.setattr(io, "open", patched_open)
    monkeypatch.setattr(os, "fdopen", patched_fdopen)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@settings(max_examples=8, **FAST)
@given(error=st.sampled_from([errno.ENOSPC, errno.EROFS]), budget=st.integers(0, 400_000))
def test_a_full_disk_or_a_read_only_file_system_loses_nothing_before_it(finished, tmp_path,
                                                                        error, budget):
    """The fault strikes anywhere in a resumed run (a metrics line, the log, the plot, a
    checkpoint, the best link): one line naming the file and what to do; then, the fault gone,
    the run resumes and ends exactly as the run that never met it."""
    run = copy_at(finished, tmp_path, 10)
    disk = Disk(run, error, budget if error == errno.ENOSPC else budget // 20_000)
    trainer = Trainer(tiny_config(tmp_path), resume=True)
    with pytest.MonkeyPatch.context() as patch:
        install(disk, patch)
        try:
            trainer.fit()
        except TrainingError as e:
            message = str(e)
            assert "\n" not in message and message.startswith(f"cannot write {run}/")
            assert os.strerror(error) in message
            assert ("free some space, then resume with nima train" in message
                    if error == errno.ENOSPC else "Read-only file system; choose" in message)
    assert not [p for p in run.iterdir() if is_temporary(p.name)]
    kept = list_checkpoints(run)
    assert 1 <= len(kept) <= 2 + 1  # keep_last, and the best's own file while unlinked
    for path in kept:
        checkpoint_info(path)  # every checkpoint left is whole
    resumed = Trainer(tiny_config(tmp_path), resume=True)
    assert resumed.step >= 10
    resumed.fit()
    final, records = finished.final, finished.records
    assert all(np.array_equal(final[k], v) for k, v in weights(resumed).items())
    assert untimed(read_metrics(run / "metrics.jsonl")) == untimed(records)
    assert checkpoint_info(best_checkpoint(run))["step"] == min(
        (r for r in records if r["kind"] == "eval" and r["step"] > 0),
        key=lambda r: r["val_loss"])["step"]


def test_keep_last_holds_when_the_best_cannot_be_linked(tmp_path, monkeypatch):
    """The field report: a run left with more checkpoints than keep_last after a full disk."""
    from nima.training import checkpoint as module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module.os, "link", full)
    monkeypatch.setattr(module, "atomic_write", full)
    nima.manual_seed(0)
    model = Linear(2, 2)
    for step in range(1, 7):
        with pytest.raises(OSError):
            save_checkpoint(tmp_path, step, model, None, keep_last=2, best_metric=10.0 - step)
        assert len(list_checkpoints(tmp_path)) <= 2 + 1
        assert checkpoint_info(best_checkpoint(tmp_path))["step"] == step  # never pruned


# ----------------------------------------------------------------------------- #14 edited state
PATHS = ["step", "config", "rng_states", "rng_states.data", "rng_states.nima", "metrics",
         "best", "best.step", "best.metric", "best_metric", "optimizer", "optimizer.scalars",
         "optimizer.param_groups", "scheduler", "scheduler.last_step", "scheduler.base_lrs",
         "extra", "extra.scaler", "extra.scaler.scale", "extra.scaler.growth_interval",
         "extra.tokenizer_sha256", "extra.processes"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                    | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


@settings(max_examples=30, **FAST)
@given(where=st.sampled_from(PATHS), value=st.one_of(st.just("delete"), JSON))
def test_a_hand_edited_checkpoint_state_is_refused_or_works(finished, tmp_path, where, value):
    """Edited with a valid digest (anyone can compute one): a resume either works or says the
    checkpoint does not fit — never a traceback from deep inside, never a half-written run."""
    run = copy_at(finished, tmp_path, 20)
    path = list_checkpoints(run)[-1]
    tensors, meta = load(path), load_metadata(path)
    state = json.loads(meta["state"])
    *parents, key = where.split(".")
    node = state
    for name in parents:
        node = node.get(name) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return
    if value == "delete":
        node.pop(key, None)
    else:
        node[key] = value
    save(tensors, path, {**meta, "state": json.dumps(state)})
    repair_run_dir(run)  # the rewritten file is a new one: best.safetensors follows it
    before = {k: v for k, v in snapshot(run).items() if k != "run.lock"}
    try:
        trainer = Trainer(tiny_config(tmp_path, training={"max_iters": 22}), resume=True)
    except CheckpointError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        assert {k: v for k, v in snapshot(run).items() if k != "run.lock"} == before
        return
    trainer.fit()


def test_a_corpus_that_is_not_utf8_or_not_a_file_is_named(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(("plain text\n" * 100 + "café\n").encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^data.corpus: {latin1} is not UTF-8 text \(byte "
                                          r"0xe9 on line 101\); convert it"):
        Trainer(tiny_config(tmp_path, data={"corpus": str(latin1)}))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(ConfigError, match=r"fifo is not a regular file"):
            Trainer(tiny_config(tmp_path, data={"corpus": str(tmp_path / "fifo")}))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["tokenizer.txt", "meta.json", "train.bin"])
def test_a_damaged_preparation_is_prepared_again(tmp_path, damage):
    """A malformed tokenizer file in the prepared data used to surface only after training,
    when the sample failed to load it."""
    Trainer(tiny_config(tmp_path)).close()
    prepared = tmp_path / "data" / damage
    if damage == "train.bin":
        prepared.unlink()
    else:
        prepared.write_text("nima-tokenizer version=1 kind=char\nchars 9\n")
    trainer = Trainer(tiny_config(tmp_path), overwrite=True)
    trainer.close()
    assert trainer.sample(max_new_tokens=5)


# ----------------------------------------------------------------------------- #16 #20 signals
def _signal_at(trainer: Trainer, step: int, signum: int) -> None:
    original = trainer.train_step

    def train_step() -> float:
        if trainer.step + 1 == step:
            os.kill(os.getpid(), signum)
        return original()

    trainer.train_step = train_step


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_as_ctrl_c_does(tmp_path, name):
    """The field report: a scheduler's stop lost the steps since the last checkpoint."""
    signum = getattr(signal, name)
    trainer = Trainer(tiny_config(tmp_path))
    _signal_at(trainer, 17, signum)
    with own_stop_signals():
        result = trainer.fit()
        assert signal.getsignal(signum) is on_stop_signal  # restored
    assert result.interrupted and result.step == 17 and result.signal == signum
    assert checkpoint_info(list_checkpoints(tmp_path / "run")[-1])["step"] == 17
    assert f"{name}: finishing this step, then saving" in (tmp_path / "run" / "log.txt").read_text()
    assert summary(result, 3.0).startswith(f"stopped by {name} at step 17 in 0:03: val loss ")


def test_an_ignored_signal_stays_ignored(tmp_path):
    """`nohup` ignores SIGHUP so that a closed terminal does not stop the run: it must not."""
    trainer = Trainer(tiny_config(tmp_path, training={"max_iters": 20}))
    _signal_at(trainer, 7, signal.SIGHUP)
    with own_stop_signals():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        result = trainer.fit()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert not result.interrupted and result.step == 20


@pytest.mark.parametrize("resume", [False, True])
def test_a_signal_before_the_first_step_stops_at_once(finished, tmp_path, resume):
    """The field report: the first 8-70 s (step-0 evaluation, compilation) ignored Ctrl-C."""
    if resume:
        copy_at(finished, tmp_path, 20)
    trainer = Trainer(tiny_config(tmp_path), resume=resume)
    forward, calls = trainer.model.forward, []

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return forward(*args, **kwargs)

    trainer.model.forward = counting
    kept = [p.name for p in list_checkpoints(tmp_path / "run")]
    with own_stop_signals():
        result = trainer.fit()
    assert result.interrupted and result.checkpoint is None and len(calls) == 1
    assert result.step == (20 if resume else 0)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == kept
    assert "before the first step: stopped at once" in (tmp_path / "run" / "log.txt").read_text()


def test_the_summary_says_when_the_validation_loss_was_measured():
    """The field report: an interrupted run printed the step-0 validation loss as if current."""
    result = FitResult(23, 3.2, 3.1, 3.05, True, None, eval_step=20, signal=signal.SIGINT)
    assert summary(result, 5) == ("interrupted at step 23 in 0:05: val loss 3.1000 at step 20 "
                                  "(best 3.0500)")
    done = FitResult(40, 2.0, 1.9, 1.9, False, None, eval_step=40)
    assert summary(done, 65) == "finished at step 40 in 1:05: val loss 1.9000 (best 1.9000)"
    assert math.isfinite(result.val_loss)
