"""Solutions of exercises/seq2seq.py."""

import numpy as np

import nima


def teacher_forcing(targets, bos, eos, pad):
    n = max(len(t) for t in targets)
    tgt_in = np.full((len(targets), n + 1), pad)
    tgt_out = np.full((len(targets), n + 1), pad)
    for i, t in enumerate(targets):
        tgt_in[i, :len(t) + 1] = [bos, *t]  # shifted right by one
        tgt_out[i, :len(t) + 1] = [*t, eos]  # what each position must predict
    return tgt_in, tgt_out


def _teacher_forcing_swapped(targets, bos, eos, pad):
    """Feeds the answers and asks for the prefix: the two arrays exchanged."""
    tgt_in, tgt_out = teacher_forcing(targets, bos, eos, pad)
    return tgt_out, tgt_in


def _teacher_forcing_no_eos(targets, bos, eos, pad):
    """Never teaches the model to stop."""
    tgt_in, tgt_out = teacher_forcing(targets, bos, eos, pad)
    return tgt_in, np.where(tgt_out == eos, pad, tgt_out)


def greedy_translate(model, src, bos, eos, steps):
    tgt = np.full((src.shape[0], 1), bos)
    with nima.no_grad():
        memory, src_pad = model.encode(src)  # the source is read once
        for _ in range(steps):
            logits = model.decode(tgt, memory, src_pad)  # (B, T, V)
            tgt = np.concatenate([tgt, logits.data[:, -1].argmax(axis=-1)[:, None]], axis=1)
    return tgt


def _greedy_translate_first_position(model, src, bos, eos, steps):
    """Reads the prediction at position 0 every step, so every token repeats the first."""
    tgt = np.full((src.shape[0], 1), bos)
    with nima.no_grad():
        for _ in range(steps):
            logits, _ = model(src, tgt)
            tgt = np.concatenate([tgt, logits.data[:, 0].argmax(axis=-1)[:, None]], axis=1)
    return tgt


WRONG = {
    "teacher_forcing": [_teacher_forcing_swapped, _teacher_forcing_no_eos],
    "greedy_translate": [_greedy_translate_first_position],
}
