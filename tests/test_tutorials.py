"""The tutorials run top to bottom as scripts (their asserts are the checks) and are valid
jupytext percent-format notebooks, which is what the docs build renders them from.

Every tutorial that takes under a minute in full mode (its time in `tutorials/times.toml`) runs
in full mode, as `python tutorials/NN_name.py`; the longer ones (those that train the 2000-step
model, or learn inference parameters for minutes) run in quick mode, `NIMA_TUTORIAL_QUICK=1`.
Each runs in a subprocess with the non-interactive matplotlib backend and figures redirected to
a temporary directory, from a temporary working directory so that nothing depends on where
pytest was started.
"""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
TIMES = tomllib.loads((ROOT / "tutorials" / "times.toml").read_text(encoding="utf-8"))
FULL_MODE_LIMIT_S = 60


def test_tutorials_exist() -> None:
    assert TUTORIALS, f"no tutorials/NN_*.py found under {ROOT}"


def test_every_tutorial_has_its_times() -> None:
    names = {path.stem for path in TUTORIALS}
    assert set(TIMES) == names, f"tutorials/times.toml: missing {names - set(TIMES)}, " \
                                f"stale {set(TIMES) - names}"
    for name, times in TIMES.items():
        assert set(times) == {"full", "quick"} and 0 < times["quick"] <= times["full"], name


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_is_percent_format(path: Path) -> None:
    notebook = jupytext.read(path, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells if cell.source.strip()]
    assert kinds.count("markdown") >= 1 and kinds.count("code") >= 1, kinds
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), (
        "the first cell should be a markdown cell opening with the page title (`# Title`)"
    )


def _mode(path: Path) -> str:
    return "full" if TIMES.get(path.stem, {}).get("full", 1e9) < FULL_MODE_LIMIT_S else "quick"


@pytest.mark.parametrize("path", TUTORIALS, ids=[f"{p.stem}-{_mode(p)}" for p in TUTORIALS])
def test_tutorial_runs(path: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "NIMA_TUTORIAL_FIGURES": str(tmp_path / "figures"),  # leave tutorials/figures/ alone
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("NIMA_TUTORIAL_QUICK", None)
    if _mode(path) == "quick":
        env["NIMA_TUTORIAL_QUICK"] = "1"
    result = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{path.name} ({_mode(path)} mode) exited with {result.returncode}\n"
        f"--- stdout (last 3000 chars) ---\n{result.stdout[-3000:]}\n"
        f"--- stderr (last 3000 chars) ---\n{result.stderr[-3000:]}"
    )
