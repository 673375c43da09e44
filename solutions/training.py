"""Solutions of exercises/training.py."""

from nima.optim import clip_grad_norm_


def accumulate_step(model, opt, batches, max_norm):
    total = 0.0
    for x, y in batches:
        _, loss = model(x, y)
        (loss / len(batches)).backward()  # .grad adds up: the sum of loss / A is the mean
        total += loss.item()
    clip_grad_norm_(model.parameters(), max_norm)  # the whole step's gradient, once
    opt.step()
    opt.zero_grad()
    return total / len(batches)


def _accumulate_step_sum(model, opt, batches, max_norm):
    """Forgets to divide by A: the gradient is A times the mean."""
    total = 0.0
    for x, y in batches:
        _, loss = model(x, y)
        loss.backward()
        total += loss.item()
    clip_grad_norm_(model.parameters(), max_norm)
    opt.step()
    opt.zero_grad()
    return total / len(batches)


def _accumulate_step_clip_each(model, opt, batches, max_norm):
    """Clips every micro-batch's gradient instead of the accumulated one."""
    total, kept = 0.0, None
    params = list(model.parameters())
    for x, y in batches:
        _, loss = model(x, y)
        (loss / len(batches)).backward()
        clip_grad_norm_(params, max_norm / len(batches))
        grads = [p.grad.copy() for p in params]
        kept = grads if kept is None else [a + b for a, b in zip(kept, grads, strict=True)]
        opt.zero_grad()
        total += loss.item()
    for p, g in zip(params, kept, strict=True):
        p.grad = g
    opt.step()
    opt.zero_grad()
    return total / len(batches)


def epochs(train_tokens, batch_size, block_size, grad_accum, steps):
    return steps * grad_accum * batch_size * block_size / train_tokens


WRONG = {
    "accumulate_step": [_accumulate_step_sum, _accumulate_step_clip_each],
    "epochs": [lambda train_tokens, batch_size, block_size, grad_accum, steps:
               steps * batch_size * block_size / train_tokens],  # forgets the micro-batches
}
