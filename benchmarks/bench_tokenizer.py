"""Encoding speed of the byte-level BPE tokenizer: tokens/s on tiny Shakespeare.

A GPT-2-style tokenizer (1024 ids, GPT-2's pre-split) is trained with Nima on the first 200,000
characters of tiny Shakespeare, written as GPT-2's `vocab.json` + `merges.txt` and read back
with `ByteBPETokenizer.from_files`; then the whole corpus (1.1 MB, most of it unseen in training)
is encoded by:

* **plain loop** — the merge loop Nima used before: count every pair of the chunk with
  `get_stats`, take the one of lowest rank with `min(..., key=lambda ...)`, `merge`, repeat;
* **fast loop** — `bpe_merge_loop`: ranks of all pairs in one `map` over the rank dict, `min`,
  and an in-place splice when the pair occurs once;

each without and with the cache of encoded chunks (a word seen before costs one dict lookup),
and **pre-split only** (the regex alone, the floor of any loop here). Hugging Face's compiled
tokenizer (Rust, through `transformers`' `GPT2Tokenizer` from the same two files) runs as an
outside reference when installed. Every contestant's
ids are checked equal to `ByteBPETokenizer.encode`'s (and the Rust tokenizer's).

Run: `python benchmarks/bench_tokenizer.py [--quick]` (`--quick`: 100 KB corpus, 1 round);
writes `benchmarks/results/tokenizer.md` and `tokenizer.json` (atomically).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from timing import publish, race

from nima.data import ByteBPETokenizer, get_stats, merge
from nima.data.tokenizers import bpe_merge_loop

CORPUS = Path(__file__).resolve().parents[1] / "data" / "tinyshakespeare.txt"


def plain_merge_loop(ids: list[int], ranks: dict[tuple[int, int], int],
                     merged: list[int]) -> list[int]:
    """The loop `bpe_merge_loop` replaces (Nima's before, as minbpe's), with `bpe_merge_loop`'s
    arguments: count the pairs, take the one of lowest rank, merge it everywhere, repeat."""
    while len(ids) >= 2:
        stats = get_stats(ids)
        pair = min(stats, key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = merge(ids, pair, merged[ranks[pair]])
    return ids


def encoder(tok: ByteBPETokenizer, loop: Callable[..., list[int]] | None,
            cached: bool) -> Callable[[str], list[int]]:
    """`text -> ids` with the given merge loop (None: pre-split only), with or without a fresh
    chunk cache per call."""
    byte_id = tok.byte_ids.__getitem__

    def encode(text: str) -> list[int]:
        out: list[int] = []
        cache: dict[str, list[int]] = {}
        for chunk in tok._chunks(text):
            if loop is None:
                out.append(len(chunk))
                continue
            ids = cache.get(chunk) if cached else None
            if ids is None:
                ids = loop(list(map(byte_id, chunk.encode("utf-8"))), tok._ranks, tok._merged)
                if cached:
                    cache[chunk] = ids
            out.extend(ids)
        return out

    return encode


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    get = {key: value.strip() for key, value in fields.items()}.get
    return (f"{get('Model name', '?')} (family {get('CPU family', '?')}, model "
            f"{get('Model', '?')}), {get('CPU(s)', '?')} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 KB corpus, one round")
    args = parser.parse_args()
    corpus = CORPUS.read_text(encoding="utf-8")
    text = corpus[:100_000] if args.quick else corpus
    trained = ByteBPETokenizer.train(corpus[:200_000], vocab_size=1024, pattern="gpt2")
    trained.register_special_tokens({"<|endoftext|>": 1024})
    with tempfile.TemporaryDirectory() as folder:
        vocab, merges = Path(folder) / "vocab.json", Path(folder) / "merges.txt"
        trained.save_files(vocab, merges)
        tok = ByteBPETokenizer.from_files(vocab, merges)
        reference = tok.encode(text)
        contestants = {
            "plain loop": encoder(tok, plain_merge_loop, cached=False),
            "plain loop + chunk cache (before)": encoder(tok, plain_merge_loop, cached=True),
            "fast loop": encoder(tok, bpe_merge_loop, cached=False),
            "fast loop + chunk cache (now)": encoder(tok, bpe_merge_loop, cached=True),
        }
        try:
            from transformers import GPT2Tokenizer

            rust = GPT2Tokenizer(vocab=str(vocab), merges=str(merges)).backend_tokenizer
            contestants["Hugging Face tokenizers (Rust)"] = lambda t: rust.encode(t).ids
        except ImportError:
            pass
        for name, encode in contestants.items():
            assert encode(text) == reference, f"{name} gives other ids"
        contestants["pre-split only"] = encoder(tok, None, cached=False)
        runs = {name: (lambda f=f: f(text)) for name, f in contestants.items()}
        seconds = race(runs, budget_s=20 if args.quick else 120, rounds=1 if args.quick else 3)

    n_tokens, base = len(reference), seconds["plain loop"]
    lines = [
        f"**Encoding tiny Shakespeare** ({len(text):,} characters, {n_tokens:,} tokens) with a "
        f"1024-id GPT-2-style BPE read from vocab.json + merges.txt",
        "",
        f"Machine: {cpu()}; Python {platform.python_version()}. Medians of "
        f"{1 if args.quick else 3} alternating rounds; every loop gives the same ids.",
        "",
        "| encoder | seconds | tokens/s | speed-up vs plain loop |",
        "|---|---|---|---|",
    ]
    for name, s in seconds.items():
        lines.append(f"| {name} | {s:.3f} | {n_tokens / s:,.0f} | {base / s:.1f}x |")
    before = seconds["plain loop + chunk cache (before)"]
    now = seconds["fast loop + chunk cache (now)"]
    lines += ["", f"With the chunk cache, the fast loop encodes {before / now:.2f}x as fast as the "
              f"plain one; alone, on every chunk, {base / seconds['fast loop']:.2f}x. The "
              f"pre-split row encodes nothing: it is the regex alone, the floor of every "
              f"encoder here."]
    data = {"characters": len(text), "tokens": n_tokens, "seconds": seconds, "cpu": cpu()}
    publish("tokenizer", lines, {**data, "quick": args.quick})


if __name__ == "__main__":
    main()
