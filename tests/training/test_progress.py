"""The progress bar: never wider than the terminal, a time left from step times only, and
quiet about a terminal that went away; the trainer says what happens before the first step."""

from __future__ import annotations

import io
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_runs import tiny_config

from nima.training import Trainer
from nima.training import progress as progress_module
from nima.training import trainer as trainer_module
from nima.training.progress import ProgressBar, format_duration


class Terminal(io.StringIO):
    """A stream that says it is a terminal of `columns` columns."""

    def __init__(self, columns: int) -> None:
        super().__init__()
        self.columns = columns

    def isatty(self) -> bool:
        return True


def drawn(stream: Terminal) -> list[str]:
    """The lines as the terminal shows them: each redraw starts at \\r and ends at ESC[K."""
    return [part.split("\x1b[K")[0] for part in stream.getvalue().split("\r")[1:]
            if part.split("\x1b[K")[0]]


@pytest.fixture
def terminal(monkeypatch):
    def make(columns: int) -> Terminal:
        stream = Terminal(columns)
        monkeypatch.setattr(progress_module.shutil, "get_terminal_size",
                            lambda *a: type("Size", (), {"columns": columns})())
        return stream
    return make


def test_at_80_columns_the_bar_fits_with_everything_that_matters(terminal):
    """The field report: a ~97-character line wrapped at 80 columns and left a stale copy at
    every update."""
    stream = terminal(80)
    bar = ProgressBar(2000, stream=stream)
    bar.update(120, 2.4127, 1e-3, 11_234, seconds_per_step=0.05)
    (line,) = drawn(stream)
    assert len(line) <= 79
    assert line.startswith("step  120/2000 [#") and "]   6% | loss 2.4127 |" in line
    assert "11.2k tok/s" in line and line.endswith("| 1:34 left")


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # patched anew each time
@given(columns=st.integers(1, 300), total=st.integers(1, 10**9), data=st.data(),
       loss=st.floats(allow_nan=True, allow_infinity=True), lr=st.floats(0, 1e3),
       speed=st.floats(0, 1e12), per_step=st.one_of(st.none(), st.floats(0, 1e6)))
def test_no_line_is_wider_than_the_terminal(terminal, columns, total, data, loss, lr, speed,
                                            per_step):
    step = data.draw(st.integers(0, total))
    stream = terminal(columns)
    bar = ProgressBar(total, stream=stream)
    bar.begin("first steps")
    bar.update(step, loss, lr, speed, seconds_per_step=per_step)
    bar.message("step 10: saved ckpt-0000010.safetensors")
    assert all(len(line) <= max(columns - 1, 0) for line in drawn(stream))
    if columns >= 80 and abs(loss) < 1e5:  # room for the loss and the time left, always
        assert f"loss {loss:.4f}" in drawn(stream)[-1] and "left" in drawn(stream)[-1]


def test_into_a_file_one_plain_line_per_update(tmp_path):
    with open(tmp_path / "out.txt", "w") as f:
        bar = ProgressBar(200, stream=f, width=10)
        bar.update(50, 2.5, 1e-3, 12_300, seconds_per_step=0.1)
        bar.close()
    assert (tmp_path / "out.txt").read_text() == (
        "step  50/200 [##--------]  25% | loss 2.5000 | ppl 12.18 | lr 1.00e-03 | 12.3k tok/s | "
        "0:15 left\n")
    assert format_duration(75.4) == "1:15" and format_duration(3725) == "1:02:05"


def test_a_terminal_that_went_away_stops_nothing():
    class Gone(Terminal):
        def write(self, text):
            raise OSError(5, "Input/output error")  # EIO: the ssh session closed

    bar = ProgressBar(10, stream=Gone(80))
    bar.begin("first steps")
    bar.update(5, 1.0, 1e-3, 1.0)
    bar.message("still training")
    bar.close()


def test_the_time_left_counts_only_training_steps(tmp_path, monkeypatch):
    """The field report: 26 minutes left shown for a 4-minute run, because the step-0
    evaluation and the kernels' compilation counted as steps. A fake clock: the evaluation
    takes 100 s, the first step (compiling) 30 s, every other step 1 s."""
    now = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    stream = io.StringIO()
    trainer = Trainer(tiny_config(tmp_path, training={"max_iters": 40, "log_interval": 5,
                                                      "eval_interval": 100,
                                                      "checkpoint_interval": 100}),
                      stream=stream)
    estimate, step = trainer.estimate_loss, trainer.train_step

    def slow_estimate():
        now[0] += 100.0
        return estimate()

    def timed_step():
        now[0] += 30.0 if trainer.step == 0 else 1.0
        return step()

    trainer.estimate_loss, trainer.train_step = slow_estimate, timed_step
    trainer.fit()
    out = stream.getvalue()
    lines = [line for line in out.splitlines() if re.match(r"step +\d+/40 \[", line)]
    assert lines[0].startswith("step  0/40 [") and lines[0].endswith(
        "| first steps (a first run compiles the backward kernels)")
    assert lines[1].startswith("step  5/40") and lines[1].endswith("| 0:35 left")  # 35 x 1 s
    assert lines[2].startswith("step 10/40") and lines[2].endswith("| 0:30 left")
    said = out.index("step 0: estimating the loss on 3 batches of each split")
    assert said < out.index("step 0: train loss") < out.index(lines[0])
    assert math.isfinite(trainer.last_eval["val_loss"])
