"""Run a plan: render → patch → bazel build → package → collect, timing each stage."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tfwheels.atomic import copy_plain, same_bytes, write_atomic
from tfwheels.bazel import executed_actions, parse_processes, run_bazel
from tfwheels.bep import BuildSummary, summarize_file
from tfwheels.console import err
from tfwheels.credentials import local_retry_warranted, log_lines_since, use_local_only
from tfwheels.credentials import session as remote_session
from tfwheels.errors import BuildError, TfwheelsError
from tfwheels.interrupts import checkpoint
from tfwheels.patches import PatchReport, apply_series, series_in_place
from tfwheels.plan import Plan
from tfwheels.progress import BuildMonitor, Display, ProgressState, diagnose_log
from tfwheels.render import expand, stale_rendered, write_rendered
from tfwheels.report import write_report
from tfwheels.run import Result, Started
from tfwheels.source import head_commit, stage_wheels, staging_changes
from tfwheels.wheels import Collected, already_collected, collect

if TYPE_CHECKING:
    from tfwheels.early import EarlyBazel
    from tfwheels.smoke import SmokeResult

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
    started: float = 0.0
    finished: float = 0.0
    ok: bool = False
    error: str | None = None
    failed_stage: str | None = None
    bazel_exit: int | None = None
    diagnosis: list[str] = field(default_factory=list)
    progress: ProgressState | None = None
    report_path: Path | None = None
    early_start: bool = False  # Bazel was started before the plan was made (tfwheels.early)

    @property
    def wrote_tree(self) -> bool:
        """True when configure or patch changed a file in the source tree."""
        patches = self.patches
        return bool(self.rendered or (patches and (patches.applied or patches.reverted)))

    @property
    def executed(self) -> int:
        """Actions Bazel really ran (its internal bookkeeping and cache hits not counted)."""
        return executed_actions(self.processes)


@contextmanager
def _stage(result: BuildResult, name: str, since: float | None = None) -> Iterator[None]:
    """Time the block as stage ``name``; ``since``: it began earlier, at that monotonic time."""
    start = time.monotonic() if since is None else since
    try:
        yield
    except BaseException:
        result.failed_stage = name
        raise
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
    # The step's own arguments, not the whole argv: that also holds per-run paths (a remote
    # cache's private rc file), which would make every run look new.
    values = plan.host.placeholders()
    digest = hashlib.sha256("\0".join(expand(a, values) for a in step.args).encode())
    if step.kind == "script":
        root = Path(plan.package_argv[0] + ".runfiles") if plan.package_argv else None
    elif step.kind == "run" and step.target:
        package, _, name = step.target.lstrip("/").partition(":")
        root = plan.tree / "bazel-bin" / package / f"{name}.runfiles"
    else:
        return None
    if root is None or not root.is_dir():
        return None
    for relative, size, mtime in _files_under(root):
        digest.update(f"{relative}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _files_under(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime) of every file under ``root``, links to files followed, links
    to folders not, sorted. os.walk, not Path.rglob: TF's runfiles are tens of thousands of files."""
    prefix = len(str(root)) + 1
    found = []
    for folder, _folders, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError:  # a dangling link
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((path[prefix:], info.st_size, info.st_mtime_ns))
    return sorted(found)


def _built_wheels(plan: Plan, summary: BuildSummary | None) -> list[Path]:
    """The ``*.whl`` files the build left in ``package.directory`` (relative to bazel-bin/).

    From the BEP first: files whose BEP name lies in that directory (Bazel 4.2.3 lists a tree
    artifact's files expanded, so a ``declare_directory("wheel_house")`` and a declared file
    ``wheel_house/<name>.whl`` look alike), or the directory itself where a Bazel lists it as
    one entry, or its ``directoryOutput`` (exec root / pathPrefix / name). Only when the BEP names
    no wheel there, ``bazel-bin/<directory>/*.whl``.
    """
    step = plan.profile.package
    assert step.directory is not None
    directory = PurePosixPath(expand(step.directory, plan.host.placeholders()).strip("/"))
    in_bin = plan.tree / "bazel-bin" / directory
    wanted = in_bin.resolve()
    found: dict[str, Path] = {}

    def add_dir(folder: Path | None) -> None:
        if folder is not None and folder.is_dir():
            for wheel in sorted(folder.glob("*.whl")):
                found.setdefault(wheel.name, wheel)

    if summary is not None:
        for files in summary.files.values():
            for entry in files:
                name = PurePosixPath(entry.name)
                if entry.path is None:
                    continue
                if name == directory:
                    add_dir(entry.path)
                elif name.suffix == ".whl" and (
                    name.parent == directory or entry.path.resolve().parent == wanted
                ) and entry.path.is_file():
                    found.setdefault(entry.path.name, entry.path)
        if not found:
            for dirs in summary.directories.values():
                for entry in dirs:
                    if PurePosixPath(entry.name) == directory:
                        add_dir(entry.path)
    if not found:
        add_dir(in_bin)
    return [found[name] for name in sorted(found)]


def _sync_changes(wheels: list[Path], output: Path) -> tuple[list[Path], list[Path]]:
    """What ``_sync_wheels`` would do: the wheels in ``output`` to remove, and those to copy."""
    names = {w.name for w in wheels}
    stale = sorted(old for old in output.glob("*.whl") if old.name not in names)
    return stale, [wheel for wheel in wheels if not same_bytes(wheel, output / wheel.name)]


def _sync_wheels(wheels: list[Path], output: Path) -> list[Path]:
    """Make ``output`` hold exactly ``wheels`` (others removed, changed ones copied) as plain
    0644 files, not bazel-out's read-only ones; returns the copies."""
    output.mkdir(parents=True, exist_ok=True)
    stale, changed = _sync_changes(wheels, output)
    for old in stale:
        old.unlink()
    for wheel in changed:
        copy_plain(wheel, output / wheel.name)
    return [output / wheel.name for wheel in wheels]


def _package(plan: Plan, result: BuildResult, on_line: Callable[[str], None] | None) -> list[Path]:
    output = plan.host.output
    step = plan.profile.package
    if step.kind == "outputs":
        # Into the wheelhouse (invoke collect reads it), as the script and run steps leave theirs.
        return _sync_wheels(_built_wheels(plan, result.summary), output)
    fingerprint = _runfiles_fingerprint(plan)
    stamp = output / FINGERPRINT
    existing = sorted(output.glob("*.whl"))
    if fingerprint and existing and stamp.is_file() and stamp.read_text() == fingerprint:
        return existing
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    assert plan.package_argv is not None
    with remote_session(plan):
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
        "patches": [{"file": p.name, "sha256": p.sha256} for p in plan.series],
        "bazel_version": plan.bazel.version or "unknown",
        "bazel": plan.bazel.describe(),
        "build_seconds": round(sum(result.stages.values()), 3),
    }


def _tree_in_place(plan: Plan) -> bool:
    """True when configure, patch and the staging of required wheels would write nothing."""
    if stale_rendered(plan.rendered, plan.tree) or not series_in_place(plan.tree, plan.series):
        return False
    if not plan.required_wheels:
        return True
    if any(_sync_changes(plan.required_wheels, plan.layout.build / "deps" / plan.profile.key)):
        return False
    folder = plan.profile.requires.tree_folder
    return not folder or not any(staging_changes(plan.required_wheels, plan.tree, folder))


def _stage_required(plan: Plan) -> None:
    """Copy the wheels the build consumes where its workspace reads them: build/deps/<key>
    (through ``requires.folder_env``) and, if the profile names one, a folder in the tree."""
    if not plan.required_wheels:
        return
    _sync_wheels(plan.required_wheels, plan.layout.build / "deps" / plan.profile.key)
    if plan.profile.requires.tree_folder:
        stage_wheels(plan.required_wheels, plan.tree, plan.profile.requires.tree_folder)


LineHandler = Callable[[str], None]


def execute(
    plan: Plan,
    *,
    allow_problems: bool = False,
    on_line: LineHandler | None = None,
    display: Display | None = None,
    on_finish: Callable[[BuildResult], None] | None = None,
    early: EarlyBazel | None = None,
) -> BuildResult:
    """Run every stage of ``plan``; raise BuildError (with the log) if Bazel fails.

    Progress goes to ``display`` (see tfwheels.progress; None shows nothing) and every console
    line to ``on_line`` as well. Whatever happens, a report is written to ``build/reports/`` and
    ``on_finish`` gets the finished result (``report_path`` set) before an error goes on up.

    ``early`` is a Bazel started before the plan was made: it becomes the build if it runs the
    plan's command and the tree needs no change, and is stopped before anything is written if not.
    """
    result = BuildResult(plan, started=time.time())
    monitor = BuildMonitor(plan.bep_path, display, label=plan.profile.key)
    result.progress = monitor.state
    monitor.start()
    try:
        _run_stages(plan, result, monitor, allow_problems, on_line, early)
        result.ok = True
    except BaseException as exc:
        result.error = _describe(exc)
        if result.failed_stage in ("build", "package"):
            result.diagnosis = diagnose_log(plan.log_path)
        raise
    finally:
        monitor.stop(result.ok, result.diagnosis)
        result.finished = time.time()
        _report(result)
        if on_finish is not None:
            on_finish(result)
    return result


def _smoke_test(plan: Plan, wheel: Path) -> SmokeResult:
    from tfwheels.smoke import smoke_test  # its libraries load only when a wheel is new

    return smoke_test(wheel, plan.layout.dist, plan.host.python_bin, plan.profile.test_command)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, TfwheelsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _report(result: BuildResult) -> None:
    """Write the report; a full disk must not hide the build's own outcome."""
    try:
        result.report_path = write_report(result)
    except OSError as exc:
        err.print(f"[yellow]warning:[/yellow] could not write the build report: {exc}")


def _tee(*handlers: LineHandler | None) -> LineHandler:
    def handle(line: str) -> None:
        for handler in handlers:
            if handler is not None:
                handler(line)

    return handle


def _run_stages(
    plan: Plan,
    result: BuildResult,
    monitor: BuildMonitor,
    allow_problems: bool,
    on_line: LineHandler | None,
    early: EarlyBazel | None = None,
) -> None:
    tree = plan.tree
    if early is not None and not _tree_in_place(plan):
        early.cancel()  # before configure or patch writes a file it may be reading
    with _stage(result, "configure"):
        result.rendered = write_rendered(plan.rendered, tree)
    with _stage(result, "patch"):
        result.patches = apply_series(tree, plan.series)
    checkpoint("the rendered files and the whole patch series are in place and recorded")
    _stage_required(plan)
    plan.log_path.parent.mkdir(parents=True, exist_ok=True)
    plan.bep_path.parent.mkdir(parents=True, exist_ok=True)
    started = early.adopt() if early is not None and early.matches(plan) else None
    if early is not None and started is None:
        early.cancel()
    result.early_start = started is not None
    if started is None:
        # Whatever the progress reader finds in the BEP file must come from this build (an
        # adopted early Bazel removed it before it started).
        plan.bep_path.unlink(missing_ok=True)
    plan.log_path.touch()
    _point_latest(plan.log_path)

    def watch(line: str) -> None:
        counts = parse_processes(line)
        if counts is not None:
            result.processes = counts

    # An adopted early Bazel's time counts from its start, before the plan was made.
    with _stage(result, "build", started.began if started else None), remote_session(plan, build=True):
        log_start = plan.log_path.stat().st_size if plan.log_path.is_file() else 0
        monitor.tail_bep(True)

        def build(started: Started | None = None) -> Result:
            return run_bazel(
                plan.build_argv,
                cwd=tree,
                env=plan.environment(),
                log_path=plan.log_path,
                on_line=_tee(watch, monitor.on_line, on_line),
                started=started,
            )

        try:
            outcome = build(started)
            # A gRPC cache that refuses the credential is first seen by Bazel (the preflight
            # only reaches it by TCP); with local_fallback on, build once more without it.
            if not outcome.ok and local_retry_warranted(
                plan.remote, outcome.exit_code, log_lines_since(plan.log_path, log_start)
            ):
                err.print(
                    f"[yellow]warning:[/yellow] the remote {plan.remote.remote_url} refused the build "
                    f"(Bazel exit {outcome.exit_code}); building again locally (remote.local_fallback)",
                    highlight=False,
                )
                use_local_only(plan.remote)
                outcome = build()
        finally:
            monitor.tail_bep(False)
        result.bazel_exit = outcome.exit_code
        result.summary = summarize_file(plan.bep_path)
        checkpoint("Bazel stopped its build cleanly and kept its caches")
        if not outcome.ok:
            msg = (
                f"bazel build failed (exit {outcome.exit_code}); full log: {plan.log_path}; "
                "run `invoke diagnose` for the cause and the fix"
            )
            raise BuildError(msg, outcome.exit_code, str(plan.log_path))
    monitor.enter("packaging")
    with _stage(result, "package"):
        wheels = _package(plan, result, _tee(monitor.on_line, on_line))
        if not wheels:
            msg = f"the build made no wheel in {plan.host.output}; check package: in {plan.profile.file}"
            raise BuildError(msg, 1, str(plan.log_path))
    checkpoint(f"the built wheels are in {plan.host.output}; dist/ is unchanged")
    with _stage(result, "collect"):
        unchanged = None if result.packaged else already_collected(wheels, plan.layout.dist)
        result.collected = unchanged or collect(
            wheels,
            plan.profile,
            plan.layout.dist,
            plan.layout.rejected(),
            manifest_metadata(plan, result),
            allow_problems=allow_problems,
            companions=plan.required_wheels,
            smoke=lambda wheel: _smoke_test(plan, wheel),
        )
        if result.collected.rejected:
            names = ", ".join(r.wheel for r in result.collected.rejected)
            msg = (
                f"{names} failed verification and went to {plan.layout.rejected()}/ with a report; "
                "fix the build, or pass --allow-problems to collect anyway"
            )
            err.print(f"[red]{msg}[/red]")
            raise BuildError(msg, 1, str(plan.log_path))
