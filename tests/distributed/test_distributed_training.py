"""`nima train` on two processes: the weights of one process on twice the batch (uniform and
loss-guided windows), resuming on another number of processes, Ctrl-C on one rank, a rank that
fails, and a rank 1 that writes nothing. Each two-rank run is compared with the same run on one
process (`reference`). Without MPI, `--nproc 2` says what to install; streams and the
encoder-decoder are refused on several processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mpi_job import PYTHONPATH, ROOT, needs_mpi, report, run_script
from tiny_runs import tiny_config

from nima import cli
from nima.distributed import launch
from nima.training import Config, ConfigError, Trainer, load_run
from nima.training.checkpoint import latest_checkpoint
from nima.training.metrics import read_metrics
from nima.training.parallel import check_processes, resume_batch_size

TRAIN_JOB = Path(__file__).with_name("train_job.py")
BOUND_S = 120  # a job that hangs in a collective runs into this; these end in seconds


def config(tmp_path: Path, batch_size: int, sampling: str = "uniform") -> Config:
    """12 steps of the tiny GPT, a checkpoint and an evaluation every 6, no dropout; 2
    micro-batches a step, and clipping at 0.5, which acts at every step (the global norms are
    0.59 to 0.71)."""
    return tiny_config(tmp_path, training={
        "batch_size": batch_size, "max_iters": 12, "eval_interval": 6, "eval_iters": 2,
        "checkpoint_interval": 6, "log_interval": 3, "grad_accum": 2, "grad_clip": 0.5},
        data={"sampling": sampling}, sampling={"max_new_tokens": 0})


def config_file(tmp_path: Path, batch_size: int, sampling: str = "uniform") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, batch_size, sampling).to_dict()))
    return path


def train_on_two_ranks(config_path: Path) -> subprocess.CompletedProcess:
    """`nima train CONFIG --nproc 2 --no-sample`, as a user types it."""
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    env.pop("NUMBA_NUM_THREADS", None)  # --nproc gives each process one thread
    return subprocess.run([sys.executable, "-m", "nima", "train", str(config_path), "--nproc",
                           "2", "--no-sample"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=BOUND_S)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    """One process with 8 rows a step: what two ranks of 4 rows each must reproduce (the run
    also compiles the kernels the jobs load from numba's cache)."""
    trainer = Trainer(config(tmp_path_factory.mktemp("one"), 8))
    trainer.fit()
    return trainer


def assert_same_run(run: Path, reference: Trainer) -> None:
    """The run's last checkpoint holds the reference's final weights (to float32 rounding: the
    largest difference seen is 6e-8, on weights of size 1) and its metrics the reference's
    records: the same steps, the same losses."""
    model, _, _ = load_run(run, which="latest")
    expected = reference.model.state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    records, ref = read_metrics(run / "metrics.jsonl"), reference.metrics.records
    assert [(r["step"], r["kind"]) for r in records] == [(r["step"], r["kind"]) for r in ref]
    for got, want in zip(records, ref, strict=True):
        for key in ("loss", "train_loss", "val_loss", "lr"):
            if key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-5), (got, want)


def resume_on_one_process(run: Path, after: int) -> str:
    """Continue `run` to its end in this process, as if it had stopped after step `after`
    (later checkpoints removed); returns its log."""
    for path in latest_checkpoint(run).parent.glob("ckpt-*.safetensors"):
        if int(path.stem.split("-")[1]) > after:
            path.unlink()
    cli.main(["train", str(run), "--no-sample"])
    return (run / "log.txt").read_text()


def test_nproc_without_mpi_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "mpi_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", str(config_file(tmp_path, 4)), "--nproc", "2"])
    message = str(stop.value.code)
    assert message.startswith("nima train: running 2 processes needs mpi4py and mpiexec")
    assert 'pip install "nima[mpi]"' in message and "\n" not in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, message", [
    ({"data": {"sampling": "stream"}}, "data.sampling: stream trains on one process"),
    ({"model": {"kind": "seq2seq", "max_len": 10, "d_model": 32, "n_head": 4},
      "data": {"corpus": "reversal"}}, "model.kind: seq2seq trains on one process"),
], ids=["stream", "seq2seq"])
def test_streams_and_pairs_are_refused_on_several_processes(tmp_path, change, message):
    """Refused with one line before mpiexec starts (and by the Trainer of every rank)."""
    raw = config(tmp_path, 4).to_dict()
    for section, values in change.items():
        raw[section] = {**({} if "kind" in values else raw[section]), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", str(path), "--nproc", "2"])
    assert str(stop.value.code).startswith(f"nima train: {message}")
    assert "\n" not in str(stop.value.code)
    with pytest.raises(ConfigError, match=message):
        check_processes(Config.from_dict(raw), 2)
    check_processes(Config.from_dict(raw), 1)  # one process trains them
    assert not (tmp_path / "run").exists()


def test_resume_keeps_the_global_batch(reference):
    """A run of 1 process x 8 rows resumes as 2 x 4 or 8 x 1; 3 processes cannot split 8 rows."""
    assert [resume_batch_size(reference.run_dir, m) for m in (1, 2, 8)] == [8, 4, 1]
    with pytest.raises(ConfigError, match=r"global batch of 8 rows .* over 3 processes"):
        resume_batch_size(reference.run_dir, 3)


@needs_mpi
def test_two_ranks_train_as_one_process_on_twice_the_batch(tmp_path, reference):
    """`nima train --nproc 2` with 4 rows a rank equals one process with 8, and the run it
    writes continues on one process (its batch of 8 kept) along the same curve."""
    done = train_on_two_ranks(config_file(tmp_path, 4))
    assert done.returncode == 0, report(done)
    run = tmp_path / "run"
    assert_same_run(run, reference)
    assert done.stdout.count("finished at step 12") == 1, report(done)  # rank 0 alone prints
    log = (run / "log.txt").read_text()
    assert "for 12 steps (16 windows of 16 tokens each, on 2 processes)" in log  # 2 x 4 x 2
    assert log.count("step 12: saved ckpt-0000012.safetensors") == 1

    log = resume_on_one_process(run, after=6)
    assert "resumed from ckpt-0000006.safetensors at step 6" in log
    assert "global batch" not in log  # 1 process x 8 rows, as 2 x 4
    assert_same_run(run, reference)


@needs_mpi
def test_loss_guided_windows_are_drawn_as_in_one_process(tmp_path):
    """Every rank's loss-guided source hears the losses of all 8 rows, so its priorities and
    draws stay those of one process with 8 rows: the same weights and curve."""
    reference = Trainer(config(tmp_path / "one", 8, "loss_guided"))
    reference.fit()
    done = train_on_two_ranks(config_file(tmp_path, 4, "loss_guided"))
    assert done.returncode == 0, report(done)
    assert_same_run(tmp_path / "run", reference)


@needs_mpi
def test_resume_on_two_ranks_and_ctrl_c_on_one_of_them(tmp_path, reference):
    """A one-process run continues on two ranks (4 rows each); Ctrl-C reaching rank 1 alone
    stops both after the same step with one checkpoint; rank 1 writes nothing all along."""
    run = tmp_path / "run"
    shutil.copytree(reference.run_dir, run)
    (run / "ckpt-0000012.safetensors").unlink()  # as if the run had stopped after step 6
    job = run_script(2, TRAIN_JOB, "--fault", "sigint", "--at", "8", "--watch", str(tmp_path),
                     "--", "train", str(run), "--no-sample", timeout=BOUND_S)
    assert job.returncode == 130, report(job)
    log = (run / "log.txt").read_text()
    assert "resumed from ckpt-0000006.safetensors at step 6" in log
    assert "global batch" not in log  # 2 processes x 4 rows, as 1 x 8
    assert "interrupted at step 9" in log
    assert latest_checkpoint(run).name == "ckpt-0000009.safetensors"
    assert job.stdout.count("interrupted at step 9") == 1, report(job)

    resume_on_one_process(run, after=9)
    assert_same_run(run, reference)


@needs_mpi
@pytest.mark.parametrize("fault, at, message", [
    ("raise", 3, "RuntimeError: rank 1 fails on purpose at step 4; aborting all 2 processes"),
    ("kill", 8, "signal 9"),
], ids=["raises", "killed"])
def test_a_failing_rank_ends_the_training_job(tmp_path, reference, fault, at, message):
    """Rank 1 raises, or dies by SIGKILL, mid-run: rank 0 does not wait for it in the next
    allreduce; the job ends with the cause. The last checkpoint is whole: the run resumes from
    it along the same curve."""
    try:
        job = run_script(2, TRAIN_JOB, "--fault", fault, "--at", str(at), "--", "train",
                         str(config_file(tmp_path, 4)), "--no-sample", timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{fault}: the job still ran after {BOUND_S} s (rank 0 hangs)")
    assert job.returncode != 0, report(job)
    assert message in job.stdout + job.stderr, report(job)
    if fault == "kill":
        log = resume_on_one_process(tmp_path / "run", after=at)
        assert "resumed from ckpt-0000006.safetensors at step 6" in log
        assert_same_run(tmp_path / "run", reference)
