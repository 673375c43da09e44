"""Solutions of exercises/tutorial_09.py."""


def momentum_path(p0, grads, lr, mu, nesterov):
    p, buf, path = p0.copy(), None, []
    for g in grads:
        buf = g.copy() if buf is None else mu * buf + g
        p = p - lr * (g + mu * buf if nesterov else buf)
        path.append(p.copy())
    return path


def _momentum_dampened(p0, grads, lr, mu, nesterov):
    """An exponential average, b = mu b + (1 - mu) g: steps ten times smaller at mu = 0.9."""
    p, buf, path = p0.copy(), None, []
    for g in grads:
        buf = g.copy() if buf is None else mu * buf + (1 - mu) * g
        p = p - lr * (g + mu * buf if nesterov else buf)
        path.append(p.copy())
    return path


def noam(step, lr, d_model, warmup):
    s = step + 1
    return lr * d_model**-0.5 * min(s**-0.5, s * warmup**-1.5)


WRONG = {
    "momentum_path": [_momentum_dampened,
                      lambda p0, grads, lr, mu, nesterov: momentum_path(p0, grads, lr, mu, False)],
    "noam": [lambda step, lr, d_model, warmup: noam(step - 1, lr, d_model, warmup) if step
             else 0.0],  # counts from s = t
}
