"""Fault-injection helpers: count what tests/faults/ injected, for one closing line of figures.

``faults: 214 profiles, 540 wheel mutations, 6 interrupts, 3 concurrency cases, 0 failures``
"""

from __future__ import annotations

import resource
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

COUNTS: Counter[str] = Counter()
ORDER = ("profiles", "wheel mutations", "logs", "interrupts", "concurrency cases", "secret scans")
_lock = threading.Lock()


def count(kind: str, n: int = 1) -> None:
    """Record ``n`` injected faults of ``kind``."""
    with _lock:
        COUNTS[kind] += n


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Fail if the block takes longer than ``seconds`` (wall time)."""
    start = time.monotonic()
    yield
    took = time.monotonic() - start
    assert took <= seconds, f"took {took:.2f} s, over the {seconds} s bound"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary_line(failures: int) -> str | None:
    """``faults: 214 profiles, …, 0 failures``, or None when no fault test ran."""
    if not COUNTS and not failures:
        return None
    parts = [f"{COUNTS[k]} {k}" for k in ORDER if COUNTS[k]]
    parts += [f"{n} {k}" for k, n in sorted(COUNTS.items()) if k not in ORDER]
    return f"faults: {', '.join(parts)}, {failures} failures"
