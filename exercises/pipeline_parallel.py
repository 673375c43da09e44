r"""Exercises of the Pipeline parallelism page (docs/pipeline_parallel.md)."""

from exercises import close, equal
from nima.distributed import bubble_fraction


def gpipe_schedule(P: int, m: int) -> list[list[str]]:
    r"""Draw GPipe's schedule.

    Return $P$ rows (stages) of $2(m + P - 1)$ time slots each, every slot `"F3"` (the forward
    of micro-batch 3), `"B3"` (its backward) or `"."` (idle), as in the page's diagram: stage
    $s$ runs the forward of micro-batch $i$ as soon as stage $s - 1$ has, and the backwards
    flow the other way, the last micro-batch first, starting on the last stage right after its
    last forward.
    """
    raise NotImplementedError


def check_gpipe_schedule(gpipe_schedule) -> None:
    """Compares with the page's diagram for P = 3, m = 4, and checks for other sizes that every
    stage runs each forward and backward once and no work runs before its input exists."""
    diagram = """F0 F1 F2 F3 . . . . B3 B2 B1 B0
                 . F0 F1 F2 F3 . . B3 B2 B1 B0 .
                 . . F0 F1 F2 F3 B3 B2 B1 B0 . ."""
    equal([list(row) for row in gpipe_schedule(3, 4)],
          [line.split() for line in diagram.splitlines()], "the schedule for P=3, m=4")
    for P, m in [(2, 1), (4, 2), (2, 5)]:
        grid = [list(row) for row in gpipe_schedule(P, m)]
        equal([len(row) for row in grid], [2 * (m + P - 1)] * P, f"the slots for P={P}, m={m}")
        when = {(s, op): t for s, row in enumerate(grid) for t, op in enumerate(row) if op != "."}
        for s in range(P):
            work = sorted(op for op in grid[s] if op != ".")
            equal(work, sorted([f"F{i}" for i in range(m)] + [f"B{i}" for i in range(m)]),
                  f"the work of stage {s} (P={P}, m={m})")
            for i in range(m):
                if s and when[(s, f"F{i}")] <= when[(s - 1, f"F{i}")]:
                    raise AssertionError(f"P={P}, m={m}: stage {s} runs F{i} before stage "
                                         f"{s - 1} has sent it")
                if s < P - 1 and when[(s, f"B{i}")] <= when[(s + 1, f"B{i}")]:
                    raise AssertionError(f"P={P}, m={m}: stage {s} runs B{i} before stage "
                                         f"{s + 1} has sent its gradient")
                if when[(s, f"B{i}")] <= when[(s, f"F{i}")]:
                    raise AssertionError(f"P={P}, m={m}: stage {s} runs B{i} before F{i}")


def micro_batches_for(P: int, max_bubble: float) -> int:
    r"""How many micro-batches keep the bubble small?

    Return the smallest number of micro-batches $m$ for which GPipe's idle fraction with $P$
    stages is at most `max_bubble`.
    """
    raise NotImplementedError


def check_micro_batches_for(micro_batches_for) -> None:
    """Searches, with `nima.distributed.bubble_fraction`, the smallest m for several P and
    bounds, including bounds met exactly."""
    for P, bound in [(2, 0.2), (4, 0.2), (8, 0.1), (3, 0.5), (4, 0.5), (16, 0.05)]:
        m = 1
        while bubble_fraction(P, m) > bound:
            m += 1
        equal(int(micro_batches_for(P, bound)), m, f"m for P={P}, bubble <= {bound}")
        close(bubble_fraction(P, m), bubble_fraction(P, int(micro_batches_for(P, bound))),
              "the bubble")
