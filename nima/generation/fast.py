r"""One decoding step on arrays: the GPT's forward without the autograd machinery.

A cached decoding step pushes one new token per row through the model. Every matrix is then
`(B, 1, C)`, the arithmetic takes microseconds, and the time goes to Python: `GPT.forward`
records ~130 ops per token, each through its wrapper's checks, `Function.apply` and the kernel
dispatch — about 2 ms a token for the baby GPT, where PyTorch's whole uncached step takes 1.4.
Decoding needs no graph, so `decode_step` runs the same forward straight on the parameters'
arrays, about fifteen NumPy calls a block, reusing Nima's own pieces where they are arrays
already: the layer-norm and RMSNorm references of `nima.kernels.layernorm`, the causal softmax
reference, `Gelu.forward`, the position module. Per block, with $h = \operatorname{N}_1(x)$:

$$[q, k, v] = h W_{qkv}^\top, \quad
x \leftarrow x + \operatorname{softmax}_\text{causal}\!\Bigl(\frac{q [K_\text{cache}; k]^\top}
{\sqrt{d_h}}\Bigr) [V_\text{cache}; v]\, W_O^\top, \quad
x \leftarrow x + \operatorname{FFN}(\operatorname{N}_2(x)).$$

It covers the GPTs most configs build — pre-norm, content attention, learned or sinusoidal
positions, ReLU or GELU feed-forward — and `supports` says so; anything else (RoPE, ALiBi,
gated FFNs, hybrid attention, post-norm, a wrapper such as `LearnedInference`) decodes through
`GPT.forward`. The tests check that both give the same logits, token after token.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima.autograd import Context
from nima.kernels.attention import causal_softmax_forward_numpy
from nima.kernels.layernorm import layer_norm_forward_numpy, rms_norm_forward_numpy
from nima.nn.attention import KVCache
from nima.nn.normalization import LayerNorm
from nima.ops.elementwise import Gelu

__all__ = ["decode_step", "supports"]


def supports(model: Any) -> bool:
    """Whether `decode_step` computes exactly `model.forward` for this model."""
    from nima.models.gpt import GPT

    c = getattr(model, "config", None)
    return (type(model) is GPT and c.attention == "content" and c.norm_placement == "pre"
            and c.position in ("learned", "sinusoidal") and c.ffn in ("gelu", "relu"))


def _norm(module: Any, x: np.ndarray) -> np.ndarray:
    w = module.weight.data
    if isinstance(module, LayerNorm):
        b = None if module.bias is None else module.bias.data
        return layer_norm_forward_numpy(x, w, b, module.eps)[0]
    return rms_norm_forward_numpy(x, w, module.eps)[0]


def _linear(module: Any, x: np.ndarray) -> np.ndarray:
    y = x @ module.weight.data.T  # (B, T, out)
    return y if module.bias is None else y + module.bias.data


# --8<-- [start:decode_step]
def decode_step(model: Any, idx: np.ndarray, caches: list[KVCache]) -> np.ndarray:
    """Logits `(B, T, V)` for the new tokens `idx` `(B, T)`, appending their keys and values to
    `caches` — what `model.forward(idx, caches=caches)[0]` gives, without recording a graph.

    The model must be in eval mode (no dropout) and `supports(model)` true.
    """
    T = idx.shape[1]
    offset = caches[0].length
    x = model.wte.weight.data[idx]  # (B, T, C)
    x = x + model.wpe(T, offset).data  # positions offset .. offset+T-1
    for block, cache in zip(model.blocks, caches, strict=True):
        attn, ffn = block.attn, block.ffn
        B, _, C = x.shape
        nh, hd = attn.n_head, attn.head_dim
        qkv = _linear(attn.qkv, _norm(block.ln_1, x))  # (B, T, 3C)
        q, k, v = qkv.reshape(B, T, 3, nh, hd).transpose(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hd)
        if cache.k is not None:
            k = np.concatenate([cache.k, k], axis=2)  # (B, nh, S, hd)
            v = np.concatenate([cache.v, v], axis=2)
        cache.k, cache.v = np.ascontiguousarray(k), np.ascontiguousarray(v)
        scores = (q @ k.transpose(0, 1, 3, 2)) * x.dtype.type(hd**-0.5)  # (B, nh, T, S)
        y = causal_softmax_forward_numpy(scores, offset) @ v  # (B, nh, T, hd)
        x = x + _linear(attn.proj, y.transpose(0, 2, 1, 3).reshape(B, T, C))
        h = _linear(ffn.fc, _norm(block.ln_2, x))  # (B, T, hidden)
        h = np.maximum(h, 0) if ffn.kind == "relu" else Gelu.forward(Context(), h,
                                                                      ffn.approximate)
        x = x + _linear(ffn.proj, h)
    return _linear(model.lm_head, _norm(model.ln_f, x))  # (B, T, V)
# --8<-- [end:decode_step]
