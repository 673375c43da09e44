"""Training with the Deep Tree Echo parts: the data.sampling switch (uniform, loss-guided,
streams), stream training with truncated BPTT whose checkpoint resumes the same run — memory
bank and echo state included —, progressive depth from the config, the bracket and recall
corpora from the data section and their metrics from a run, `nima build`, and errors naming the
key."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import interrupt_at, tiny_config

import nima
from nima import cli
from nima.data import TokenDataset
from nima.data.brackets import closing_bracket_accuracy, is_dyck
from nima.data.recall import parse_recall
from nima.models import GPT
from nima.nn.recursive_block import ProgressiveDepth, RecursiveBlock
from nima.training import ConfigError, Trainer, load_config, load_run
from nima.training.batches import (
    LossGuidedBatches,
    StreamBatches,
    UniformBatches,
    row_losses,
)
from nima.training.checkpoint import latest_checkpoint
from nima.training.tasks import run_task_metrics, stream_logits

ROOT = Path(__file__).resolve().parents[2]
STATEFUL = {"memory_layers": [0], "memory_capacity": 24, "echo_layers": [0], "tbptt": 2,
            "memory_contrastive": 0.1}


def strip(records):
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")}
            for r in records]


# ----------------------------------------------------------------------------- the switch
def test_data_sampling_switches_the_batch_source(tmp_path):
    kinds = {}
    for sampling in ("uniform", "loss_guided", "stream"):
        trainer = Trainer(tiny_config(tmp_path / sampling, data={"sampling": sampling},
                                      training={"max_iters": 3}, schedule={"warmup": 1}))
        kinds[sampling] = type(trainer.batches)
        trainer.fit()
        if sampling == "loss_guided":
            sampler = trainer.batches.sampler
            seen = np.flatnonzero(sampler.seen)
            assert 0 < seen.size <= 3 * 8  # three steps of eight windows, each recorded
            assert np.all(sampler.priorities[seen] > 0)
    assert kinds == {"uniform": UniformBatches, "loss_guided": LossGuidedBatches,
                     "stream": StreamBatches}


def test_loss_guided_priorities_are_the_windows_losses(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, data={"sampling": "loss_guided"}))
    batches = trainer.batches
    x, y = batches.next()
    starts = batches.sampler.starts[batches._drawn]
    np.testing.assert_array_equal(x[:, 0], trainer.train_data.data[starts])
    with nima.no_grad():
        logits, loss = trainer.model(x, y)
    batches.record(logits.data, y)
    losses = row_losses(logits.data, y)
    assert losses.mean() == pytest.approx(loss.item(), rel=1e-5)  # the rows' mean is the loss
    np.testing.assert_allclose(batches.sampler.priorities[batches._drawn], losses)


def test_loss_guided_resume_gives_the_same_curve(tmp_path):
    settings = dict(data={"sampling": "loss_guided"}, training={"max_iters": 20},
                    schedule={"total": 20})
    straight = Trainer(tiny_config(tmp_path / "a", **settings))
    straight.fit()
    first = Trainer(tiny_config(tmp_path / "b", **settings))
    interrupt_at(first, 10)
    assert first.fit().interrupted and first.step == 10
    resumed = Trainer(tiny_config(tmp_path / "b", **settings), resume=True)
    np.testing.assert_array_equal(resumed.batches.sampler.priorities,
                                  first.batches.sampler.priorities)
    resumed.fit()
    assert strip(resumed.metrics.records) == strip(straight.metrics.records)


def test_stream_batches_continue_row_by_row(tmp_path):
    np.arange(103, dtype=np.uint16).tofile(tmp_path / "tokens.bin")
    data = TokenDataset(tmp_path / "tokens.bin", "uint16")
    streams = StreamBatches(data, batch_size=2, block_size=10, group=2)
    assert streams.segments == 4  # 51 tokens a stream: 5 segments of 10 (+1), whole groups of 2
    x0, y0 = streams.next()
    np.testing.assert_array_equal(x0, [np.arange(10), 51 + np.arange(10)])
    np.testing.assert_array_equal(y0, x0 + 1)
    assert streams.starts_streams
    x1, _ = streams.next()
    np.testing.assert_array_equal(x1, x0 + 10)  # row b continues row b
    assert not streams.starts_streams
    for _ in range(2):
        streams.next()
    again, _ = streams.next()
    assert streams.starts_streams and np.array_equal(again, x0)
    with pytest.raises(ValueError, match="fewer than 2 segment"):
        StreamBatches(data, batch_size=8, block_size=10, group=2)


# ----------------------------------------------------------------------------- streams
def test_stream_training_carries_the_state_and_resumes_the_same_run(tmp_path):
    """Echo and memory in block 0, four streams, two segments a step: stopping after step 7 and
    resuming (then passing the end of the streams, where their state is reset) gives the
    uninterrupted run's records, weights, echo state and memory bank exactly."""
    settings = dict(model={**STATEFUL, "dropout": 0.1},
                    data={"sampling": "stream", "synthetic_sections": 8},
                    training={"max_iters": 14, "eval_interval": 7, "checkpoint_interval": 7,
                              "batch_size": 4}, schedule={"total": 14})
    straight = Trainer(tiny_config(tmp_path / "a", **settings))
    assert straight.batches.group == 2 and straight.batches.segments == 22  # 11 steps a pass
    straight.fit()
    bank = straight.model.blocks[0].attn.memory
    assert bank.size == 24 and int(straight.model.blocks[0].echo.segments.data) == 28 - 22

    first = Trainer(tiny_config(tmp_path / "b", **settings))
    interrupt_at(first, 7)
    assert first.fit().interrupted
    resumed = Trainer(tiny_config(tmp_path / "b", **settings), resume=True)
    assert resumed.step == 7 and resumed.batches.position == first.batches.position
    state = resumed.model.state_dict()
    for key in ("blocks.0.attn.memory.keys", "blocks.0.attn.memory.count",
                "blocks.0.echo.state", "blocks.0.echo.segments"):
        np.testing.assert_array_equal(state[key], first.model.state_dict()[key], err_msg=key)
    resumed.fit()
    assert strip(resumed.metrics.records) == strip(straight.metrics.records)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_stream_training_learns_and_evaluates_from_a_fresh_state(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, model=STATEFUL, data={"sampling": "stream"},
                                  training={"max_iters": 30, "eval_interval": 30}))
    before = trainer.model.state_dict()["blocks.0.echo.state"].copy()
    result = trainer.fit()
    evals = [r for r in trainer.metrics.records if r["kind"] == "eval"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.2
    assert result.val_loss == evals[-1]["val_loss"]
    assert not np.array_equal(before, trainer.model.state_dict()["blocks.0.echo.state"])
    echo = trainer.model.blocks[0].echo.state.data.copy()
    trainer.estimate_loss()  # through decoding caches: the training streams' state untouched
    np.testing.assert_array_equal(trainer.model.blocks[0].echo.state.data, echo)


def test_a_step_is_tbptt_segments_with_one_backward(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, model={"echo_layers": [0], "tbptt": 3},
                                  data={"sampling": "stream"}))
    calls = []
    forward = trainer.model.forward
    trainer.model.forward = lambda *a, **k: calls.append(a[0][0, 0]) or forward(*a, **k)
    trainer.train_step()
    assert len(calls) == 3 and trainer.batches.position == 3
    assert int(trainer.model.blocks[0].echo.segments.data) == 3


# ----------------------------------------------------------------------------- depth
def test_progressive_depth_follows_its_schedule(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, model={"recursion_depth": 3, "act": True},
                                  training={"progressive_depth": 6, "max_iters": 8}))
    schedule = ProgressiveDepth(1, 3, 6)
    depths = []
    for _ in range(8):
        trainer.train_step()
        depths.append(trainer.model.blocks[0].depth)
        trainer.step += 1
    assert depths == [schedule(s) for s in range(8)] == [1, 1, 2, 2, 3, 3, 3, 3]
    assert isinstance(trainer.model.blocks[0], RecursiveBlock)


# ----------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("corpus", ["brackets", "recall"])
def test_the_data_section_generates_the_task_corpora(tmp_path, corpus):
    def text(seed, sub):
        config = tiny_config(tmp_path / sub, data={"corpus": corpus, "bracket_lines": 30,
                                                   "bracket_length": 64, "recall_queries": 40},
                             training={"seed": seed})
        trainer = Trainer(config)
        return (tmp_path / sub / "data" / "corpus.txt").read_text(), trainer

    first, trainer = text(1, "a")
    assert first == text(1, "b")[0] and first != text(2, "c")[0]  # seeded
    tok = trainer.meta
    assert tok["train_tokens"] + tok["val_tokens"] == len(first)
    if corpus == "brackets":
        assert all(is_dyck(line) and len(line) == 64 for line in first.splitlines())
    else:
        queries = parse_recall(first)
        assert len(queries) == 40 and all(q.distance > 16 for q in queries)  # block_size 16


def test_task_metrics_of_a_run(tmp_path):
    """Closing-bracket accuracy from a run directory equals the metric of the logits of the
    training forward, segment by segment."""
    config = tiny_config(tmp_path, data={"corpus": "brackets", "bracket_lines": 40,
                                         "bracket_length": 48},
                         training={"max_iters": 20})
    Trainer(config).fit()
    metrics = run_task_metrics(tmp_path / "run")
    model, tokenizer, _ = load_run(tmp_path / "run")
    text = tokenizer.decode(np.fromfile(tmp_path / "data" / "val.bin", np.uint16).tolist())
    ids = np.array([tokenizer.encode(text)])
    with nima.no_grad():
        out = np.concatenate([model(ids[:, i:i + 16])[0].data[0]
                              for i in range(0, ids.shape[1], 16)])
    np.testing.assert_allclose(stream_logits(model, ids)[0], out, rtol=1e-5, atol=1e-5)
    logits = np.concatenate([np.zeros_like(out[:1]), out[:-1]])
    assert metrics["closing_accuracy"] == pytest.approx(
        closing_bracket_accuracy(text, logits, tokenizer.stoi))
    assert 0.0 <= metrics["closing_accuracy_beyond_window"] <= 1.0


def test_recall_metrics_of_a_run(tmp_path):
    config = tiny_config(tmp_path, model=STATEFUL, data={
        "corpus": "recall", "recall_queries": 60, "sampling": "stream"},
        training={"max_iters": 4}, schedule={"warmup": 1})
    Trainer(config).fit()
    metrics = run_task_metrics(tmp_path / "run")
    assert 0.0 <= metrics["recall_accuracy"] <= 1.0
    bins = metrics["recall_by_distance"]
    assert bins and all(low >= 16 for low, _, count, _ in bins if count)  # beyond the window


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("sections", "message"), [
    (dict(model={"echo_layers": [0]}), r"^data.sampling: a model with echo or memory layers "
                                       r"carries state .*use 'stream', got 'uniform'"),
    (dict(model={"memory_layers": [0]}, data={"sampling": "loss_guided"}),
     r"^data.sampling: .*got 'loss_guided'"),
    (dict(model={"streams": 3}), r"^model.streams: the training state holds one row per stream, "
                                 r"training.batch_size=8; use null, got 3"),
    (dict(training={"progressive_depth": 10}),
     r"^training.progressive_depth: needs model.recursion_depth > 1, got 10"),
    (dict(data={"bracket_length": 63}), r"^data.bracket_length: must be even, got 63"),
    (dict(data={"recall_distance": [50, 20]}),
     r"^data.recall_distance: the fewest characters must not exceed the most, got \[50, 20\]"),
    (dict(data={"sampling": "sequential"}), r"^data.sampling: must be one of 'uniform', "
                                            r"'loss_guided', 'stream', got 'sequential'"),
    (dict(model={"memory_capacity": 0}), r"^model.memory_capacity: must be >= 1, got 0"),
    (dict(model={"recursion_depth": 0}), r"^model.recursion_depth: must be >= 1, got 0"),
    (dict(model={"attention": "tree", "tree_chunk": 2, "tree_levels": 2}),
     r"^model.tree_levels: tree_chunk=2 with tree_levels=2 reaches 8 positions, fewer than "
     r"block_size=16"),
])
def test_bad_settings_name_the_key(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, **sections)


def test_too_little_data_for_the_streams_names_the_key(tmp_path):
    config = tiny_config(tmp_path, data={"sampling": "stream", "synthetic_sections": 3},
                         training={"batch_size": 16})
    with pytest.raises(ConfigError, match=r"^training.batch_size: StreamBatches: .* tokens make "
                                          r"16 streams"):
        Trainer(config)


# ----------------------------------------------------------------------------- the CLI
def test_the_shipped_config_has_the_original_shape():
    config = load_config(ROOT / "configs/deep_tree_echo.yaml")
    m = config.model
    assert (m.n_layer, m.n_embd, m.n_head, m.block_size) == (4, 256, 8, 512)
    assert m.attention == "tree" and len(m.tree_blocks) == 3 and m.carries_state
    model = GPT(m.to_gpt_config(vocab_size=65))
    assert model.num_parameters() > 3_000_000


def test_nima_build_trains_and_sample_repl_params_work_on_the_run(tmp_path, capsys,
                                                                   monkeypatch):
    """The shipped config shrunk by overrides: `nima build` trains it, `nima sample` writes past
    its context with the state carried, `nima repl` and `nima params` read it."""
    run = tmp_path / "run"
    shrink = {"model.block_size": 16, "model.n_embd": 16, "model.n_head": 2,
              "model.memory_capacity": 32, "model.tree_chunk": 4, "model.echo_slots": 2,
              "data.corpus": "synthetic", "data.synthetic_sections": 40,
              "data.out_dir": tmp_path / "data", "training.run_dir": run,
              "training.max_iters": 4, "training.eval_interval": 2, "training.eval_iters": 2,
              "training.checkpoint_interval": 2, "training.progressive_depth": 2,
              "schedule.warmup": 1, "sampling.max_new_tokens": 40, "sampling.prompt": "# sea"}
    sets = [f"--set={k}={v}" for k, v in shrink.items()]
    cli.main(["build", str(ROOT / "configs/deep_tree_echo.yaml"), *sets])
    out = capsys.readouterr().out
    assert "finished at step 4" in out and "--- a sample: 40 tokens" in out
    assert latest_checkpoint(run).name == "ckpt-0000004.safetensors"
    cli.main(["sample", str(run), "--prompt", "# sea", "--length", "40", "--seed", "1"])
    sampled = capsys.readouterr().out
    assert sampled.startswith("# sea") and len(sampled.rstrip("\n")) >= len("# sea") + 30
    monkeypatch.setattr(sys, "stdin", io.StringIO("/len 20\n/sampling tree_beam\n# sea\n"
                                                  "/tree\n/quit\n"))
    cli.main(["repl", str(run)])
    shown = capsys.readouterr().out.splitlines()
    assert shown[:2] == ["max_new_tokens = 20", "strategy = tree_beam, num_beams = 4"]
    assert shown[3] == "'# sea'"
    cli.main(["params", "--config", str(run), "--instantiate"])
    params = capsys.readouterr().out
    assert "tree attention (3 x" in params and "agrees with the formula" in params
    cli.main(["params", "--config", str(ROOT / "configs/deep_tree_echo.yaml"),
              "--vocab-size", "65"])
    assert "echo layers (1 x" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"model\.vocab_size: null in .*give --vocab-size"):
        cli.main(["params", "--config", str(ROOT / "configs/deep_tree_echo.yaml")])
