"""The global gradient norm over split parameters, in one process and with pretend ranks."""

import math

import numpy as np
import pytest
from fake_comm import Twins

import nima
from nima.distributed import SingleProcess, clip_grad_norm_, global_grad_norm
from nima.optim import clip_grad_norm_ as local_clip


def params_with_grads() -> list:
    nima.manual_seed(0)
    params = [nima.nn.Parameter(nima.randn(3, 2)), nima.nn.Parameter(nima.randn(4))]
    for p, g in zip(params, ([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]], [0.0, 0.0, 0.0, 12.0]),
                    strict=True):
        p.grad = np.array(g, dtype=np.float32)
    return params


def test_one_rank_agrees_with_the_local_norm() -> None:
    params = params_with_grads()
    assert global_grad_norm(params, SingleProcess()) == pytest.approx(13.0)
    assert global_grad_norm(params, SingleProcess()) == pytest.approx(local_clip(params, 1e9))


def test_the_squares_add_over_ranks() -> None:
    # two ranks holding equal halves: 2 * (9 + 16 + 144) = 338
    assert global_grad_norm(params_with_grads(), Twins(size=2)) == pytest.approx(math.sqrt(338))


def test_clipping_scales_every_parameter_by_the_counted_norm() -> None:
    params = params_with_grads()
    norm = clip_grad_norm_(params, 2.6, SingleProcess(), counted=params[:1])  # counts 3, 4
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(params[0].grad, [[1.56, 0], [0, 2.08], [0, 0]], rtol=1e-5)
    np.testing.assert_allclose(params[1].grad, [0, 0, 0, 6.24], rtol=1e-5)
    untouched = params_with_grads()
    assert clip_grad_norm_(untouched, 100.0, SingleProcess()) == pytest.approx(13.0)
    assert untouched[1].grad[3] == 12.0
