r"""Exercises of tutorial 06, a GPT block by block."""

import numpy as np

import nima
import nima.functional as F
from exercises import close
from nima.models import GPT, GPTConfig


def tied_head(h: np.ndarray, gamma: np.ndarray, beta: np.ndarray, wte: np.ndarray,
              eps: float) -> np.ndarray:
    r"""The head, by hand.

    `h` `(B, T, C)` is the last block's output. Apply the final LayerNorm (over the last axis,
    $\frac{h - \mu}{\sqrt{\sigma^2 + \epsilon}}\gamma + \beta$, biased variance) and the tied
    output layer, whose weight is the token embedding `wte` `(V, C)`. Return the logits
    `(B, T, V)`.
    """
    raise NotImplementedError


def check_tied_head(tied_head) -> None:
    """Compares with `model.head(h)` of a GPT with a tied head, for a random residual stream."""
    nima.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)).double()
    model.ln_f.weight.data[...] = np.random.default_rng(0).uniform(0.5, 1.5, 8)
    model.ln_f.bias.data[...] = np.random.default_rng(1).standard_normal(8)
    h = np.random.default_rng(2).standard_normal((2, 5, 8))
    with nima.no_grad():
        expected = model.head(nima.tensor(h))
    close(tied_head(h, model.ln_f.weight.data, model.ln_f.bias.data, model.wte.weight.data,
                    model.ln_f.eps), expected, "the logits")


def masked_mean_loss(logits: np.ndarray, targets: np.ndarray) -> float:
    r"""The loss the model returns.

    `logits` `(B, T, V)`, `targets` `(B, T)` ids where $-100$ means "no target here". Return the
    mean over the positions *with* a target of
    $-\log\operatorname{softmax}(\text{logits})_{\text{target}}$, computed stably.
    """
    raise NotImplementedError


def check_masked_mean_loss(masked_mean_loss) -> None:
    """Compares with `F.cross_entropy` (which skips -100) on logits up to ±50, with and without
    ignored positions."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 4, 7)) * 20
    targets = rng.integers(0, 7, (2, 4))
    for ignored in ([], [(0, 1), (1, 3), (1, 0)]):
        t = targets.copy()
        for b, i in ignored:
            t[b, i] = -100
        expected = F.cross_entropy(nima.tensor(logits), t).item()
        close(masked_mean_loss(logits.copy(), t), expected, f"the loss with {len(ignored)} "
                                                             f"ignored", rtol=1e-9)
