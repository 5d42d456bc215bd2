"""Hostile logs: a 1 GB log with no newline, binary garbage, invalid UTF-8 and ANSI escapes.

``invoke diagnose`` runs in its own process so its peak memory is its own; it must stay bounded,
print no traceback and still find the real failure hidden at the end.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from faultkit import count, invoke_measured

GIB = 1024 * 1024 * 1024
FAILURE = (
    b"\x1b[31mERROR: \x1b[0m/src/tensorflow/core/framework/BUILD:3:11: Compiling tensorflow/core/framework/tensor.cc failed: "
    b"undeclared inclusion(s) in rule '//tensorflow/core/framework:tensor':\n"
    b"this rule is missing dependency declarations for the following files included by "
    b"'tensorflow/core/framework/tensor.cc':\n  'tensorflow/core/platform/logging.h'\n"
)


def _write_hostile_log(path: Path, size: int) -> None:
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(1 << 16)).replace(b"\n", b"\x00")
    chunk = (b"\x1b[32mINFO:\x1b[0m \xff\xfe not utf-8 \xc3\x28 " + garbage) * 16
    with path.open("wb") as handle:
        written = 0
        while written < size:
            handle.write(chunk)
            written += len(chunk)
        handle.write(b"\n" + FAILURE)


def _run_diagnose(log: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``invoke diagnose LOG --json`` in a fresh process, with its own peak RSS in MB."""
    return invoke_measured("diagnose", str(log), "--json", cwd=ROOT)


def test_one_gigabyte_without_newline_stays_bounded(tmp_path: Path) -> None:
    size = int(os.environ.get("TFWHEELS_FAULT_LOG_BYTES", GIB))
    log = tmp_path / "hostile.log"
    _write_hostile_log(log, size)
    try:
        result, peak_mb = _run_diagnose(log)
    finally:
        log.unlink()
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1, result.stderr[-2000:]
    assert '"rule": "//tensorflow/core/framework:tensor"' in result.stdout
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"
    count("logs")


def test_pure_binary_garbage_and_empty_log(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.log"
    garbage.write_bytes(random.Random(3).randbytes(5 * 1024 * 1024))
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    for log in (garbage, empty):
        result = subprocess.run(
            [sys.executable, "-m", "invoke", "diagnose", str(log)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0 and "nothing recognised" in result.stdout, result.stderr
        assert "Traceback" not in result.stderr
        count("logs")
