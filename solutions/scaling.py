"""Solutions of exercises/scaling.py."""


def _step(rows, N, row_s, update_s, grad_bytes, alpha, bandwidth):
    return rows * row_s + update_s + 2 * (N - 1) * (alpha + grad_bytes / (N * bandwidth))


def strong_efficiency(N, rows, row_s, update_s, grad_bytes, alpha, bandwidth):
    one = _step(rows, 1, row_s, update_s, grad_bytes, alpha, bandwidth)
    many = _step(rows / N, N, row_s, update_s, grad_bytes, alpha, bandwidth)
    return one / (N * many)


def _strong_efficiency_update_shared(N, rows, row_s, update_s, grad_bytes, alpha, bandwidth):
    """Divides the optimizer step by N too, as if every process updated only its share (ZeRO)."""
    one = _step(rows, 1, row_s, update_s, grad_bytes, alpha, bandwidth)
    many = _step(rows / N, N, row_s, update_s / N, grad_bytes, alpha, bandwidth)
    return one / (N * many)


def _speed_up(N, rows, row_s, update_s, grad_bytes, alpha, bandwidth):
    """The speed-up, not divided by N."""
    return N * strong_efficiency(N, rows, row_s, update_s, grad_bytes, alpha, bandwidth)


def critical_processes(G, T, bandwidth, flops):
    return 0.75 * G * T * bandwidth / flops  # G 6PT/F / (8P/B): P cancels


WRONG = {
    "strong_efficiency": [_strong_efficiency_update_shared, _speed_up],
    "critical_processes": [lambda G, T, bandwidth, flops: G * T * bandwidth / flops / 8],
}
