"""Throughput and peak memory of the Bazel log diagnoser on a big log, beside ``grep -E``.

The log (default 1 GiB, in build/bench/) repeats real lines from the fixture logs in
tests/data/logs that are not part of a failure (progress, INFO, analysis, compiler warnings:
the bulk of any real build log), with whole failure excerpts from the same fixtures spread
evenly through it. A real build log also has many lines that are no failure but hold the words
a failure is found by (``errors.cc`` in a progress line, ``-Werror`` in a command line,
``mirror.bazel.build`` URLs, compiler warnings under ``INFO: From Compiling``); ``BENIGN`` lines
like these are mixed in, one in ``--benign-every`` lines (default 25, 4%), so the figures are not
only the best case of a log without them. The diagnoser is timed as the user runs it:
``invoke diagnose LOG --json`` in a subprocess (interpreter start-up and imports included).
Each tool runs in its own process, so the peak RSS reported is its own
(VmHWM of its address space). grep runs with ``LC_ALL=C`` (its fastest mode) twice: once with the diagnoser's
prefilter needles, once with the failure phrases a person would grep for; the diagnoser is
compared with the faster of the two.

Targets: at least a fifth of grep's throughput; peak RSS at most 100 MB.

    python benchmarks/diagnose_throughput.py              # 1 GiB
    python benchmarks/diagnose_throughput.py --size 200M  # quicker
"""

from __future__ import annotations

import argparse
import json
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
# The words a person (or a naive prefilter) would look for: what makes a line worth reading.
TRIGGERS = "ERROR|[Ee]rror|rchitecture|bazel installation|out of memory|AVX instructions|Killed"
TRIGGER = re.compile(TRIGGERS)
# Lines a healthy TensorFlow build prints that hold a trigger word of a failure (error, Error,
# architecture, out of memory...) but are none: the prefilter's worst case in a real log.
BENIGN = (
    "[1,234 / 9,876] Compiling tensorflow/core/platform/errors.cc; 3s local ... (2 actions running)",
    "[2,001 / 9,876] Compiling tensorflow/core/lib/core/error_codes.pb.cc; 1s darwin-sandbox",
    "[5,432 / 12,001] Compiling tensorflow/compiler/mlir/tensorflow/utils/error_util.cc; 4s local",
    "INFO: From Compiling tensorflow/core/platform/errors.cc:",
    "INFO: From Compiling tensorflow/core/kernels/conv_ops.cc: warning: argument unused during "
    "compilation: '-march=armv8-a' [-Wunused-command-line-argument]",
    "INFO: From Compiling tensorflow/compiler/xla/service/hlo_verifier.cc: warning: comparison "
    "of integers of different signs: 'int' and 'size_t' [-Wsign-compare]",
    "tensorflow/core/platform/errors.h:85:3: warning: unused variable 'error_code' "
    "[-Wunused-variable]",
    "tensorflow/core/framework/op_kernel.h:1045:7: note: in instantiation of function template "
    "specialization 'tensorflow::errors::InvalidArgument<const char *>' requested here",
    "In file included from tensorflow/core/util/error_util.cc:16:",
    "  return errors::Internal(\"Unexpected error in \", op_name);",
    "SUBCOMMAND: # //tensorflow/core/platform:errors [action 'Compiling "
    "tensorflow/core/platform/errors.cc', configuration: 4f1b0c, execution platform: "
    "@local_execution_config_platform//:platform]",
    "  exec env - PATH=/usr/bin:/bin /usr/bin/clang -U_FORTIFY_SOURCE -Wall -Werror=return-type "
    "-Wno-error=unused-but-set-variable -Wthread-safety -Wself-assign -fno-omit-frame-pointer "
    "-c tensorflow/core/platform/errors.cc -o bazel-out/darwin_arm64-opt/bin/tensorflow/core/"
    "platform/_objs/errors/errors.o",
    "Analyzing: target //tensorflow/tools/pip_package:build_pip_package (312 packages loaded, "
    "18234 targets configured)",
    "    Fetching https://mirror.bazel.build/github.com/abseil/abseil-cpp/archive/"
    "273292d1cfc0a94a65082ee350509af1d113344d.tar.gz; 1.2 MiB (1,258,291B)",
    "WARNING: Download from https://mirror.bazel.build/github.com/google/re2/archive/"
    "a276a8c738735a0fe45a6ee590fe2df69bcf4502.tar.gz failed: class "
    "java.io.FileNotFoundException GET returned 404 Not Found",
    "INFO: Repository mirror_bazel_build_llvm instantiated at: "
    "/ws/tensorflow/workspace2.bzl:912:21: in <toplevel>",
    "DEBUG: /ws/third_party/repo.bzl:132:14: Warning: skipping import of repository "
    "'com_google_absl' because it already exists. Error handling is up to the caller.",
    "tensorflow/core/common_runtime/eager/execute.cc:1302:12: warning: 'Status' is deprecated: "
    "use absl::Status (error_payloads) [-Wdeprecated-declarations]",
    "INFO: From Linking tensorflow/python/_pywrap_tensorflow_internal.so: ld: warning: "
    "-undefined dynamic_lookup may not work with chained fixups (architecture arm64)",
)
DIAGNOSE = ("-m", "invoke", "diagnose")


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


def quiet_lines() -> list[str]:
    """Fixture lines a build prints when nothing is wrong: no trigger word, no finding."""
    lines: list[str] = []
    for path in sorted(LOGS.glob("*.txt")):
        for line in _body(path).splitlines():
            quiet = line.strip() and not TRIGGER.search(line)
            # not even as context under an ERROR line, where the prefilter parses it
            if quiet and not diagnose_lines(["ERROR: x", line]):
                lines.append(line)
    return lines


def filler_lines(benign_every: int = 25) -> list[str]:
    """Quiet fixture lines with one ``BENIGN`` line (trigger words, no failure) in ``benign_every``.

    Raises if any of it is reported as a failure: the filler must be a healthy build's output.
    """
    quiet = quiet_lines()
    lines: list[str] = []
    benign = 0
    for number, line in enumerate(quiet * max(1, len(BENIGN) * benign_every // len(quiet) + 1)):
        if benign_every and number % benign_every == benign_every - 1:
            lines.append(BENIGN[benign % len(BENIGN)])
            benign += 1
        else:
            lines.append(line)
        if benign >= len(BENIGN) and number >= len(quiet):
            break
    if found := diagnose_lines(lines):
        msg = f"the filler is not healthy: {[f.kind for f in found]}"
        raise SystemExit(msg)
    return lines


def planted_failures() -> list[str]:
    return [_body(next(LOGS.glob(f"{prefix}-*.txt"))) for prefix in PLANTED]


def build_log(path: Path, size: int, benign_every: int = 25) -> None:
    """Write ``size`` bytes of filler with the planted failures spread through it (atomically)."""
    block = ("\n".join(filler_lines(benign_every)) + "\n").encode()
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
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=ROOT)
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
    parser.add_argument(
        "--benign-every", type=int, default=25,
        help="one benign line with trigger words in this many filler lines (default 25; 0: none)",
    )
    args = parser.parse_args()
    path = args.out or DEFAULT_OUT.with_name(f"diagnose-{args.size >> 20}m.log")
    if not (args.keep and path.is_file() and abs(path.stat().st_size - args.size) < 1 << 20):
        print(f"writing {path} ...", flush=True)
        build_log(path, args.size, args.benign_every)
    size = path.stat().st_size
    grep_env = {**os.environ, "LC_ALL": "C"}
    needles = "|".join(re.escape(n.decode()) for n in NEEDLES)
    commands = {
        "invoke diagnose": ([sys.executable, *DIAGNOSE, str(path), "--json"], None),
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
    ours = best["invoke diagnose"]
    fastest_grep = min(
        (r for n, r in best.items() if n.startswith("grep")), key=lambda r: r.seconds
    )
    ratio = fastest_grep.seconds / ours.seconds
    findings = json.loads(ours.output)["findings"]
    kinds = {f["kind"] for f in findings}
    print(f"  filler: one benign trigger-word line in {args.benign_every or 'no'} lines")
    print("  findings: " + "; ".join(f"{f['kind']} {f['count']}" for f in findings))
    print(f"  throughput vs fastest grep: {ratio:.2f} (target >= 0.20)")
    print(f"  peak RSS: {ours.peak_rss_mb:.1f} MB (target <= 100)")
    ok = ratio >= 0.2 and ours.peak_rss_mb <= 100 and kinds == set(PLANTED.values())
    if kinds != set(PLANTED.values()):
        print(f"  MISSED planted failures: {sorted(set(PLANTED.values()) - kinds)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
