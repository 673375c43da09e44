r"""Ring allreduce, by hand: a reduce-scatter, then an all-gather, over point-to-point messages.

Each of $N$ ranks holds a vector $x_r$ of $S$ bytes and wants $\sum_r x_r$. Cut every vector
into $N$ chunks and arrange the ranks in a ring, each sending to its right neighbour
$r + 1$ and receiving from its left one $r - 1$ (mod $N$):

1. **reduce-scatter**, steps $s = 0 \dots N-2$: rank $r$ sends chunk $(r - s) \bmod N$ — its
   running sum — and adds the chunk $(r - s - 1) \bmod N$ it receives into its own. After
   $N - 1$ steps rank $r$ holds chunk $(r + 1) \bmod N$ summed over all ranks.
2. **all-gather**, steps $s = 0 \dots N-2$: rank $r$ sends chunk $(r + 1 - s) \bmod N$, whose
   sum is complete, and overwrites chunk $(r - s) \bmod N$ with the one it receives.

Every step moves one chunk, $S/N$ bytes, over every link at once, so with a per-message latency
$\alpha$ and a link bandwidth $B$

$$T_\text{ring} = 2(N-1)\Bigl(\alpha + \frac{S}{N B}\Bigr)
\;\xrightarrow{\;S \text{ large}\;}\; \frac{2(N-1)}{N}\,\frac{S}{B},$$

which tends to $2S/B$: the time to send the vector twice, *whatever the number of ranks*. That
is why data parallelism scales. Every rank sends (and receives) $2\frac{N-1}{N} S$ bytes, which
is the least any allreduce can: each rank's data must leave it once and each result must arrive
once. The price is the $2(N-1)\alpha$ of latency, which dominates small messages.
"""

from __future__ import annotations

import numpy as np

from nima.distributed.comm import Communicator, check_buffer

__all__ = ["chunk_bounds", "ring_allreduce"]


# --8<-- [start:chunk_bounds]
def chunk_bounds(n: int, parts: int) -> np.ndarray:
    """`parts + 1` offsets cutting `n` elements into `parts` chunks whose sizes differ by at
    most one: chunk `c` is `[bounds[c], bounds[c + 1])`.

    Example: `chunk_bounds(10, 3)` is `[0, 3, 6, 10]`.
    """
    return np.arange(parts + 1) * n // parts
# --8<-- [end:chunk_bounds]


# --8<-- [start:ring_allreduce]
def ring_allreduce(comm: Communicator, buf: np.ndarray) -> np.ndarray:
    r"""Replace `buf` on every rank by $\sum_r$ `buf`$_r$, by the ring algorithm; returns `buf`.

    Same result as `comm.allreduce(buf)` up to the order of the additions (chunk $c$ is summed
    starting from rank $c + 1$), and the same on every rank to the last bit.
    """
    check_buffer("ring_allreduce", buf, writable=True)
    N, r = comm.size, comm.rank
    x = buf.reshape(-1)  # a view: the chunks are written into buf itself
    bounds = chunk_bounds(x.size, N)

    def chunk(c: int) -> np.ndarray:
        c %= N
        return x[bounds[c]:bounds[c + 1]]

    right, left = (r + 1) % N, (r - 1) % N
    incoming = np.empty(int(np.diff(bounds).max(initial=0)), dtype=x.dtype)
    # reduce-scatter: after step s, chunk (r - s - 1) holds the sum over s + 2 ranks
    for s in range(N - 1):
        received = incoming[:chunk(r - s - 1).size]
        comm.sendrecv(chunk(r - s), right, received, left)
        chunk(r - s - 1)[...] += received
    # all-gather: rank r starts with the complete chunk r + 1 and passes complete chunks on
    for s in range(N - 1):
        comm.sendrecv(chunk(r + 1 - s), right, chunk(r - s), left)
    return buf
# --8<-- [end:ring_allreduce]
