"""How fast is ``tfwheels`` wheel verification on a real TensorFlow wheel?

Usage: ``python benchmarks/verify_speed.py [WHEEL] [--repeat N]``

Without WHEEL it downloads TensorFlow 2.16.2 for macOS arm64 (227 MB) into build/bench. It times,
best of N runs:

(a) the header-only checks (arch, min-OS, libraries: ``verify_wheel(..., check_record=False)``),
    in this process;
(b) the whole header-only command, ``invoke verify-wheel WHEEL --quick --json``, as a fresh
    process (interpreter and invoke start-up included);
(c) ``python -m zipfile -t`` on the same file, the yardstick for (e) and (d);
(d) code signature verification alone (every arm64 Mach-O's pages hashed as it streams and held
    against its CodeDirectory: 67 files, about 830 MB in TF 2.16.2) as a fresh process, and its
    peak RSS;

(e) the full verification (CRC, RECORD hashes, metadata, binaries, arm64 code signatures) as
    a fresh Python process, and its peak RSS;

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

from tfwheels.repair import scan_signatures
from tfwheels.run import run
from tfwheels.verify import verify_wheel

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "build" / "bench"
DEFAULT_WHEEL = "tensorflow-2.16.2-cp311-cp311-macosx_12_0_arm64.whl"

HEADER_TARGET_S = 0.3
COMMAND_TARGET_S = 1.5
RECORD_VS_ZIPFILE = 1.5
RSS_TARGET_MB = 150.0
SIGNATURES_VS_ZIPFILE = 1.5
SIGNATURES_RSS_TARGET_MB = 200.0

VERIFY_COMMAND = (
    "import sys; from tfwheels.verify_report import verify_command; "
    "sys.exit(verify_command([sys.argv[1]], None, as_json=True))"
)
SIGNATURES_COMMAND = (
    "import sys; from pathlib import Path; from tfwheels.repair import scan_signatures; "
    "bad = [b.path for b in scan_signatures(Path(sys.argv[1])) "
    "for s in b.slices if s.signature is not None and not s.signature.ok]; sys.exit(1 if bad else 0)"
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


# Linux keeps a process's ru_maxrss across fork and exec, so a child of this (by then 70 MB)
# process reports at least that much. The child's own high-water mark (VmHWM) counts only what
# it used after exec; the wrapper prints it at exit. ru_maxrss is the fallback (macOS).
PEAK_WRAPPER = """\
import atexit, runpy, sys
def peak():
    try:
        with open("/proc/self/status") as status:
            kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        sys.stderr.write(f"peak-rss-kb {kb}\\n")
    except (OSError, StopIteration):
        pass
atexit.register(peak)
mode, what, *sys.argv[1:] = sys.argv[1:]
if mode == "-m":
    sys.argv[0] = what
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    sys.argv[0] = "-c"
    exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
"""


def time_process(argv: list[str]) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB and exit status of one ``python -m X ...`` or ``python -c ...``.

    Uses Popen and os.wait4 rather than tfwheels.run: only wait4 reports the child's own rusage.
    """
    assert argv[0] == sys.executable and argv[1] in ("-m", "-c")
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", PEAK_WRAPPER, *argv[1:]],
        cwd=ROOT,  # where tasks.py is, for ``-m invoke``
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    errors = child.stderr.read().decode("utf-8", "replace")
    _pid, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    peaks = [line.split()[1] for line in errors.splitlines() if line.startswith("peak-rss-kb ")]
    peak_kb = int(peaks[-1]) if peaks else usage.ru_maxrss  # both KiB on Linux
    return elapsed, peak_kb / 1024, child.returncode


def time_processes(argv: list[str], repeat: int) -> tuple[list[float], float, int]:
    """Seconds per run, the highest peak RSS (MB), and the last exit status."""
    runs = [time_process(argv) for _ in range(repeat)]
    return [r[0] for r in runs], max(r[1] for r in runs), runs[-1][2]


def signature_summary(wheel: Path) -> str:
    """``'67 arm64 binaries (828 MB): 67 valid'``, from one in-process pass."""
    statuses: dict[str, int] = {}
    signers: set[str] = set()
    count = size = 0
    for binary in scan_signatures(wheel):
        for piece in binary.slices:
            if piece.signature is None:
                continue
            count += 1
            statuses[piece.signature.status] = statuses.get(piece.signature.status, 0) + 1
            signers.add(piece.signature.signer or "unsigned")
            if piece.signature_at is not None:
                size += piece.signature_at[0] + piece.signature_at[1]
    states = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    return f"{count} arm64 binaries ({size / 1e6:.0f} MB signed code): {states}; {', '.join(sorted(signers))}"


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
    print(f"  code signatures: {signature_summary(wheel)}")

    header = time_in_process(lambda: verify_wheel(wheel, check_record=False), args.repeat)
    quick_argv = [sys.executable, "-m", "invoke", "verify-wheel", str(wheel), "--quick", "--json"]
    quick, _quick_rss, quick_status = time_processes(quick_argv, args.repeat)
    verify_argv = [sys.executable, "-c", VERIFY_COMMAND, str(wheel)]
    command, rss, status = time_processes(verify_argv, args.repeat)
    zip_argv = [sys.executable, "-m", "zipfile", "-t", str(wheel)]
    zip_test, zip_rss, _ = time_processes(zip_argv, args.repeat)
    signatures_argv = [sys.executable, "-c", SIGNATURES_COMMAND, str(wheel)]
    signatures, signatures_rss, signatures_status = time_processes(signatures_argv, args.repeat)
    ratio = min(command) / min(zip_test)
    signatures_ratio = min(signatures) / min(zip_test)

    print(
        f"(a) arch + min-os, headers only:  {summary(header)}"
        f"   target <= {HEADER_TARGET_S} s: {verdict(min(header) <= HEADER_TARGET_S)}"
    )
    print(
        f"(b) invoke verify-wheel --quick:  {summary(quick)} (exit {quick_status})"
        f"   target <= {COMMAND_TARGET_S} s: {verdict(min(quick) <= COMMAND_TARGET_S)}"
    )
    print(f"(c) python -m zipfile -t:         {summary(zip_test)}, peak RSS {zip_rss:.0f} MB")
    print(f"(e) full verification:            {summary(command)} (exit {status})")
    print(
        f"    full / zipfile -t:            {ratio:.2f}x"
        f"   target <= {RECORD_VS_ZIPFILE}x: {verdict(ratio <= RECORD_VS_ZIPFILE)}"
    )
    print(
        f"    full verify peak RSS:         {rss:.0f} MB"
        f"   target <= {RSS_TARGET_MB:.0f} MB: {verdict(rss <= RSS_TARGET_MB)}"
    )
    print(f"(d) code signatures alone:       {summary(signatures)} (exit {signatures_status})")
    print(
        f"    signatures / zipfile -t:      {signatures_ratio:.2f}x"
        f"   target <= {SIGNATURES_VS_ZIPFILE}x: "
        f"{verdict(signatures_ratio <= SIGNATURES_VS_ZIPFILE)}"
    )
    print(
        f"    signatures peak RSS:          {signatures_rss:.0f} MB"
        f"   target <= {SIGNATURES_RSS_TARGET_MB:.0f} MB: "
        f"{verdict(signatures_rss <= SIGNATURES_RSS_TARGET_MB)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
