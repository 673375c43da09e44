"""Solutions of exercises/data_parallel.py."""

import math


def data_parallel_gradients(model, x, y, N):
    b = len(x) // N
    per_rank = []
    for r in range(N):
        model.zero_grad()
        _, loss = model(x[r * b:(r + 1) * b], y[r * b:(r + 1) * b])
        loss.backward()
        per_rank.append([p.grad.copy() for p in model.parameters()])
    return [sum(grads) / N for grads in zip(*per_rank, strict=True)]  # the allreduce, / N


def _data_parallel_sum(model, x, y, N):
    """Sums the ranks' gradients: an allreduce without the division by N."""
    return [g * N for g in data_parallel_gradients(model, x, y, N)]


def _data_parallel_rank_zero(model, x, y, N):
    """Every rank keeps its own gradient: the ranks drift apart."""
    b = len(x) // N
    model.zero_grad()
    _, loss = model(x[:b], y[:b])
    loss.backward()
    return [p.grad.copy() for p in model.parameters()]


def allreduce_messages(model, bucket_mb):
    total = sum(p.data.nbytes for p in model.parameters())  # parameters() yields each once
    return math.ceil(total / int(bucket_mb * 2**20))


def _allreduce_messages_per_parameter(model, bucket_mb):
    """One message per parameter, as a loop over the gradients would send."""
    return len(list(model.parameters()))


WRONG = {
    "data_parallel_gradients": [_data_parallel_sum, _data_parallel_rank_zero],
    "allreduce_messages": [_allreduce_messages_per_parameter,
                           lambda model, bucket_mb: math.ceil(
                               sum(p.data.nbytes for p in model.parameters()) / (bucket_mb * 1e6))],
}
