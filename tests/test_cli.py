"""The `nima` command never dies on bad input with a traceback: Nima's own errors, unreadable
files, running out of memory and a second Ctrl-C end it with one line; a bug keeps its
traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import tiny_config

from nima import cli
from nima.data.tokenizers import TokenizerFileError
from nima.serialization import CheckpointError, load, load_metadata, save
from nima.settings import SettingsError
from nima.training import Trainer, TrainingError, list_checkpoints
from nima.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def nima(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nima", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    Trainer(tiny_config(tmp, training={"max_iters": 10})).fit()
    return tmp / "run"


def test_a_bad_kernel_backend_is_one_line_and_import_still_works():
    """The field report: NIMA_KERNELS=bogus made `import nima` raise, so every command showed a
    traceback."""
    done = nima("params", "--preset", "tiny", NIMA_KERNELS="bogus")
    assert done.returncode == 1 and done.stderr == (
        "nima params: NIMA_KERNELS: unknown kernel backend 'bogus'; choose one of numba, "
        "numpy\n")
    imported = subprocess.run([sys.executable, "-c", "import nima; print(nima.__version__)"],
                              capture_output=True, text=True, env={**os.environ,
                                                                   "NIMA_KERNELS": "bogus"})
    assert imported.returncode == 0, imported.stderr


@pytest.mark.parametrize("error", [SettingsError("GenerationConfig.top_p: must be <= 1"),
                                   CheckpointError("run/ckpt.safetensors: damaged"),
                                   TokenizerFileError("run/tokenizer.txt: truncated file"),
                                   TrainingError("step 3: the loss is nan; ..."),
                                   FileNotFoundError(2, "No such file or directory", "x.yaml"),
                                   MemoryError()])
def test_nimas_own_errors_are_one_line(monkeypatch, capsys, error):
    def fail(args):
        raise error

    monkeypatch.setattr(cli, "params", fail)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["params"])
    message = str(exit_.value.code)
    assert message.startswith("nima params: ") and "\n" not in message
    if not isinstance(error, MemoryError | OSError):
        assert message == f"nima params: {error}"


@pytest.mark.parametrize("bug", [RuntimeError("a bug"), KeyError("x"), TypeError("t"),
                                 OSError(5, "Input/output error")])
def test_an_unexpected_exception_keeps_its_traceback(monkeypatch, bug):
    def fail(args):
        raise bug

    monkeypatch.setattr(cli, "params", fail)
    with pytest.raises(type(bug)):
        cli.main(["params"])


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "x.yaml"])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "\nnima train: stopped (Ctrl-C)\n"


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(tmp_path):
    """The field report: a second Ctrl-C printed a 30-line traceback."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nima", "train", str(ROOT / "configs/tiny_synthetic.yaml"),
           "--set", f"data.out_dir={tmp_path / 'data'}", "--set", f"training.run_dir={run}",
           "--set", "training.max_iters=100000", "--set", "training.log_interval=1",
           "--set", "training.eval_iters=1", "--set", "training.checkpoint_interval=100000",
           "--set", "model.n_embd=256", "--set", "training.batch_size=64"]  # slow steps
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_metrics(run / "metrics.jsonl")) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the first: finish the step, then save ...
    log = run / "log.txt"
    while time.monotonic() < deadline and "Ctrl-C: finishing" not in log.read_text():
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)  # ... the second, during that step: stop at once
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.rstrip().endswith("nima train: stopped (Ctrl-C)")


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("sampling:\n  prompt: \"caf\xe9\"\n".encode("latin-1"))
    done = nima("train", str(path))
    assert done.returncode == 1 and done.stderr == (
        f"nima train: {path}: line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8\n")


def test_a_malformed_tokenizer_is_one_line(run_dir, tmp_path, capsys):
    broken = tmp_path / "run"
    broken.mkdir()
    for path in [*list_checkpoints(run_dir), run_dir / "best.safetensors"]:
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "tokenizer.txt").write_text("nima-tokenizer version=1 kind=char\nchars 5\na\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sample", str(broken), "--checkpoint", "latest"])
    assert str(exit_.value.code).startswith(f"nima sample: {broken}/")
    assert "\n" not in str(exit_.value.code)


def test_sampling_from_a_nan_model_is_one_line(run_dir, tmp_path):
    nan_run = tmp_path / "run"
    nan_run.mkdir()
    latest = list_checkpoints(run_dir)[-1]
    tensors = load(latest)
    tensors["model.blocks.0.ffn.fc.weight"][:] = np.nan
    save(tensors, nan_run / latest.name, load_metadata(latest))
    (nan_run / "tokenizer.txt").write_bytes((run_dir / "tokenizer.txt").read_bytes())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sample", str(nan_run), "--checkpoint", "latest"])
    assert str(exit_.value.code) == (
        f"nima sample: {nan_run / latest.name}: the weights hold NaN or infinities "
        f"(blocks.0.ffn.fc.weight), so this model cannot generate text; use an earlier "
        f"checkpoint")


def test_params_refuses_to_build_what_cannot_fit(monkeypatch):
    """The field report: --n-layer 1e8 allocated until the memory ran out."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["params", "--n-layer", "100000000", "--instantiate"])
    assert str(exit_.value.code).startswith("nima params: --instantiate would need about "
                                            "2.8 PB for the parameters, but ")


def test_a_prompt_outside_the_vocabulary_does_not_fail_a_finished_run(tmp_path, capsys):
    """The field report: training completed, then the sample's prompt raised (exit 1)."""
    cli.main(["train", str(ROOT / "configs/tiny_synthetic.yaml"),
              "--set", f"data.out_dir={tmp_path / 'data'}",
              "--set", f"training.run_dir={tmp_path / 'run'}", "--set", "training.max_iters=20",
              "--set", "training.eval_iters=2", "--set", "sampling.prompt=ROMEO"])
    out, err = capsys.readouterr()
    assert "finished at step 20" in out and "--- a sample" not in out
    assert "note: sampling.prompt cannot be encoded" in err  # said before training, too
    assert err.rstrip().splitlines()[-1].startswith(
        "nima train: no sample: sampling.prompt: CharTokenizer.encode: character 'R'")
