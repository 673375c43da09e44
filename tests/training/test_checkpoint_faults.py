"""Checkpoints under faults: a damaged or edited header is refused, a checkpoint without its
digest is refused, and the best checkpoint survives kills — injected at the one step between
committing a checkpoint and linking `best.safetensors`, and with real `kill -9`s."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nima
from nima.nn import Linear
from nima.serialization import DIGEST, CheckpointError, load_metadata
from nima.training import (
    best_checkpoint,
    checkpoint_info,
    list_checkpoints,
    load_checkpoint,
    repair_best,
    repair_run_dir,
    save_checkpoint,
)
from nima.training.checkpoint import BEST, checkpoint_path

ROOT = Path(__file__).resolve().parents[2]


def model(seed: int = 0) -> Linear:
    nima.manual_seed(seed)
    return Linear(2, 2)


def edit_header(path: Path, edit) -> None:
    """Apply `edit` to the parsed header and write the file back, data untouched."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    edit(header)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n:])


# ----------------------------------------------------------------------------- the digest
def test_every_single_bit_flip_of_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 50, model(), None, rng_states={}, best_metric=1.0)
    raw = path.read_bytes()
    damaged = tmp_path / "damaged.safetensors"
    for position in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[position] ^= 1 << bit
            damaged.write_bytes(bytes(flipped))
            with pytest.raises(CheckpointError):
                checkpoint_info(damaged)


def test_an_edited_step_is_refused(tmp_path: Path) -> None:
    """The field report: one flipped bit turned step 50 into 58 and the resume skipped 8."""
    path = save_checkpoint(tmp_path, 50, model(), None)

    def step_58(header: dict) -> None:
        state = json.loads(header["__metadata__"]["state"])
        header["__metadata__"]["state"] = json.dumps({**state, "step": 58})

    edit_header(path, step_58)
    with pytest.raises(CheckpointError, match="digest of the header and data does not match"):
        load_checkpoint(path, model())


def test_a_relabelled_dtype_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, model(), None)
    edit_header(path, lambda h: h["model.weight"].update(dtype="I32"))  # same size as F32
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(path, model())


def test_a_checkpoint_without_its_digest_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, model(), None)
    edit_header(path, lambda h: h["__metadata__"].pop(DIGEST))
    assert DIGEST not in load_metadata(path)  # a valid safetensors file: nima.load reads it
    with pytest.raises(CheckpointError, match=r"without a 'digest' .* refused"):
        load_checkpoint(path, model())


# ----------------------------------------------------------------------------- the best record
def test_best_is_a_link_that_outlives_pruning(tmp_path: Path) -> None:
    m = model()
    for step, metric in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 2.5)]:
        save_checkpoint(tmp_path, step, m, None, best_metric=metric, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000004.safetensors"]
    best = tmp_path / BEST
    assert checkpoint_info(best)["step"] == 2 and best.stat().st_nlink == 1  # pruned: alone
    assert best_checkpoint(tmp_path) == best
    assert checkpoint_info(tmp_path / "ckpt-0000004.safetensors")["best"] == \
        {"step": 2, "metric": 1.0}
    save_checkpoint(tmp_path, 5, m, None, best_metric=0.5, keep_last=1)
    assert os.path.samefile(best, checkpoint_path(tmp_path, 5))  # a link, not a copy
    assert best_checkpoint(tmp_path) == checkpoint_path(tmp_path, 5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_metric_never_becomes_best(tmp_path: Path, bad: float) -> None:
    m = model()
    save_checkpoint(tmp_path, 1, m, None, best_metric=bad)
    assert best_checkpoint(tmp_path) is None and not (tmp_path / BEST).exists()
    save_checkpoint(tmp_path, 2, m, None, best_metric=2.0)
    save_checkpoint(tmp_path, 3, m, None, best_metric=bad)
    assert checkpoint_info(tmp_path / BEST)["step"] == 2
    assert checkpoint_info(checkpoint_path(tmp_path, 3))["best"] == {"step": 2, "metric": 2.0}


def test_a_kill_between_checkpoint_and_best_is_repaired(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = model()
    save_checkpoint(tmp_path, 1, m, None, best_metric=2.0, keep_last=1)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("SIGKILL stand-in, after the checkpoint's rename")

    monkeypatch.setattr(os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, m, None, best_metric=1.0, keep_last=1)
    monkeypatch.undo()
    assert checkpoint_info(tmp_path / BEST)["step"] == 1  # best.safetensors is behind...
    assert best_checkpoint(tmp_path) == checkpoint_path(tmp_path, 2)  # ...the record is not
    assert repair_run_dir(tmp_path) == [
        f"linked {BEST} to ckpt-0000002.safetensors: an interrupted save had left it behind"]
    assert os.path.samefile(tmp_path / BEST, checkpoint_path(tmp_path, 2))
    assert repair_run_dir(tmp_path) == [] and repair_best(tmp_path) == checkpoint_path(tmp_path, 2)


def test_the_next_save_repairs_best_before_pruning(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a repair at the start, the next (worse) save must not prune the best away."""
    m = model()
    save_checkpoint(tmp_path, 1, m, None, best_metric=2.0, keep_last=1)
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, m, None, best_metric=1.0, keep_last=1)
    monkeypatch.undo()
    save_checkpoint(tmp_path, 3, m, None, best_metric=5.0, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000003.safetensors"]
    assert checkpoint_info(tmp_path / BEST)["step"] == 2
    assert best_checkpoint(tmp_path) == tmp_path / BEST


def test_without_hard_links_best_is_an_atomic_copy(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links")))
    m = model()
    save_checkpoint(tmp_path, 1, m, None, best_metric=1.0)
    assert not os.path.samefile(tmp_path / BEST, checkpoint_path(tmp_path, 1))
    assert (tmp_path / BEST).read_bytes() == checkpoint_path(tmp_path, 1).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_repair_run_dir_removes_what_a_killed_save_left(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, model(), None, best_metric=1.0)
    leftover = tmp_path / ".ckpt-0000002.safetensors.k2j4_0aa.tmp"
    leftover.write_bytes(b"half a checkpoint")
    assert repair_run_dir(tmp_path) == [f"removed {leftover.name}, left by an interrupted write"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, "ckpt-0000001.safetensors"]
    assert repair_run_dir(tmp_path / "missing") == []


# ----------------------------------------------------------------------------- real kills
WRITER = textwrap.dedent("""
    import sys
    import nima
    from nima.nn import Linear
    from nima.training import latest_checkpoint, checkpoint_info, repair_run_dir, save_checkpoint
    run = sys.argv[1]
    repair_run_dir(run)
    last = latest_checkpoint(run)
    start = checkpoint_info(last)["step"] + 1 if last else 1
    nima.manual_seed(0)
    model = Linear(64, 64)
    for step in range(start, 10_000):
        model.weight.data[0, 0] = step  # which step wrote a file can be read back from it
        save_checkpoint(run, step, model, None, best_metric=(step * 37) % 101, keep_last=2)
        print(step, flush=True)
""")


def metric(step: int) -> int:
    return (step * 37) % 101


def test_kill_9_at_random_moments_never_loses_the_best(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(run)], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()  # saving has begun
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        steps = [checkpoint_info(p)["step"] for p in list_checkpoints(run)]
        written = range(1, steps[-1] + 1)
        expected = min(written, key=lambda s: (metric(s), s))  # the first of the lowest
        best, loaded = best_checkpoint(run), Linear(64, 64)
        assert best is not None and load_checkpoint(best, loaded)["step"] == expected
        assert loaded.weight.data[0, 0] == expected  # the weights of that step, not a later one
    repair_run_dir(run)
    assert checkpoint_info(run / BEST)["step"] == expected
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
