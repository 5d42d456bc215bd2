"""No-op rebuild: `invoke build-tf --profile example` against the raw bazel command it runs.

After one build of the example, both are run several times with nothing changed; prints the
median whole-process times, their difference and ratio, and the actions Bazel executed.
Target: at most 0.5 s more than raw Bazel, and zero actions executed.

Usage: python benchmarks/noop_rebuild.py [--runs N] [--warmup N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_OVERHEAD_S = 0.5


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{argv[:3]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return elapsed, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3,
                        help="unmeasured rounds of both first, so that both meet a warmed-up Bazel server")
    args = parser.parse_args()
    # Bytecode as Python keeps it for a user; this machine's PYTHONDONTWRITEBYTECODE would have
    # every run compile the modules edited since the install again.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src"), str(ROOT / "tasks.py")], check=True)
    work = Path(tempfile.mkdtemp(prefix="tfwheels-noop-"))
    tree = work / "tf"
    shutil.copytree(ROOT / "examples" / "tf-mini", tree)
    # The example has an undeclared inclusion that only --fix patches (see the README); it writes
    # the patch into a copy of the project (TFWHEELS_PROJECT), never into this checkout.
    project = work / "project"
    for name in ("configs", "templates", "patches"):
        shutil.copytree(ROOT / name, project / name)
    env = {**os.environ, "TFWHEELS_BUILD": str(work / "build"), "TFWHEELS_DIST": str(work / "dist"),
           "TFWHEELS_PROJECT": str(project)}
    build = [sys.executable, "-m", "invoke", "build-tf", "--profile", "example", "--source", str(tree), "--json"]
    try:
        first, _ = timed([*build, "--fix"], ROOT, env)
        _, plan_out = timed([*build, "--dry-run"], ROOT, env)
        plan = json.loads(plan_out.stdout)
        raw = plan["bazel_commands"][0]
        raw_env = {**env, **plan["env"]}  # and the environment tfwheels gives it
        timed(raw, tree, raw_env)  # the same flags as tfwheels, so the server keeps its state
        for _ in range(args.warmup):  # a fresh server's JIT is still compiling its first commands
            timed(build, ROOT, env)
            timed(raw, tree, raw_env)
        # What any invoke task costs before it does anything: part of every run, not tfwheels'.
        empty = work / "empty"
        empty.mkdir()
        (empty / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef nothing(c):\n    pass\n")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(empty)], check=True)
        tool_times, raw_times, floor_times, executed, early, saved = [], [], [], [], [], []
        for _ in range(args.runs):
            seconds, result = timed(build, ROOT, env)
            tool_times.append(seconds)
            outcome = json.loads(result.stdout)
            executed.append(outcome["actions_executed"])
            early.append(outcome["early_start"])
            saved.append(outcome["saved_plan"])
            seconds, _ = timed(raw, tree, raw_env)
            raw_times.append(seconds)
            floor_times.append(timed([sys.executable, "-m", "invoke", "nothing"], empty, env)[0])
    finally:
        bazel = shutil.which("bazel-4") or shutil.which("bazel") or shutil.which("bazelisk")
        if bazel:
            subprocess.run([bazel, "shutdown"], cwd=tree, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    tool, bare = statistics.median(tool_times), statistics.median(raw_times)
    print(f"first build (cold, --fix):     {first:7.3f} s")
    print(f"no-op, invoke build-tf median: {tool:7.3f} s  over {args.runs} runs {['%.3f' % t for t in tool_times]}")
    print(f"no-op, raw bazel median:       {bare:7.3f} s  {['%.3f' % t for t in raw_times]}")
    print(f"overhead:                      {tool - bare:+7.3f} s  (target <= {TARGET_OVERHEAD_S} s)")
    print(f"ratio:                         {tool / bare:7.2f}x")
    floor = statistics.median(floor_times)
    print(f"of the overhead, invoke itself: {floor:6.3f} s  (an empty task's whole process, median)")
    print(f"actions executed (no-op runs): {executed}  (target: all 0)")
    print(f"Bazel started before planning: {sum(early)} of {len(early)} runs (tfwheels.early)")
    print(f"last build's plan taken up:    {sum(saved)} of {len(saved)} runs (no profile loaded)")
    ok = tool - bare <= TARGET_OVERHEAD_S and not any(executed)
    print("target met" if ok else "target NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
