"""Checkpoints: everything needed to resume a run, in one safetensors file written atomically.

A checkpoint `ckpt-0001200.safetensors` holds the model's tensors as `model.<name>`, the
optimizer's arrays as `optim.state.<index>.<key>`, and, in the header's `__metadata__`, a JSON
string with the rest: step, config, RNG states, metrics, the optimizer's scalars and parameter
groups, the scheduler's state. It is marked `"kind": "nima-checkpoint"`.

Example:
    >>> save_checkpoint("runs/a", step, model, opt, sched, config=cfg,
    ...                 rng_states={"nima": nima.random.get_state()}, metrics={"val_loss": 1.9},
    ...                 best_metric=1.9)
    >>> info = load_checkpoint(latest_checkpoint("runs/a"), model, opt, sched)
    >>> info["step"]
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from nima import random as nima_random
from nima.nn.module import Module
from nima.optim.optimizer import Optimizer
from nima.serialization import CheckpointError, PathLike, atomic_write, load, load_metadata, save

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
        keep_last: keep this many step checkpoints, delete older ones (`best` is never deleted).
        best_metric: this checkpoint's value of the metric that picks the best (lower is
            better); when it beats the one stored in `best.safetensors`, the checkpoint is
            copied there (atomically).
        extra: any other JSON-able state to resume (a loss scaler's, say).

    Returns:
        The path written.
    """
    if keep_last < 1:
        raise ValueError(f"save_checkpoint: keep_last must be >= 1, got {keep_last}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {f"model.{k}": v for k, v in model.state_dict().items()}
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
    state = {
        "step": int(step),
        "config": config or {},
        "rng_states": rng_states if rng_states is not None else {"nima": nima_random.get_state()},
        "metrics": metrics or {},
        "best_metric": best_metric,
        "optimizer": optim_meta,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": extra or {},
    }
    meta = {"kind": KIND, "version": VERSION, "state": json.dumps(state, default=_jsonable)}
    path = checkpoint_path(run_dir, step)
    save(tensors, path, meta)

    if best_metric is not None and _beats(best_metric, run_dir / BEST):
        with path.open("rb") as src:
            atomic_write(run_dir / BEST, lambda dst: shutil.copyfileobj(src, dst))
    for old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path
# --8<-- [end:save_checkpoint]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"save_checkpoint: {type(value).__name__} is not JSON-serializable")


def _beats(metric: float, best_path: Path) -> bool:
    if not best_path.exists():
        return True
    try:
        previous = checkpoint_info(best_path)["best_metric"]
    except CheckpointError:
        return True  # a damaged best file is replaced
    return previous is None or metric < previous


def checkpoint_info(path: PathLike) -> dict[str, Any]:
    """A checkpoint's JSON state — `step`, `config`, `rng_states`, `metrics`, `best_metric`,
    `optimizer` scalars, `scheduler`, `extra` — read from its header without loading a tensor.

    Raises:
        CheckpointError: not a valid safetensors file, or not a Nima checkpoint.
    """
    meta = load_metadata(path)
    if meta.get("kind") != KIND or "state" not in meta:
        raise CheckpointError(f"{path}: not a Nima checkpoint (no \"kind\": \"{KIND}\" in its "
                              f"metadata) — a plain safetensors file holds weights only")
    try:
        return json.loads(meta["state"])
    except ValueError as e:
        raise CheckpointError(f"{path}: the checkpoint's state is not valid JSON ({e})") from None


# --8<-- [start:load_checkpoint]
def load_checkpoint(path: PathLike, model: Module, optimizer: Optimizer | None = None,
                    scheduler: Any = None) -> dict[str, Any]:
    """Restore a checkpoint into `model` (and `optimizer`, `scheduler` when given), and Nima's
    random generator from `rng_states["nima"]` when saved.

    Returns:
        `{"step", "config", "rng_states", "metrics", "best_metric", "extra"}` — other
        generators in `rng_states` (a data sampler's, say) and `extra` are the caller's to
        restore.

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
    except (ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: does not fit: {e}") from e
    if "nima" in state["rng_states"]:
        nima_random.set_state(state["rng_states"]["nima"])
    info = {k: state[k] for k in ("step", "config", "rng_states", "metrics", "best_metric")}
    return {**info, "extra": state.get("extra", {})}
# --8<-- [end:load_checkpoint]


def _optimizer_state(saved: dict[str, Any], tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Rebuild `Optimizer.state_dict()` from the JSON scalars and the `optim.state.*` arrays."""
    state: dict[str, dict[str, Any]] = {i: dict(s) for i, s in saved["scalars"].items()}
    for name, array in tensors.items():
        if name.startswith("optim.state."):
            _, _, index, key = name.split(".", 3)
            state.setdefault(index, {})[key] = array
    return {"state": state, "param_groups": saved["param_groups"]}
