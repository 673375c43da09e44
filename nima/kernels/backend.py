"""Which implementation the kernel dispatchers call: the numba kernels or their NumPy references.

The choice is process-wide. It starts from the environment variable `NIMA_KERNELS` ("numba" when
unset) and can be changed with `use(name)` or, for a block of code, with `backend(name)`:

    >>> from nima import kernels
    >>> with kernels.backend("numpy"):
    ...     kernels.current()
    'numpy'

The first kernel call after a switch applies Nima's thread policy (`nima.kernels.threads`): with
the numba backend numba's pool owns the cores and OpenBLAS runs on one thread; with the numpy
backend OpenBLAS gets its default back.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from nima.kernels import threads

BACKENDS = ("numba", "numpy")
F = TypeVar("F", bound=Callable)


# --8<-- [start:backend_switch]
def _checked(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


_current = _checked(os.environ.get("NIMA_KERNELS", "numba"))


def current() -> str:
    """The active backend: "numba" or "numpy"."""
    return _current


def use(name: str) -> None:
    """Make `name` ("numba" or "numpy") the active backend for the whole process."""
    global _current
    _current = _checked(name)


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Use backend `name` inside the `with` block, then restore the previous one."""
    previous = current()
    use(name)
    try:
        yield
    finally:
        use(previous)


def pick(numpy_impl: F, numba_impl: F) -> F:
    """The active backend's implementation, with the thread policy applied for it."""
    if _current == "numpy":
        threads.restore_blas_threads()
        return numpy_impl
    threads.limit_blas_threads()
    return numba_impl
# --8<-- [end:backend_switch]
