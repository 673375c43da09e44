r"""Exercises for every guide page and tutorial, each checked by code.

One module here belongs to one page: `exercises/attention.py` to the Attention page,
`exercises/tutorial_04.py` to tutorial 04. It holds *stubs* — functions whose body is
`raise NotImplementedError` — for you to fill in, and for each stub `NAME` a checker
`check_NAME(fn)` that calls your function and raises `AssertionError` saying what is wrong. The
checkers compare with an independent oracle: Nima's own layers, `nima.gradcheck`'s central
differences, or an answer worked by hand.

`solutions/` at the repository root holds a module of the same name with every stub filled
in, and `WRONG`: common slips (a missing term, an off-by-one) that the checkers must reject.
The tests run every checker on its solution (it must pass), on its stub and on every slip (they
must fail).

Run the checks with `python -m exercises attention` (your versions, in this folder) or
`python -m exercises attention --solutions`; `python -m exercises --list` lists the modules.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Exercise:
    """One stub of a page's module and the checker that judges a function written for it."""

    module: str  # the module's name: "attention" for exercises/attention.py
    name: str  # the stub's name: "top_p_mask"
    stub: Callable[..., Any]
    check: Callable[[Callable[..., Any]], None]

    def solution(self) -> Callable[..., Any]:
        """The reference solution, `solutions/<module>.py`'s function of the same name."""
        return getattr(importlib.import_module(f"solutions.{self.module}"), self.name)

    def wrong(self) -> list[Callable[..., Any]]:
        """The solution module's slips for this exercise, which the checker must reject."""
        module = importlib.import_module(f"solutions.{self.module}")
        return list(getattr(module, "WRONG", {}).get(self.name, []))


@dataclass(frozen=True)
class Verdict:
    """What a checker said about one function: `status` is "pass", "todo" (the stub still
    raises NotImplementedError) or "fail", with the checker's message."""

    status: str
    message: str = ""


def modules() -> list[str]:
    """The exercise modules, by name, in file order."""
    return sorted(m.name for m in pkgutil.iter_modules([str(FOLDER)])
                  if not m.name.startswith("_"))


def exercises(module: str) -> list[Exercise]:
    """The exercises of one module, in the order its checkers are defined."""
    if module not in modules():
        raise ValueError(f"exercises: no module {module!r}; choose from {', '.join(modules())}")
    mod = importlib.import_module(f"exercises.{module}")
    found = []
    for attribute, check in vars(mod).items():
        if attribute.startswith("check_") and callable(check):
            name = attribute.removeprefix("check_")
            if not callable(getattr(mod, name, None)):
                raise ValueError(f"exercises/{module}.py: {attribute} checks {name}, which is "
                                 f"not a function of the module")
            found.append(Exercise(module, name, getattr(mod, name), check))
    return found


def judge(exercise: Exercise, fn: Callable[..., Any]) -> Verdict:
    """Run `exercise`'s checker on `fn`; a crash of `fn` is a failure, with its last line."""
    try:
        exercise.check(fn)
    except NotImplementedError:
        return Verdict("todo", "not written yet: the body still raises NotImplementedError")
    except AssertionError as error:
        return Verdict("fail", str(error) or "a check failed")
    except Exception as error:  # the function under test crashed
        where = traceback.extract_tb(error.__traceback__)[-1]
        return Verdict("fail", f"{type(error).__name__}: {error} (at {Path(where.filename).name}"
                               f" line {where.lineno})")
    return Verdict("pass")


# Helpers for the checkers: each raises AssertionError with a message a learner can act on.

def close(actual: Any, expected: Any, what: str, *, rtol: float = 1e-6,
          atol: float = 1e-8) -> None:
    """Assert `actual` equals `expected` elementwise within `atol + rtol |expected|`, naming
    `what` and the worst element otherwise."""
    actual = np.asarray(getattr(actual, "data", actual))
    expected = np.asarray(getattr(expected, "data", expected))
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    if actual.dtype.kind == "b" or expected.dtype.kind == "b":
        wrong = np.argwhere(actual != expected)
        if wrong.size:
            at = tuple(int(i) for i in wrong[0])
            raise AssertionError(f"{what}: {wrong.shape[0]} of {actual.size} entries differ, "
                                 f"e.g. at {at}: {actual[at]}, expected {expected[at]}")
        return
    actual, expected = actual.astype(np.float64), expected.astype(np.float64)
    same_nan = np.isnan(actual) & np.isnan(expected)
    same_inf = np.isinf(actual) & (actual == expected)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf where they differ
        error = np.where(same_nan | same_inf, 0.0, np.abs(actual - expected))
    error = np.where(np.isnan(error), np.inf, error)
    excess = error - (atol + rtol * np.abs(np.where(np.isfinite(expected), expected, 0.0)))
    if excess.size and excess.max() > 0:
        at = np.unravel_index(int(np.argmax(excess)), excess.shape)
        where = f" at {tuple(int(i) for i in at)}" if excess.ndim else ""
        raise AssertionError(f"{what}: {actual[at]:.8g}{where}, expected {expected[at]:.8g} "
                             f"(|difference| {error[at]:.3g})")


def equal(actual: Any, expected: Any, what: str) -> None:
    """Assert `actual == expected` (numbers, strings, tuples, lists), naming `what`."""
    if isinstance(actual, np.ndarray) or actual != expected:
        if isinstance(actual, set | frozenset) and isinstance(expected, set | frozenset):
            actual, expected = sorted(actual), sorted(expected)
        raise AssertionError(f"{what}: got {actual!r}, expected {expected!r}")
