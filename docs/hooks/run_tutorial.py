"""Run one tutorial cell by cell, recording what each code cell prints and draws.

docs/hooks/tutorials.py starts it at build time as

    python run_tutorial.py tutorials/NN_name.py OUT_DIR

in an empty working directory, with `NIMA_TUTORIAL_QUICK=1` and
`NIMA_TUTORIAL_FIGURES=OUT_DIR/figures`. The code cells run in order in one namespace, as
`python tutorials/NN_name.py` would run them, and `OUT_DIR/cells.json` gets one entry per
code cell that holds code (prose cells and empty cells get none, so editing the prose leaves
the entries as they are), `{"output": ..., "figures": [...]}` — the text the cell wrote to
stdout and stderr, as a terminal would show it (a progress bar's carriage returns applied,
colour codes dropped, the figures folder called
`tutorials/figures` as in a run from the repository), and the names of the files it wrote to
the figures folder. A cell that raises prints what it had written and the traceback, and the
run exits with status 1.
"""

import io
import json
import os
import re
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import jupytext

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # ANSI colour and cursor codes


def as_terminal(text: str) -> str:
    r"""What a terminal would show: each line as left by its last carriage return.

    Example: `"step 1\rstep 2\rdone\n"` -> `"done\n"`.
    """
    lines = ESCAPES.sub("", text).split("\n")
    return "\n".join(line.rstrip("\r").rpartition("\r")[2] for line in lines)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()
            if p.is_file()}


def run(script: Path, out: Path) -> int:
    figures = Path(os.environ["NIMA_TUTORIAL_FIGURES"])
    text = script.read_text(encoding="utf-8")
    notebook = jupytext.reads(text, fmt="py:percent")
    namespace = {"__name__": "__main__", "__file__": str(script)}
    cells: list[dict] = []
    position = 0
    for cell in notebook.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        # compiled as lines of the script itself, so tracebacks show the script's lines and
        # numba can cache the functions a cell defines
        position = text.index(cell.source, position)
        code = "\n" * text.count("\n", 0, position) + cell.source
        before, buffer = _snapshot(figures), io.StringIO()
        try:
            with redirect_stdout(buffer), redirect_stderr(buffer):
                exec(compile(code, str(script), "exec"), namespace)
        except BaseException:
            sys.stderr.write(as_terminal(buffer.getvalue()) + "\n" + traceback.format_exc())
            return 1
        after = _snapshot(figures)
        drawn = sorted(n for n, stamp in after.items() if before.get(n) != stamp)
        output = as_terminal(buffer.getvalue()).replace(str(figures), "tutorials/figures")
        cells.append({"output": output, "figures": drawn})
    (out / "cells.json").write_text(json.dumps(cells, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]).resolve(), Path(sys.argv[2])))
