"""Ctrl-C and SIGTERM, handled so a run always stops at a safe point.

The handler only records the signal and passes one SIGINT on to the running child (Bazel's
client cancels the build cleanly on one SIGINT and keeps its caches). The pipeline calls
``checkpoint()`` between steps, where stopping leaves everything consistent; that raises
InterruptedRun, whose exit code is 128 + the signal (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tfwheels.errors import InterruptedRun
from tfwheels.run import running

_received: list[int] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    running.stop(signum)


def received() -> int | None:
    """The first signal received, or None."""
    return _received[0] if _received else None


def checkpoint(kept: str = "") -> None:
    """Raise InterruptedRun if a signal arrived; ``kept`` says what the rerun will reuse."""
    signum = received()
    if signum is None:
        return
    name = signal.Signals(signum).name
    msg = f"stopped by {name}; {kept or 'nothing partial was left'}. Rerun the same command to resume"
    raise InterruptedRun(msg, signum)


@contextmanager
def handling() -> Iterator[None]:
    """Install the handlers for SIGINT and SIGTERM for the duration of a task."""
    _received.clear()
    running.stopping = None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
