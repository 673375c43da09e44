"""Evaluation over a whole text, in order: the windows score every token once, the summed loss
equals an independent per-token computation for any stride and batch size, bits per character
and per byte count the right units, `nima eval` and `nima export` work on a run, and the trainer
logs perplexity beside its losses."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_runs import tiny_config

import nima
from nima import cli
from nima.data import ByteBPETokenizer, CharTokenizer
from nima.export import numpy_gpt
from nima.models import GPT, GPTConfig
from nima.training import Trainer
from nima.training.evaluate import Evaluation, evaluate_tokens, units_of, windows
from nima.training.metrics import perplexity, read_metrics


def random_gpt(block_size: int = 8, **overrides) -> GPT:
    nima.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=block_size, n_layer=2, n_head=2, n_embd=8,
                        **overrides)).double()
    rng = np.random.default_rng(0)
    for p in gpt.parameters():
        p.data[...] = rng.normal(0.0, 0.5, p.shape)
    return gpt


def oracle_nats(gpt: GPT, tokens: np.ndarray, context: int, stride: int) -> float:
    """Token by token: token i is predicted from the window that first reaches it, reading
    that window's tokens before i (the convention restated, one forward per token)."""
    total, begin = 0.0, 0
    for i in range(1, len(tokens)):
        while begin + context < i:  # the window [begin, begin + context] reaches token i
            begin += stride
        with nima.no_grad():
            logits = gpt(tokens[None, begin:i])[0].data[0, -1]
        total += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[tokens[i]]
    return total


def test_windows_known_answer() -> None:
    assert list(windows(10, 4, 2)) == [(0, 4, 0), (2, 6, 2), (4, 8, 2), (6, 9, 2)]
    assert list(windows(9, 4)) == [(0, 4, 0), (4, 8, 0)]  # no overlap: 8 tokens, 2 windows
    assert list(windows(10, 4)) == [(0, 4, 0), (4, 8, 0), (8, 9, 0)]
    assert list(windows(1, 4)) == []


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), context=st.integers(1, 9), data=st.data())
def test_windows_score_every_token_once(n: int, context: int, data) -> None:
    stride = data.draw(st.integers(1, context))
    scored = []
    for begin, end, first in windows(n, context, stride):
        assert 0 <= first <= end - begin and end - begin <= context
        scored += list(range(begin + 1 + first, end + 1))
    assert scored == list(range(1, n))


@pytest.mark.parametrize(("context", "stride", "batch"), [(8, 8, 4), (8, 3, 2), (5, 5, 1),
                                                          (6, 1, 8)])
def test_loss_equals_the_token_by_token_oracle(context, stride, batch) -> None:
    gpt = random_gpt(position="rope")
    tokens = np.random.default_rng(1).integers(0, 13, 41)
    result = evaluate_tokens(gpt, tokens, context=context, stride=stride, batch_size=batch)
    assert result.tokens == 40
    np.testing.assert_allclose(result.nats, oracle_nats(gpt, tokens, context, stride),
                               rtol=1e-10)
    assert result.windows == len(list(windows(41, context, stride)))
    assert gpt.training  # the model's mode is given back


def test_overlap_gives_more_context_and_a_lower_loss_on_a_learned_pattern() -> None:
    """A model that has learned a period-5 pattern only by looking back: windows that overlap
    give the first tokens of each window context, so the loss drops."""
    gpt = random_gpt(block_size=8, position="learned")
    tokens = np.tile(np.arange(5), 30)
    opt = nima.optim.AdamW(gpt.parameters(), lr=3e-2)
    x = np.stack([tokens[i:i + 8] for i in range(0, 100, 3)])
    y = np.stack([tokens[i + 1:i + 9] for i in range(0, 100, 3)])
    for _ in range(150):
        _, loss = gpt(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    apart = evaluate_tokens(gpt, tokens).loss
    overlap = evaluate_tokens(gpt, tokens, stride=2).loss
    assert overlap < apart


def test_summary_units_and_perplexity() -> None:
    e = Evaluation(nats=20 * math.log(4), tokens=20, units=40, unit="byte", windows=3)
    assert e.loss == pytest.approx(math.log(4)) and e.perplexity == pytest.approx(4.0)
    assert e.bits_per_token == pytest.approx(2.0) and e.bits_per_unit == pytest.approx(1.0)
    assert "1.0000 bits per byte" in e.summary() and "perplexity 4.000" in e.summary()
    assert perplexity(1e4) == math.inf and math.isnan(perplexity(math.nan))
    char = CharTokenizer.train("héllo")
    assert units_of(char, np.array(char.encode("héllo"))) == (4, "character")
    bpe = ByteBPETokenizer.train("héllo héllo", 260)
    ids = np.array(bpe.encode("héllo héllo"))
    assert units_of(bpe, ids) == (len("héllo héllo".encode()) - len(bpe.vocab[ids[0]]), "byte")


def test_bad_arguments_are_named() -> None:
    gpt = random_gpt()
    with pytest.raises(ValueError, match="context 9 exceeds the model's block_size=8"):
        evaluate_tokens(gpt, np.arange(10) % 13, context=9)
    with pytest.raises(ValueError, match="stride 9 exceeds context 8"):
        evaluate_tokens(gpt, np.arange(10) % 13, stride=9)
    with pytest.raises(ValueError, match="need at least 2 tokens"):
        evaluate_tokens(gpt, np.array([1]))
    with pytest.raises(ValueError, match=r"evaluate\.batch_size: must be >= 1"):
        evaluate_tokens(gpt, np.arange(10) % 13, batch_size=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    trainer = Trainer(tiny_config(tmp, training={"max_iters": 20}))
    trainer.fit()
    return tmp, trainer


def test_trainer_logs_perplexity(run) -> None:
    tmp, _ = run
    records = read_metrics(tmp / "run" / "metrics.jsonl")
    for r in records:
        if r["kind"] == "train":
            assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
        else:
            assert r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]))
            assert r["train_perplexity"] == pytest.approx(math.exp(r["train_loss"]))
    header = (tmp / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "perplexity" in header.split(",") and "val_perplexity" in header.split(",")
    assert "(ppl " in (tmp / "run" / "log.txt").read_text()


def test_cli_eval_on_the_run_split_and_a_file(run, capsys) -> None:
    tmp, trainer = run
    cli.main(["eval", str(tmp / "run"), "--batch-size", "3"])
    out = capsys.readouterr()
    assert "window" in out.err  # the progress bar
    val = trainer.val_data.data
    expected = evaluate_tokens(trainer.model, val)  # the best checkpoint is the last here
    loss = float(out.out.split("loss ")[1].split()[0])
    assert loss == pytest.approx(expected.loss, abs=1e-4)
    assert f"{val.size - 1:,} tokens predicted" in out.out
    bpc = float(out.out.split(", ")[-1].split()[0])
    assert bpc == pytest.approx(expected.loss / math.log(2), abs=1e-3)  # chars are tokens
    text = tmp / "text.txt"
    text.write_text((tmp / "data" / "corpus.txt").read_text()[:500])
    cli.main(["eval", str(tmp / "run"), "--data", str(text), "--stride", "4"])
    assert "499 tokens predicted" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"nima eval: .*no checkpoint"):
        cli.main(["eval", str(tmp)])
    with pytest.raises(SystemExit, match="stride 99 exceeds context 16"):
        cli.main(["eval", str(tmp / "run"), "--stride", "99"])


def test_cli_export_writes_what_numpy_gpt_runs(run, capsys) -> None:
    tmp, trainer = run
    cli.main(["export", str(tmp / "run"), "--format", "npz"])
    out = tmp / "run" / "model.npz"
    assert f"wrote {out}" in capsys.readouterr().out
    config, arrays, tokenizer = numpy_gpt.load(str(out))
    idx = np.array([trainer.val_data.data[:10].astype(np.int64)])
    with nima.no_grad():
        expected = trainer.model.eval()(idx)[0].data
    np.testing.assert_allclose(numpy_gpt.forward(config, arrays, idx), expected, rtol=1e-4,
                               atol=1e-5)
    cli.main(["export", str(tmp / "run"), "--out", str(tmp / "other.npz"), "--checkpoint",
              "latest"])
    assert (tmp / "other.npz").exists() and tokenizer["kind"] == "char"
    with pytest.raises(SystemExit, match="nima export: "):
        cli.main(["export", str(tmp / "nothing")])
    bad = subprocess.run([sys.executable, "-m", "nima", "export", str(tmp / "run"), "--format",
                          "onnx"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'onnx'" in bad.stderr
