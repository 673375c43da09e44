r"""Run a GPT exported by Nima (`nima.export.export_npz`) with NumPy alone.

This file is self-contained: copy it anywhere with the `.npz`, and it needs only Python ≥ 3.10
and NumPy — no Nima, no numba, no compiler. It reads the file (arrays only, `allow_pickle=False`),
encodes the prompt with the saved tokenizer, and samples:

    python numpy_gpt.py model.npz --prompt "ROMEO:" --max-new-tokens 200 --temperature 0.8

The forward pass is Nima's GPT written out in NumPy, every block

$$x \leftarrow x + \operatorname{Attn}(\operatorname{N}_1(x)), \qquad
x \leftarrow x + \operatorname{FFN}(\operatorname{N}_2(x))$$

(pre-norm; post-norm applies each norm after its addition), for the position kinds `learned`,
`sinusoidal` (a table added to the embeddings), `rope` (rotated queries and keys) and `alibi`
(a bias on the scores), the FFN kinds `gelu` (tanh or exact), `relu`, `glu`, `swiglu`, the norms
`layernorm` and `rmsnorm`, and grouped-query attention. Position tables are stored in the file,
computed by Nima, so nothing here needs to agree with Nima's formulas for them. Each step runs
the whole context again (no KV cache): simple, and fast enough for a small model. For a small
model on a busy machine, start it with `OPENBLAS_NUM_THREADS=1`: its matrix products are too
small to gain from a second BLAS thread, which then mostly waits.

The `.npz` holds `config.json` and `tokenizer.json` as UTF-8 bytes (uint8 arrays), the weights as
`weights/<name>` (Nima's parameter names) and the position tables as `tables/<name>`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys

import numpy as np

FORMAT, VERSION = "nima-npz", 1


# ------------------------------------------------------------------------------ the file
def load(path: str) -> tuple[dict, dict[str, np.ndarray], dict | None]:
    """`(config, arrays, tokenizer)` from an exported `.npz`; `arrays` maps `weights/...` and
    `tables/...` names to arrays; `tokenizer` is None when none was exported."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    if "config.json" not in arrays:
        raise ValueError(f"{path}: not a Nima export (no config.json inside)")
    config = json.loads(arrays.pop("config.json").tobytes().decode("utf-8"))
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ValueError(f"{path}: format {config.get('format')!r} version "
                         f"{config.get('version')!r}; this script reads {FORMAT!r} {VERSION}")
    tokenizer = arrays.pop("tokenizer.json", None)
    if tokenizer is not None:
        tokenizer = json.loads(tokenizer.tobytes().decode("utf-8"))
    return config, arrays, tokenizer


# ------------------------------------------------------------------------------ the model
def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float) -> np.ndarray:
    r"""$(x - \mu) / \sqrt{\sigma^2 + \epsilon} \odot w + b$ over the last axis."""
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * w
    return y if b is None else y + b


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    r"""$x / \sqrt{\operatorname{mean}(x^2) + \epsilon} \odot w$ over the last axis."""
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    r"""$x\,\Phi(x)$: GPT-2's tanh approximation, or exact with `math.erf` (slow, rarely used)."""
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    erf = np.frompyfunc(math.erf, 1, 1)
    return x * (0.5 * (1 + erf(x * (1 / math.sqrt(2))).astype(x.dtype)))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """RoPE: dimension $i$ of each head paired with $i + d/2$, rotated by the position's angle."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    """$x W^\top + b$ with Nima's `Linear` weight `(out, in)` and its bias, if any."""
    y = x @ w[f"{name}.weight"].T
    bias = w.get(f"{name}.bias")
    return y if bias is None else y + bias


def norm(x: np.ndarray, w: dict[str, np.ndarray], name: str, c: dict) -> np.ndarray:
    if c["norm"] == "layernorm":
        return layer_norm(x, w[f"{name}.weight"], w.get(f"{name}.bias"), c["norm_eps"])
    return rms_norm(x, w[f"{name}.weight"], c["norm_eps"])


# --8<-- [start:attention]
def attention(x: np.ndarray, w: dict[str, np.ndarray], t: dict[str, np.ndarray], name: str,
              c: dict) -> np.ndarray:
    """Causal multi-head attention, with `n_kv_head` key/value heads shared by groups of
    query heads."""
    B, T, C = x.shape
    nh, nkv, hd = c["n_head"], c["n_kv_head"], c["head_dim"]
    qkv = linear(x, w, f"{name}.qkv")  # (B, T, (nh + 2 nkv) hd)
    q, k, v = np.split(qkv, [nh * hd, (nh + nkv) * hd], axis=-1)
    q = q.reshape(B, T, nh, hd).transpose(0, 2, 1, 3)  # (B, nh, T, hd)
    k = k.reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)  # (B, nkv, T, hd)
    v = v.reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
    if c["position"] == "rope":
        cos, sin = t["rope_cos"][:T].astype(x.dtype), t["rope_sin"][:T].astype(x.dtype)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)  # head h: kv h // g
    scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hd))  # (B, nh, T, T)
    if c["position"] == "alibi":  # $-m_h (i - j)$
        pos = np.arange(T)
        scores = scores + -t["alibi_slopes"][:, None, None] * (pos[:, None] - pos[None, :])
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    y = softmax(scores) @ v  # (B, nh, T, hd)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)
    return linear(y, w, f"{name}.proj")
# --8<-- [end:attention]


def feed_forward(x: np.ndarray, w: dict[str, np.ndarray], name: str, c: dict) -> np.ndarray:
    u = linear(x, w, f"{name}.fc")  # (B, T, h), or (B, T, 2h) for the gated kinds
    if c["ffn"] == "relu":
        a = np.maximum(u, 0)
    elif c["ffn"] == "gelu":
        a = gelu(u, c["gelu_approximate"])
    else:
        gate, value = np.split(u, 2, axis=-1)
        act = 1 / (1 + np.exp(-gate))  # sigmoid: GLU
        a = (act if c["ffn"] == "glu" else gate * act) * value  # SwiGLU: SiLU(gate) * value
    return linear(a, w, f"{name}.proj")


# --8<-- [start:forward]
def forward(config: dict, arrays: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Logits `(B, T, vocab_size)` for token ids `idx` `(B, T)`, T at most `block_size`."""
    c = config["model"]
    w = {k[len("weights/"):]: v for k, v in arrays.items() if k.startswith("weights/")}
    t = {k[len("tables/"):]: v for k, v in arrays.items() if k.startswith("tables/")}
    if idx.shape[1] > c["block_size"]:
        raise ValueError(f"{idx.shape[1]} tokens exceed block_size={c['block_size']}")
    T = idx.shape[1]
    x = w["wte.weight"][idx]  # (B, T, C)
    if c.get("embed_scale"):
        x = x * np.sqrt(c["n_embd"]).astype(x.dtype)  # the 2017 Transformer's sqrt(C)
    if c["position"] == "learned":
        x = x + w["wpe.weight"][:T]
    elif c["position"] == "sinusoidal":
        x = x + t["pe"][:T].astype(x.dtype)
    pre = c["norm_placement"] == "pre"
    for i in range(c["n_layer"]):
        b = f"blocks.{i}"
        for sub, f in ((f"{b}.ln_1", lambda h, b=b: attention(h, w, t, f"{b}.attn", c)),
                       (f"{b}.ln_2", lambda h, b=b: feed_forward(h, w, f"{b}.ffn", c))):
            x = x + f(norm(x, w, sub, c)) if pre else norm(x + f(x), w, sub, c)
    if pre:
        x = norm(x, w, "ln_f", c)
    head = w["wte.weight"] if c["tie_weights"] else w["lm_head.weight"]
    return x @ head.T  # (B, T, V)
# --8<-- [end:forward]


def sample(config: dict, arrays: dict[str, np.ndarray], ids: list[int], max_new_tokens: int,
           temperature: float = 1.0, top_k: int | None = None, seed: int = 0) -> list[int]:
    """`ids` followed by `max_new_tokens` sampled ones (greedy when `temperature` is 0); the
    context is cropped to the last `block_size` tokens."""
    rng = np.random.default_rng(seed)
    ids = list(ids)
    for _ in range(max_new_tokens):
        context = np.asarray([ids[-config["model"]["block_size"]:]])
        logits = forward(config, arrays, context)[0, -1].astype(np.float64)  # (V,)
        if temperature == 0:
            ids.append(int(logits.argmax()))
            continue
        logits = logits / temperature
        if top_k is not None and top_k < logits.size:
            logits[logits < np.sort(logits)[-top_k]] = -np.inf
        p = softmax(logits)
        ids.append(int(rng.choice(p.size, p=p)))
    return ids


# ------------------------------------------------------------------------------ the tokenizer
class Tokenizer:
    """Nima's character or byte-level BPE tokenizer, from the exported `tokenizer.json`."""

    def __init__(self, spec: dict) -> None:
        self.kind = spec["kind"]
        if self.kind == "char":
            self.chars = spec["chars"]
            self.stoi = {ch: i for i, ch in enumerate(self.chars)}
            return
        self.byte_ids = spec["byte_ids"]
        self.vocab = {i: bytes.fromhex(h) for i, h in spec["vocab"]}
        self.ranks = {(a, b): r for r, (a, b, _) in enumerate(spec["merges"])}
        self.merged = [m for _, _, m in spec["merges"]]
        self.special = {s: i for s, i in spec["special_tokens"]}
        self.split = re.compile(spec["pattern"]) if spec["pattern"] else None
        alternatives = sorted(self.special, key=len, reverse=True)
        self.special_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") \
            if alternatives else None
        self.cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        if self.kind == "char":
            return [self.stoi[ch] for ch in text]
        out: list[int] = []
        parts = self.special_re.split(text) if self.special_re else [text]
        for k, part in enumerate(parts):
            if k % 2:  # a special token
                out.append(self.special[part])
                continue
            chunks = self.split.findall(part) if self.split else ([part] if part else [])
            for chunk in chunks:
                if chunk not in self.cache:
                    self.cache[chunk] = self.merge([self.byte_ids[b] for b in chunk.encode()])
                out.extend(self.cache[chunk])
        return out

    def merge(self, ids: list[int]) -> list[int]:
        """BPE: merge every occurrence of the pair of lowest rank, until none has a merge."""
        missing = len(self.merged)
        while len(ids) >= 2:
            ranks = [self.ranks.get(pair, missing) for pair in itertools.pairwise(ids)]
            best = min(ranks)
            if best == missing:
                break
            out, i = [], 0
            while i < len(ids):
                if i < len(ids) - 1 and ranks[i] == best:
                    out.append(self.merged[best])
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def decode(self, ids: list[int]) -> str:
        if self.kind == "char":
            return "".join(self.chars[i] for i in ids)
        special = {i: s.encode() for s, i in self.special.items()}
        return b"".join(self.vocab[i] if i in self.vocab else special[i] for i in ids).decode(
            "utf-8", errors="replace")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sample from a GPT exported by Nima, with "
                                                 "NumPy only.")
    parser.add_argument("npz", help="the file nima.export.export_npz wrote")
    parser.add_argument("--prompt", default="\n", help="text to continue (needs a tokenizer)")
    parser.add_argument("--prompt-ids", help="comma-separated token ids instead of --prompt "
                                             "(the output is then ids too)")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config, arrays, spec = load(args.npz)
    tokenizer = Tokenizer(spec) if spec else None
    if args.prompt_ids is not None:
        ids = [int(i) for i in args.prompt_ids.split(",")]
    elif tokenizer is None:
        sys.exit(f"{args.npz} holds no tokenizer: give --prompt-ids")
    else:
        ids = tokenizer.encode(args.prompt)
    out = sample(config, arrays, ids, args.max_new_tokens, args.temperature, args.top_k,
                 args.seed)
    ids_out = args.prompt_ids is not None or tokenizer is None  # ids in, ids out
    print(",".join(map(str, out)) if ids_out else tokenizer.decode(out))


if __name__ == "__main__":
    main()
