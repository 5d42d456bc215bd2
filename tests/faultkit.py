"""Fault-injection helpers: count what tests/faults/ injected, for one closing line of figures.

``faults: 214 profiles, 540 wheel mutations, 6 interrupts, 3 concurrency cases, 0 failures``
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    return f"faults: {', '.join([*parts, f'{failures} failures'])}"


def fault_failures(stats: Mapping[str, Sequence[Any]]) -> int:
    """Failed tests and setup/teardown errors of tests/faults/ in a terminal reporter's stats:
    a fixture that breaks is a failure of the fault run too (pytest files it under "error")."""
    return sum(
        1
        for kind in ("failed", "error")
        for report in stats.get(kind, [])
        if "tests/faults/" in (getattr(report, "nodeid", "") or "")
    )


_MEASURED = """
import resource, sys
from invoke.main import program
try:
    program.run(["invoke", *sys.argv[1:]])
finally:
    sys.stderr.write("\\npeak-rss-kb=%d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def invoke_measured(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``invoke ARGS`` in a fresh process that reports its own peak RSS (MB); the report
    line is taken off stderr again."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    stderr, _, tail = result.stderr.rpartition("peak-rss-kb=")
    result.stderr = stderr.rstrip("\n") + ("\n" if stderr.strip() else "")
    return result, int(tail.split()[0]) / 1024
