"""How fast is ``tfwheels`` wheel verification on a real TensorFlow wheel?

Usage: ``python benchmarks/verify_speed.py [WHEEL] [--repeat N]``

Without WHEEL it downloads TensorFlow 2.16.2 for macOS arm64 (227 MB) into build/bench. It times,
best of N runs:

(a) the header-only checks (arch, min-OS, libraries: ``verify_wheel(..., check_record=False)``),
    in this process;
(b) the whole verify command (CRC, RECORD hashes, metadata, binaries) as a fresh Python process,
    and its peak RSS;
(c) ``python -m zipfile -t`` on the same file, the yardstick for (b);

and prints each figure next to its target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tfwheels.run import run
from tfwheels.verify import verify_wheel

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "build" / "bench"
DEFAULT_WHEEL = "tensorflow-2.16.2-cp311-cp311-macosx_12_0_arm64.whl"

HEADER_TARGET_S = 0.3
COMMAND_TARGET_S = 1.5
RECORD_VS_ZIPFILE = 1.5
RSS_TARGET_MB = 150.0

VERIFY_COMMAND = (
    "import sys; from tfwheels.verify_report import verify_command; "
    "sys.exit(verify_command([sys.argv[1]], None, as_json=True))"
)


def fetch_default_wheel() -> Path:
    """The TensorFlow wheel in build/bench, downloaded with pip on first use."""
    wheel = BENCH_DIR / DEFAULT_WHEEL
    if not wheel.is_file():
        run([
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", "macosx_12_0_arm64", "--python-version", "3.11",
            "tensorflow==2.16.2", "-d", str(BENCH_DIR),
        ])  # fmt: skip
    return wheel


def time_in_process(action: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock seconds of ``action``, once per repeat."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def time_process(argv: list[str]) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB and exit status of one child process.

    Uses Popen and os.wait4 rather than tfwheels.run: only wait4 reports the child's own rusage.
    """
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, child.returncode  # ru_maxrss is KiB on Linux


def time_processes(argv: list[str], repeat: int) -> tuple[list[float], float, int]:
    """Seconds per run, the highest peak RSS (MB), and the last exit status."""
    runs = [time_process(argv) for _ in range(repeat)]
    return [r[0] for r in runs], max(r[1] for r in runs), runs[-1][2]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def summary(times: list[float]) -> str:
    return f"best {min(times):.3f} s, median {statistics.median(times):.3f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", nargs="?", type=Path, help="wheel to verify (default: TF 2.16.2)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (default 5)")
    args = parser.parse_args()
    wheel: Path = args.wheel or fetch_default_wheel()
    size_mb = wheel.stat().st_size / 1e6
    print(f"wheel: {wheel.name} ({size_mb:.0f} MB), {os.cpu_count()} CPUs, best of {args.repeat}")

    report = verify_wheel(wheel, check_record=False)
    verdict_text = "OK" if report.ok else ", ".join(p.kind for p in report.problems)
    print(f"  {len(report.binaries)} binaries, header-only verdict: {verdict_text}")

    header = time_in_process(lambda: verify_wheel(wheel, check_record=False), args.repeat)
    verify_argv = [sys.executable, "-c", VERIFY_COMMAND, str(wheel)]
    command, rss, status = time_processes(verify_argv, args.repeat)
    zip_argv = [sys.executable, "-m", "zipfile", "-t", str(wheel)]
    zip_test, zip_rss, _ = time_processes(zip_argv, args.repeat)
    ratio = min(command) / min(zip_test)

    print(
        f"(a) arch + min-os, headers only:  {summary(header)}"
        f"   target <= {HEADER_TARGET_S} s: {verdict(min(header) <= HEADER_TARGET_S)}"
    )
    print(
        f"(b) whole verify command:         {summary(command)} (exit {status})"
        f"   target <= {COMMAND_TARGET_S} s: {verdict(min(command) <= COMMAND_TARGET_S)}"
    )
    print(f"(c) python -m zipfile -t:         {summary(zip_test)}, peak RSS {zip_rss:.0f} MB")
    print(
        f"    verify / zipfile -t:          {ratio:.2f}x"
        f"   target <= {RECORD_VS_ZIPFILE}x: {verdict(ratio <= RECORD_VS_ZIPFILE)}"
    )
    print(
        f"    verify peak RSS:              {rss:.0f} MB"
        f"   target <= {RSS_TARGET_MB:.0f} MB: {verdict(rss <= RSS_TARGET_MB)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
