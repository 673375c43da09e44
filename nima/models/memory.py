r"""How much memory a GPT needs, estimated before it is built, and how much the machine has.

Training holds four things in float32 (4 bytes a number). With $P$ parameters
(`nima.models.budget.count_parameters`), $s$ optimizer slots per parameter (Adam's two moments,
SGD's momentum), a micro-batch of $B$ sequences of $T$ tokens, width $C$, FFN width $h$, $n_h$
heads, $L$ blocks and a vocabulary of $V$:

| what | numbers |
|---|---|
| parameters | $P$ |
| gradients | $P$ |
| optimizer state | $sP$ |
| activations kept for backward | $BT\,\bigl(L\,(8C + 2h + n_h T) + 2C + 2h + n_h T + 3V\bigr)$ |

The activation line is fitted to measurement. Each block keeps, per token, eight vectors of width
$C$ (its two norms' inputs and outputs, queries, keys and values, the attention output), two of
width $h$ (the FFN's inner activation before and after the nonlinearity; five for a gated FFN,
whose first projection is $2h$ wide) and one row of $T$ attention weights per head: the graph
holds only what a backward reads. The rest is the output (the final norm's input and output,
the logits) and what one op holds for a moment at the peak: an FFN's and an attention's
temporaries, the probabilities and the logits' gradient. With gradient checkpointing a block
keeps only its input, and one block at a time is recomputed. Against the peak allocations of a
training step on the NumPy backend, across the widths, depths, contexts, vocabularies and FFNs
tried, the estimate lies between 8% under and 20% over (24% over for ReLU, whose backward reads
less); `tests/models/test_memory.py` holds four shapes to within 25%.

Decoding holds the parameters, the key/value caches ($2 L B T n_{kv} d_h$ numbers) and one step's
logits.

Example:
    >>> need = training_bytes(GPTConfig.preset("baby"), batch_size=12)
    >>> format_bytes(need["total"])
    '46.5 MB'
"""

from __future__ import annotations

from pathlib import Path

from nima.models.budget import count_parameters, ffn_hidden
from nima.models.gpt import GPTConfig

__all__ = ["available_bytes", "format_bytes", "inference_bytes", "training_bytes"]

FLOAT = 4  # bytes of a float32


# --8<-- [start:training_bytes]
def training_bytes(config: GPTConfig, batch_size: int, optimizer_slots: int = 2) -> dict[str, int]:
    """Estimated bytes of one training step of `GPT(config)` on micro-batches of `batch_size`
    sequences: `parameters`, `gradients`, `optimizer`, `activations` and their `total`."""
    P = count_parameters(config)["total"]
    B, T, C, L = batch_size, config.block_size, config.n_embd, config.n_layer
    h, V = ffn_hidden(config), config.vocab_size
    inner = 5 * h if config.ffn in ("glu", "swiglu") else 2 * h  # the FFN's kept activations
    per_block = 8 * C + inner + config.n_head * T  # numbers kept per token and block
    # with checkpointing each block keeps only its input, and one is recomputed at a time
    blocks = L * C + per_block if config.gradient_checkpointing else L * per_block
    output = 2 * C + 2 * h + config.n_head * T + 3 * V  # the head, and one op's temporaries
    parts = {"parameters": P * FLOAT, "gradients": P * FLOAT,
             "optimizer": optimizer_slots * P * FLOAT,
             "activations": B * T * (blocks + output) * FLOAT}
    parts["total"] = sum(parts.values())
    return parts
# --8<-- [end:training_bytes]


def inference_bytes(config: GPTConfig, batch_size: int = 1) -> dict[str, int]:
    """Estimated bytes of decoding with `GPT(config)`: `parameters`, the key/value `caches`
    of `batch_size` rows at full context, one step's `logits`, and their `total`."""
    P = count_parameters(config)["total"]
    kv = (config.n_kv_head or config.n_head) * config.head_dim
    parts = {"parameters": P * FLOAT,
             "caches": 2 * config.n_layer * batch_size * config.block_size * kv * FLOAT,
             "logits": batch_size * config.vocab_size * FLOAT}
    parts["total"] = sum(parts.values())
    return parts


def available_bytes() -> int | None:
    """The memory this process can still take: Linux's `MemAvailable`, lowered to what the
    control group's `memory.max` leaves when that is smaller; None where neither is known."""
    try:
        fields = dict(line.split(":", 1) for line in
                      Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        free = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return max(free, 0)


def format_bytes(n: float) -> str:
    """`70_087_680` -> `'70.1 MB'` (powers of 1000)."""
    if abs(n) < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} PB"
