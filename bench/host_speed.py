"""How fast this host runs Python right now: figures are comparable between runs only as far as
this is.

On a shared host the same code on the same machine type ran twice as fast in one hour as in
the next (the bare endpoint's CPU per request 0.12-0.22 ms on one day): the same-run limits
carry that, but the absolute targets do not. Each run measures a fixed pure-Python workload
before and after its scenarios and prints both beside the table.
"""

from __future__ import annotations

import time

STEPS = 200_000


def _work() -> int:
    # Interpreter-bound: dict and list churn and integer arithmetic, no I/O, no allocation
    # large enough to depend on the allocator's state.
    total = 0
    seen: dict[int, int] = {}
    for i in range(STEPS):
        seen[i & 1023] = i
        total += len([i, total & 7]) + seen[i & 1023] % 3
    return total


def python_steps_per_second(rounds: int = 5) -> float:
    """Millions of the workload's loop steps a second, the best of `rounds` (the least
    disturbed)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        _work()
        best = min(best, time.perf_counter() - started)
    return STEPS / best / 1e6
