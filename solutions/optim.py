"""Solutions of exercises/optim.py."""

import math

import numpy as np


def adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    p = p - lr * weight_decay * p  # decoupled decay: the same factor for every weight
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)  # zero-initialised averages, unbiased
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def _adam_l2(p, g, m, v, t, lr, betas, eps, weight_decay):
    """Adam with the decay added to the gradient, where Adam's scaling distorts it."""
    return adamw_step(p, g + weight_decay * p, m, v, t, lr, betas, eps, 0.0)


def _adamw_no_bias_correction(p, g, m, v, t, lr, betas, eps, weight_decay):
    """Skips the bias correction: early steps are far too small."""
    b1, b2 = betas
    p = p - lr * weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr * m / (np.sqrt(v) + eps), m, v


def warmup_cosine(step, lr, warmup, total, min_lr):
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step > total:
        return min_lr
    ratio = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - min_lr)


def _warmup_from_zero(step, lr, warmup, total, min_lr):
    """Starts the warmup at 0: step 0 learns nothing."""
    if step < warmup:
        return lr * step / warmup
    return warmup_cosine(step, lr, warmup, total, min_lr)


WRONG = {
    "adamw_step": [_adam_l2, _adamw_no_bias_correction],
    "warmup_cosine": [_warmup_from_zero,
                      lambda step, lr, warmup, total, min_lr:  # decays to 0, not to min_lr
                      warmup_cosine(step, lr, warmup, total, 0.0)],
}
