"""The run's metrics: one record per logged step, appended to `metrics.jsonl` and `metrics.csv`,
and drawn as `curves.png` (loss and learning rate against the step).

A record is a flat dict with a `kind`: `"train"` (the step's loss and its perplexity
$e^{\text{loss}}$, learning rate and tokens/s, every `training.log_interval` steps) or `"eval"`
(train and validation loss averaged over `training.eval_iters` batches, and their perplexities,
every `training.eval_interval` steps). Both files are appended a line at a time and flushed, so
a run killed at any moment loses at most the line being written. `read_metrics` skips such a
torn line, and any other line that is not a record — not UTF-8, not JSON, without a step, with
a value of the wrong type — and says which it skipped: a damaged metrics file never stops a
resume. On resume, records after the checkpoint's step are dropped (`truncate_after`), so the
files hold one clean curve.

Example:
    >>> log = MetricsLog("runs/a")                                       # doctest: +SKIP
    >>> log.append({"kind": "train", "step": 10, "loss": 2.5, "lr": 1e-3})  # doctest: +SKIP
    >>> last = read_metrics("runs/a/metrics.jsonl").pop()                 # doctest: +SKIP
    >>> last.get("loss")                                                   # doctest: +SKIP
    2.5
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from nima.serialization import PathLike, atomic_write, atomic_write_text

__all__ = ["COLUMNS", "MetricsLog", "perplexity", "plot_curves", "read_metrics"]

JSONL = "metrics.jsonl"
CSV = "metrics.csv"
PLOT = "curves.png"
COLUMNS = ("step", "kind", "loss", "perplexity", "train_loss", "train_perplexity", "val_loss",
           "val_perplexity", "lr", "tokens_per_s", "elapsed_s")


def perplexity(loss: float) -> float:
    r"""$e^{\mathcal L}$ of a mean loss in nats: the number of equally likely tokens the model is
    as unsure as; `inf` where the exponential overflows, NaN for NaN."""
    return math.exp(loss) if loss < 709.0 else (math.nan if math.isnan(loss) else math.inf)


def read_metrics(path: PathLike, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl`; a line that is not a record is left out, and what
    was wrong with it (`"line 7: not JSON"`) appended to `skipped` when given."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        problem, record = _parse(raw)
        if problem is None:
            records.append(record)
        elif skipped is not None:
            skipped.append(f"line {number}: {problem}")
    return records


def _parse(raw: bytes) -> tuple[str | None, Any]:
    """`(None, record)` for a good line, else `(what is wrong, None)`."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8", None
    except ValueError:
        return f"not JSON ({raw[:40].decode('utf-8', 'replace')!r})", None
    if not isinstance(record, dict):
        return f"not a record but a {type(record).__name__}", None
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"no step (a whole number >= 0), got {str(step)[:20]!r}", None
    if not isinstance(record.get("kind"), str):
        return "no kind", None
    for key in (c for c in COLUMNS if c not in ("step", "kind")):
        value = record.get(key, 0.0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{key} is not a number", None
    return None, record


def _csv_line(record: dict[str, Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([record.get(c, "") for c in COLUMNS])
    return buffer.getvalue()


class MetricsLog:
    """Appends records to `run_dir/metrics.jsonl` and `run_dir/metrics.csv`."""

    def __init__(self, run_dir: PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.jsonl, self.csv = self.run_dir / JSONL, self.run_dir / CSV
        self.skipped: list[str] = []  # the damaged lines `read_metrics` left out
        self.records = read_metrics(self.jsonl, self.skipped)

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (keys from `COLUMNS`) to both files and to `records`."""
        unknown = set(record) - set(COLUMNS)
        if unknown:
            raise ValueError(f"MetricsLog.append: unknown keys {sorted(unknown)}; "
                             f"the columns are {COLUMNS}")
        self.records.append(record)
        new_csv = not self.csv.exists()
        with self.jsonl.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        with self.csv.open("a", encoding="utf-8", newline="") as f:
            if new_csv:
                f.write(",".join(COLUMNS) + "\n")
            f.write(_csv_line(record))

    def truncate_after(self, step: int) -> None:
        """Keep only the records of steps `<= step` (both files rewritten atomically)."""
        self.records = [r for r in self.records if r["step"] <= step]
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.records))
        atomic_write_text(self.csv, ",".join(COLUMNS) + "\n"
                          + "".join(_csv_line(r) for r in self.records))


def plot_curves(records: list[dict[str, Any]], path: PathLike, title: str = "") -> None:
    """Draw the loss curves (top) and the learning rate (bottom) against the step into a PNG,
    written atomically. A bare `Figure`, not pyplot: no window, and the caller's matplotlib
    backend is left alone."""
    from matplotlib.figure import Figure

    train = [r for r in records if r["kind"] == "train" and "loss" in r]
    evals = [r for r in records if r["kind"] == "eval"]
    fig = Figure(figsize=(7, 6), layout="tight")
    ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8,
                     alpha=0.45, color="tab:blue", label="batch loss")
    for key, color in (("train_loss", "tab:blue"), ("val_loss", "tab:orange")):
        points = [(r["step"], r[key]) for r in evals if math.isfinite(r.get(key, math.nan))]
        if points:
            xs, ys = zip(*points, strict=True)
            ax_loss.plot(xs, ys, "o-", ms=3.5, color=color, label=key.replace("_", " "))
    ax_loss.set_ylabel("cross-entropy (nats)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    if title:
        ax_loss.set_title(title)
    lr_points = [(r["step"], r["lr"]) for r in records if "lr" in r]
    if lr_points:
        xs, ys = zip(*sorted(lr_points), strict=True)
        ax_lr.plot(xs, ys, color="tab:green")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
