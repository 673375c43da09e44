"""MkDocs hook: the configuration reference's tables, written at build time from the settings
dataclasses themselves (`nima.settings.reference_rows`), so they cannot drift from the code.

A page asks for one with a line of its own: `<!-- settings: nima.training.config:DataConfig -->`.
"""

from __future__ import annotations

import importlib
import re

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

from nima.settings import reference_rows

MARKER = re.compile(r"^<!-- settings: ([\w.]+):(\w+) -->$", re.MULTILINE)


def table(module: str, name: str) -> str:
    """The markdown table of the dataclass `module.name`."""
    rows = reference_rows(getattr(importlib.import_module(module), name))
    lines = ["| Key | Type | Default | Range | Meaning |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row.values()) + " |"
              for row in rows]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return MARKER.sub(lambda m: table(m.group(1), m.group(2)), markdown)
