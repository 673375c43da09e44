"""The pipeline in one process: a one-stage pipeline is the model itself, micro-batches add up
to the full batch's gradient, the stages cut the blocks as documented, the bubble formula, and
errors. Several stages against one process: `test_distributed_mpi.py`."""

import numpy as np
import pytest

import nima
from nima.distributed import (
    GPTStage,
    Pipeline,
    SingleProcess,
    bubble_fraction,
    send_array,
)
from nima.models import GPT, GPTConfig


def small_gpt(n_layer: int = 2, **overrides) -> GPT:
    nima.manual_seed(0)
    return GPT(GPTConfig.preset("baby", n_layer=n_layer, n_embd=16, n_head=2, block_size=8,
                                **overrides)).double()


@pytest.mark.parametrize("micro_batches", [1, 2, 4])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_one_stage_with_micro_batches_is_the_full_batch(micro_batches: int,
                                                        position: str) -> None:
    data = np.random.default_rng(1).integers(0, 65, size=(4, 9))
    x, y = data[:, :-1], data[:, 1:]
    model, reference = small_gpt(position=position), small_gpt(position=position)
    pipe = Pipeline(GPTStage(model, 0, 1), SingleProcess())
    loss = pipe.step(x, y, micro_batches)
    _, ref_loss = reference(x, y)
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-12)
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, ref[name].grad, rtol=1e-10, atol=1e-12, err_msg=name)
    kinds = [(s.kind, s.micro) for s in pipe.spans]
    assert kinds == [("forward", i) for i in range(micro_batches)] + \
        [("backward", i) for i in reversed(range(micro_batches))]
    assert 0 < pipe.busy_fraction() <= 1


def test_stages_cut_the_blocks_in_order() -> None:
    model = small_gpt(n_layer=5)
    ranges = [GPTStage(model, s, 2).block_range for s in range(2)]
    assert ranges == [(0, 2), (2, 5)]
    first, last = GPTStage(model, 0, 2), GPTStage(model, 1, 2)
    assert first.blocks[0] is model.blocks[0] and last.blocks[2] is model.blocks[4]
    assert first.tied_parameters() == [model.wte.weight]
    assert last.tied_parameters()[0] is model.wte.weight  # the tied head
    assert GPTStage(model, 0, 1).tied_parameters() == []
    assert GPTStage(small_gpt(tie_weights=False), 1, 2).tied_parameters() == []


@pytest.mark.parametrize("stage, n_stages", [(2, 2), (-1, 2), (0, 3), (0, 0)])
def test_stages_that_do_not_fit(stage: int, n_stages: int) -> None:
    with pytest.raises(ValueError, match=f"GPTStage: stage {stage} of {n_stages} does not fit"
                                         f" a model of 2 blocks"):
        GPTStage(small_gpt(), stage, n_stages)


def test_step_needs_batches_that_split_into_micro_batches() -> None:
    pipe = Pipeline(GPTStage(small_gpt(), 0, 1), SingleProcess())
    x = np.zeros((3, 8), dtype=np.int64)
    with pytest.raises(ValueError, match="stage 0 needs inputs whose rows split into 2 equal "
                                         "micro-batches, got 3 rows"):
        pipe.step(x, x, 2)
    with pytest.raises(ValueError, match=r"needs targets .* got None"):
        pipe.step(x, None, 1)
    for bad in (0, 2.0):
        with pytest.raises(ValueError, match=f"micro_batches must be a positive int, got {bad}"):
            pipe.step(x, x, bad)


def test_bubble_fraction() -> None:
    assert bubble_fraction(1, 1) == 0
    assert bubble_fraction(2, 1) == 0.5
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)
    with pytest.raises(ValueError, match="stages and micro_batches must be >= 1, got 0, 4"):
        bubble_fraction(0, 4)


def test_send_array_refuses_what_it_cannot_describe() -> None:
    with pytest.raises(ValueError, match=r"send_array: at most 8 dimensions, got shape \(1, 1,"):
        send_array(SingleProcess(), np.zeros((1,) * 9, np.float32), 0)
    with pytest.raises(TypeError, match="send_array: dtype bool cannot be sent"):
        send_array(SingleProcess(), np.zeros(2, bool), 0)
