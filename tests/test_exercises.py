"""The exercises (exercises/, solutions/, docs/exercises.md): every checker passes on its
reference solution and fails on its stub and on every slip the solution module lists; every
guide page and tutorial ends with a summary, questions and its exercises."""

import functools
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from exercises import Exercise, exercises, judge, modules

ROOT = Path(__file__).resolve().parent.parent
ALL = [exercise for module in modules() for exercise in exercises(module)]
IDS = [f"{e.module}.{e.name}" for e in ALL]
MARKER = re.compile(r"^<!-- nima: exercises (\w+) -->$", re.MULTILINE)


def test_the_solution_passes_its_check() -> None:
    failed = [f"{e.module}.{e.name}: {v.message}" for e in ALL
              if (v := judge(e, e.solution())).status != "pass"]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("exercise", ALL, ids=IDS)
def test_the_stub_and_every_slip_fail(exercise: Exercise) -> None:
    verdict = judge(exercise, exercise.stub)
    assert verdict.status == "todo", (
        f"exercises/{exercise.module}.py: the stub {exercise.name} should still raise "
        f"NotImplementedError, got {verdict} (filled in? `git checkout exercises/` restores it)")
    slips = exercise.wrong()
    assert slips, f"solutions/{exercise.module}.py: WRONG lists no slip for {exercise.name}"
    for slip in slips:
        verdict = judge(exercise, slip)
        assert verdict.status == "fail", f"{exercise.name}: the slip {slip.__name__} passes"


@functools.cache
def _guide_pages() -> dict[str, str]:
    pages = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md")
             if p.name != "index.md"}
    for path in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py")):
        notebook = jupytext.read(path, fmt="py:percent")
        pages[path.name] = "\n\n".join(c.source for c in notebook.cells
                                       if c.cell_type == "markdown")
    return pages


@pytest.mark.parametrize("name", sorted(_guide_pages()))
def test_every_page_ends_with_a_summary_questions_and_exercises(name: str) -> None:
    text = _guide_pages()[name]
    markers = MARKER.findall(text)
    assert len(markers) == 1 and text.rstrip().endswith(f"<!-- nima: exercises {markers[0]} -->"),\
        f"{name} should end with one line '<!-- nima: exercises NAME -->'"
    tail = text[text.rfind("\n## Summary"):]
    assert "\n## Summary" in text and "\n## Check your understanding" in tail and \
        "\n## Exercises" in tail, f"{name}: ## Summary, ## Check your understanding and " \
                                  f"## Exercises should close the page, in this order"
    assert tail.count('??? question "') >= 2, f"{name}: at least two questions to check " \
                                              f"your understanding, each with its answer"


def test_every_module_belongs_to_one_page() -> None:
    shown = [m for text in _guide_pages().values() for m in MARKER.findall(text)]
    assert sorted(shown) == sorted(set(shown)), "a module is shown on two pages"
    assert set(shown) == set(modules()), (f"pages without a module: {set(shown) - set(modules())}"
                                          f", modules without a page: "
                                          f"{set(modules()) - set(shown)}")


def test_the_command_line_runs_the_checks() -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "exercises", *args], cwd=ROOT, text=True,
                              capture_output=True, timeout=120)

    mine, theirs = run("warm_up"), run("warm_up", "--solutions")
    assert mine.returncode == 1 and "to do" in mine.stdout, mine.stdout + mine.stderr
    assert theirs.returncode == 0 and "1 of 1 passed" in theirs.stdout, theirs.stdout
