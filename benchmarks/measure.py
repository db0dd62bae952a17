"""Measuring for the benchmark scripts: this process's memory, and rates taken side by side."""

import time
from collections.abc import Callable


def memory_bytes(field: str = "VmRSS") -> int:
    """A memory figure of this process from /proc/self/status, in bytes: "VmRSS" (resident now) or "VmHWM" (its peak).
    Not ru_maxrss: Linux carries that across fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def best_rates(works: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each work's best rate (what one call returns it did, per second) over `rounds` rounds, after one untimed call
    of each; the works take turns within a round, so a machine that slows down or speeds up touches them alike."""
    for work in works.values():
        work()
    best = {name: 0.0 for name in works}
    for _ in range(rounds):
        for name, work in works.items():
            began = time.perf_counter()
            done = work()
            best[name] = max(best[name], done / (time.perf_counter() - began))
    return best
