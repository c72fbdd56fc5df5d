"""How long the score intervals cost: 48 tickets, 1,000 and 2,000 resamples (target < 50 ms).

    .venv/bin/python benchmarks/bootstrap_speed.py

Prints the median of 20 timed calls of each; exits 1 if 48 × 1,000 misses the target. A
benchmark, not a unit test: run it on an idle machine.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from slmops_helpers.uncertainty import TicketScores, bootstrap_interval, paired_difference

TARGET_MS = 50.0


def median_ms(call, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    rng = np.random.default_rng(0)
    ids = tuple(f"t{i}" for i in range(48))
    a = TicketScores(ids, tuple(rng.uniform(0, 100, 48)))
    b = TicketScores(ids, tuple(rng.uniform(0, 100, 48)))
    results = {
        f"{kind} 48 tickets x {n}": median_ms(call)
        for n in (1000, 2000)
        for kind, call in (
            ("interval", lambda n=n: bootstrap_interval(a, resamples=n)),
            ("paired", lambda n=n: paired_difference(a, b, resamples=n)),
        )
    }
    for name, ms in results.items():
        print(f"{name:<32} {ms:7.2f} ms")
    worst = max(results["interval 48 tickets x 1000"], results["paired 48 tickets x 1000"])
    print(f"target: under {TARGET_MS:.0f} ms for 1,000 resamples: {'met' if worst < TARGET_MS else 'MISSED'}")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
