r"""Exercises of tutorial 12, learning the inference parameters."""

import numpy as np

import nima
from exercises import close
from nima.generation.learned import LearnedInference
from nima.models import GPT, GPTConfig


def raw_values(T: float, p: float, r: float, g: float) -> tuple[float, float, float, float]:
    r"""Where learning starts.

    `LearnedInference` stores raw values and maps them: $T = \operatorname{softplus}(a)$,
    $p = \sigma(b)$, $r = 1 + \operatorname{softplus}(c)$, a head gate $g = 2\sigma(\gamma)$.
    Return the raw $(a, b, c, \gamma)$ that give the temperature `T`, top-p `p`, penalty `r`
    and gate `g` — invert each map.
    """
    raise NotImplementedError


def check_raw_values(raw_values) -> None:
    """Writes your raw values into a `LearnedInference` and reads back its temperature, top-p,
    penalty and gates."""
    nima.manual_seed(0)
    learned = LearnedInference(GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2,
                                             n_embd=8)).double())
    for T, p, r, g in [(1.0, 0.99, 1.001, 1.0), (0.7, 0.9, 1.2, 0.5), (2.5, 0.5, 3.0, 1.9)]:
        a, b, c, gamma = (float(v) for v in raw_values(T, p, r, g))
        learned.raw_temperature.data[...] = a
        learned.raw_top_p.data[...] = b
        learned.raw_penalty.data[...] = c
        learned.gate_logits.data[...] = gamma
        got = [learned.temperature().item(), learned.top_p().item(),
               learned.repetition_penalty().item(), float(learned.head_weights().data[0, 0])]
        close(np.array(got), np.array([T, p, r, g]), "(T, p, r, g) read back", rtol=1e-9)


def calibrated_temperature(z: np.ndarray, y: np.ndarray) -> float:
    r"""The temperature that fits held-out text.

    `z` `(N, V)` are a model's logits, `y` `(N,)` the tokens that actually came. Return the
    temperature $T \in [0.05, 20]$ minimising the mean $-\log\operatorname{softmax}(z/T)_y$.
    (With $\beta = 1/T$ the loss is convex; its derivative in $\beta$ is
    $\operatorname{mean}(\mathbb E_q[z] - z_y)$.)
    """
    raise NotImplementedError


def check_calibrated_temperature(calibrated_temperature) -> None:
    """Draws tokens from over- and under-confident models (true temperatures 3 and 1/3) and
    compares with a brute-force search over 5,001 temperatures, to 0.2%."""
    rng = np.random.default_rng(0)
    grid = np.geomspace(0.05, 20, 5001)
    for true_T in (3.0, 1 / 3):
        z = rng.standard_normal((400, 8)) * 3
        p = np.exp(z / true_T - (z / true_T).max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        y = (p.cumsum(1) < rng.random((400, 1))).sum(1)  # one draw per row
        losses = []
        for chunk in np.array_split(grid, 10):
            s = z[None] / chunk[:, None, None]  # (temperatures, N, V)
            m = s.max(-1)
            lse = m + np.log(np.exp(s - m[..., None]).sum(-1))
            losses.append((lse - s[:, np.arange(400), y]).mean(-1))
        best = grid[int(np.argmin(np.concatenate(losses)))]
        close(calibrated_temperature(z.copy(), y.copy()), best,
              f"the temperature for data drawn at T = {true_T:.3f}", rtol=2e-3)
