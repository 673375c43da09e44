"""Which implementation the kernel dispatchers call: the numba kernels or their NumPy references.

The choice belongs to the calling thread. Every thread starts from the process default — the
environment variable `NIMA_KERNELS` ("numba" when unset), or what `use(name)` last set — and a
`with backend(name):` block changes it for that thread alone until the block ends. The variable
is read at the first kernel call (or `current()`), not at import, so a bad value is an error a
program can report (`nima` prints it as one line) rather than a failed `import nima`:

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
    """This thread's backend; None until the thread first asks, then the process default."""

    name: str | None = None


_default: str | None = None  # the process default; None until NIMA_KERNELS is read
_local = _ThreadBackend()


def current() -> str:
    """The calling thread's backend: "numba" or "numpy".

    Raises:
        ValueError: `NIMA_KERNELS` names no backend (the first time it is read).
    """
    global _default
    if _local.name is None:
        if _default is None:
            try:
                _default = checked(os.environ.get("NIMA_KERNELS", "numba"))
            except ValueError as e:
                raise ValueError(f"NIMA_KERNELS: {e}") from None
        _local.name = _default
    return _local.name


def use(name: str) -> None:
    """Make `name` ("numba" or "numpy") the process default — for this thread and every thread
    started after — as `NIMA_KERNELS` does at start-up."""
    global _default
    _default = _local.name = checked(name)


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Use backend `name` in this thread inside the `with` block, then restore the previous one."""
    previous = current()
    _local.name = checked(name)
    try:
        yield
    finally:
        _local.name = previous


def pick(numpy_impl: F, numba_impl: F) -> F:
    """The calling thread's backend's implementation."""
    name = _local.name or current()
    return numpy_impl if name == "numpy" else numba_impl
# --8<-- [end:backend_switch]
