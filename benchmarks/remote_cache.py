"""Remote cache: a cold build of the example against a build from a fresh output base with a warm
remote cache.

Starts nginx as a WebDAV HTTP cache on 127.0.0.1 (tests/servers.py), then for each round: an empty
cache, `invoke build-tf --profile example` from a fresh copy of examples/tf-mini and a fresh output
base (cold: every action runs and is uploaded), then the same from another fresh copy and output
base (warm: every action should come from the cache). The disk cache is off so every hit is a
remote one. Prints the median whole-process wall times, their ratio, Bazel's own elapsed times and
the cache hits. Target: warm at most half the cold wall time, and every cacheable action a hit.

Usage: python benchmarks/remote_cache.py [--runs N] [--extra-units N]

``--extra-units N`` (default 8) adds N generated C++ files (about a second of compiling each) to
the copies. The bare example (``--extra-units 0``) compiles for a tenth of a second in a build of
about nine: there the ratio measures Bazel's start-up and analysis in a fresh output base, which
no cache can save (measured: 0.92, every action a hit). A TensorFlow build is the other way round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the nginx fixture the tests use, so both agree

from servers import find_nginx, nginx_cache

TARGET_RATIO = 0.5
_ELAPSED = re.compile(r"INFO: Elapsed time: ([\d.]+)s")

# A translation unit that keeps the compiler busy for about a second (a constexpr loop that g++
# evaluates while compiling), standing in for one of TensorFlow's heavier files.
_HEAVY_UNIT = """\
constexpr unsigned long long spin_{index}(unsigned long long x) {{
  for (int i = 0; i < 1000; ++i)
    for (int j = 0; j < 700; ++j) x = x * 6364136223846793005ULL + 1442695040888963407ULL + j;
  return x;
}}
constexpr unsigned long long value_{index} = spin_{index}({index});
unsigned long long heavy_{index}() {{ return value_{index}; }}
"""


@dataclass
class Run:
    """One timed build."""

    seconds: float
    bazel_seconds: float | None
    processes: dict[str, int]

    @property
    def actions(self) -> int:
        return self.processes.get("total", 0) - self.processes.get("internal", 0)

    @property
    def hits(self) -> int:
        return self.processes.get("remote cache hit", 0)


def bazel_binary() -> str:
    return shutil.which("bazel-4") or shutil.which("bazel") or shutil.which("bazelisk") or "bazel"


def add_units(tree: Path, count: int) -> None:
    """Add ``count`` slow-to-compile files to the example's framework library."""
    if not count:
        return
    folder = tree / "tensorflow" / "core" / "framework"
    for index in range(count):
        (folder / f"heavy_{index}.cc").write_text(_HEAVY_UNIT.format(index=index))
    build = folder / "BUILD"
    text = build.read_text()
    heavy = 'srcs = ["tensor.cc"] + glob(["heavy_*.cc"]),\n    copts = ["-std=c++17"]'
    build.write_text(text.replace('srcs = ["tensor.cc"]', heavy))


def fixed_project(work: Path) -> Path:
    """A copy of this project in which `build-tf --profile example --fix` ran once: the example
    has an undeclared inclusion that only --fix patches (README), and the fix goes into the copy,
    never into this checkout. Its build uses no cache, so the rounds start cold."""
    project = work / "project"
    for name in ("configs", "templates", "patches"):
        shutil.copytree(ROOT / name, project / name)
    tree = work / "tree-fix"
    shutil.copytree(ROOT / "examples" / "tf-mini", tree)
    env = {**os.environ, "TFWHEELS_PROJECT": str(project), "TFWHEELS_BUILD": str(work / "build-fix"),
           "TFWHEELS_DIST": str(work / "dist-fix")}
    argv = [sys.executable, "-m", "invoke", "build-tf", "--profile", "example", "--source", str(tree),
            "--fix", "--no-disk-cache"]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, check=False)
    subprocess.run([bazel_binary(), "shutdown"], cwd=tree, capture_output=True, check=False)
    if result.returncode != 0:
        sys.exit(f"build-tf --fix failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return project


def timed_build(work: Path, name: str, cache_url: str, extra_units: int) -> Run:
    """Build the example from a fresh copy and output base; time the whole `invoke` process."""
    tree = work / f"tree-{name}"
    shutil.copytree(ROOT / "examples" / "tf-mini", tree)
    add_units(tree, extra_units)
    profile = work / f"bench-{name}.yaml"
    profile.write_text(
        "extends: tf/example\n"
        f"bazel:\n  startup_flags: [--output_base={work / f'output-base-{name}'}]\n"
    )
    env = {**os.environ, "TFWHEELS_PROJECT": str(work / "project"), "TFWHEELS_BUILD": str(work / "build"),
           "TFWHEELS_DIST": str(work / f"dist-{name}")}
    argv = [sys.executable, "-m", "invoke", "build-tf", "--profile", str(profile), "--source", str(tree),
            "--json", "--no-disk-cache", "--remote-cache", cache_url]
    start = time.perf_counter()
    result = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    seconds = time.perf_counter() - start
    subprocess.run([bazel_binary(), "shutdown"], cwd=tree, capture_output=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{name} build failed ({result.returncode}):\n{result.stderr[-3000:]}")
    elapsed = _ELAPSED.search(result.stderr)
    processes = json.loads(result.stdout)["processes"]
    return Run(seconds, float(elapsed.group(1)) if elapsed else None, processes)


def one_round(work: Path, round_no: int, extra_units: int) -> tuple[Run, Run]:
    """A cold and a warm build against a fresh, empty nginx cache."""
    with nginx_cache(work / f"nginx-{round_no}") as server:
        cold = timed_build(work, f"cold-{round_no}", server.url, extra_units)
        warm = timed_build(work, f"warm-{round_no}", server.url, extra_units)
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--extra-units", type=int, default=8)
    args = parser.parse_args()
    if find_nginx() is None:
        sys.exit("nginx is not installed (apt-get install nginx-light)")
    work = Path(tempfile.mkdtemp(prefix="tfwheels-remote-bench-"))
    rounds: list[tuple[Run, Run]] = []
    try:
        fixed_project(work)
        for round_no in range(args.runs):
            rounds.append(one_round(work, round_no, args.extra_units))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cold = statistics.median(c.seconds for c, _ in rounds)
    warm = statistics.median(w.seconds for _, w in rounds)
    ratio = warm / cold
    print(f"example: examples/tf-mini{f' + {args.extra_units} generated C++ files' if args.extra_units else ''}")
    print(f"cold build (empty cache, uploads):   {cold:7.3f} s median  {[f'{c.seconds:.3f}' for c, _ in rounds]}")
    print(f"warm build (fresh output base):      {warm:7.3f} s median  {[f'{w.seconds:.3f}' for _, w in rounds]}")
    print(f"Bazel's elapsed time, cold / warm:   {[c.bazel_seconds for c, _ in rounds]} / {[w.bazel_seconds for _, w in rounds]}")
    print(f"ratio warm/cold:                     {ratio:7.2f}  (target <= {TARGET_RATIO})")
    print(f"remote cache hits (warm):            {[f'{w.hits}/{c.actions}' for c, w in rounds]}  (target: all)")
    all_hit = all(w.hits == c.actions > 0 for c, w in rounds)
    ok = ratio <= TARGET_RATIO and all_hit
    print("target met" if ok else f"target NOT met ({'ratio' if ratio > TARGET_RATIO else ''}"
          f"{' hits' if not all_hit else ''})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
