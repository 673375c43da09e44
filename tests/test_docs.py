"""What the documentation relies on: every public member of `nima.Tensor` has a docstring (the
API page lists only documented members), and the tutorial runner shows output as a terminal
would."""

import importlib.util
import inspect
from pathlib import Path

import pytest

import nima

ROOT = Path(__file__).resolve().parent.parent


def _public_members() -> list[str]:
    members = [name for name, _ in inspect.getmembers(nima.Tensor) if not name.startswith("_")]
    return [*members, "data", "grad", "requires_grad"]  # instance attributes, set in __init__


def test_every_public_tensor_member_has_a_docstring() -> None:
    source = inspect.getsource(nima.Tensor.__init__)
    undocumented = []
    for name in _public_members():
        if name in ("data", "grad", "requires_grad"):  # an attribute docstring follows its line
            line = next(i for i, text in enumerate(source.splitlines())
                        if text.strip().startswith(f"self.{name}"))
            documented = source.splitlines()[line + 1].strip().startswith(('"""', 'r"""'))
        else:
            documented = bool(inspect.getdoc(getattr(nima.Tensor, name)))
        if not documented:
            undocumented.append(name)
    assert len(_public_members()) >= 59
    assert not undocumented, f"nima.Tensor members without a docstring: {undocumented}"


@pytest.fixture(scope="module")
def run_tutorial():
    spec = importlib.util.spec_from_file_location(
        "run_tutorial", ROOT / "docs" / "hooks" / "run_tutorial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("printed", "shown"), [
    ("step 1\rstep 2\rdone\n", "done\n"),  # a progress bar's updates collapse to the last
    ("a\nb\r\n", "a\nb\n"),  # a CRLF line ending is not an update
    ("\x1b[32mgreen\x1b[0m text\n", "green text\n"),  # colour codes dropped
    ("50%\r100%", "100%"),  # no final newline
])
def test_runner_shows_output_as_a_terminal_would(run_tutorial, printed: str, shown: str) -> None:
    assert run_tutorial.as_terminal(printed) == shown
