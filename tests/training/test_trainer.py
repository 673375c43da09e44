"""The training loop: it learns, resumes to the same curve, saves on Ctrl-C, and keeps its files
whole."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_runs import interrupt_at, on_stop_signal, own_stop_signals, tiny_config

from nima.data.synthetic import char_entropy
from nima.training import Config, ConfigError, Trainer, TrainingError, checkpoint_info, load_run
from nima.training.checkpoint import latest_checkpoint, list_checkpoints
from nima.training.metrics import MetricsLog, read_metrics
from nima.training.progress import ProgressBar, format_duration

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_run_on_the_synthetic_corpus_learns(tmp_path):
    config = tiny_config(tmp_path, model={"n_embd": 32, "block_size": 32},
                         training={"max_iters": 120, "eval_interval": 60, "eval_iters": 8,
                                   "batch_size": 16})
    trainer = Trainer(config)
    result = trainer.fit()
    text = (tmp_path / "data" / "corpus.txt").read_text()
    uniform = np.log(trainer.meta["vocab_size"])
    # the unigram character entropy (nats) is what a model that ignores context reaches; the
    # grammar's structure lets a model go well below it
    unigram = char_entropy(text, order=0) * np.log(2)
    assert result.step == 120 and not result.interrupted
    assert result.val_loss < unigram < uniform, (result.val_loss, unigram, uniform)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 60, 120]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0


def test_files_of_a_run(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    trainer.fit()
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-0000030.safetensors",
                                                       "ckpt-0000040.safetensors"]  # keep_last
    assert (run / "best.safetensors").exists()
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = Config.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert saved.model.vocab_size == trainer.meta["vocab_size"]  # resolved from the tokenizer
    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30, 35, 40]
    # the logged rate is the one the step used: warmup gives lr * (t + 1) / (w + 1) at t = 4
    assert train[0]["lr"] == pytest.approx(3e-3 * 5 / 6)
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,kind,loss") and len(csv_lines) == len(records) + 1
    log = (run / "log.txt").read_text()
    assert "step 40: saved ckpt-0000040.safetensors" in log


def test_best_checkpoint_holds_the_lowest_validation_loss(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    trainer.fit()
    evals = [r for r in trainer.metrics.records if r["kind"] == "eval" and r["step"] > 0]
    best_step = min(evals, key=lambda r: r["val_loss"])["step"]
    _, tokenizer, config = load_run(tmp_path / "run", which="best")
    latest, _, _ = load_run(tmp_path / "run", which="latest")
    assert checkpoint_info(tmp_path / "run" / "best.safetensors")["step"] == best_step
    assert tokenizer.vocab_size == config.model.vocab_size
    final = trainer.model.state_dict()
    assert all(np.array_equal(final[k], v) for k, v in latest.state_dict().items())


def test_ctrl_c_saves_and_resume_gives_the_same_curve(tmp_path):
    """An interrupted and resumed run equals an uninterrupted one, record for record and
    weight for weight (dropout on, so Nima's generator matters too)."""
    extra = dict(model={"dropout": 0.1})
    straight = Trainer(tiny_config(tmp_path / "a", **extra))
    straight.fit()

    first = Trainer(tiny_config(tmp_path / "b", **extra))
    interrupt_at(first, 23)
    with own_stop_signals():  # not what the process inherited: SIG_IGN in a background job
        result = first.fit()
        assert signal.getsignal(signal.SIGINT) is on_stop_signal  # the handler before, again
    assert result.interrupted and result.step == 23  # the step in flight finished
    assert latest_checkpoint(tmp_path / "b" / "run").name == "ckpt-0000023.safetensors"

    resumed = Trainer(tiny_config(tmp_path / "b", **extra), resume=True)
    assert resumed.step == 23
    resumed.fit()
    def strip(records):
        return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")}
                for r in records]
    assert strip(resumed.metrics.records) == strip(straight.metrics.records)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_drops_records_past_the_checkpoint(tmp_path):
    """A run killed after its last checkpoint logged steps that resuming replays: the files
    must not hold them twice."""
    trainer = Trainer(tiny_config(tmp_path))
    trainer.fit()
    run = tmp_path / "run"
    (run / "ckpt-0000040.safetensors").unlink()  # as if killed between step 30 and 40
    (run / "metrics.jsonl").open("a").write('{"step": 41, "kind": "tr')  # a torn last line
    resumed = Trainer(tiny_config(tmp_path), resume=True)
    assert resumed.step == 30
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl")) == 30
    resumed.fit()
    steps = [(r["step"], r["kind"]) for r in read_metrics(run / "metrics.jsonl")]
    assert len(steps) == len(set(steps)) and steps[-1] == (40, "eval")


def test_a_run_directory_is_not_overwritten_by_accident(tmp_path):
    Trainer(tiny_config(tmp_path, training={"max_iters": 10})).fit()
    with pytest.raises(TrainingError, match=r"already holds 1 checkpoint.*--overwrite"):
        Trainer(tiny_config(tmp_path))
    fresh = Trainer(tiny_config(tmp_path), overwrite=True)
    assert fresh.step == 0 and list_checkpoints(tmp_path / "run") == []
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """A step over two micro-batches of 4 rows equals a step over the same 8 rows at once: the
    reported loss (the mean over micro-batches) and the updated weights."""
    big = Trainer(tiny_config(tmp_path / "big", training={"batch_size": 8}))
    small = Trainer(tiny_config(tmp_path / "small", training={"batch_size": 4, "grad_accum": 2}))
    rows = np.random.default_rng(0).integers(0, len(big.train_data) - 17, size=8)
    window = rows[:, None] + np.arange(17)
    chunk = big.train_data.data[window].astype(np.int64)
    batches = iter([(chunk[:4, :-1], chunk[:4, 1:]), (chunk[4:, :-1], chunk[4:, 1:])])
    small.train_data.get_batch = lambda *a: next(batches)
    big.train_data.get_batch = lambda *a: (chunk[:, :-1], chunk[:, 1:])
    assert small.train_step() == pytest.approx(big.train_step(), rel=1e-5)
    a, b = big.model.state_dict(), small.model.state_dict()
    assert all(np.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)


def test_data_is_prepared_once_and_again_when_the_corpus_changes(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("abcdefgh" * 200)
    config = tiny_config(tmp_path, data={"corpus": str(corpus)})
    Trainer(config)
    train_bin = tmp_path / "data" / "train.bin"
    stamp = train_bin.stat().st_mtime_ns
    Trainer(config, overwrite=True)
    assert train_bin.stat().st_mtime_ns == stamp  # reused
    corpus.write_text("xyz" * 500)
    trainer = Trainer(config, overwrite=True)
    assert trainer.meta["vocab_size"] == 3  # prepared again from the new text


def test_missing_corpus_and_too_short_data_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data.corpus: no such file '.*nowhere.txt'"):
        Trainer(tiny_config(tmp_path, data={"corpus": str(tmp_path / "nowhere.txt")}))
    short = tmp_path / "short.txt"
    short.write_text("tiny text" * 3)
    with pytest.raises(ConfigError, match=r"model\.block_size: the val split holds"):
        Trainer(tiny_config(tmp_path, data={"corpus": str(short)}))


def test_metrics_log_refuses_unknown_columns_and_truncates(tmp_path):
    log = MetricsLog(tmp_path)
    for step in (1, 2, 3):
        log.append({"step": step, "kind": "train", "loss": float(step)})
    with pytest.raises(ValueError, match="unknown keys \\['accuracy'\\]"):
        log.append({"step": 4, "kind": "train", "accuracy": 0.5})
    log.truncate_after(2)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1:] == [
        "1,train,1.0,,,,,,,,", "2,train,2.0,,,,,,,,"]


def test_progress_bar_lines_and_durations(tmp_path):
    assert format_duration(75.4) == "1:15" and format_duration(3725) == "1:02:05"
    with open(tmp_path / "out.txt", "w") as f:  # a file: one plain line per update
        bar = ProgressBar(200, stream=f, width=10)
        bar.update(50, 2.5, 1e-3, 12_300)
        bar.close()
    line = (tmp_path / "out.txt").read_text()
    assert line.startswith("step  50/200 [##--------]  25% | loss 2.5000 | ppl 12.18 | "
                           "lr 1.00e-03 | 12.3k tok/s |") and "\r" not in line
    with open(tmp_path / "eval.txt", "w") as f:  # nima eval's bar: windows, no learning rate
        bar = ProgressBar(8, stream=f, width=10, label="window")
        bar.update(8, 0.0, None, 500)
    assert (tmp_path / "eval.txt").read_text().startswith(
        "window 8/8 [##########] 100% | loss 0.0000 | ppl 1.00 | 0.5k tok/s |")


def test_cli_trains_resumes_and_reports_errors(tmp_path):
    """`nima train` end to end in a subprocess, as a user runs it."""
    run = tmp_path / "run"
    sets = ["--set", f"data.out_dir={tmp_path / 'data'}", "--set", f"training.run_dir={run}",
            "--set", "training.max_iters=20", "--set", "training.eval_interval=10",
            "--set", "training.checkpoint_interval=10", "--set", "training.eval_iters=2",
            "--set", "sampling.max_new_tokens=0"]
    cmd = [sys.executable, "-m", "nima", "train", str(ROOT / "configs/tiny_synthetic.yaml")]
    done = subprocess.run([*cmd, *sets], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "finished at step 20" in done.stdout
    assert "step 20: train loss" in done.stderr
    again = subprocess.run([*cmd, *sets], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    more = subprocess.run([sys.executable, "-m", "nima", "train", str(run), "--set",
                           "training.max_iters=30", "--no-sample"],
                          capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr
    assert "resumed from ckpt-0000020.safetensors at step 20" in more.stderr
    assert "finished at step 30" in more.stdout
    bad = subprocess.run([*cmd, "--set", "optimizer.lr=-1"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "nima train: optimizer.lr: must be > 0" in bad.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_cli_a_stop_signal_saves_and_exits_128_plus_its_number(tmp_path, signum):
    """Ctrl-C exits 130, a scheduler's SIGTERM 143, a closed terminal's SIGHUP 129 — each after
    saving the step it finished."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nima", "train", str(ROOT / "configs/tiny_synthetic.yaml"),
           "--set", f"data.out_dir={tmp_path / 'data'}", "--set", f"training.run_dir={run}",
           "--set", "training.max_iters=100000", "--set", "training.log_interval=1",
           "--set", "training.eval_iters=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until a few steps have been logged
        metrics = run / "metrics.jsonl"
        if metrics.exists() and sum(1 for _ in metrics.open()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    step = int(out.split(" at step ")[1].split()[0])
    assert latest_checkpoint(run).name == f"ckpt-{step:07d}.safetensors"
    assert f"resume with: nima train {run}" in err
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] <= step
