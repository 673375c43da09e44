r"""Exercises of the Encoder–decoder page (docs/seq2seq.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.models import Transformer, TransformerConfig


def teacher_forcing(targets: list[list[int]], bos: int, eos: int,
                    pad: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The decoder's inputs and targets.

    For target sequences of different lengths (lists of ids), return `(tgt_in, tgt_out)`, both
    `(B, n + 1)` int arrays with $n$ the longest length: `tgt_in` is BOS followed by the
    sequence, `tgt_out` the sequence followed by EOS, both padded with `pad` on the right.
    """
    raise NotImplementedError


def check_teacher_forcing(teacher_forcing) -> None:
    """Compares with a case worked by hand: two sequences of lengths 3 and 1 (BOS 1, EOS 2,
    PAD 0)."""
    tgt_in, tgt_out = teacher_forcing([[7, 8, 9], [5]], bos=1, eos=2, pad=0)
    close(np.asarray(tgt_in), np.array([[1, 7, 8, 9], [1, 5, 0, 0]]), "tgt_in")
    close(np.asarray(tgt_out), np.array([[7, 8, 9, 2], [5, 2, 0, 0]]), "tgt_out")


def greedy_translate(model: Transformer, src: np.ndarray, bos: int, eos: int,
                     steps: int) -> np.ndarray:
    r"""Greedy decoding without teacher forcing.

    Start every row of the target at `bos`; `steps` times, run the model on the source and the
    target so far (`model(src, tgt)` gives logits `(B, T, V)`), take the argmax at the *last*
    position and append it. Return the target, `(B, 1 + steps)`, BOS included. (Stopping at
    `eos` is not needed here: keep going.)
    """
    raise NotImplementedError


def check_greedy_translate(greedy_translate) -> None:
    """Checks, on a random small `Transformer`, that every generated token is the argmax of the
    logits that one teacher-forced forward pass gives at the position before it."""
    nima.manual_seed(0)
    model = Transformer(TransformerConfig(src_vocab_size=9, tgt_vocab_size=9, d_model=16,
                                          n_head=2, ffn_hidden=32, n_encoder_layers=1,
                                          n_decoder_layers=1))
    src = np.random.default_rng(0).integers(3, 9, (3, 5))
    out = np.asarray(greedy_translate(model, src, 1, 2, 6))
    equal(out.shape, (3, 7), "the shape")
    equal(bool((out[:, 0] == 1).all()), True, "every row starting with BOS")
    with nima.no_grad():
        logits, _ = model(src, out[:, :-1])
    close(out[:, 1:], logits.data.argmax(axis=-1), "each token against the argmax before it")
