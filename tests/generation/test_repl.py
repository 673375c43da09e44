"""The REPL and `nima sample`: every command, bad input, streaming, and the CLI over a real run
directory driven through stdin."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from tiny_runs import tiny_config

from nima.data import CharTokenizer
from nima.generation import beam_search, generate
from nima.generation.repl import HELP, MODES, Repl, ReplSettings
from nima.training import Trainer

ALPHABET = "abcdefghij "


@pytest.fixture
def repl(make_gpt):
    tok = CharTokenizer(ALPHABET)
    return Repl(make_gpt(vocab_size=len(ALPHABET)), tok, ReplSettings(seed=3), out=io.StringIO())


def output(repl: Repl) -> str:
    text = repl.out.getvalue()
    repl.out.seek(0)
    repl.out.truncate()
    return text


def test_every_setting_command_changes_its_setting(repl):
    repl.run(["/len 7", "/temp 1.3", "/sampling top_p", "/topk 5", "/topp 0.5", "/entropy 1.5",
              "/bounds 0.2 3"])
    assert output(repl) == ""
    assert repl.settings == ReplSettings(length=7, temperature=1.3, sampling="top_p", top_k=5,
                                         top_p=0.5, entropy=1.5, min_temp=0.2, max_temp=3.0,
                                         seed=3)
    repl.handle("/config")
    shown = output(repl)
    assert "length       7" in shown and "sampling     top_p" in shown


@pytest.mark.parametrize("line, message", [
    ("/len 0", "/len: length: expected an integer >= 1, got '0'"),
    ("/len x", "/len: length: expected an integer >= 1, got 'x'"),
    ("/temp -1", "/temp: temperature: expected a number > 0, got '-1'"),
    ("/sampling greedy", "/sampling: mode must be one of basic, top_k, top_p, entropy, beam"),
    ("/topk 2.5", "/topk: top-k: expected an integer >= 1, got '2.5'"),
    ("/topp 1.5", "/topp: top-p: expected a number in (0, 1], got '1.5'"),
    ("/entropy -2", "/entropy: entropy: expected a number of bits >= 0, got '-2'"),
    ("/bounds 1", "/bounds: wrong number of arguments"),
    ("/bounds 2 1", "/bounds: max: expected a temperature >= min (2.0), got '1'"),
    ("/temp", "/temp: wrong number of arguments"),
    ("/jump 3", "unknown command /jump; /help lists them"),
    ("/", "unknown command /; /help lists them"),
])
def test_a_bad_command_is_one_line_and_the_loop_carries_on(repl, line, message):
    before = ReplSettings(**vars(repl.settings))
    repl.run([line, "/len 4"])
    shown = output(repl)
    assert shown.count("\n") == 1 and shown.startswith("error: ") and message in shown
    assert repl.settings.length == 4  # the next command still ran
    before.length = 4
    assert repl.settings == before  # nothing else changed


def test_a_prompt_streams_exactly_what_generate_returns(repl):
    repl.run(["/len 12", "/sampling top_k", "/topk 3", "abc"])
    shown = output(repl)
    ids = np.array([repl.tokenizer.encode("abc")])
    direct = generate(repl.model, ids, 12, strategy="sample", temperature=0.8, top_k=3, seed=3)
    assert shown == repl.tokenizer.decode(direct.tolist()[0]) + "\n"
    assert len(shown) == len("abc") + 12 + 1


def test_entropy_and_beam_modes(repl):
    repl.run(["/len 6", "/sampling entropy", "/entropy 1.0", "/bounds 0.05 5", "ab"])
    output(repl)
    temps = repl.last.stats.temperature
    assert repl.last.strategy == "entropy" and np.all((temps >= 0.05) & (temps <= 5))
    assert np.allclose(repl.last.stats.entropy, 1.0, atol=0.05)  # the bounds allow the target
    repl.run(["/sampling beam", "ab"])
    ids = np.array([repl.tokenizer.encode("ab")])
    best = beam_search(repl.model, ids, 6, num_beams=4)
    assert output(repl) == repl.tokenizer.decode(best.tolist()[0]) + "\n"


def test_stats_help_and_quit(repl):
    repl.handle("/stats")
    assert output(repl) == "no generation yet\n"
    repl.run(["/len 5", "/sampling basic", "hi", "/stats"])
    table = output(repl).split("\n", 1)[1]  # after the generated line
    tokens_row = next(line for line in table.splitlines() if "tokens" in line)
    assert tokens_row.rstrip(" │").endswith(" 5")
    assert f"{repl.last.stats.mean_entropy:.2f} bits" in table
    repl.run(["/help", "/quit", "/len 99"])
    shown = output(repl)
    assert shown == HELP + "\n" and repl.settings.length == 5  # nothing after /quit ran
    for mode in MODES:
        assert mode in HELP


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repl")
    Trainer(tiny_config(tmp, training={"max_iters": 10})).fit()
    return tmp / "run"


def test_cli_repl_through_stdin(run_dir):
    script = "/len 5\n/temp 0\n/sampling basic\n# sea\n/stats\n/config\n/quit\n"
    done = subprocess.run([sys.executable, "-m", "nima", "repl", str(run_dir), "--seed", "1"],
                          input=script, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    error, rest = done.stdout.split("\n", 1)
    assert error == "error: /temp: temperature: expected a number > 0, got '0'"
    generated = rest[:rest.index("┌")]  # the text, up to the /stats table
    assert generated.startswith("# sea") and len(generated) == len("# sea") + 5 + 1
    assert "mean entropy" in done.stdout and "sampling     basic" in done.stdout


def test_cli_sample(run_dir):
    cmd = [sys.executable, "-m", "nima", "sample", str(run_dir), "--prompt", "# sea",
           "--length", "20", "--seed", "5", "--num-samples", "2", "--stats"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout  # seeded: reproducible
    assert first.stdout.count("--- sample ") == 2 and "mean confidence" in first.stdout
    missing = subprocess.run([sys.executable, "-m", "nima", "sample", str(run_dir / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nima sample:" in missing.stderr
