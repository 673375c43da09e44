"""The tutorials run top to bottom as scripts (their asserts are the checks) and are valid
jupytext percent-format notebooks, which is what the docs build renders them from.

Each runs in a subprocess with `NIMA_TUTORIAL_QUICK=1` (smaller sizes and fewer timing repeats),
the non-interactive matplotlib backend and figures redirected to a temporary directory, from a
temporary working directory so that nothing depends on where pytest was started.
"""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def test_tutorials_exist() -> None:
    assert TUTORIALS, f"no tutorials/NN_*.py found under {ROOT}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_is_percent_format(path: Path) -> None:
    notebook = jupytext.read(path, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells if cell.source.strip()]
    assert kinds.count("markdown") >= 1 and kinds.count("code") >= 1, kinds
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), (
        "the first cell should be a markdown cell opening with the page title (`# Title`)"
    )


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NIMA_TUTORIAL_QUICK": "1",
        "MPLBACKEND": "Agg",
        "NIMA_TUTORIAL_FIGURES": str(tmp_path / "figures"),  # leave tutorials/figures/ alone
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{path.name} exited with {result.returncode}\n"
        f"--- stdout (last 3000 chars) ---\n{result.stdout[-3000:]}\n"
        f"--- stderr (last 3000 chars) ---\n{result.stderr[-3000:]}"
    )
