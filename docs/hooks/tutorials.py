"""MkDocs hook: run the numbered tutorial scripts at build time and render them as pages.

Each `tutorials/NN_name.py` is a jupytext percent-format script (`# %%` code cells,
`# %% [markdown]` prose cells) that runs as a plain Python script. This hook runs it in quick
mode (`NIMA_TUTORIAL_QUICK=1`), cell by cell, with `run_tutorial.py` in a fresh temporary
directory, and turns it into the page `tutorials/NN_name.md`: prose cells become prose, code
cells become ```python blocks, each followed by what it printed and the figures it drew. A
tutorial that fails, fails the build.

Runs are cached in `$XDG_CACHE_HOME/nima-docs/tutorials/` (default `~/.cache/...`) under a
hash of everything they can depend on — the script's code cells, the runner, the package's
source, the configs and the data — so a rebuild reruns only what changed (editing a
tutorial's prose reruns nothing). The pages and figures are
virtual files (never written to the repository), plus a generated `tutorials/index.md` that
lists the tutorials with their running times from `tutorials/times.toml`; the `Tutorials`
entry of `nav` in mkdocs.yml is expanded to the index followed by the tutorials in file-name
order.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jupytext
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files

NAV_TITLE = "Tutorials"
PATTERN = "[0-9][0-9]_*.py"
RUNNER = Path(__file__).with_name("run_tutorial.py")
# What a tutorial's run can depend on, besides its own script: (folder, file pattern).
INPUTS = [("nima", "*.py"), ("configs", "*.yaml"), ("data", "*.txt")]
TIMEOUT_S = 900


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).parent


def _scripts(config: MkDocsConfig) -> list[Path]:
    directory = _root(config) / "tutorials"
    return sorted(directory.glob(PATTERN)) if directory.is_dir() else []


def _page_uri(script: Path) -> str:
    return f"tutorials/{script.stem}.md"


def _times(config: MkDocsConfig) -> dict[str, dict[str, float]]:
    """`tutorials/times.toml`: each tutorial's seconds in full and quick mode."""
    path = _root(config) / "tutorials" / "times.toml"
    times = tomllib.loads(path.read_text(encoding="utf-8"))
    missing = [s.stem for s in _scripts(config) if s.stem not in times]
    if missing:
        raise PluginError(f"{path}: no running times for {', '.join(missing)}")
    return times


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _fence(text: str, header: str) -> str:
    """A fenced block, with a fence longer than any backtick run inside the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{header}\n{text}\n{ticks}"


def _code_cells(script: Path) -> list[str]:
    """The sources of the script's code cells that hold code, in order."""
    notebook = jupytext.read(script, fmt="py:percent")
    return [c.source for c in notebook.cells if c.cell_type == "code" and c.source.strip()]


def _cache_key(script: Path, root: Path) -> str:
    digest = hashlib.sha256("\n# %%\n".join(_code_cells(script)).encode())
    files = [RUNNER]
    for folder, pattern in INPUTS:
        files += sorted((root / folder).rglob(pattern))
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() if path.is_relative_to(root)
                      else path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "nima-docs" / "tutorials"


def _execute(script: Path, root: Path) -> Path:
    """The folder holding `cells.json` and `figures/` of a quick-mode run, from the cache or
    from a new run (written to the cache atomically: a half-written run never exists)."""
    done = _cache_dir() / f"{script.stem}-{_cache_key(script, root)}"
    if done.is_dir():
        return done
    done.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=done.parent, prefix=f".{script.stem}-"))
    try:
        env = {**os.environ, "NIMA_TUTORIAL_QUICK": "1", "MPLBACKEND": "Agg",
               "NIMA_TUTORIAL_FIGURES": str(staging / "figures"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(root),
                                                           os.environ.get("PYTHONPATH")]))}
        with tempfile.TemporaryDirectory(prefix="nima-tutorial-") as cwd:
            result = subprocess.run([sys.executable, str(RUNNER), str(script), str(staging)],
                                    cwd=cwd, env=env, capture_output=True, text=True,
                                    timeout=TIMEOUT_S, check=False)
        if result.returncode != 0:
            raise PluginError(f"{script.name} failed in quick mode (exit {result.returncode}):\n"
                              f"{result.stdout[-2000:]}{result.stderr[-4000:]}")
        for old in done.parent.glob(f"{script.stem}-*"):
            shutil.rmtree(old, ignore_errors=True)  # earlier runs of this tutorial
        staging.rename(done)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


def _render(script: Path, run: Path, times: dict[str, float]) -> tuple[str, str, list[str]]:
    """(title, page markdown, figure names) for one tutorial script and its run.

    The title is the `# Heading` that opens the first cell; without one it is made from the
    file name (`03_training_loop.py` -> "Training loop").
    """
    notebook = jupytext.read(script, fmt="py:percent")
    outputs = json.loads((run / "cells.json").read_text(encoding="utf-8"))
    if len(outputs) != len(_code_cells(script)):
        raise PluginError(f"{run}: {len(outputs)} cell outputs for "
                          f"{len(_code_cells(script))} code cells")
    blocks, figures, remaining = [], [], iter(outputs)
    for cell in notebook.cells:
        source = cell.source.strip()
        if source and cell.cell_type == "markdown":
            blocks.append(source)
        elif source and cell.cell_type == "code":
            output = next(remaining)
            blocks.append(_fence(source, "python"))
            if output["output"].strip():
                text = output["output"].rstrip()
                blocks.append(_fence(text, ' { .text .tutorial-output title="Output" }'))
            for name in output["figures"]:
                blocks.append(f"![{name}](figures/{name}){{ .tutorial-figure }}")
                figures += [name] if name not in figures else []
    body = "\n\n".join(blocks)
    if body.startswith("# "):
        heading, _, body = body.partition("\n")
    else:
        heading = "# " + script.stem.partition("_")[2].replace("_", " ").capitalize()
    run_note = (
        '!!! tip "Run it"\n'
        f"    This page is `tutorials/{script.name}`. Run it with `python "
        f"tutorials/{script.name}`\n"
        f"    (about {_duration(times['full'])}), or in quick mode, with smaller sizes and "
        f"fewer steps,\n"
        f"    with `NIMA_TUTORIAL_QUICK=1 python tutorials/{script.name}` (about "
        f"{_duration(times['quick'])}).\n"
        f"    The outputs and figures below are from a quick-mode run made when the site was\n"
        f"    built. The script also opens as a notebook with jupytext."
    )
    page = f"{heading}\n\n{run_note}\n\n{body.strip()}\n"
    return heading.removeprefix("# ").strip(), page, figures


def _index(entries: list[tuple[str, str, dict[str, float]]]) -> str:
    lines = [
        f"# {NAV_TITLE}",
        "",
        "Each tutorial is a numbered script in `tutorials/`, written in jupytext's percent",
        "format: it runs top to bottom with `python tutorials/NN_name.py`, opens as a notebook",
        "with jupytext, and is rendered here with the output of a quick-mode run made when the",
        "docs were built. Its asserts are its checks: a script that runs to the end has",
        "verified every claim it makes.",
        "",
        "Quick mode, `NIMA_TUTORIAL_QUICK=1 python tutorials/NN_name.py`, runs the same code",
        "with smaller sizes, fewer samples and fewer training steps. The times are wall-clock",
        "times on a quiet 2-core machine with numba's cache warm (the very first run also",
        "compiles the kernels, up to a minute more). The tests run every tutorial that takes",
        "under a minute in full mode and the others in quick mode.",
        "",
        "Each tutorial ends with a summary, questions to check your understanding and",
        "exercises checked by code; see [How to use the exercises](../exercises.md).",
        "",
        "| tutorial | full run | quick mode |",
        "|---|---|---|",
    ]
    lines += [f"| [{title}]({uri.removeprefix('tutorials/')}) | {_duration(t['full'])} | "
              f"{_duration(t['quick'])} |" for title, uri, t in entries]
    return "\n".join(lines) + "\n"


def on_config(config: MkDocsConfig) -> None:
    pages = ["tutorials/index.md", *(_page_uri(script) for script in _scripts(config))]
    for position, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NAV_TITLE in item:
            config.nav[position] = {NAV_TITLE: pages}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    times, root, entries, seen = _times(config), _root(config), [], {}
    for script in _scripts(config):
        run = _execute(script, root)
        title, markdown, figures = _render(script, run, times[script.stem])
        files.append(File.generated(config, _page_uri(script), content=markdown))
        for name in figures:
            if seen.setdefault(name, script.name) != script.name:
                raise PluginError(f"{script.name} and {seen[name]} both draw {name}")
            files.append(File.generated(config, f"tutorials/figures/{name}",
                                        abs_src_path=str(run / "figures" / name)))
        entries.append((title, _page_uri(script), times[script.stem]))
    files.append(File.generated(config, "tutorials/index.md", content=_index(entries)))
    return files


def on_serve(server: LiveReloadServer, config: MkDocsConfig, builder) -> None:
    if (_root(config) / "tutorials").is_dir():
        server.watch(str(_root(config) / "tutorials"))
