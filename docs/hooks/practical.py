r"""MkDocs hook: the numbers of docs/practical.md, worked out at build time on Nima's own models.

The page holds the marker `<!-- nima: compute table -->`; this hook replaces it with a table
computed from `nima.models.count_parameters` for the baby GPT, the three Micro-Transformer
shapes and GPT-2 small, and from the committed Shakespeare benchmark
(`benchmarks/results/shakespeare.json`, milliseconds per training step on the machine it
records), so the table cannot drift from the code or the measurement. A missing marker fails
the build.

Per token, a forward pass costs about $2N$ floating-point operations (a multiply and an add per
weight of the matrix products) plus $4 L T C$ for the attention scores and their weighted sum
(all $T$ keys: the causal mask's zeros are computed too); the backward costs twice the
forward. Training on $D$ tokens thus costs $C \approx 6 N D + 12 L T C D$.
"""

import json
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

from nima.models import GPTConfig, count_parameters
from nima.models.budget import MICRO_TRANSFORMER

PAGE = "practical.md"
MARKER = "<!-- nima: compute table -->"
SHAKESPEARE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "shakespeare.json"
BABY_STEPS, BABY_TOKENS_PER_STEP = 2000, 12 * 64  # configs/shakespeare_char.yaml
TOKENS_PER_PARAMETER = 20  # Chinchilla's compute-optimal ratio


def flops_per_token(config: GPTConfig) -> float:
    """Training FLOPs per token: $6N$ over the weights that multiply, plus $12 L T C$ of
    attention (at full context)."""
    parts = count_parameters(config)
    weights = parts["blocks"] + config.vocab_size * config.n_embd  # the head: tied or not
    return 6 * weights + _attention(config)


def _attention(config: GPTConfig) -> float:
    return 12 * config.n_layer * config.block_size * config.n_embd


def _measured_rate() -> tuple[float, float]:
    """(FLOP/s, ms per step) of the baby GPT's training steps in the committed benchmark."""
    runs = json.loads(SHAKESPEARE.read_text(encoding="utf-8"))["nima"]
    ms = sorted(run["step_ms"] for run in runs)[len(runs) // 2]
    per_step = flops_per_token(GPTConfig.preset("baby")) * BABY_TOKENS_PER_STEP
    return per_step / (ms / 1e3), ms


def _scientific(x: float) -> str:
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"${mantissa} \\times 10^{{{int(exponent)}}}$"


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:.0f} s"


def compute_table() -> str:
    rate, ms = _measured_rate()
    models = [("baby GPT (`baby`, as trained: 2000 steps)", GPTConfig.preset("baby"),
               BABY_STEPS * BABY_TOKENS_PER_STEP),
              ("baby GPT (`baby`), compute-optimal", GPTConfig.preset("baby"), None)]
    models += [(f"Micro-Transformer, {name}", config, None)
               for name, (config, _) in MICRO_TRANSFORMER.items()]
    models.append(("GPT-2 small (`small`)", GPTConfig.preset("small"), None))
    lines = ["| model | parameters $N$ | tokens $D$ | $D / N$ | training FLOPs | "
             "attention's share | time at the measured rate |",
             "|---|---|---|---|---|---|---|"]
    for name, config, tokens in models:
        n = count_parameters(config)["total"]
        tokens = tokens or TOKENS_PER_PARAMETER * n
        per_token = flops_per_token(config)
        attention = _attention(config) / per_token
        lines.append(f"| {name} | {n:,} | {tokens:,} | {tokens / n:.1f} | "
                     f"{_scientific(per_token * tokens)} | {attention:.0%} | "
                     f"{_duration(per_token * tokens / rate)} |")
    lines += ["", f"The rate is the baby GPT's: {ms:.1f} ms per training step (the median of "
              f"the committed Shakespeare runs) for {BABY_TOKENS_PER_STEP} tokens of "
              f"{flops_per_token(GPTConfig.preset('baby')):,.0f} FLOPs each, "
              f"{rate / 1e9:.0f} GFLOP/s. Larger models run their matrix products faster, so "
              "their times are upper bounds on this machine."]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE}: the marker {MARKER!r} for the compute table is missing")
    return markdown.replace(MARKER, compute_table())
