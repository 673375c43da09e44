r"""MkDocs hook: the exercises that end every guide page and every tutorial.

A page ends with a line of its own, `<!-- nima: exercises NAME -->`; this hook replaces it with
the exercises of `exercises/NAME.py` (see docs/exercises.md): for each stub, its docstring as
the task, its code without the docstring as what to fill in, and the first line of its
checker's docstring as what the check does. The text lives beside the code it describes, so
the page cannot show a stub that differs from the one the checker judges.

The build fails if a guide page (`docs/*.md` but the home page and the API reference) or a
tutorial does not end with such a line, if a line names a module that does not exist or is
used twice, or if a module of `exercises/` is used by no page.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

MARKER = re.compile(r"^<!-- nima: exercises (\w+) -->$", re.MULTILINE)
HOW_TO = "exercises.md"
_used: dict[str, str] = {}  # module -> the page that shows it


def needs_exercises(src_uri: str) -> bool:
    """Whether the page `src_uri` must end with exercises: every guide page and tutorial."""
    if src_uri.startswith("tutorials/"):
        return re.fullmatch(r"tutorials/\d\d_\w+\.md", src_uri) is not None
    return "/" not in src_uri and src_uri.endswith(".md") and src_uri != "index.md"


def _code_without_docstring(fn) -> str:
    """The source of `fn` with its docstring removed: what the learner fills in."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    lines = source.splitlines()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
            isinstance(first.value.value, str):
        del lines[first.lineno - 1:first.end_lineno]
    return "\n".join(lines).rstrip()


def render(module: str, src_uri: str) -> str:
    """The markdown of the exercises of `exercises/<module>.py`, for the page `src_uri`."""
    from exercises import exercises  # the repository root is on sys.path (on_config)

    how_to = "../" * src_uri.count("/") + HOW_TO
    found = exercises(module)
    if not found:
        raise PluginError(f"exercises/{module}.py has no exercise (no check_NAME function)")
    blocks = [
        f"Fill in the stubs in `exercises/{module}.py`, then run "
        f"`python -m exercises {module}` from the repository root: it runs each check and says "
        f"what is wrong. Reference solutions are in `solutions/{module}.py` — look after your "
        f"own version passes. [How to use the exercises]({how_to}) explains the setup."
    ]
    for i, exercise in enumerate(found, 1):
        task = inspect.getdoc(exercise.stub)
        check = (inspect.getdoc(exercise.check) or "").split("\n\n")[0].replace("\n", " ")
        if not task or not check:
            raise PluginError(f"exercises/{module}.py: {exercise.name} needs a docstring (the "
                              f"task) and so does check_{exercise.name} (what it checks)")
        title, _, body = task.partition("\n\n")
        if "$" in title:
            raise PluginError(f"exercises/{module}.py: {exercise.name}'s title (its docstring's "
                              f"first paragraph) holds math, which the table of contents "
                              f"cannot show: {title!r}")
        blocks.append(f"### {i}. {title.rstrip('.')}")
        if body:
            blocks.append(body)
        blocks.append(f"```python\n{_code_without_docstring(exercise.stub)}\n```")
        blocks.append(f"*The check:* {check}")
    return "\n\n".join(blocks)


def on_config(config: MkDocsConfig) -> None:
    root = str(Path(config.config_file_path).parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # the exercises/ and solutions/ packages live at the root
    _used.clear()


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    uri = page.file.src_uri
    markers = list(MARKER.finditer(markdown))
    if needs_exercises(uri) and (not markers or markdown[markers[-1].end():].strip()):
        raise PluginError(f"{uri}: a guide page or tutorial ends with its exercises, a line "
                          f"'<!-- nima: exercises NAME -->' (see docs/exercises.md)")
    for match in markers:
        module = match.group(1)
        if _used.setdefault(module, uri) != uri:
            raise PluginError(f"{uri}: exercises/{module}.py is already shown on {_used[module]}")
    return MARKER.sub(lambda m: render(m.group(1), uri), markdown)


def on_post_build(config: MkDocsConfig) -> None:
    from exercises import modules

    unused = sorted(set(modules()) - set(_used))
    if unused:
        raise PluginError(f"exercise modules no page shows: {', '.join(unused)}")
