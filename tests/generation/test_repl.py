"""The REPL and `nima sample`: every command, bad input, streaming, and the CLI over a real run
directory driven through stdin."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import numpy as np
import pytest
from tiny_runs import tiny_config

from nima.data import CharTokenizer
from nima.generation import GenerationConfig, generate
from nima.generation.repl import COMMANDS, REPL_DEFAULTS, Repl
from nima.training import Trainer

ALPHABET = "abcdefghij "


@pytest.fixture
def repl(make_gpt):
    tok = CharTokenizer(ALPHABET)
    return Repl(make_gpt(vocab_size=len(ALPHABET)), tok, REPL_DEFAULTS.updated(seed=3),
                out=io.StringIO())


def output(repl: Repl) -> str:
    text = repl.out.getvalue()
    repl.out.seek(0)
    repl.out.truncate()
    return text


def test_every_setting_command_changes_its_setting_and_says_so(repl):
    repl.run(["/len 7", "/temp 1.3", "/topk off", "/topp 0.5", "/penalty 1.2", "/entropy 1.5",
              "/bounds 0.2 3", "/seed 9", "/sampling entropy"])
    assert output(repl).splitlines() == [
        "max_new_tokens = 7", "temperature = 1.3", "top_k = None", "top_p = 0.5",
        "repetition_penalty = 1.2", "target_entropy = 1.5", "min_temp = 0.2, max_temp = 3.0",
        "seed = 9", "strategy = entropy, num_beams = 1"]
    assert repl.config == REPL_DEFAULTS.updated(
        max_new_tokens=7, temperature=1.3, top_k=None, top_p=0.5, repetition_penalty=1.2,
        target_entropy=1.5, min_temp=0.2, max_temp=3.0, seed=9, strategy="entropy")
    repl.handle("/config")
    shown = output(repl)
    assert "max_new_tokens         7" in shown and "strategy               entropy" in shown


@pytest.mark.parametrize("line, message", [
    ("/len -1", "/len: GenerationConfig.max_new_tokens: must be >= 0, got -1"),
    ("/len x", "/len: expected an integer, got 'x'"),
    ("/len 1000000000000", "/len: GenerationConfig.max_new_tokens: must be <= 1000000"),
    ("/temp -1", "/temp: GenerationConfig.temperature: must be > 0, got -1.0"),
    ("/temp inf", "/temp: GenerationConfig.temperature: must be a finite number, got inf"),
    ("/temp nan", "/temp: GenerationConfig.temperature: must be a finite number, got nan"),
    ("/sampling top_p", "/sampling: the strategy must be one of greedy, sample, entropy, beam"),
    ("/topk 2.5", "/topk: expected an integer or off, got '2.5'"),
    ("/topk 0", "/topk: GenerationConfig.top_k: must be >= 1, got 0"),
    ("/topp 1.5", "/topp: GenerationConfig.top_p: must be <= 1, got 1.5"),
    ("/penalty 0", "/penalty: GenerationConfig.repetition_penalty: must be > 0, got 0.0"),
    ("/entropy -2", "/entropy: GenerationConfig.target_entropy: must be >= 0, got -2.0"),
    ("/entropy inf", "/entropy: GenerationConfig.target_entropy: must be a finite number"),
    ("/bounds 1", "/bounds: wrong number of arguments"),
    ("/bounds 2 1", "/bounds: GenerationConfig.min_temp: must be <= max_temp=1.0, got 2.0"),
    ("/bounds 0.5 inf", "/bounds: GenerationConfig.max_temp: must be a finite number, got inf"),
    ("/beams 0", "/beams: GenerationConfig.num_beams: must be >= 1, got 0"),
    ("/stats maybe", "/stats: expected on or off, got 'maybe'"),
    ("/temp", "/temp: wrong number of arguments"),
    ("/jump 3", "unknown command /jump; /help lists them"),
    ("/", "unknown command /; /help lists them"),
])
def test_a_bad_command_is_one_line_and_the_loop_carries_on(repl, line, message):
    before = repl.config
    repl.run([line, "/len 4"])
    error, confirmation = output(repl).splitlines()
    assert error.startswith("error: ") and message in error
    assert confirmation == "max_new_tokens = 4"  # the next command still ran
    assert repl.config == before.updated(max_new_tokens=4)  # nothing else changed


@pytest.mark.parametrize("text, name", [("abc!", "'!'"), ("a\x00b", "'\\x00'"),
                                        ("é", "'é'")])
def test_a_prompt_outside_the_vocabulary_is_one_line(repl, text, name):
    repl.run([text, "/len 4"])
    error, confirmation = output(repl).splitlines()
    assert error.startswith("error: CharTokenizer.encode: character ") and name in error
    assert confirmation == "max_new_tokens = 4"


def test_a_prompt_streams_exactly_what_generate_returns(repl):
    repl.run(["/len 12", "/topk 3", "abc"])
    shown = output(repl).split("\n", 2)[2]  # after the two confirmations
    ids = np.array([repl.tokenizer.encode("abc")])
    direct = generate(repl.model, ids, 12, strategy="sample", temperature=0.8, top_k=3,
                      seed=3, target_entropy=2.0, min_temp=0.3, max_temp=1.5)
    assert shown == repl.tokenizer.decode(direct.tolist()[0]) + "\n"
    assert len(shown) == len("abc") + 12 + 1


def test_ctrl_c_stops_the_generation_and_not_the_loop(repl):
    repl.model_forward = repl.model.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the third step
        return repl.model_forward(*args, **kwargs)

    repl.model.forward = forward
    repl.run(["abc", "/len 4"])
    shown = output(repl)
    assert "[stopped]" in shown and shown.endswith("max_new_tokens = 4\n")


def test_entropy_and_beam_modes(repl):
    repl.run(["/len 6", "/sampling entropy", "/entropy 1.0", "/bounds 0.05 5", "ab"])
    output(repl)
    temps = repl.last.stats.temperature
    assert repl.last.strategy == "entropy" and np.all((temps >= 0.05) & (temps <= 5))
    assert np.allclose(repl.last.stats.entropy, 1.0, atol=0.05)  # the bounds allow the target
    repl.run(["/sampling beam", "ab"])
    assert output(repl).splitlines()[0] == "strategy = beam, num_beams = 4"
    best = generate(repl.model, np.array([repl.tokenizer.encode("ab")]), 6, num_beams=4)
    repl.run(["ab"])
    assert output(repl) == repl.tokenizer.decode(best.tolist()[0]) + "\n"
    repl.run(["/beams 2", "/sampling greedy", "/beams 3", "/sampling beam"])
    assert output(repl).splitlines() == ["num_beams = 2", "strategy = greedy, num_beams = 1",
                                         "beams = 3 (for /sampling beam or tree_beam)",
                                         "strategy = beam, num_beams = 3"]


def test_tree_beam_mode_and_its_tree(repl):
    repl.run(["/len 4", "/tree", "/sampling tree_beam", "/width 1", "ab", "/tree"])
    lines = output(repl).splitlines()
    assert lines[:4] == ["max_new_tokens = 4", "no tree_beam generation yet",
                         "strategy = tree_beam, num_beams = 4", "tree_width = 1"]
    best = generate(repl.model, np.array([repl.tokenizer.encode("ab")]), 4, num_beams=4,
                    strategy="tree_beam", tree_width=1)
    assert lines[4] == repl.tokenizer.decode(best.tolist()[0])
    assert lines[5:] == repl.last.trees[0].render(repl.tokenizer.decode).splitlines()
    assert lines[5] == "'ab'" and len(lines) > 9
    repl.run(["/width 0"])
    assert output(repl) == "error: /width: GenerationConfig.tree_width: must be >= 1, got 0\n"


def test_stats_help_and_quit(repl):
    repl.handle("/stats")
    assert output(repl) == "no generation yet\n"
    repl.run(["/len 5", "hi", "/stats"])
    table = output(repl).split("\n", 2)[2]  # after the confirmation and the generated line
    tokens_row = next(line for line in table.splitlines() if "tokens" in line)
    assert tokens_row.rstrip(" │").endswith(" 5")
    assert f"{repl.last.stats.mean_entropy:.2f} bits" in table
    repl.run(["/stats on", "hi"])
    assert "mean entropy" in output(repl)  # after every generation now
    repl.run(["/help", "/quit", "/len 99"])
    shown = output(repl)
    assert all(command in shown for command in COMMANDS)
    assert repl.config.max_new_tokens == 5  # nothing after /quit ran


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repl")
    Trainer(tiny_config(tmp, training={"max_iters": 10})).fit()
    return tmp / "run"


@pytest.mark.parametrize("optimize", [[], ["-OO"]])
def test_cli_repl_through_stdin(run_dir, optimize):
    script = "/len 5\n/temp 0\n# sea\n/stats\n/config\n/quit\n"
    done = subprocess.run([sys.executable, *optimize, "-m", "nima", "repl", str(run_dir),
                           "--seed", "1"], input=script, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    confirmation, error, rest = done.stdout.split("\n", 2)
    assert confirmation == "max_new_tokens = 5"
    assert error == "error: /temp: GenerationConfig.temperature: must be > 0, got 0.0"
    generated = rest[:rest.index("┌")]  # the text, up to the /stats table
    assert generated.startswith("# sea") and len(generated) == len("# sea") + 5 + 1
    assert "mean entropy" in done.stdout and "strategy               sample" in done.stdout


def test_cli_repl_survives_bytes_that_are_not_utf8(run_dir):
    done = subprocess.run([sys.executable, "-m", "nima", "repl", str(run_dir)],
                          input=b"\xff\xfe bad\n/len 3\n/quit\n", capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    assert lines[0].startswith("error: CharTokenizer.encode: character ")
    assert lines[1] == "max_new_tokens = 3"


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


def test_cli_sample_tree_beam_prints_its_tree(run_dir):
    done = subprocess.run([sys.executable, "-m", "nima", "sample", str(run_dir), "--prompt",
                           "# sea", "--length", "6", "--strategy", "tree_beam", "--num-beams",
                           "3", "--tree-width", "2", "--tree"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# sea") and lines[1] == "--- the search tree ---"
    assert lines[2] == "'# sea'" and sum(line.count("─ ") for line in lines[3:]) >= 6


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "0"], "GenerationConfig.temperature: must be > 0, got 0.0"),
    (["--strategy", "tree_beam", "--tree-width", "0"],
     "GenerationConfig.tree_width: must be >= 1, got 0"),
    (["--top-k", "0"], "GenerationConfig.top_k: must be >= 1, got 0"),
    (["--num-beams", "0"], "GenerationConfig.num_beams: must be >= 1, got 0"),
    (["--length", "1000000000000"], "GenerationConfig.max_new_tokens: must be <= 1000000"),
    (["--prompt", 'He said "hello"'], "CharTokenizer.encode: character"),
])
def test_cli_sample_bad_input_is_one_line(run_dir, flags, message):
    done = subprocess.run([sys.executable, "-m", "nima", "sample", str(run_dir), *flags],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("nima sample: ") and message in done.stderr


def test_the_defaults_are_a_valid_config():
    assert dataclasses.replace(REPL_DEFAULTS) == REPL_DEFAULTS
    assert isinstance(REPL_DEFAULTS, GenerationConfig)
