r"""Exercises of tutorial 07, training a character-level GPT."""

import numpy as np

import nima
from exercises import close
from nima.optim import clip_grad_norm_


def windows(data: np.ndarray, offsets: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    r"""A batch from its offsets.

    Return `(x, y)`, both `(B, T)` int64: row $b$ of `x` is `data[offsets[b] : offsets[b] + T]`
    and row $b$ of `y` the same window shifted one token on — the next token at every
    position. No Python loop over the positions.
    """
    raise NotImplementedError


def check_windows(windows) -> None:
    """Uses data whose every token is its own position (`arange`), so each entry must equal
    offset + t (x) and offset + t + 1 (y); and a real text slice, against explicit slicing."""
    data = np.arange(100, dtype=np.uint16)
    offsets = np.array([0, 17, 90])
    x, y = windows(data, offsets, 9)
    close(np.asarray(x), offsets[:, None] + np.arange(9), "x")
    close(np.asarray(y), offsets[:, None] + np.arange(1, 10), "y")
    text = np.frombuffer(b"To be, or not to be, that is the question", dtype=np.uint8)
    x, y = windows(text, np.array([3, 10]), 6)
    close(np.asarray(x), np.stack([text[3:9], text[10:16]]), "x of the text")
    close(np.asarray(y), np.stack([text[4:10], text[11:17]]), "y of the text")


def clip(grads: list[np.ndarray], max_norm: float) -> tuple[list[np.ndarray], float]:
    r"""Gradient clipping.

    Return `(clipped, norm)`: the global 2-norm of all the gradients together,
    $\|g\| = \sqrt{\sum_p \sum_i g_{p,i}^2}$, and the gradients scaled by
    $\min(1, \text{max\_norm} / \|g\|)$ — one factor for all of them, so the direction is kept.
    """
    raise NotImplementedError


def check_clip(clip) -> None:
    """Compares with `nima.optim.clip_grad_norm_` for gradients above and below the limit."""
    rng = np.random.default_rng(0)
    for scale in (10.0, 0.01):
        grads = [rng.standard_normal(s) * scale for s in [(3, 4), (5,), (2, 2, 2)]]
        params = [nima.nn.Parameter(np.zeros(g.shape)) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.copy()
        norm = clip_grad_norm_(params, 1.0)
        got, my_norm = clip([g.copy() for g in grads], 1.0)
        close(my_norm, norm, f"the norm at scale {scale}", rtol=1e-9)
        for i, (mine, p) in enumerate(zip(got, params, strict=True)):
            close(mine, p.grad, f"gradient {i} at scale {scale}", rtol=1e-5)
