"""Throughput and peak memory of the Bazel log diagnoser on a big log, beside ``grep -E``.

The log (default 1 GiB, in build/bench/) repeats real lines from the fixture logs in
tests/data/logs that are not part of a failure (progress, INFO, analysis, compiler warnings:
the bulk of any real build log), with whole failure excerpts from the same fixtures spread
evenly through it. Each tool runs in its own process, so the peak RSS reported is its own
(VmHWM of its address space). grep runs with ``LC_ALL=C`` (its fastest mode) twice: once with the diagnoser's
prefilter needles, once with the failure phrases a person would grep for; the diagnoser is
compared with the faster of the two.

Targets: at least a fifth of grep's throughput; peak RSS at most 100 MB.

    python benchmarks/diagnose_throughput.py              # 1 GiB
    python benchmarks/diagnose_throughput.py --size 200M  # quicker
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tfwheels.diagnose import NEEDLES, diagnose_lines

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "tests" / "data" / "logs"
DEFAULT_OUT = ROOT / "build" / "bench" / "diagnose-1g.log"
# Failure excerpts planted in the log, and the kind each must be reported as.
PLANTED = {
    "A01": "undeclared-inclusion",
    "B01": "incompatible-architecture",
    "C02": "bazel-version",
    "D01": "out-of-memory",
    "E03": "xcode-toolchain",
    "F01": "python-environment",
    "G01": "fetch-failure",
    "H01": "layering-check",
}
FAILURE_PHRASES = (
    "undeclared inclusion|incompatible architecture|wrong architecture|Undefined symbols for "
    "architecture|Current Bazel version is|requires Bazel|bazel installation to version|"
    "Killed signal|internal compiler error: Killed|unable to execute command: Killed|"
    "Server terminated abruptly|OutOfMemoryError|Xcode version must be specified|xcrun: error|"
    "does not support .-march=native|PYTHON_BIN_PATH|No module named|Cannot find python|"
    "requirements_lock|Error downloading|during the fetch of repository|does not depend on a "
    "module exporting|does not contain a toolchain for cpu|version of protoc"
)
DIAGNOSE = (
    "import sys\n"
    "from tfwheels.diagnose import diagnose_file\n"
    "for f in diagnose_file(sys.argv[1]):\n"
    "    print(f.kind, f.count)\n"
)


@dataclass(frozen=True)
class Run:
    """One tool's pass over the log."""

    name: str
    seconds: float
    peak_rss_mb: float
    output: str

    def mb_per_s(self, size: int) -> float:
        return size / 1e6 / self.seconds


def _body(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").partition("\n---\n")[2]


def filler_lines() -> list[str]:
    """Fixture lines a build prints when nothing is wrong: no needle, no finding on their own."""
    lines: list[str] = []
    for path in sorted(LOGS.glob("*.txt")):
        for line in _body(path).splitlines():
            quiet = line.strip() and not any(n.decode() in line for n in NEEDLES)
            if quiet and not diagnose_lines([line]):
                lines.append(line)
    return lines


def planted_failures() -> list[str]:
    return [_body(next(LOGS.glob(f"{prefix}-*.txt"))) for prefix in PLANTED]


def build_log(path: Path, size: int) -> None:
    """Write ``size`` bytes of filler with the planted failures spread through it (atomically)."""
    block = ("\n".join(filler_lines()) + "\n").encode()
    block *= max(1, (1 << 20) // len(block))
    failures = [text.encode() + b"\n" for text in planted_failures()]
    every = size // (len(failures) + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    written, planted = 0, 0
    with tmp.open("wb") as out:
        while written < size:
            if planted < len(failures) and written >= every * (planted + 1):
                written += out.write(failures[planted])
                planted += 1
            written += out.write(block)
    os.replace(tmp, path)


def _hwm_kb(pid: int) -> int:
    """The peak RSS of ``pid``'s own address space (VmHWM; 0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else 0


def measure(name: str, argv: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``argv``, timing it and tracking its peak RSS.

    ``wait4``'s ru_maxrss would include this (parent) process's high-water mark, which Linux
    carries into a child across exec; VmHWM belongs to the address space exec creates, so it is
    the tool's own. It is polled every 5 ms and only grows, so the last reading is the peak.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    chunks: list[bytes] = []
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, _hwm_kb(proc.pid))
        chunks.append(proc.stdout.read() or b"")
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    chunks.append(proc.stdout.read() or b"")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        msg = f"{name} failed with exit {proc.returncode}: {argv}"
        raise SystemExit(msg)
    return Run(name, seconds, peak_kb / 1024, b"".join(chunks).decode().strip())


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if match is None:
        msg = f"--size {text}: give bytes or a number with K, M or G (e.g. 1G, 200M)"
        raise argparse.ArgumentTypeError(msg)
    return int(match[1]) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match[2]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default="1G", help="log size (default 1G)")
    parser.add_argument("--out", type=Path, default=None, help=f"log path (default {DEFAULT_OUT})")
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool; the best counts")
    parser.add_argument("--keep", action="store_true", help="reuse the log if its size matches")
    args = parser.parse_args()
    path = args.out or DEFAULT_OUT.with_name(f"diagnose-{args.size >> 20}m.log")
    if not (args.keep and path.is_file() and abs(path.stat().st_size - args.size) < 1 << 20):
        print(f"writing {path} ...", flush=True)
        build_log(path, args.size)
    size = path.stat().st_size
    grep_env = {**os.environ, "LC_ALL": "C"}
    needles = "|".join(re.escape(n.decode()) for n in NEEDLES)
    commands = {
        "tfwheels.diagnose": ([sys.executable, "-c", DIAGNOSE, str(path)], None),
        "grep -E (needles)": (["grep", "-c", "-E", needles, str(path)], grep_env),
        "grep -E (phrases)": (["grep", "-c", "-E", FAILURE_PHRASES, str(path)], grep_env),
    }
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    best: dict[str, Run] = {}
    for _ in range(args.repeat):
        for name, (argv, env) in commands.items():
            run = measure(name, argv, env)
            if name not in best or run.seconds < best[name].seconds:
                best[name] = run
    print(f"log: {path} ({size / 1e6:.0f} MB)")
    for run in best.values():
        print(
            f"  {run.name:20} {run.mb_per_s(size):8.0f} MB/s  {run.seconds:6.2f} s  "
            f"peak RSS {run.peak_rss_mb:6.1f} MB"
        )
    ours = best["tfwheels.diagnose"]
    fastest_grep = min(
        (r for n, r in best.items() if n.startswith("grep")), key=lambda r: r.seconds
    )
    ratio = fastest_grep.seconds / ours.seconds
    kinds = {line.split()[0] for line in ours.output.splitlines()}
    print(f"  findings: {ours.output.replace(chr(10), '; ')}")
    print(f"  throughput vs fastest grep: {ratio:.2f} (target >= 0.20)")
    print(f"  peak RSS: {ours.peak_rss_mb:.1f} MB (target <= 100)")
    ok = ratio >= 0.2 and ours.peak_rss_mb <= 100 and kinds == set(PLANTED.values())
    if kinds != set(PLANTED.values()):
        print(f"  MISSED planted failures: {sorted(set(PLANTED.values()) - kinds)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
