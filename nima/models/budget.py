r"""The parameter budget: count a `GPTConfig`'s parameters on paper, and search for configs.

With $V$ the vocabulary, $C$ the width (`n_embd`), $L$ the layers, $h$ the FFN's inner width,
$T$ the context (`block_size`), $K = n_\text{kv} d_h$ the width of the keys (and values; $K = C$
unless `n_kv_head < n_head`), and $b$, $b_a$, $b_f$ = 1 where there are biases (`bias`,
`attn_bias`, `mlp_bias`) else 0:

| part | parameters |
|---|---|
| token embedding `wte` | $VC$ |
| learned positions `wpe` | $TC$ (sinusoidal, RoPE, ALiBi: $0$) |
| attention, per block (`qkv`, `proj`) | $2C^2 + 2CK + (2C + 2K)b_a$ |
| FFN, per block, ReLU/GELU (`fc`, `proj`) | $2Ch + (h + C)b_f$ |
| FFN, per block, GLU/SwiGLU (`fc` holds gate and value) | $3Ch + (2h + C)b_f$ |
| norms, per block (two) | LayerNorm $2(C + Cb)$, RMSNorm $2C$ |
| final norm (pre-norm only) | LayerNorm $C + Cb$, RMSNorm $C$ |
| output head | $0$ if tied to `wte`, else $VC$ (never a bias) |

"reweight" attention adds $(C + b)\,n_h T$ per block (its layer `reweight`, $C \to n_h T$), and
"hybrid" attention $(C + b)\,n_h T + n_h$ (plus one learned mixing logit per head, unless
`hybrid_learn_alpha` is off).

The Deep Tree Echo parts, with $L_t$ tree levels, $S$ echo slots and recursion depth $R$:

| part, per block that has it | parameters |
|---|---|
| tree attention (in place of the attention) | content's $+ n_h (L_t + 1) + L_t C$ |
| memory attention (in place of the attention) | content's $+ n_h$ (gates) |
| echo layer (`initial`, `read`, `write`, `gate`) | $SC + 10C^2 + 9Cb_a$ + a norm |
| recursion (step embeddings; ACT's halting unit) | $RC$ $(+\,C + 1)$ |

(tree attention: $n_h (L_t + 1)$ branch gates, and $L_t C$ pooling queries with attention
pooling only).

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
from nima.nn.tree_attention import tree_levels


def ffn_hidden(config: GPTConfig) -> int:
    """The FFN's inner width $h$: `config.ffn_hidden`, or the `FeedForward` default."""
    if config.ffn_hidden is not None:
        return config.ffn_hidden
    return swiglu_hidden(config.n_embd) if config.ffn in ("glu", "swiglu") else 4 * config.n_embd


# --8<-- [start:attention_parameters]
def attention_parameters(config: GPTConfig) -> int:
    r"""One block's attention: $2C^2 + 2CK + (2C + 2K)b_a$ for content attention (`qkv`
    $C \times (C + 2K)$, `proj` $C \times C$, their biases; $K = C$ without grouped-query
    attention, so $4C^2 + 4Cb_a$). Reweight and hybrid attention add the layer `reweight`,
    $C \to n_h T$: $(C + b_a)\,n_h T$; the hybrid also learns one mixing logit per head, $n_h$."""
    C, nh, T = config.n_embd, config.n_head, config.block_size
    b = int(config.bias if config.attn_bias is None else config.attn_bias)
    K = (config.n_kv_head or nh) * config.head_dim  # the keys' (and the values') width
    params = C * (C + 2 * K) + C * C + (2 * C + 2 * K) * b  # qkv and proj
    if config.attention in ("reweight", "hybrid"):
        params += (C + b) * nh * T  # reweight: a row of T logits per head from each token
    if config.attention == "hybrid" and config.hybrid_learn_alpha:
        params += nh  # alpha_logit
    return params
# --8<-- [end:attention_parameters]


def deep_tree_echo_parameters(config: GPTConfig) -> dict[str, int]:
    r"""Per block that has it: `tree_attention` and `memory_attention` (each in place of the
    block's attention), `echo` (an echo layer with its norm), `recursion` (what wrapping the
    block in a `RecursiveBlock` adds). Their attentions are content attention ($K = C$)."""
    C, nh = config.n_embd, config.n_head
    b = int(config.bias if config.attn_bias is None else config.attn_bias)
    content = 4 * C * C + 4 * C * b  # qkv and proj
    levels = tree_levels(config.block_size, config.tree_chunk, config.tree_levels) \
        if config.tree_blocks else 0
    pooling = levels * C if config.tree_pooling == "attention" else 0  # a query per level
    cross = 4 * C * C + 4 * C * b  # q, kv (2C wide), proj: a cross-attention, read or write
    norm = C + C * int(config.bias) if config.norm == "layernorm" else C
    return {
        "tree_attention": content + nh * (levels + 1) + pooling,
        "memory_attention": content + nh,
        "echo": config.echo_slots * C + 2 * cross + 2 * C * C + C * b + norm,
        "recursion": config.recursion_depth * C + (C + 1 if config.act else 0),
    }


# --8<-- [start:count_parameters]
def count_parameters(config: GPTConfig) -> dict[str, int]:
    r"""The analytic breakdown of `GPT(config)`'s parameters (shared ones counted once).

    Returns a dict with the per-model parts `embedding`, `position`, `final_norm`, `head`, the
    per-block parts `attention`, `ffn`, `norms` and their sum `block`, the per-block parts of
    `deep_tree_echo_parameters`, then `blocks` (every block: $L \times$ `block` when no Deep Tree
    Echo part is on) and `total`. The formulas are in this module's docstring.

    Example: the `baby` preset ($V = 65$, $T = 64$, $C = 128$, $L = 4$, no biases) has
    $65 \cdot 128 + 64 \cdot 128 + 4\,(12 \cdot 128^2 + 2 \cdot 128) + 128 = 804{,}096$.
    """
    V, T, C, L = config.vocab_size, config.block_size, config.n_embd, config.n_layer
    b, h = int(config.bias), ffn_hidden(config)
    b_f = int(config.bias if config.mlp_bias is None else config.mlp_bias)
    gated = config.ffn in ("glu", "swiglu")
    norm = C + C * b if config.norm == "layernorm" else C  # one norm: gamma (and beta)
    parts = {
        "embedding": V * C,
        "position": T * C if config.position == "learned" else 0,
        "attention": attention_parameters(config),
        "ffn": 3 * C * h + (2 * h + C) * b_f if gated else 2 * C * h + (h + C) * b_f,
        "norms": 2 * norm,
    }
    parts["block"] = parts["attention"] + parts["ffn"] + parts["norms"]
    parts.update(deep_tree_echo_parameters(config))
    n = block_counts(config)
    parts["blocks"] = (L * parts["block"] + sum(
        n[kind] * parts[kind] for kind in ("tree_attention", "memory_attention", "echo",
                                           "recursion"))
        - (n["tree_attention"] + n["memory_attention"]) * parts["attention"])
    parts["final_norm"] = norm if config.norm_placement == "pre" else 0
    parts["head"] = 0 if config.tie_weights else V * C
    parts["total"] = (parts["embedding"] + parts["position"] + parts["blocks"]
                      + parts["final_norm"] + parts["head"])
    return parts
# --8<-- [end:count_parameters]


def block_counts(config: GPTConfig) -> dict[str, int]:
    """How many blocks have each part: `attention` (the kind `config.attention` names; content
    attention when that is tree), `tree_attention`, `memory_attention`, `echo`, `recursion`."""
    tree, memory = len(config.tree_blocks), len(config.memory_layers)
    return {"attention": config.n_layer - tree - memory, "tree_attention": tree,
            "memory_attention": memory, "echo": len(config.echo_layers),
            "recursion": len(config.recursive_blocks)}


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


# ------------------------------------------------------------------------- the budget explorer
EXPLORE_GRID: dict[str, list[int]] = {
    "n_layer": [2, 3, 4, 5, 6, 7, 8], "n_embd": [128, 160, 192, 224, 256], "head_dim": [32],
    "ffn_hidden": [512, 640, 768, 1024]}
"""The grid `nima params --explore` searches unless told otherwise."""


def parse_count(text: str) -> float:
    """`"2.5M"` -> 2.5e6, `"300K"`/`"300k"` -> 3e5, `"1.2B"` -> 1.2e9, `"1e6"` -> 1e6."""
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}.get(text[-1:].upper(), 1.0)
    number = text[:-1] if scale != 1.0 else text
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"not a parameter count: {text!r} (try 2.5M)") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"a parameter count must be >= 0, got {text!r}")
    return value


def parse_range(text: str) -> tuple[float, float]:
    """`"2.0M-2.5M"` -> (2e6, 2.5e6); the low end first."""
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError(f"a range looks like 2.0M-2.5M, got {text!r}")
    bounds = parse_count(low), parse_count(high)
    if bounds[0] > bounds[1]:
        raise ValueError(f"a range goes from low to high, got {text!r}")
    return bounds


def parse_grid_item(text: str) -> tuple[str, list[Any]]:
    """`"n_layer=2,4,6"` -> ("n_layer", [2, 4, 6]): a `GPTConfig` int field (or `head_dim`)
    and the positive values to try."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    ints = [f.name for f in dataclasses.fields(GPTConfig) if f.type in ("int", "int | None")]
    if not sep or name not in [*ints, "head_dim"]:
        raise ValueError(f"--grid takes FIELD=V1,V2,... with FIELD one of "
                         f"{', '.join(ints)} or head_dim; got {text!r}")
    try:
        parsed = [int(v) for v in values.split(",") if v]
    except ValueError:
        raise ValueError(f"--grid {name}: values must be integers, got {values!r}") from None
    if not parsed or min(parsed) < 1:
        raise ValueError(f"--grid {name}: values must be integers >= 1, got {values!r}")
    return name, parsed


def breakdown(config: GPTConfig) -> str:
    """The parameter count of `config` part by part, as a table with the totals under it."""
    parts = count_parameters(config)
    total, L, n = parts["total"], config.n_layer, block_counts(config)
    names = {"attention": "attention", "tree_attention": "tree attention",
             "memory_attention": "memory attention", "echo": "echo layers",
             "recursion": "recursion"}
    rows = [("token embedding", parts["embedding"]), ("positions", parts["position"])]
    rows += [(f"{name} ({n[kind]} x {parts[kind]:,})", n[kind] * parts[kind])
             for kind, name in names.items() if n[kind]]
    rows += [
        (f"feed-forward ({L} x {parts['ffn']:,})", L * parts["ffn"]),
        (f"block norms ({L} x {parts['norms']:,})", L * parts["norms"]),
        ("final norm", parts["final_norm"]), ("output head", parts["head"]),
    ]
    lines = table([{"part": name, "parameters": f"{n:,}", "share": f"{n / total:.1%}"}
                   for name, n in rows])
    return (f"{lines}\n\ntotal: {total:,} parameters = {size_mb(total, 'float32'):,.1f} MB in "
            f"float32, {size_mb(total, 'float16'):,.1f} MB in float16")


def explore_report(grid: Mapping[str, list[Any]], target_range: tuple[float, float],
                   base: GPTConfig, top: int) -> str:
    """`explore` as text: how many configurations fit, and a table of the `top` smallest."""
    found = explore(grid, target_range, base=base)
    low, high = target_range
    searched = ", ".join(f"{k} in {v}" for k, v in grid.items())
    rows = [summary_row(f"#{i + 1}", c) for i, (c, _) in enumerate(found[:top])]
    text = (f"{len(found)} configurations with {low:,.0f} to {high:,.0f} parameters (searched "
            f"{searched}; vocab {base.vocab_size}, context {base.block_size}):\n\n{table(rows)}")
    if len(found) > top:
        text += f"\n\n... and {len(found) - top} more (--top N to see them)"
    return text
