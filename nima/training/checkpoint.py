"""Checkpoints: everything needed to resume a run, in one safetensors file written atomically.

A checkpoint `ckpt-0001200.safetensors` holds the model's tensors as `model.<name>`, the
optimizer's arrays as `optim.state.<index>.<key>`, and, in the header's `__metadata__`, a JSON
string with the rest: step, config, RNG states, metrics, the optimizer's scalars and parameter
groups, the scheduler's state, and the run's best checkpoint so far. It is marked
`"kind": "nima-checkpoint"` and carries a digest of its header and data (`nima.save`); a
checkpoint without one is refused.

**The best checkpoint.** Each checkpoint records `"best": {"step", "metric"}`, the lowest finite
metric among it and the checkpoints before it, so the one rename that commits a checkpoint also
commits which checkpoint is best. `best.safetensors` is a hard link to that checkpoint's file
(no copy; it outlives the pruning of its step file), replaced by a rename right after the
checkpoint. A kill between the two leaves it one checkpoint behind the record; `repair_best`
(and the next `save_checkpoint`) relinks it, and `best_checkpoint` reads the record directly.

Example:
    >>> save_checkpoint("runs/a", step, model, opt, sched, config=cfg,
    ...                 rng_states={"nima": nima.random.get_state()}, metrics={"val_loss": 1.9},
    ...                 best_metric=1.9)
    >>> info = load_checkpoint(latest_checkpoint("runs/a"), model, opt, sched)
    >>> info["step"]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import reprlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nima import random as nima_random
from nima.nn.module import Module
from nima.optim.optimizer import Optimizer
from nima.serialization import (
    DIGEST,
    CheckpointError,
    PathLike,
    atomic_write,
    load,
    load_metadata,
    remove_temporaries,
    save,
)

KIND = "nima-checkpoint"
VERSION = "1"
BEST = "best.safetensors"
_NAME = re.compile(r"^ckpt-(\d{7,})\.safetensors$")


def checkpoint_path(run_dir: PathLike, step: int) -> Path:
    """`run_dir/ckpt-{step:07d}.safetensors`."""
    return Path(run_dir) / f"ckpt-{step:07d}.safetensors"


def list_checkpoints(run_dir: PathLike) -> list[Path]:
    """The step checkpoints of a run directory, oldest step first (`best` not included)."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("ckpt-*.safetensors")
             if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: PathLike) -> Path | None:
    """The checkpoint with the highest step, or `None` when the directory has none."""
    paths = list_checkpoints(run_dir) if Path(run_dir).is_dir() else []
    return paths[-1] if paths else None


# --8<-- [start:save_checkpoint]
def save_checkpoint(run_dir: PathLike, step: int, model: Module, optimizer: Optimizer | None,
                    scheduler: Any = None, *, config: dict[str, Any] | None = None,
                    rng_states: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None, keep_last: int = 3,
                    best_metric: float | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write `ckpt-{step:07d}.safetensors` in `run_dir` (created if needed), atomically.

    Args:
        run_dir: the run directory.
        step: the number of optimizer steps taken so far.
        model: saved through its `state_dict()`.
        optimizer: saved through its `state_dict()` (arrays as tensors, the rest as JSON).
        scheduler: saved through its `state_dict()`.
        config: the run's configuration (JSON-able).
        rng_states: JSON-able generator states; defaults to `{"nima": nima.random.get_state()}`.
        metrics: e.g. `{"train_loss": ..., "val_loss": ...}`.
        keep_last: keep this many step checkpoints, delete older ones (`best` is never deleted;
            nor is the best's own step file while `best.safetensors` does not link to it).
        best_metric: this checkpoint's value of the metric that picks the best (lower is
            better); when it is finite and beats the run's best so far (recorded in the latest
            checkpoint), this checkpoint becomes the best: recorded in itself, and
            `best.safetensors` linked to it. NaN and infinities never become the best, and
            neither does a model whose weights are not all finite.
        extra: any other JSON-able state to resume (a loss scaler's, say).

    Returns:
        The path written.
    """
    if keep_last < 1:
        raise ValueError(f"save_checkpoint: keep_last must be >= 1, got {keep_last}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    weights = model.state_dict()
    tensors: dict[str, np.ndarray] = {f"model.{k}": v for k, v in weights.items()}
    optim_meta = None
    if optimizer is not None:
        osd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, entry in osd["state"].items():
            scalars[str(index)] = {}
            for key, value in entry.items():
                if isinstance(value, np.ndarray):
                    tensors[f"optim.state.{index}.{key}"] = value
                else:
                    scalars[str(index)][key] = value
        optim_meta = {"scalars": scalars, "param_groups": osd["param_groups"]}
    best = _best_record(run_dir)
    if best_metric is not None and math.isfinite(best_metric) and (
            best is None or best_metric < best["metric"]) and first_nonfinite(weights) is None:
        best = {"step": int(step), "metric": float(best_metric)}
    state = {
        "step": int(step),
        "config": config or {},
        "rng_states": rng_states if rng_states is not None else {"nima": nima_random.get_state()},
        "metrics": metrics or {},
        "best_metric": best_metric,
        "best": best,
        "optimizer": optim_meta,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": extra or {},
    }
    meta = {"kind": KIND, "version": VERSION, "state": json.dumps(state, default=_jsonable)}
    path = checkpoint_path(run_dir, step)
    save(tensors, path, meta)  # commits the checkpoint and its best record in one rename
    try:
        _link_best(run_dir, best)  # before pruning, so the best's file is still there to link
    finally:  # a failed link (a full disk) must not leave more than keep_last checkpoints
        _prune(run_dir, keep_last, best)
    return path
# --8<-- [end:save_checkpoint]


def _prune(run_dir: Path, keep_last: int, best: dict[str, Any] | None) -> None:
    """Delete all but the newest `keep_last` step checkpoints — except the best's own file
    while `best.safetensors` does not link to it yet."""
    keep = set(list_checkpoints(run_dir)[-keep_last:])
    if best is not None:
        source, target = checkpoint_path(run_dir, best["step"]), run_dir / BEST
        if source.exists() and not (target.exists() and os.path.samefile(source, target)):
            keep.add(source)
    for old in list_checkpoints(run_dir):
        if old not in keep:
            old.unlink(missing_ok=True)


def first_nonfinite(tensors: dict[str, np.ndarray]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, array in tensors.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            return name
    return None


# --8<-- [start:best]
def _best_record(run_dir: Path) -> dict[str, Any] | None:
    """The `"best"` record of the newest checkpoint that reads cleanly (None if none has one)."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return checkpoint_info(path)["best"]
        except CheckpointError:
            continue
    return None


def _link_best(run_dir: Path, best: dict[str, Any] | None) -> None:
    """Make `best.safetensors` the file of the checkpoint `best` names, unless it already is
    (or that file is gone: pruned after it was linked). A hard link made under a temporary
    name, then renamed over `best.safetensors`; a copy (atomic too) where the file system has
    no hard links."""
    if best is None:
        return
    source, target = checkpoint_path(run_dir, best["step"]), run_dir / BEST
    if not source.exists() or (target.exists() and os.path.samefile(source, target)):
        return
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{BEST}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network or FAT file systems)
        with source.open("rb") as src:
            atomic_write(target, lambda dst: shutil.copyfileobj(src, dst))
        return
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def best_checkpoint(run_dir: PathLike) -> Path | None:
    """The run's best checkpoint as its newest checkpoint records it: the step file while it
    exists, else `best.safetensors` (its link, kept after pruning); None when no checkpoint
    recorded a best. Reads only; right even when a kill left `best.safetensors` behind."""
    run_dir = Path(run_dir)
    best = _best_record(run_dir) if run_dir.is_dir() else None
    if best is None:
        return None
    source = checkpoint_path(run_dir, best["step"])
    return source if source.exists() else (run_dir / BEST if (run_dir / BEST).exists() else None)


def repair_best(run_dir: PathLike) -> Path | None:
    """Relink `best.safetensors` to the checkpoint the newest checkpoint records as best, if a
    kill left it behind; returns `best_checkpoint(run_dir)`. Call it when the run directory is
    not being written by another process (at the start of a run or a resume)."""
    run_dir = Path(run_dir)
    _link_best(run_dir, _best_record(run_dir))
    return best_checkpoint(run_dir)


def repair_run_dir(run_dir: PathLike) -> list[str]:
    """What a start must do after a kill, before anything else reads or writes `run_dir`:
    delete the temporary files of writes that never finished (`remove_temporaries`) and relink
    `best.safetensors` (`repair_best`). Returns one line per repair, for the log."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    notes = [f"removed {p.name}, left by an interrupted write" for p in
             remove_temporaries(run_dir)]
    before = _file_id(run_dir / BEST)
    best = repair_best(run_dir)
    if best is not None and _file_id(run_dir / BEST) != before:
        notes.append(f"linked {BEST} to {best.name}: an interrupted save had left it behind")
    return notes


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of `path`, None if it does not exist: tells whether it was relinked."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
# --8<-- [end:best]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"save_checkpoint: {type(value).__name__} is not JSON-serializable")


def checkpoint_info(path: PathLike) -> dict[str, Any]:
    """A checkpoint's JSON state — `step`, `config`, `rng_states`, `metrics`, `best_metric`,
    `best`, `optimizer` scalars, `scheduler`, `extra` — from its header, the whole file verified
    against its digest.

    Raises:
        CheckpointError: not a valid safetensors file, not a Nima checkpoint, a checkpoint
            without a digest, or a state that is not what `save_checkpoint` writes (a field
            missing or of the wrong type, a step other than the file name's).
    """
    meta = load_metadata(path)
    if meta.get("kind") != KIND or "state" not in meta:
        raise CheckpointError(f"{path}: not a Nima checkpoint (no \"kind\": \"{KIND}\" in its "
                              f"metadata) — a plain safetensors file holds weights only")
    if DIGEST not in meta:
        raise CheckpointError(f"{path}: a Nima checkpoint without a {DIGEST!r} in its metadata "
                              f"(removed, or written by an older Nima): its header cannot be "
                              f"verified, so it is refused")
    try:
        state = json.loads(meta["state"])
    except ValueError as e:
        raise CheckpointError(f"{path}: the checkpoint's state is not valid JSON ({e})") from None
    problem = _state_problem(state)
    named = _NAME.match(Path(path).name)
    if problem is None and named and int(named.group(1)) != state["step"]:
        problem = f"it records step {state['step']} but its name says {int(named.group(1))}"
    if problem is not None:
        raise CheckpointError(f"{path}: the checkpoint's state is not what Nima writes: "
                              f"{problem}")
    return state


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# the fields of a checkpoint's state, each with its test and what it must be
_STATE_FIELDS: dict[str, tuple[Any, str]] = {
    "step": (_is_count, "a whole number >= 0"),
    "config": (lambda v: isinstance(v, dict), "a mapping"),
    "rng_states": (lambda v: isinstance(v, dict), "a mapping"),
    "metrics": (lambda v: isinstance(v, dict), "a mapping"),
    "best_metric": (lambda v: v is None or _is_number(v), "a number or null"),
    "best": (lambda v: v is None or (isinstance(v, dict) and _is_count(v.get("step"))
                                     and _is_number(v.get("metric"))
                                     and math.isfinite(v["metric"])),
             "null or {\"step\": a whole number, \"metric\": a finite number}"),
    "optimizer": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("scalars"), dict)
                                          and isinstance(v.get("param_groups"), list)),
                  "null or {\"scalars\": a mapping, \"param_groups\": a list}"),
    "scheduler": (lambda v: v is None or isinstance(v, dict), "a mapping or null"),
    "extra": (lambda v: isinstance(v, dict), "a mapping"),
}


def _state_problem(state: Any) -> str | None:
    """What is wrong with a checkpoint's decoded state, or None."""
    if not isinstance(state, dict):
        return f"expected a mapping, got {type(state).__name__}"
    state.setdefault("extra", {})  # checkpoints written before `extra` existed
    for key, (ok, meaning) in _STATE_FIELDS.items():
        if key not in state:
            return f"no {key!r}"
        if not ok(state[key]):
            return f"{key!r} must be {meaning}, got {_short(state[key])}"
    return None


# --8<-- [start:load_checkpoint]
def load_checkpoint(path: PathLike, model: Module, optimizer: Optimizer | None = None,
                    scheduler: Any = None) -> dict[str, Any]:
    """Restore a checkpoint into `model` (and `optimizer`, `scheduler` when given), and Nima's
    random generator from `rng_states["nima"]` when saved.

    Returns:
        `{"step", "config", "rng_states", "metrics", "best_metric", "best", "extra"}` —
        `best_metric` is this checkpoint's own metric, `best` the run's best so far
        (`{"step", "metric"}` or None); other generators in `rng_states` (a data sampler's,
        say) and `extra` are the caller's to restore.

    Raises:
        CheckpointError: the file is invalid (see `nima.load`), not a Nima checkpoint, or does
            not fit the model/optimizer (the message of `load_state_dict` is kept).
    """
    state = checkpoint_info(path)  # checks the marker before any tensor is touched
    tensors = load(path)
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd)
        if optimizer is not None:
            if state["optimizer"] is None:
                raise ValueError("the checkpoint holds no optimizer state")
            optimizer.load_state_dict(_optimizer_state(state["optimizer"], tensors))
        if scheduler is not None:
            if state["scheduler"] is None:
                raise ValueError("the checkpoint holds no scheduler state")
            scheduler.load_state_dict(state["scheduler"])
        if "nima" in state["rng_states"]:
            nima_random.set_state(state["rng_states"]["nima"])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: does not fit: {_short(e)}") from e
    info = {k: state[k] for k in ("step", "config", "rng_states", "metrics", "best_metric")}
    return {**info, "best": state.get("best"), "extra": state.get("extra", {})}
# --8<-- [end:load_checkpoint]


def _short(value: Any, limit: int = 80) -> str:
    """`repr` of a value, or `str` of an exception, cut to `limit` characters."""
    text = str(value) if isinstance(value, BaseException) else reprlib.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _optimizer_state(saved: dict[str, Any], tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Rebuild `Optimizer.state_dict()` from the JSON scalars and the `optim.state.*` arrays."""
    state: dict[str, dict[str, Any]] = {i: dict(s) for i, s in saved["scalars"].items()}
    for name, array in tensors.items():
        if name.startswith("optim.state."):
            _, _, index, key = name.split(".", 3)
            state.setdefault(index, {})[key] = array
    return {"state": state, "param_groups": saved["param_groups"]}


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, or None when there is no such file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
