"""The backend switch (`use`, `backend`, `current`, `NIMA_KERNELS`): one per thread."""

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from nima import kernels
from nima.kernels import softmax


@pytest.fixture(autouse=True)
def _restore_backend() -> Iterator[None]:
    previous = kernels.current()
    yield
    kernels.use(previous)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        check=False,
    )


def test_use_and_current() -> None:
    kernels.use("numpy")
    assert kernels.current() == "numpy"
    kernels.use("numba")
    assert kernels.current() == "numba"


def test_bad_name_raises_and_keeps_the_backend() -> None:
    kernels.use("numpy")
    with pytest.raises(ValueError, match=r"'torch'.*numba, numpy"):
        kernels.use("torch")
    assert kernels.current() == "numpy"


def test_context_manager_restores_even_after_an_error() -> None:
    kernels.use("numba")
    with kernels.backend("numpy"):
        assert kernels.current() == "numpy"
        with kernels.backend("numba"):
            assert kernels.current() == "numba"
        assert kernels.current() == "numpy"
    assert kernels.current() == "numba"
    with pytest.raises(RuntimeError), kernels.backend("numpy"):
        raise RuntimeError
    assert kernels.current() == "numba"


def test_dispatch_follows_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(softmax, "softmax_forward_numpy", lambda x: "numpy")
    monkeypatch.setattr(softmax, "softmax_forward_numba", lambda x: "numba")
    x = np.zeros(3, dtype=np.float32)
    with kernels.backend("numpy"):
        assert kernels.softmax_forward(x) == "numpy"
    with kernels.backend("numba"):
        assert kernels.softmax_forward(x) == "numba"


def test_environment_variable_sets_the_default() -> None:
    code = "from nima import kernels; print(kernels.current())"
    assert run_python(code, NIMA_KERNELS="numpy").stdout.strip() == "numpy"
    assert run_python(code, NIMA_KERNELS="numba").stdout.strip() == "numba"
    bad = run_python(code, NIMA_KERNELS="cuda")
    assert bad.returncode != 0
    assert "NIMA_KERNELS: unknown kernel backend 'cuda'; choose one of numba, numpy" in bad.stderr


def test_import_compiles_nothing() -> None:
    code = (
        "import nima.kernels\n"
        "from nima.kernels import cross_entropy, fastexp, gemm, rows, softmax\n"
        "compiled = [name for mod in (cross_entropy, fastexp, gemm, rows, softmax)\n"
        "            for name, f in vars(mod).items() if getattr(f, 'signatures', None)]\n"
        "print(compiled)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
