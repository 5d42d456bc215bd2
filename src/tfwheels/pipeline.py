"""Run a plan: render → patch → bazel build → package → collect, timing each stage."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfwheels.bazel import executed_actions, parse_processes, run_bazel
from tfwheels.bep import BuildSummary, summarize_file
from tfwheels.console import err
from tfwheels.errors import BuildError
from tfwheels.patches import PatchReport, apply_series
from tfwheels.plan import Plan
from tfwheels.render import write_atomic, write_rendered
from tfwheels.run import run
from tfwheels.source import head_commit
from tfwheels.wheels import Collected, collect

FINGERPRINT = ".tfwheels-fingerprint"


@dataclass
class BuildResult:
    """What a build did, for the summary and the report."""

    plan: Plan
    stages: dict[str, float] = field(default_factory=dict)
    rendered: list[str] = field(default_factory=list)
    patches: PatchReport | None = None
    processes: dict[str, int] = field(default_factory=dict)
    summary: BuildSummary | None = None
    packaged: bool = False
    collected: Collected | None = None

    @property
    def executed(self) -> int:
        """Actions Bazel really ran (its own bookkeeping not counted)."""
        return executed_actions(self.processes)


@contextmanager
def _stage(result: BuildResult, name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        result.stages[name] = round(time.monotonic() - start, 3)


def _point_latest(log: Path) -> None:
    latest = log.parent / "latest.log"
    tmp = log.parent / ".latest.log.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(log.name)
    os.replace(tmp, latest)


def _runfiles_fingerprint(plan: Plan) -> str | None:
    """A digest of what the packaging step reads, to skip it when nothing changed."""
    step = plan.profile.package
    digest = hashlib.sha256("\0".join(plan.package_argv or []).encode())
    if step.kind == "script":
        root = Path(plan.package_argv[0] + ".runfiles") if plan.package_argv else None
    elif step.kind == "run" and step.target:
        package, _, name = step.target.lstrip("/").partition(":")
        root = plan.tree / "bazel-bin" / package / f"{name}.runfiles"
    else:
        return None
    if root is None or not root.is_dir():
        return None
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _package(plan: Plan, result: BuildResult, on_line: Callable[[str], None] | None) -> list[Path]:
    output = plan.host.output
    step = plan.profile.package
    if step.kind == "outputs":
        assert step.directory is not None
        wanted = (plan.tree / "bazel-bin" / step.directory).resolve()
        outputs = [p for paths in (result.summary.outputs if result.summary else {}).values() for p in paths]
        return [p for p in outputs if p.suffix == ".whl" and p.resolve().parent == wanted]
    fingerprint = _runfiles_fingerprint(plan)
    stamp = output / FINGERPRINT
    existing = sorted(output.glob("*.whl"))
    if fingerprint and existing and stamp.is_file() and stamp.read_text() == fingerprint:
        return existing
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    assert plan.package_argv is not None
    outcome = run_bazel(
        plan.package_argv, cwd=plan.tree, env=plan.environment(), log_path=plan.log_path, on_line=on_line
    )
    if not outcome.ok:
        tail = "\n".join(outcome.tail[-15:])
        msg = f"packaging step failed (exit {outcome.exit_code}); full log: {plan.log_path}\n{tail}"
        raise BuildError(msg, outcome.exit_code, str(plan.log_path))
    result.packaged = True
    wheels = sorted(output.glob("*.whl"))
    if fingerprint:
        write_atomic(stamp, fingerprint.encode())
    return wheels


def manifest_metadata(plan: Plan, result: BuildResult) -> dict[str, Any]:
    """What the manifest records about the build that made a wheel."""
    profile = plan.profile
    source: dict[str, Any] = {"tree": str(plan.tree)}
    if profile.source.git is not None:
        source.update(url=profile.source.git.url, ref=profile.source.git.ref)
    else:
        source.update(path=profile.source.path)
    source["commit"] = head_commit(plan.tree)
    return {
        "profile": profile.name,
        "project": profile.project,
        "version": profile.version,
        "platform": profile.platform,
        "source": source,
        "patches": [{"file": p.name, "sha256": p.entry.sha256} for p in plan.series],
        "bazel_version": plan.bazel.version or "unknown",
        "bazel": plan.bazel.describe(),
        "build_seconds": round(sum(result.stages.values()), 3),
    }


def _stage_required(plan: Plan) -> None:
    if not plan.required_wheels:
        return
    deps = plan.layout.build / "deps" / plan.profile.key
    deps.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in plan.required_wheels}
    for old in deps.glob("*.whl"):
        if old.name not in wanted:
            old.unlink()
    for wheel in plan.required_wheels:
        target = deps / wheel.name
        if not target.is_file() or target.read_bytes() != wheel.read_bytes():
            shutil.copy2(wheel, target)


def execute(
    plan: Plan,
    *,
    allow_problems: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> BuildResult:
    """Run every stage of ``plan``; raise BuildError (with the log) if Bazel fails."""
    result = BuildResult(plan)
    tree = plan.tree
    with _stage(result, "configure"):
        result.rendered = write_rendered(plan.rendered, tree)
    with _stage(result, "patch"):
        result.patches = apply_series(tree, plan.series)
    _stage_required(plan)
    plan.log_path.parent.mkdir(parents=True, exist_ok=True)
    plan.bep_path.parent.mkdir(parents=True, exist_ok=True)
    plan.log_path.touch()
    _point_latest(plan.log_path)

    def watch(line: str) -> None:
        counts = parse_processes(line)
        if counts is not None:
            result.processes = counts
        if on_line is not None:
            on_line(line)

    with _stage(result, "build"):
        outcome = run_bazel(
            plan.build_argv, cwd=tree, env=plan.environment(), log_path=plan.log_path, on_line=watch
        )
    result.summary = summarize_file(plan.bep_path)
    if not outcome.ok:
        msg = (
            f"bazel build failed (exit {outcome.exit_code}); full log: {plan.log_path}; "
            "run `invoke diagnose` for the cause and the fix"
        )
        raise BuildError(msg, outcome.exit_code, str(plan.log_path))
    with _stage(result, "package"):
        wheels = _package(plan, result, on_line)
    if not wheels:
        msg = f"the build made no wheel in {plan.host.output}; check package: in {plan.profile.file}"
        raise BuildError(msg, 1, str(plan.log_path))
    with _stage(result, "collect"):
        result.collected = collect(
            wheels,
            plan.profile,
            plan.layout.dist,
            plan.layout.rejected(),
            manifest_metadata(plan, result),
            allow_problems=allow_problems,
        )
    if result.collected.rejected:
        names = ", ".join(r.wheel for r in result.collected.rejected)
        msg = (
            f"{names} failed verification and went to {plan.layout.rejected()}/ with a report; "
            "fix the build, or pass --allow-problems to collect anyway"
        )
        err.print(f"[red]{msg}[/red]")
        raise BuildError(msg, 1, str(plan.log_path))
    return result
