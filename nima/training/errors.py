"""The error a training run stops with when it cannot go on."""

from __future__ import annotations

__all__ = ["TrainingError"]


class TrainingError(RuntimeError):
    """The run cannot go on: a non-finite loss or weights, a run directory that is in use,
    holds something else or would be overwritten, or a write into it that failed. The message
    is one line that names the cause and what to do."""
