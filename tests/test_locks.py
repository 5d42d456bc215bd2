"""Locks between real processes: refusal names the holder; SIGKILL never leaves a stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfwheels.locks import LockBusy, hold

HOLDER = """
import sys, time
from pathlib import Path
from tfwheels.locks import hold
with hold(Path(sys.argv[1]), "the test tree", wait=False):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def start_holder(lock: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    lock = tmp_path / "tree.lock"
    proc = start_holder(lock, 30)
    try:
        with pytest.raises(LockBusy) as info, hold(lock, "the test tree", wait=False):
            pass
        assert f"pid {proc.pid}: " in str(info.value) and "--wait" in str(info.value)
        assert info.value.exit_code == 75
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_lock_of_a_killed_process_never_blocks(tmp_path: Path) -> None:
    lock = tmp_path / "tree.lock"
    proc = start_holder(lock, 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    start = time.monotonic()
    with hold(lock, "the test tree", wait=False):
        assert (tmp_path / "tree.lock.holder").is_file()
    assert time.monotonic() - start < 1.0
    assert not (tmp_path / "tree.lock.holder").exists()


def test_wait_waits_for_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "tree.lock"
    proc = start_holder(lock, 1.0)
    start = time.monotonic()
    with hold(lock, "the test tree", wait=True, timeout=20):
        waited = time.monotonic() - start
    proc.wait()
    proc.stdout.close()
    assert 0.3 < waited < 20
