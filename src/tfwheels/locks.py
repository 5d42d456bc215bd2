"""Locks that keep two runs off the same source tree or the same dist/ folder.

They are kernel file locks (filelock), so a process killed with SIGKILL releases its lock at once
and never blocks the next run. Beside each lock a small JSON file names the holder (pid and
command) so a refused run can say who holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from tfwheels.errors import TfwheelsError


class LockBusy(TfwheelsError):
    """Another run holds the lock and the user did not ask to wait."""

    exit_code = 75  # EX_TEMPFAIL: try again later


def tree_lock_path(tree: Path) -> Path:
    """The lock of a source tree: per user, outside the tree (it may not exist yet, or be a
    checkout the user does not want written into), named by the tree's real path."""
    from tfwheels.layout import user_cache_dir

    digest = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:16]
    return user_cache_dir() / "locks" / f"tree-{digest}.lock"


def dist_lock_path(dist: Path) -> Path:
    """The lock of a dist/ folder (its manifest is rewritten by every collect), kept outside it
    so that dist/ holds only wheels and the manifest."""
    from tfwheels.layout import user_cache_dir

    digest = hashlib.sha256(str(dist.resolve()).encode()).hexdigest()[:16]
    return user_cache_dir() / "locks" / f"dist-{digest}.lock"


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def shown_command(argv: list[str]) -> str:
    """The command line as the holder file keeps it: plain text on disk, so with every known
    secret and the ``user:password@`` of any URL masked (tfwheels refuses such URLs, but only
    after the lock is taken)."""
    from tfwheels.redact import scrub

    return _USERINFO.sub("***@", scrub(" ".join(argv)))


def _holder_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".holder")


def describe_holder(lock_path: Path) -> str:
    """``pid 1234: invoke build-tf --profile example`` from the holder file, if readable."""
    try:
        data = json.loads(_holder_path(lock_path).read_text("utf-8"))
        return f"pid {data['pid']}: {data['command']}"
    except (OSError, ValueError, KeyError):
        return "another process"


@contextmanager
def hold(lock_path: Path, what: str, wait: bool, timeout: float | None = None) -> Iterator[None]:
    """Hold the lock at ``lock_path`` for the block; refuse at once unless ``wait``."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = describe_holder(lock_path)
        if not wait:
            msg = f"{what} is in use by {holder} (lock {lock_path}); wait for it to finish or pass --wait"
            raise LockBusy(msg) from None
        from tfwheels.console import err

        err.print(f"waiting: {what} is in use by {holder}", highlight=False, markup=False)
        try:
            lock.acquire(timeout=timeout if timeout is not None else -1)
        except Timeout:
            msg = f"{what} is still in use by {describe_holder(lock_path)} after {timeout:.0f} s (lock {lock_path})"
            raise LockBusy(msg) from None
    holder = _holder_path(lock_path)
    try:
        info = {"pid": os.getpid(), "command": shown_command(sys.argv), "since": time.time()}
        holder.write_text(json.dumps(info), "utf-8")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
