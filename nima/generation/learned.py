r"""Learned inference parameters: the knobs of decoding, trained instead of tuned.

`LearnedInference` wraps a `GPT` and holds five groups of raw, unconstrained parameters, each
mapped to its allowed range by a smooth function, so that any gradient step keeps them valid:

$$T = \operatorname{softplus}(a) > 0, \qquad p = \sigma(b) \in (0, 1), \qquad
r = 1 + \operatorname{softplus}(c) > 1,$$

$$\alpha = \operatorname{softmax}(w) \in \Delta^{L} \text{ (a mix of } h_0, \dots, h_L),
\qquad g_{\ell h} = 2\,\sigma(\gamma_{\ell h}) \in (0, 2) \text{ (a gate per head)}.$$

They are trained on held-out text through a differentiable stand-in for what sampling does
with them (`inference_objective`): the repetition penalty on tokens already in the context,
the temperature, a *soft* nucleus, then the cross-entropy of the next token:

$$\mathcal L = -\log \operatorname{softmax}\big(u + \log m\big)_y, \qquad
u = \frac{\operatorname{pen}_r(z)}{T}, \qquad
m_v = \sigma\!\left(\frac{p - c_v}{\tau}\right),$$

where $c_v$ is the probability mass (under $\operatorname{softmax}(u)$) of the tokens ranked
above $v$. The hard nucleus keeps $v$ exactly when $c_v < p$; $m$ is that step function
smoothed over a width $\tau$ of cumulative mass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.autograd import Context, Function, no_grad
from nima.models.gpt import GPT, GPTConfig
from nima.nn.module import Module
from nima.nn.parameter import Parameter
from nima.ops.elementwise import sigmoid, softplus
from nima.ops.nn import softmax
from nima.ops.shape import stack
from nima.optim.adam import AdamW

__all__ = ["LearnedInference", "cumulative_mass_before", "fit_inference_params",
           "held_out_nll", "inference_objective", "penalize_seen", "seen_tokens",
           "soft_nucleus_log_mask"]


# --8<-- [start:mass_before]
class MassBefore(Function):
    r"""$c_v = \sum_{j \prec v} p_j$: the mass of the entries ranked above $v$ along the last axis.

    The ranking $\prec$ is by decreasing value, ties broken by index, computed in the forward and
    then held fixed (a permutation $\pi$ that sorts $p$). With $s_k = p_{\pi(k)}$ sorted, the
    forward is an *exclusive* cumulative sum, $c_{\pi(k)} = \sum_{i<k} s_i$, and since
    $s_i$ feeds every $c_{\pi(k)}$ with $k > i$ the backward is the reverse exclusive sum

    $$\bar p_{\pi(i)} = \sum_{k > i} \bar c_{\pi(k)}.$$

    Holding $\pi$ fixed is exact wherever no two entries are equal; where two swap ranks $c$
    jumps, so the derivative exists almost everywhere (as for `max` or `sort`). Example:
    `p = [0.2, 0.5, 0.3]` ranks `1, 2, 0`, so `c = [0.8, 0.0, 0.5]`.
    """

    @staticmethod
    def forward(ctx: Context, p: np.ndarray) -> np.ndarray:
        order = np.argsort(-p, axis=-1, kind="stable")  # (..., V): pi, largest first
        s = np.take_along_axis(p, order, axis=-1)  # (..., V): sorted, decreasing
        before = np.zeros_like(s)
        np.cumsum(s[..., :-1], axis=-1, out=before[..., 1:])  # (..., V): sum_{i<k} s_i
        c = np.empty_like(s)
        np.put_along_axis(c, order, before, axis=-1)  # back to vocabulary order
        ctx.save_for_backward(order)
        return c

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (order,) = ctx.saved_tensors
        g = np.take_along_axis(grad, order, axis=-1)  # (..., V): c-bar in sorted order
        after = np.zeros_like(g)
        np.cumsum(g[..., :0:-1], axis=-1, out=after[..., -2::-1])  # sum_{k>i} g_k
        out = np.empty_like(g)
        np.put_along_axis(out, order, after, axis=-1)
        return out
# --8<-- [end:mass_before]


def cumulative_mass_before(probs: Tensor) -> Tensor:
    """`probs` `(..., V)` -> `(..., V)`: for each entry, the sum of the entries ranked above it
    (see `MassBefore`); differentiable, with the ranking held fixed."""
    if not isinstance(probs, Tensor) or probs.ndim < 1 or probs.dtype.kind != "f":
        raise ValueError(f"cumulative_mass_before: probs must be a float Tensor (..., V), got "
                         f"{type(probs).__name__} {getattr(probs, 'shape', None)}")
    return MassBefore.apply(probs)


def seen_tokens(idx: np.ndarray, vocab_size: int) -> np.ndarray:
    """`(B, T)` ids -> bool `(B, T, V)`, True at `[b, t, v]` when token `v` occurs in
    `idx[b, :t + 1]`: the context the prediction at position `t` is made from.

    Example: `idx = [[2, 0, 2]]`, `V = 3` -> rows `{2}`, `{0, 2}`, `{0, 2}`.
    """
    idx = np.asarray(idx)
    if idx.ndim != 2 or idx.dtype.kind not in "iu" or (idx.size and (
            idx.min() < 0 or idx.max() >= vocab_size)):
        raise ValueError(f"seen_tokens: idx must be ids in [0, {vocab_size}) of shape (B, T), "
                         f"got {idx.dtype} {idx.shape}")
    B, T = idx.shape
    present = np.zeros((B, T, vocab_size), dtype=bool)
    present[np.arange(B)[:, None], np.arange(T)[None, :], idx] = True  # (B, T, V): token at t
    return np.logical_or.accumulate(present, axis=1)  # (B, T, V): any of tokens 0..t


# --8<-- [start:penalty]
def penalize_seen(logits: Tensor, seen: np.ndarray, penalty: Tensor | float) -> Tensor:
    r"""CTRL's repetition penalty on the tokens in `seen`, differentiable in $r$ and $z$:

    $$z'_v = \begin{cases} z_v / r & v \text{ seen},\ z_v > 0 \\ z_v\, r & v \text{ seen},\
    z_v \le 0 \\ z_v & \text{otherwise} \end{cases}
    \qquad\Longleftrightarrow\qquad z' = z \odot \big(1 + D\,(r^{-1} - 1) + U\,(r - 1)\big),$$

    with the constant masks $D = [\text{seen} \wedge z > 0]$ and $U = [\text{seen} \wedge
    z \le 0]$: for $r > 1$ a seen token always loses probability.
    """
    positive = logits.data > 0  # (B, T, V)
    down = Tensor((seen & positive).astype(logits.dtype))  # (B, T, V): divided by r
    up = Tensor((seen & ~positive).astype(logits.dtype))  # (B, T, V): multiplied by r
    return logits * (1 + down * (1 / penalty - 1) + up * (penalty - 1))  # (B, T, V)
# --8<-- [end:penalty]


# --8<-- [start:soft_nucleus]
def soft_nucleus_log_mask(logits: Tensor, top_p: Tensor | float, width: float) -> Tensor:
    r"""$\log m_v$, the log of a soft nucleus (top-p) keep-mask over the vocabulary:

    $$m_v = \sigma\!\left(\frac{p - c_v}{\tau}\right), \qquad
    \log m_v = -\operatorname{softplus}\!\left(\frac{c_v - p}{\tau}\right),$$

    with $c_v$ the mass of the tokens ranked above $v$ under $\operatorname{softmax}(z)$
    (`cumulative_mass_before`). Nucleus sampling keeps $v$ iff $c_v < p$ — the smallest set
    of top tokens whose mass reaches $p$ — i.e. $m_v = [p - c_v > 0]$; the sigmoid replaces
    that step by a ramp of width $\tau$ (`width`), which recovers it as $\tau \to 0$.
    Renormalising the kept probabilities is adding $\log m$ to the logits:
    $q \propto e^{z} m = e^{z + \log m}$.
    """
    before = cumulative_mass_before(softmax(logits, dim=-1))  # (B, T, V): c_v
    return -softplus((before - top_p) / width)  # (B, T, V): log m_v <= 0
# --8<-- [end:soft_nucleus]


# --8<-- [start:objective]
def inference_objective(logits: Tensor, idx: np.ndarray, targets: np.ndarray,
                        temperature: Tensor | float, top_p: Tensor | float,
                        penalty: Tensor | float, width: float = 0.02,
                        ignore_index: int = -100) -> Tensor:
    r"""Mean NLL of `targets` under the distribution decoding would sample from:

    $$\mathcal L = -\frac1N \sum_{b,t} \log \operatorname{softmax}\big(u + \log m\big)_{y_{bt}},
    \qquad u = \operatorname{pen}_r(z) / T,$$

    penalty first (on the tokens of `idx[b, :t+1]`), then temperature, then the soft nucleus
    (`soft_nucleus_log_mask` of width $\tau$). With $r = 1$, $p \to 1$, $\tau \to 0$ it is the
    tempered NLL $-\log \operatorname{softmax}(z / T)_y$.

    Args:
        logits: `(B, T, V)` the model's raw logits $z$.
        idx: `(B, T)` the input ids (for the penalty's "seen" sets).
        targets: `(B, T)` the next tokens; `ignore_index` is skipped.
        temperature: $T$ (a scalar tensor to learn it, or a float).
        top_p: $p$, likewise.
        penalty: $r$, likewise.
        width: $\tau$, the soft nucleus's width in cumulative probability.
    """
    if logits.ndim != 3 or np.shape(idx) != logits.shape[:2]:
        raise ValueError(f"inference_objective: logits must be (B, T, V) and idx (B, T), got "
                         f"{logits.shape} and {np.shape(idx)}")
    if not width > 0:
        raise ValueError(f"inference_objective: width must be > 0, got {width}")
    z = penalize_seen(logits, seen_tokens(idx, logits.shape[-1]), penalty)  # (B, T, V)
    u = z / temperature  # (B, T, V)
    u = u + soft_nucleus_log_mask(u, top_p, width)  # (B, T, V): renormalised nucleus
    return F.cross_entropy(u, targets, ignore_index=ignore_index)
# --8<-- [end:objective]


def _head_gate(gate: Tensor, head_dim: int) -> Callable[[Module, tuple[Any, ...]], Tensor]:
    """A forward pre-hook for an attention's `proj`: its input `(B, T, nh hd)` holds the heads
    side by side, so scaling head $h$'s channels by $g_h$ scales that head's output."""

    def hook(module: Module, args: tuple[Any, ...]) -> Tensor:
        y = args[0]
        B, T, C = y.shape
        heads = y.view(B, T, C // head_dim, head_dim)  # (B, T, nh, hd)
        return (heads * gate.reshape(-1, 1)).reshape(B, T, C)  # (B, T, C): head h times $g_h$

    return hook


def _softplus_inverse(y: float) -> float:
    r"""$a$ with $\operatorname{softplus}(a) = y$: $a = y + \ln(1 - e^{-y})$."""
    return y + math.log(-math.expm1(-y))


class LearnedInference(Module):
    r"""A `GPT` with learned temperature, top-p, repetition penalty, layer mix and head gates.

    Parametrizations (raw parameter -> value), each smooth and onto its range so that no
    update can leave it, each with a nonzero gradient everywhere:

    * temperature $T = \operatorname{softplus}(a)$: positive, and linear for large $a$ (unlike
      $e^a$, a step changes $T$ by at most the step);
    * top-p $p = \sigma(b)$, in $(0, 1)$;
    * repetition penalty $r = 1 + \operatorname{softplus}(c)$, above 1;
    * layer weights $\alpha = \operatorname{softmax}(w)$ over $L + 1$ states, the embedding
      output $h_0$ and each block's output $h_1 \dots h_L$; the head reads
      $\sum_\ell \alpha_\ell h_\ell$ instead of $h_L$;
    * head gates $g = 2\sigma(\gamma)$, `(n_layer, n_head)`: head $h$ of layer $\ell$ is
      multiplied by $g_{\ell h}$ before the output projection. $\gamma = 0$ gives exactly
      $g = 1$ (so the model starts unchanged) with the largest slope, $\sigma'(0) \cdot 2 =
      \tfrac12$; the gate can switch a head off ($\to 0$) or double it ($\to 2$) but never
      flip its sign or blow it up, which $e^\gamma$ or a free scale could.

    Initial state: $T$, $p$, $r$ as given (default 1, 0.99, 1.001: the plain model, as close
    as the open ranges allow), every gate exactly 1, and $\alpha$ = `last_layer_weight` on
    $h_L$ with the rest, $1 - \alpha_L$, shared equally by $h_0 \dots h_{L-1}$. A softmax
    cannot reach a vertex, so with the default 0.999 the initial logits differ from the plain
    model's by a mix of 0.1% of the earlier states; with the layer logits set to
    $(-\infty, \dots, -\infty, 0)$ they are bit-identical (the tests check both).

    The forward follows the decoding protocol of `nima.generation.generate`:
    `forward(idx, targets=None, attention_mask=None, caches=None) -> (logits, loss)`, where
    `logits` are the gated, mixed model's raw logits (decoding applies $T$, $p$, $r$ itself)
    and `loss` is `inference_objective` with this module's parameters. It stores every block's
    output (no gradient checkpointing: the gates act through hooks that exist only during
    `forward`).

    Example:
        >>> learned = LearnedInference(GPT(GPTConfig.preset("baby")))
        >>> fit_inference_params(learned, val_batches, steps=200)   # doctest: +SKIP
        >>> learned.get_inference_params()["temperature"]             # doctest: +SKIP
    """

    def __init__(self, model: GPT, *, temperature: float = 1.0, top_p: float = 0.99,
                 repetition_penalty: float = 1.001, last_layer_weight: float = 0.999,
                 nucleus_width: float = 0.02) -> None:
        super().__init__()
        name = "LearnedInference"
        if not isinstance(model, GPT):
            raise TypeError(f"{name}: model must be a GPT, got {type(model).__name__}")
        for label, value, ok in [("temperature", temperature, temperature > 0),
                                 ("top_p", top_p, 0 < top_p < 1),
                                 ("repetition_penalty", repetition_penalty,
                                  repetition_penalty > 1),
                                 ("last_layer_weight", last_layer_weight,
                                  0 < last_layer_weight < 1),
                                 ("nucleus_width", nucleus_width, nucleus_width > 0)]:
            if not ok:
                raise ValueError(f"{name}: {label}={value!r} is outside its range (temperature "
                                 f"> 0, 0 < top_p < 1, repetition_penalty > 1, 0 < "
                                 f"last_layer_weight < 1, nucleus_width > 0)")
        self.model = model
        self.nucleus_width = nucleus_width
        L, nh = model.config.n_layer, model.config.n_head
        dtype = model.wte.weight.dtype
        # --8<-- [start:init]
        # $a = \operatorname{softplus}^{-1}(T)$, $b = \operatorname{logit}(p)$,
        # $c = \operatorname{softplus}^{-1}(r - 1)$
        self.raw_temperature = Parameter(np.array(_softplus_inverse(temperature), dtype))
        self.raw_top_p = Parameter(np.array(math.log(top_p / (1 - top_p)), dtype))
        self.raw_penalty = Parameter(np.array(_softplus_inverse(repetition_penalty - 1), dtype))
        # $w_L - w_\ell = \ln\frac{\alpha_L L}{1 - \alpha_L}$ puts $\alpha_L$ on $h_L$
        w = np.zeros(L + 1, dtype)
        w[-1] = math.log(last_layer_weight * L / (1 - last_layer_weight))
        self.layer_logits = Parameter(w)  # (L + 1,): h_0 (embeddings), h_1 .. h_L
        # (L, nh): 2 sigma(0) = 1
        self.gate_logits = Parameter(np.zeros((L, nh), dtype), decay=False)
        # --8<-- [end:init]

    # --8<-- [start:constraints]
    def temperature(self) -> Tensor:
        r"""$T = \operatorname{softplus}(a) = \ln(1 + e^a) > 0$."""
        return softplus(self.raw_temperature)

    def top_p(self) -> Tensor:
        r"""$p = \sigma(b) = 1 / (1 + e^{-b}) \in (0, 1)$."""
        return sigmoid(self.raw_top_p)

    def repetition_penalty(self) -> Tensor:
        r"""$r = 1 + \operatorname{softplus}(c) > 1$."""
        return 1 + softplus(self.raw_penalty)

    def layer_weights(self) -> Tensor:
        r"""$\alpha = \operatorname{softmax}(w)$, `(L + 1,)`: $\alpha_\ell \ge 0$,
        $\sum_\ell \alpha_\ell = 1$."""
        return softmax(self.layer_logits, dim=0)

    def head_weights(self) -> Tensor:
        r"""$g = 2\sigma(\gamma) \in (0, 2)$, `(L, n_head)`."""
        return 2 * sigmoid(self.gate_logits)
    # --8<-- [end:constraints]

    @property
    def config(self) -> GPTConfig:
        """The wrapped model's config (decoding reads `block_size` from it)."""
        return self.model.config

    def inference_parameters(self) -> list[Parameter]:
        r"""The raw inference parameters $a, b, c, w, \gamma$ — not the model's weights."""
        return [self.raw_temperature, self.raw_top_p, self.raw_penalty, self.layer_logits,
                self.gate_logits]

    def new_caches(self) -> list[Any]:
        """Empty KV caches for the wrapped model, one per block."""
        return self.model.new_caches()

    # --8<-- [start:forward]
    def forward(self, idx: Any, targets: Any = None, attention_mask: Any = None,
                caches: list[Any] | None = None) -> tuple[Tensor, Tensor | None]:
        """`idx` `(B, T)` -> `(logits (B, T, V), inference_objective or None)`: the GPT's own
        pieces — `embed`, every block, `head` — with gated heads and the head reading the layer
        mix. The loss's repetition penalty sees `idx` as the context (not tokens already in
        `caches`). `attention_mask` marks padding as for `GPT.forward` (decoding only: the
        objective takes unpadded batches)."""
        gpt = self.model
        idx, offset = gpt.token_ids(idx, caches)  # the GPT's own input checks
        padding, positions = gpt.padding(idx, attention_mask, caches)  # (B, S) each, or None
        if padding is not None and targets is not None:
            raise ValueError("LearnedInference: the inference objective takes unpadded batches; "
                             "got targets with an attention_mask holding padding")
        gates = self.head_weights()  # (L, nh)
        at = None if positions is None else positions[:, -idx.shape[1]:]  # (B, T)
        states = [gpt.embed(idx, offset, at)]  # h_0, (B, T, C)
        with ExitStack() as hooks:
            for i, block in enumerate(gpt.blocks):  # head h of layer i times $g_{ih}$
                hooks.enter_context(block.attn.proj.register_forward_pre_hook(
                    _head_gate(gates[i], block.attn.head_dim)))
            for i, block in enumerate(gpt.blocks):
                states.append(block(states[-1], None if caches is None else caches[i],
                                    key_padding_mask=padding, positions=positions))
        alpha = self.layer_weights().reshape(-1, 1, 1, 1)  # (L + 1, 1, 1, 1)
        # $\sum_\ell \alpha_\ell h_\ell$ feeds the final norm and the head
        logits = gpt.head((stack(states, dim=0) * alpha).sum(dim=0))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = inference_objective(logits, idx, targets, self.temperature(), self.top_p(),
                                       self.repetition_penalty(), self.nucleus_width)
        return logits, loss
    # --8<-- [end:forward]

    def get_inference_params(self) -> dict[str, Any]:
        """The current values: `temperature`, `top_p`, `repetition_penalty` (floats),
        `layer_weights` `(L + 1,)` and `head_weights` `(L, n_head)` (arrays)."""
        return {"temperature": float(self.temperature().data),
                "top_p": float(self.top_p().data),
                "repetition_penalty": float(self.repetition_penalty().data),
                "layer_weights": self.layer_weights().data.copy(),
                "head_weights": self.head_weights().data.copy()}

    def generate(self, idx: Any, max_new_tokens: int, **kwargs: Any) -> Any:
        """`nima.generation.generate(self, ...)` sampling (`do_sample=True`) with the learned
        temperature, top-p and repetition penalty; `kwargs` override any of them or add other
        options (`seed`, `top_k`, `tokenizer`, ...)."""
        from nima.generation import generate  # here: the package imports this module

        params = self.get_inference_params()
        options = {key: params[key] for key in ("temperature", "top_p", "repetition_penalty")}
        return generate(self, idx, max_new_tokens, **{"do_sample": True, **options, **kwargs})

    def extra_repr(self) -> str:
        p = self.get_inference_params()
        return (f"temperature={p['temperature']:.4g}, top_p={p['top_p']:.4g}, "
                f"repetition_penalty={p['repetition_penalty']:.4g}")


def _batches(data: Any, batch_size: int, block_size: int,
             seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless `(idx, targets)` pairs: `data.get_batch(...)` (a `TokenDataset`) with a seeded
    generator, or the pairs of a sequence in turn."""
    if hasattr(data, "get_batch"):
        rng = np.random.default_rng(seed)
        while True:
            yield data.get_batch(batch_size, block_size, rng)
    pairs = list(data)
    if not pairs:
        raise ValueError("fit_inference_params: data holds no (idx, targets) pairs")
    while True:
        yield from pairs


# --8<-- [start:fit]
def fit_inference_params(learned: LearnedInference, data: Any, steps: int, lr: float = 0.05, *,
                         freeze_model: bool = True, model_lr: float = 1e-4,
                         batch_size: int = 8, block_size: int | None = None, seed: int = 0,
                         on_step: Callable[[int, float], None] | None = None) -> list[float]:
    r"""Train the inference parameters by AdamW on `inference_objective`; return the losses.

    Args:
        learned: the module to train.
        data: a `TokenDataset` (anything with `get_batch(batch_size, block_size, rng)`) or a
            sequence of `(idx, targets)` pairs, used in turn. Held-out text, for a frozen model.
        steps: optimizer steps.
        lr: learning rate of the raw inference parameters (no weight decay: it would pull
            them toward $T = \ln 2$, $p = 0.5$).
        freeze_model: True: the GPT's parameters get `requires_grad=False` for the fit (restored
            after) and stay out of the optimizer, so they are untouched and no gradient is
            computed for them; the module runs in eval mode, as it will decode. False: they
            train too, at `model_lr` with AdamW's default decay, in train mode.
        batch_size: rows per batch drawn by `get_batch`.
        block_size: tokens per row drawn by `get_batch` (default: the model's).
        seed: the batch generator's seed.
        on_step: called as `on_step(step, loss)` after each update (e.g. to record values).
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"fit_inference_params: steps must be >= 1 and lr > 0, got steps="
                         f"{steps}, lr={lr}")
    model_params = list(learned.model.parameters())
    flags = [p.requires_grad for p in model_params]
    groups = [{"params": learned.inference_parameters(), "lr": lr, "weight_decay": 0.0}]
    if freeze_model:
        for p in model_params:
            p.requires_grad = False
    else:
        groups.append({"params": [p for p in model_params if p.requires_grad], "lr": model_lr})
    optimizer = AdamW(groups)
    was_training = learned.training
    learned.train(not freeze_model)
    batches = _batches(data, batch_size, block_size or learned.config.block_size, seed)
    losses = []
    try:
        for _ in range(steps):
            idx, targets = next(batches)
            _, loss = learned(idx, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.data))
            if on_step is not None:
                on_step(len(losses), losses[-1])
    finally:
        for p, flag in zip(model_params, flags, strict=True):
            p.requires_grad = flag
        learned.train(was_training)
    return losses
# --8<-- [end:fit]


def held_out_nll(learned: LearnedInference, pairs: Sequence[tuple[np.ndarray, np.ndarray]]
                 ) -> float:
    """Mean `inference_objective` over `pairs` of `(idx, targets)`, in eval mode and without
    a graph (the mode is restored after)."""
    was_training = learned.training
    learned.eval()
    try:
        with no_grad():
            return float(np.mean([learned(idx, targets)[1].data for idx, targets in pairs]))
    finally:
        learned.train(was_training)
