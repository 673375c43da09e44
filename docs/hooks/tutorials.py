"""MkDocs hook: render the numbered tutorial scripts as pages, at build time.

Each `tutorials/NN_name.py` is a jupytext percent-format script (`# %%` code cells,
`# %% [markdown]` prose cells) that runs as a plain Python script. This hook reads it with
jupytext and turns it into the page `tutorials/NN_name.md`: markdown cells become prose,
code cells become ```python blocks. Nothing is executed, so no outputs are shown and the
build stays fast. The pages are virtual files (never written to disk or committed), plus a
generated `tutorials/index.md` that lists them; the `Tutorials` entry of `nav` in
mkdocs.yml is expanded to the index followed by the tutorials in file-name order.
"""

import re
from pathlib import Path

import jupytext
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files

NAV_TITLE = "Tutorials"
PATTERN = "[0-9][0-9]_*.py"


def _tutorials_dir(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).parent / "tutorials"


def _scripts(config: MkDocsConfig) -> list[Path]:
    directory = _tutorials_dir(config)
    return sorted(directory.glob(PATTERN)) if directory.is_dir() else []


def _page_uri(script: Path) -> str:
    return f"tutorials/{script.stem}.md"


def _fence(code: str) -> str:
    """A ```python block, with a fence longer than any backtick run inside the code."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}python\n{code}\n{ticks}"


def _render(script: Path) -> tuple[str, str]:
    """(title, page markdown) for one tutorial script.

    The title is the `# Heading` that opens the first cell; without one it is made from the
    file name (`03_training_loop.py` -> "Training loop").
    """
    notebook = jupytext.read(script, fmt="py:percent")
    blocks = []
    for cell in notebook.cells:
        source = cell.source.strip()
        if source and cell.cell_type == "markdown":
            blocks.append(source)
        elif source and cell.cell_type == "code":
            blocks.append(_fence(source))
    body = "\n\n".join(blocks)
    if body.startswith("# "):
        heading, _, body = body.partition("\n")
    else:
        heading = "# " + script.stem.partition("_")[2].replace("_", " ").capitalize()
    run_note = (
        '!!! tip "Run it"\n'
        f"    This page is `tutorials/{script.name}`, shown without outputs. Run it with\n"
        f"    `python tutorials/{script.name}`, or open it as a notebook with jupytext."
    )
    return heading.removeprefix("# ").strip(), f"{heading}\n\n{run_note}\n\n{body.strip()}\n"


def _index(entries: list[tuple[str, str]]) -> str:
    lines = [
        f"# {NAV_TITLE}",
        "",
        "Each tutorial is a numbered script in `tutorials/`, written in jupytext's percent",
        "format: it runs top to bottom with `python tutorials/NN_name.py`, opens as a notebook",
        "with jupytext, and is rendered here (without outputs) when the docs are built.",
        "",
    ]
    lines += [f"1. [{title}]({uri.removeprefix('tutorials/')})" for title, uri in entries]
    if not entries:
        lines.append("No tutorials yet.")
    return "\n".join(lines) + "\n"


def on_config(config: MkDocsConfig) -> None:
    pages = ["tutorials/index.md", *(_page_uri(script) for script in _scripts(config))]
    for position, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NAV_TITLE in item:
            config.nav[position] = {NAV_TITLE: pages}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    entries = []
    for script in _scripts(config):
        title, markdown = _render(script)
        files.append(File.generated(config, _page_uri(script), content=markdown))
        entries.append((title, _page_uri(script)))
    files.append(File.generated(config, "tutorials/index.md", content=_index(entries)))
    return files


def on_serve(server: LiveReloadServer, config: MkDocsConfig, builder) -> None:
    if _tutorials_dir(config).is_dir():
        server.watch(str(_tutorials_dir(config)))
