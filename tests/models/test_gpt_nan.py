"""A NaN anywhere in a GPT's weights gives a NaN loss and NaN gradients, on both kernel backends.

Every parameter tensor in turn gets one NaN entry (one the batch actually reads: an embedding
row of a token in it); the loss must be NaN under the numba kernels exactly as under their NumPy
references, so a diverging run is detected at the step it diverges.
"""

from __future__ import annotations

import numpy as np
import pytest

import nima
from nima import kernels
from nima.models import GPT, GPTConfig

CONFIG = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
NAMES = [name for name, _ in GPT(GPTConfig(**CONFIG)).named_parameters()]  # wte is lm_head


def loss_with_one_nan(name: str, backend: str) -> tuple[float, bool]:
    """(loss, whether every parameter's gradient holds a NaN) with `name`'s first entry NaN."""
    nima.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG))
    x = np.random.default_rng(0).integers(0, 11, (2, 8))
    x[0, 0] = 0  # token 0 and position 0 are read, so row 0 of wte and wpe matters
    y = np.roll(x, -1, axis=1)
    dict(model.named_parameters())[name].data.reshape(-1)[0] = np.nan
    with kernels.backend(backend), np.errstate(all="ignore"):
        _, loss = model(x, y)
        loss.backward()
    grads_nan = all(np.isnan(p.grad).any() for p in model.parameters() if p.grad is not None)
    return float(loss.data), grads_nan


@pytest.mark.parametrize("name", NAMES)
def test_one_nan_weight_gives_a_nan_loss_on_both_backends(name: str) -> None:
    for backend in ("numpy", "numba"):
        loss, grads_nan = loss_with_one_nan(name, backend)
        assert np.isnan(loss), f"{backend}: a NaN in {name} gave the loss {loss}"
        assert grads_nan, f"{backend}: a NaN in {name} left some gradient finite"
