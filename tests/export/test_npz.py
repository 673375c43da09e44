"""NumPy-only export: `numpy_gpt.py`'s logits equal Nima's (float64) for every config kind it
runs, its tokenizer equals Nima's, and run on its own in a subprocess it samples without
importing nima or numba."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_runs import tiny_config

import nima
from nima.data import ByteBPETokenizer, CharTokenizer
from nima.export import export_npz, numpy_gpt
from nima.models import GPT, GPTConfig
from nima.models.pretrained import save_pretrained
from nima.training import Trainer
from nima.training.trainer import load_run

SCRIPT = Path(numpy_gpt.__file__)
SHAKESPEARE = Path(__file__).resolve().parents[2] / "data" / "tinyshakespeare.txt"

CONFIGS = {
    "gpt2": dict(),
    "untied, no bias": dict(tie_weights=False, bias=False),
    "sinusoidal, relu": dict(position="sinusoidal", ffn="relu"),
    "rope, swiglu, rmsnorm": dict(position="rope", ffn="swiglu", norm="rmsnorm", bias=False),
    "alibi, glu": dict(position="alibi", ffn="glu", n_head=4),
    "post-norm": dict(norm_placement="post"),
    "post-norm, rope, rmsnorm": dict(norm_placement="post", position="rope", norm="rmsnorm"),
    "alibi, 3 heads": dict(position="alibi", n_head=3, n_embd=12),
    "grouped-query": dict(position="rope", n_head=4, n_kv_head=2, norm="rmsnorm"),
    "embedding scale, xavier": dict(embed_scale=True, init="xavier"),
}


def random_gpt(seed: int = 0, **overrides) -> GPT:
    fields = dict(vocab_size=23, block_size=10, n_layer=2, n_head=2, n_embd=8)
    model = GPT(GPTConfig(**{**fields, **overrides}))
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # norm gains and biases random too
        p.data[...] = rng.standard_normal(p.shape) * 0.4
    return model.eval()


def nima_logits(model: GPT, idx: np.ndarray) -> np.ndarray:
    with nima.no_grad():
        return model(idx)[0].data


def ids(T: int = 10, V: int = 23) -> np.ndarray:
    return np.random.default_rng(3).integers(0, V, (3, T))


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=list(CONFIGS))
def test_logits_equal_nima_in_float64(tmp_path, overrides) -> None:
    model = random_gpt(**overrides).double()
    export_npz(model, tmp_path / "m.npz")
    config, arrays, tokenizer = numpy_gpt.load(tmp_path / "m.npz")
    assert tokenizer is None and config["gpt_config"]["position"] == model.config.position
    for T in (1, 7, 10):
        out = numpy_gpt.forward(config, arrays, ids(T))
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, nima_logits(model, ids(T)), rtol=0, atol=1e-12)


def test_exact_gelu(tmp_path) -> None:
    # the exact (erf) GELU, set on the FFN modules: the export records what they compute
    model = random_gpt().double()
    for block in model.blocks:
        block.ffn.approximate = "none"
    export_npz(model, tmp_path / "m.npz")
    config, arrays, _ = numpy_gpt.load(tmp_path / "m.npz")
    assert config["model"]["gelu_approximate"] == "none"
    np.testing.assert_allclose(numpy_gpt.forward(config, arrays, ids()),
                               nima_logits(model, ids()), rtol=0, atol=1e-12)


def test_float32_export(tmp_path) -> None:
    model = random_gpt(position="rope")
    export_npz(model, tmp_path / "m.npz")
    config, arrays, _ = numpy_gpt.load(tmp_path / "m.npz")
    assert arrays["weights/wte.weight"].dtype == np.float32
    np.testing.assert_allclose(numpy_gpt.forward(config, arrays, ids()),
                               nima_logits(model, ids()), rtol=1e-4, atol=1e-5)


def test_file_layout_has_no_pickle(tmp_path) -> None:
    model = random_gpt(position="sinusoidal")
    path = export_npz(model, tmp_path / "m.npz", tokenizer=CharTokenizer.train("abcdefghij"))
    with zipfile.ZipFile(path) as z:
        names = sorted(n.removesuffix(".npy") for n in z.namelist())
    assert "config.json" in names and "tokenizer.json" in names and "tables/pe" in names
    assert "weights/lm_head.weight" not in names  # tied: stored once, as wte.weight
    assert {f"weights/{n}" for n in model.state_dict() if n != "lm_head.weight"} <= set(names)
    with np.load(path, allow_pickle=False) as npz:  # every array loads without pickle
        spec = json.loads(npz["config.json"].tobytes())
        assert npz["config.json"].dtype == np.uint8
    assert spec["format"] == "nima-npz" and spec["model"]["n_kv_head"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left


def test_pickled_and_foreign_files_are_refused(tmp_path) -> None:
    np.savez(tmp_path / "obj.npz", **{"config.json": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        numpy_gpt.load(tmp_path / "obj.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a Nima export"):
        numpy_gpt.load(tmp_path / "other.npz")
    spec = {"format": "nima-npz", "version": 99}
    np.savez(tmp_path / "future.npz", **{"config.json": np.frombuffer(
        json.dumps(spec).encode(), dtype=np.uint8)})
    with pytest.raises(ValueError, match="version 99"):
        numpy_gpt.load(tmp_path / "future.npz")


def test_unsupported_models_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="attention='hybrid'"):
        export_npz(random_gpt(attention="hybrid"), tmp_path / "m.npz")
    for part, name in ((dict(memory_layers=(1,)), r"memory_layers=\[1\]"),
                       (dict(echo_layers=(0,)), r"echo_layers=\[0\]"),
                       (dict(recursion_depth=2), "recursion_depth=2")):
        with pytest.raises(ValueError, match=f"export_npz: {name} is not exported"):
            export_npz(random_gpt(**part), tmp_path / "m.npz")
    assert not any(tmp_path.iterdir())


def test_context_longer_than_block_size_is_refused(tmp_path) -> None:
    export_npz(random_gpt(), tmp_path / "m.npz")
    config, arrays, _ = numpy_gpt.load(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="11 tokens exceed block_size=10"):
        numpy_gpt.forward(config, arrays, ids(11))


def test_greedy_sampling_follows_nima(tmp_path) -> None:
    model = random_gpt(position="rope").double()
    export_npz(model, tmp_path / "m.npz")
    config, arrays, _ = numpy_gpt.load(tmp_path / "m.npz")
    out = numpy_gpt.sample(config, arrays, [1, 2, 3], 12, temperature=0)
    expected = [1, 2, 3]
    for _ in range(12):  # Nima's argmax, step by step, on the last block_size tokens
        expected.append(int(nima_logits(model, np.asarray([expected[-10:]]))[0, -1].argmax()))
    assert out == expected
    sampled = numpy_gpt.sample(config, arrays, [1], 20, temperature=0.8, top_k=3, seed=4)
    assert sampled == numpy_gpt.sample(config, arrays, [1], 20, temperature=0.8, top_k=3, seed=4)
    assert len(sampled) == 21 and all(0 <= i < 23 for i in sampled)


# ---- tokenizers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bpe() -> ByteBPETokenizer:
    tok = ByteBPETokenizer.train(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], 400,
                                 pattern="gpt2")
    tok.register_special_tokens({"<|endoftext|>": 400})
    return tok


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",))) | st.just("<|endoftext|>hi"))
def test_bpe_tokenizer_equals_nima(tmp_path, bpe, text: str) -> None:
    path = tmp_path / "bpe.npz"
    if not path.exists():
        export_npz(random_gpt(vocab_size=401), path, tokenizer=bpe)
    tokenizer = numpy_gpt.Tokenizer(numpy_gpt.load(path)[2])
    assert tokenizer.encode(text) == bpe.encode(text)
    assert tokenizer.decode(bpe.encode(text)) == text


def test_char_tokenizer_and_a_run_directory(tmp_path) -> None:
    config = tiny_config(tmp_path, training={"max_iters": 4, "eval_interval": 4,
                                             "checkpoint_interval": 4},
                         schedule={"warmup": 1})
    Trainer(config).fit()
    path = export_npz(tmp_path / "run", tmp_path / "run.npz")
    model, tokenizer, _ = load_run(tmp_path / "run")
    spec, arrays, tok_spec = numpy_gpt.load(path)
    script_tok = numpy_gpt.Tokenizer(tok_spec)
    text = tokenizer.decode(list(range(tokenizer.vocab_size)))
    assert script_tok.encode(text) == tokenizer.encode(text)
    x = np.asarray([tokenizer.encode(text)[:16]])
    np.testing.assert_allclose(numpy_gpt.forward(spec, arrays, x), nima_logits(model, x),
                               rtol=1e-4, atol=1e-5)


def test_a_hugging_face_folder_with_its_tokenizer(tmp_path, bpe) -> None:
    model = random_gpt(vocab_size=401, block_size=16)
    save_pretrained(model, tmp_path / "hf")
    bpe.save_files(tmp_path / "hf" / "vocab.json", tmp_path / "hf" / "merges.txt")
    config, arrays, tok_spec = numpy_gpt.load(export_npz(tmp_path / "hf", tmp_path / "hf.npz"))
    text = "To be, or not to be<|endoftext|>"
    assert numpy_gpt.Tokenizer(tok_spec).encode(text) == bpe.encode(text)
    x = np.asarray([bpe.encode(text)])
    np.testing.assert_allclose(numpy_gpt.forward(config, arrays, x), nima_logits(model, x),
                               rtol=1e-4, atol=1e-5)


# ---- standalone ----------------------------------------------------------------------------------
def test_script_alone_imports_neither_nima_nor_numba(tmp_path, bpe) -> None:
    export_npz(random_gpt(vocab_size=401, block_size=16), tmp_path / "m.npz", tokenizer=bpe)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(SCRIPT, alone / "numpy_gpt.py")  # the file by itself, away from the package
    probe = ("import runpy, sys\n"
             "sys.argv = ['numpy_gpt.py', '../m.npz', '--prompt', 'ROMEO:', "
             "'--max-new-tokens', '5', '--temperature', '0.8', '--top-k', '5']\n"
             "runpy.run_path('numpy_gpt.py', run_name='__main__')\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nima', 'numba')))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=alone, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sample, modules = result.stdout.rstrip("\n").rsplit("\n", 1)
    assert modules == "[]"
    assert sample.startswith("ROMEO:") and len(bpe.encode(sample)) >= len(bpe.encode("ROMEO:"))
    # and as a plain command, with ids in and out when asked
    result = subprocess.run([sys.executable, "numpy_gpt.py", "../m.npz", "--prompt-ids", "5,6",
                             "--max-new-tokens", "3", "--temperature", "0"], cwd=alone, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    config, arrays, _ = numpy_gpt.load(tmp_path / "m.npz")
    assert result.stdout == ",".join(map(str, numpy_gpt.sample(config, arrays, [5, 6], 3, 0))) \
        + "\n"
