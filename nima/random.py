"""Nima's random state: one NumPy `Generator` behind `randn`, `rand`, dropout and sampling.

`manual_seed(s)` makes everything that draws from it reproducible, as `torch.manual_seed` does.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed Nima's generator; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator() -> np.random.Generator:
    """The generator Nima draws from."""
    return _generator


def get_state() -> dict:
    """The generator's state (a JSON-friendly dict), to save with a checkpoint."""
    return _generator.bit_generator.state


def set_state(state: dict) -> None:
    """Restore a state from `get_state`."""
    _generator.bit_generator.state = state
