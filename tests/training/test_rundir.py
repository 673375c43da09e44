"""The run directory: one process at a time (an OS lock that a `kill -9` releases), a new run
only where nothing else lives, and clear refusals for paths that cannot work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_runs import tiny_config

from nima.training import ConfigError, Trainer, TrainingError
from nima.training.checkpoint import list_checkpoints
from nima.training.metrics import read_metrics
from nima.training.rundir import LOCK_FILE, RunLock, survey

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from pathlib import Path
from nima.training.rundir import RunLock
lock = RunLock(Path(sys.argv[1]))  # held while referenced
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of `tmp_path / "run"`; yields the process."""
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


# ----------------------------------------------------------------------------- locking
def test_a_locked_run_is_refused_with_the_holders_pid_until_kill_9_releases_it(tmp_path,
                                                                                holder):
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(TrainingError, match=rf"run is in use by process {holder.pid}\b"):
            Trainer(tiny_config(tmp_path), **flags)
    assert snapshot(tmp_path / "run") == {LOCK_FILE: (tmp_path / "run" / LOCK_FILE).read_bytes()}
    holder.send_signal(signal.SIGKILL)  # no clean-up at all: the kernel drops the lock
    holder.wait()
    trainer = Trainer(tiny_config(tmp_path, training={"max_iters": 10}))
    assert trainer.fit().step == 10


def test_overwrite_never_deletes_a_live_runs_files(tmp_path):
    first = Trainer(tiny_config(tmp_path, training={"max_iters": 10}))
    first.fit()
    run = tmp_path / "run"
    before = snapshot(run)
    lock = RunLock(run)
    lock.acquire()  # as if a resumed run were training in it
    try:
        with pytest.raises(TrainingError, match="is in use by this process"):
            Trainer(tiny_config(tmp_path), overwrite=True)
    finally:
        lock.release()
    assert snapshot(run) == before
    Trainer(tiny_config(tmp_path), overwrite=True).close()  # free again: allowed
    assert list_checkpoints(run) == []


def test_a_second_trainer_waits_for_the_first_to_finish(tmp_path):
    first = Trainer(tiny_config(tmp_path, training={"max_iters": 10}))
    with pytest.raises(TrainingError, match=r"in use by this process.*close"):
        Trainer(tiny_config(tmp_path, training={"max_iters": 20}), resume=True)
    first.fit()  # fit lets the directory go when it returns
    second = Trainer(tiny_config(tmp_path, training={"max_iters": 20}), resume=True)
    assert second.step == 10
    second.close()


def test_two_nima_train_processes_on_one_run(tmp_path):
    """The field report: both exited 0 with every metrics step twice. Now the second is
    refused while the first trains, and the first's curve is whole."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nima", "train", str(ROOT / "configs/tiny_synthetic.yaml"),
           "--set", f"data.out_dir={tmp_path / 'data'}", "--set", f"training.run_dir={run}",
           "--set", "training.max_iters=100000", "--set", "training.log_interval=1",
           "--set", "training.eval_iters=1", "--no-sample"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(read_metrics(run / "metrics.jsonl")) < 3:
            time.sleep(0.05)
        for extra in ([], ["--overwrite"], ["--resume"]):
            second = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=120)
            assert second.returncode == 1, second.stderr
            assert second.stderr.strip() == (
                f"nima train: {run} is in use by process {first.pid}, which holds {LOCK_FILE}; "
                f"wait for it to end or stop it, or choose another training.run_dir")
        resume = subprocess.run([sys.executable, "-m", "nima", "train", str(run)],
                                capture_output=True, text=True, timeout=120)
        assert resume.returncode == 1 and f"in use by process {first.pid}" in resume.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    steps = [(r["step"], r["kind"]) for r in read_metrics(run / "metrics.jsonl")]
    assert len(steps) == len(set(steps)) and len(steps) >= 3


# ----------------------------------------------------------------------------- what is there
def test_a_folder_that_is_not_a_run_is_never_touched(tmp_path):
    folder = tmp_path / "run"
    (folder / "src").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "log.txt").write_text("also mine")
    before = snapshot(folder)
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(TrainingError, match=r"is not empty and holds no Nima run "
                                                r"\(log.txt, notes.txt, src/\)"):
            Trainer(tiny_config(tmp_path), **flags)
    assert snapshot(folder) == before and not (folder / LOCK_FILE).exists()


def test_a_run_without_a_checkpoint_is_not_overwritten_by_accident(tmp_path):
    """The field report: a fresh run deleted log.txt, the metrics and curves.png and replaced
    config.yaml of a run that had not saved a checkpoint yet."""
    trainer = Trainer(tiny_config(tmp_path))
    trainer.evaluate()  # as a run killed before its first checkpoint leaves its directory
    trainer.close()
    run = tmp_path / "run"
    before = snapshot(run)
    assert {"config.yaml", "log.txt", "metrics.jsonl", "curves.png"} <= set(before)
    with pytest.raises(TrainingError, match=r"holds a run that saved no checkpoint \(.*"
                                            r"config.yaml.*resume it .*from step 0.*--overwrite"):
        Trainer(tiny_config(tmp_path, model={"n_embd": 32}))
    assert snapshot(run) == before
    resumed = Trainer(tiny_config(tmp_path), resume=True)
    assert resumed.step == 0
    resumed.close()


def test_overwrite_deletes_the_run_and_nothing_else(tmp_path):
    Trainer(tiny_config(tmp_path, training={"max_iters": 10})).fit()
    run = tmp_path / "run"
    (run / "notes.txt").write_text("my notes on this run")
    (run / "plots").mkdir()
    fresh = Trainer(tiny_config(tmp_path), overwrite=True)
    fresh.close()
    assert list_checkpoints(run) == [] and not (run / "best.safetensors").exists()
    assert not (run / "metrics.jsonl").exists() and not (run / "curves.png").exists()
    assert (run / "notes.txt").read_text() == "my notes on this run" and (run / "plots").is_dir()
    assert survey(run).others == ["notes.txt", "plots/"]


def test_cli_overwrite_of_a_run_directory_starts_over(tmp_path):
    """`nima train RUN --overwrite` used to resume silently."""
    run = tmp_path / "run"
    sets = ["--set", f"data.out_dir={tmp_path / 'data'}", "--set", f"training.run_dir={run}",
            "--set", "training.max_iters=20", "--set", "training.eval_iters=2", "--no-sample"]
    cmd = [sys.executable, "-m", "nima", "train"]
    done = subprocess.run([*cmd, str(ROOT / "configs/tiny_synthetic.yaml"), *sets],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    again = subprocess.run([*cmd, str(run), "--overwrite", "--set", "training.max_iters=15"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed" not in again.stderr and "finished at step 15" in again.stdout
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-0000015.safetensors"]
    nothing = subprocess.run([*cmd, str(tmp_path / "data")], capture_output=True, text=True,
                             timeout=300)
    assert nothing.returncode == 1 and nothing.stderr.strip() == (
        f"nima train: {tmp_path / 'data'}: not a run directory (no config.yaml); give a config "
        f"file, or the folder of a run")


# ----------------------------------------------------------------------------- paths
@pytest.mark.parametrize("section, key", [("training", "run_dir"), ("data", "out_dir"),
                                          ("data", "corpus")])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_is_refused(tmp_path, section, key, value):
    """An empty path is the current directory: a run once wrote into the repository root."""
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: must not be empty"):
        tiny_config(tmp_path, **{section: {key: value}})


def test_a_run_dir_that_is_a_file_or_the_data_dir_is_refused(tmp_path):
    (tmp_path / "file").write_text("a file")
    with pytest.raises(ConfigError, match=r"training.run_dir: .*file is a file, not a directory"):
        Trainer(tiny_config(tmp_path, training={"run_dir": str(tmp_path / "file")}))
    same = f"{tmp_path}/./data/"
    with pytest.raises(ConfigError, match=r"training.run_dir: .* is also data.out_dir"):
        Trainer(tiny_config(tmp_path, training={"run_dir": same}))
    assert (tmp_path / "file").read_text() == "a file"


def test_the_lock_file_records_its_holder(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, training={"max_iters": 10}))
    holder = (tmp_path / "run" / LOCK_FILE).read_text().strip()
    assert holder.split("@")[0] == str(os.getpid())
    trainer.close()  # the file stays (deleting it would race with a new holder)
    assert (tmp_path / "run" / LOCK_FILE).exists()
    RunLock(tmp_path / "run").acquire()
