r"""The parameter budget: count a `GPTConfig`'s parameters on paper, and search for configs.

With $V$ the vocabulary, $C$ the width (`n_embd`), $L$ the layers, $h$ the FFN's inner width,
$T$ the context (`block_size`) and $b = 1$ if `bias` else $0$:

| part | parameters |
|---|---|
| token embedding `wte` | $VC$ |
| learned positions `wpe` | $TC$ (sinusoidal, RoPE, ALiBi: $0$) |
| attention, per block (`qkv`, `proj`) | $4C^2 + 4Cb$ |
| FFN, per block, ReLU/GELU (`fc`, `proj`) | $2Ch + (h + C)b$ |
| FFN, per block, GLU/SwiGLU (`fc` holds gate and value) | $3Ch + (2h + C)b$ |
| norms, per block (two) | LayerNorm $2(C + Cb)$, RMSNorm $2C$ |
| final norm (pre-norm only) | LayerNorm $C + Cb$, RMSNorm $C$ |
| output head | $0$ if tied to `wte`, else $VC$ (never a bias) |

"reweight" attention adds $(C + b)\,n_h T$ per block (its layer `reweight`, $C \to n_h T$), and
"hybrid" attention $(C + b)\,n_h T + n_h$ (plus one learned mixing logit per head).

GPT-2 small ($V = 50257$, $T = 1024$, $C = 768$, $L = 12$, $h = 4C$, biases, LayerNorm,
tied): $VC + TC + 12(12C^2 + 13C) + 2C = 124{,}439{,}808$.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from nima.models.gpt import GPTConfig
from nima.nn.feedforward import swiglu_hidden


def ffn_hidden(config: GPTConfig) -> int:
    """The FFN's inner width $h$: `config.ffn_hidden`, or the `FeedForward` default."""
    if config.ffn_hidden is not None:
        return config.ffn_hidden
    return swiglu_hidden(config.n_embd) if config.ffn in ("glu", "swiglu") else 4 * config.n_embd


# --8<-- [start:attention_parameters]
def attention_parameters(config: GPTConfig) -> int:
    r"""One block's attention: $4C^2 + 4Cb$ for content attention (`qkv` $C \times 3C$, `proj`
    $C \times C$, their biases). Reweight and hybrid attention add the layer `reweight`,
    $C \to n_h T$: $(C + b)\,n_h T$; the hybrid also learns one mixing logit per head, $n_h$."""
    C, b, nh, T = config.n_embd, int(config.bias), config.n_head, config.block_size
    params = 4 * C * C + 4 * C * b  # qkv and proj
    if config.attention != "content":
        params += (C + b) * nh * T  # reweight: a row of T logits per head from each token
    if config.attention == "hybrid":
        params += nh  # alpha_logit
    return params
# --8<-- [end:attention_parameters]


# --8<-- [start:count_parameters]
def count_parameters(config: GPTConfig) -> dict[str, int]:
    r"""The analytic breakdown of `GPT(config)`'s parameters (shared ones counted once).

    Returns a dict with the per-model parts `embedding`, `position`, `final_norm`, `head`, the
    per-block parts `attention`, `ffn`, `norms` and their sum `block`, then `blocks`
    ($L \times$ `block`) and `total`. The formulas are in this module's docstring.

    Example: the `tiny` preset ($V = 65$, $T = 64$, $C = 128$, $L = 4$, no biases) has
    $65 \cdot 128 + 64 \cdot 128 + 4\,(12 \cdot 128^2 + 2 \cdot 128) + 128 = 804{,}096$.
    """
    V, T, C, L = config.vocab_size, config.block_size, config.n_embd, config.n_layer
    b, h = int(config.bias), ffn_hidden(config)
    gated = config.ffn in ("glu", "swiglu")
    norm = C + C * b if config.norm == "layernorm" else C  # one norm: gamma (and beta)
    parts = {
        "embedding": V * C,
        "position": T * C if config.position == "learned" else 0,
        "attention": attention_parameters(config),
        "ffn": 3 * C * h + (2 * h + C) * b if gated else 2 * C * h + (h + C) * b,
        "norms": 2 * norm,
    }
    parts["block"] = parts["attention"] + parts["ffn"] + parts["norms"]
    parts["blocks"] = L * parts["block"]
    parts["final_norm"] = norm if config.norm_placement == "pre" else 0
    parts["head"] = 0 if config.tie_weights else V * C
    parts["total"] = (parts["embedding"] + parts["position"] + parts["blocks"]
                      + parts["final_norm"] + parts["head"])
    return parts
# --8<-- [end:count_parameters]


def size_mb(n: int, dtype: Any = np.float32) -> float:
    """Megabytes (10^6 bytes) that `n` parameters take in `dtype`: GPT-2 small in float32 is
    124,439,808 × 4 B ≈ 497.8 MB."""
    return n * np.dtype(dtype).itemsize / 1e6


def explore(grid: Mapping[str, Iterable[Any]], target_range: tuple[float, float],
            base: GPTConfig | None = None) -> list[tuple[GPTConfig, int]]:
    """Every combination of `grid`'s values whose parameter count lies in `target_range`.

    `grid` maps `GPTConfig` field names to the values to try, plus the pseudo-field
    `head_dim`, which sets `n_head = n_embd // head_dim` (heads do not change the count, so a
    fixed head size is the natural knob); the other fields come from `base` (default
    `GPTConfig()`). Combinations the config rejects (say `n_embd` not divisible by `n_head`)
    are skipped. Returns `(config, total)` pairs, smallest first; both ends of the range are
    included.

    Example: `explore({"n_layer": [4, 6], "n_embd": [128, 192], "head_dim": [32]},
    (2e6, 2.5e6), base=MICRO_BASE)` finds 6 layers of width 128 (2.09M with a $4C$ FFN).
    """
    base = GPTConfig() if base is None else base
    fields = {f.name for f in dataclasses.fields(GPTConfig)} | {"head_dim"}
    unknown = sorted(set(grid) - fields)
    if unknown:
        raise ValueError(f"explore: unknown GPTConfig field(s) {', '.join(unknown)}")
    if "head_dim" in grid and "n_head" in grid:
        raise ValueError("explore: give n_head or head_dim in the grid, not both")
    low, high = target_range
    if low > high:
        raise ValueError(f"explore: target_range must be (low, high) with low <= high, "
                         f"got {target_range}")
    names = list(grid)
    found = []
    for values in itertools.product(*(list(grid[name]) for name in names)):
        fields_ = dict(zip(names, values, strict=True))
        head_dim = fields_.pop("head_dim", None)
        if head_dim is not None:
            n_embd = fields_.get("n_embd", base.n_embd)
            if n_embd % head_dim:
                continue
            fields_["n_head"] = n_embd // head_dim
        try:
            config = dataclasses.replace(base, **fields_)
        except ValueError:
            continue
        total = count_parameters(config)["total"]
        if low <= total <= high:
            found.append((config, total))
    return sorted(found, key=lambda pair: pair[1])


# --8<-- [start:micro]
MICRO_BASE = GPTConfig(vocab_size=5000, block_size=512, n_layer=1, n_head=1, n_embd=8)
"""The fixed choices of the Micro-Transformer design (a study of how to spend about 2.4M parameters
on a small transformer): vocabulary 5000, context 512, learned positions, tied head, and GPT-2's
conventions (biases in every `Linear`, LayerNorm with a bias, pre-norm with a final LayerNorm)."""

MICRO_TRANSFORMER: dict[str, tuple[GPTConfig, str]] = {
    "Wide & Shallow": (
        dataclasses.replace(MICRO_BASE, n_embd=192, n_head=6, n_layer=4, ffn_hidden=512),
        "richest token vectors (39% of the budget in the embedding table); fewest sequential "
        "steps, so the fastest per token; least depth for composing features; narrow FFN (2.7C)",
    ),
    "Narrow & Deep": (
        dataclasses.replace(MICRO_BASE, n_embd=128, n_head=4, n_layer=6, ffn_hidden=768),
        "most layers for multi-step composition and the widest FFN (6C); smallest embedding "
        "(28%); slowest per token and the hardest to optimise; 128-dim stream can bottleneck",
    ),
    "Balanced": (
        dataclasses.replace(MICRO_BASE, n_embd=160, n_head=5, n_layer=5, ffn_hidden=640),
        "the standard 4C FFN ratio and 32-dim heads; middle of the road in width, depth, "
        "speed and embedding share (33%): the safe default to start from",
    ),
}
# --8<-- [end:micro]


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table from dicts that share their keys (the first row's order)."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def summary_row(name: str, config: GPTConfig) -> dict[str, Any]:
    """One line of a budget table: the shape, the counts and the size of a config."""
    parts = count_parameters(config)
    return {
        "config": name,
        "layers": config.n_layer,
        "heads": config.n_head,
        "embed": config.n_embd,
        "ffn": ffn_hidden(config),
        "embedding + positions": f"{parts['embedding'] + parts['position']:,}",
        "blocks": f"{parts['blocks']:,}",
        "total": f"{parts['total']:,}",
        "≈": f"{parts['total'] / 1e6:.2f}M",
        "float32 MB": f"{size_mb(parts['total']):.1f}",
    }


def micro_transformer_table() -> str:
    """The Micro-Transformer design's three configurations, counted, with their trade-offs."""
    rows = []
    for name, (config, tradeoffs) in MICRO_TRANSFORMER.items():
        rows.append({**summary_row(name, config), "trade-offs": tradeoffs})
    return table(rows)
