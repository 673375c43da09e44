r"""Exercises of the training loop page (docs/training.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.models import GPT, GPTConfig
from nima.optim import SGD, clip_grad_norm_


def accumulate_step(model: GPT, opt: SGD, batches: list[tuple[np.ndarray, np.ndarray]],
                    max_norm: float) -> float:
    r"""One step over micro-batches.

    For each `(x, y)` of the $A$ `batches`, run `model(x, y)` and call `backward()` on its loss
    divided by $A$, so that the gradients `backward()` adds into `.grad` sum to the mean.
    Then clip the accumulated gradient's global norm to `max_norm` (`clip_grad_norm_`), take
    the optimizer step and zero the gradients. Return the mean of the micro-batch losses.
    """
    raise NotImplementedError


def check_accumulate_step(accumulate_step) -> None:
    """Compares the weights after one step over 3 micro-batches of 2 windows with those after
    one step over the single batch of 6 (plain SGD, so the size of the gradient matters), with
    clipping off and with clipping at 0.1."""
    rng = np.random.default_rng(0)
    config = GPTConfig(vocab_size=9, block_size=8, n_layer=1, n_head=2, n_embd=8)
    x = rng.integers(0, 9, (6, 8))
    y = np.roll(x, -1, axis=1)
    for max_norm in (1e9, 0.1):
        nima.manual_seed(0)
        mine, reference = GPT(config), GPT(config)
        reference.load_state_dict(mine.state_dict())
        opt = SGD(mine.parameters(), lr=0.5)
        loss = accumulate_step(mine, opt, [(x[i:i + 2], y[i:i + 2]) for i in (0, 2, 4)],
                               max_norm)
        _, full = reference(x, y)
        full.backward()
        clip_grad_norm_(reference.parameters(), max_norm)
        SGD(reference.parameters(), lr=0.5).step()
        close(float(loss), full.item(), "the returned loss", rtol=1e-5)
        for (name, p), q in zip(mine.named_parameters(), reference.parameters(), strict=True):
            close(p.data, q.data, f"{name} after the step (max_norm {max_norm})", rtol=1e-4,
                  atol=1e-6)
            equal(p.grad is None or not np.any(p.grad), True, f"{name}.grad zeroed")


def epochs(train_tokens: int, batch_size: int, block_size: int, grad_accum: int,
           steps: int) -> float:
    r"""How many times does a run see its data?

    Each step reads `grad_accum` micro-batches of `batch_size` windows of `block_size` tokens
    (each token predicted once per window it is in). Return how many passes over
    `train_tokens` tokens `steps` steps make, counting a pass as `train_tokens` predicted
    tokens.
    """
    raise NotImplementedError


def check_epochs(epochs) -> None:
    """Compares, for the baby GPT's configuration (90% of tiny Shakespeare's characters for
    training) and two others, with the tokens the steps predict divided by the training
    tokens."""
    text_length = 1115394  # characters of data/tinyshakespeare.txt
    train = int(0.9 * text_length)
    for args in [(train, 12, 64, 1, 2000), (train, 12, 64, 4, 500), (10_000, 8, 32, 2, 10)]:
        tokens_trained = args[1] * args[2] * args[3] * args[4]
        close(epochs(*args), tokens_trained / args[0], f"epochs for {args}", rtol=1e-9)
