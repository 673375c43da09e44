"""Which implementation the kernel dispatchers call: the numba kernels or their NumPy references.

The choice belongs to the calling thread. Every thread starts from the process default — the
environment variable `NIMA_KERNELS` ("numba" when unset), or what `use(name)` last set — and a
`with backend(name):` block changes it for that thread alone until the block ends:

    >>> from nima import kernels
    >>> with kernels.backend("numpy"):
    ...     kernels.current()
    'numpy'

Switching touches nothing else: neither backend reconfigures OpenBLAS or numba (see
`nima.kernels.threads` for why it need not, and `nima.runtime` for choosing threads yourself).
"""

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

BACKENDS = ("numba", "numpy")
F = TypeVar("F", bound=Callable)


# --8<-- [start:backend_switch]
def checked(name: str) -> str:
    """`name` if it is a backend, else a ValueError naming it and the choices."""
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


class _ThreadBackend(threading.local):
    """This thread's backend; a new thread starts with the process default."""

    def __init__(self) -> None:
        self.name = _default


try:
    _default = checked(os.environ.get("NIMA_KERNELS", "numba"))
except ValueError as e:
    raise ValueError(f"NIMA_KERNELS: {e}") from None
_local = _ThreadBackend()


def current() -> str:
    """The calling thread's backend: "numba" or "numpy"."""
    return _local.name


def use(name: str) -> None:
    """Make `name` ("numba" or "numpy") the process default — for this thread and every thread
    started after — as `NIMA_KERNELS` does at start-up."""
    global _default
    _default = _local.name = checked(name)


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Use backend `name` in this thread inside the `with` block, then restore the previous one."""
    previous = _local.name
    _local.name = checked(name)
    try:
        yield
    finally:
        _local.name = previous


def pick(numpy_impl: F, numba_impl: F) -> F:
    """The calling thread's backend's implementation."""
    return numpy_impl if _local.name == "numpy" else numba_impl
# --8<-- [end:backend_switch]
