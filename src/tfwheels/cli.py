"""What each invoke task does, as plain functions that return an exit code.

``tasks.py`` only parses flags and calls these; ``handled`` turns every TfwheelsError into one
line and its exit code, so users never see a traceback for a problem tfwheels can explain.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

from invoke.exceptions import Exit

from tfwheels import console, interrupts
from tfwheels.atomic import write_atomic
from tfwheels.errors import InterruptedRun, TfwheelsError, UsageError
from tfwheels.layout import Layout
from tfwheels.locks import hold, tree_lock_path
from tfwheels.run import format_argv, run, which

# The rest loads in the function that needs it: a no-op rebuild starts its Bazel (tfwheels.early)
# before the profile's validation and planning libraries have even been imported.
if TYPE_CHECKING:
    from rich.console import Console

    from tfwheels import pipeline
    from tfwheels.early import EarlyBazel
    from tfwheels.plan import BuildOptions, Plan
    from tfwheels.profiles import Profile
    from tfwheels.remote_options import RemoteOptions

P = ParamSpec("P")
R = TypeVar("R")

PROJECTS = {"tf": "tensorflow", "tff": "tensorflow_federated"}


def handled(func: Callable[P, int]) -> Callable[P, int]:
    """Turn library errors into ``invoke.Exit`` with one red line and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        with interrupts.handling():
            try:
                code = func(*args, **kwargs)
                interrupts.checkpoint()
            except TfwheelsError as exc:
                if interrupts.received() and not isinstance(exc, InterruptedRun):
                    # A child (Bazel, the packaging step) stopped on our SIGINT and failed.
                    try:
                        interrupts.checkpoint("nothing partial was left")
                    except InterruptedRun as stopped:
                        exc = stopped
                _fail(exc)
            except KeyboardInterrupt:
                _fail(InterruptedRun("interrupted; rerun the same command to resume", 2))
            except BrokenPipeError:
                # stdout was closed early (`invoke profiles --json | head`): not an error of ours.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise Exit(code=0) from None
        if code:
            raise Exit(code=code)
        return 0

    return wrapper


def _fail(exc: TfwheelsError) -> NoReturn:
    from rich.markup import escape

    label = "stopped" if isinstance(exc, InterruptedRun) else "error"
    console.err.print(f"[bold red]{label}:[/bold red] {escape(str(exc))}", highlight=False)
    raise Exit(code=exc.exit_code) from None


def layout_for(root: Path) -> Layout:
    """The project layout. TFWHEELS_PROJECT points at another folder holding configs/,
    templates/ and patches/; TFWHEELS_BUILD and TFWHEELS_DIST move build/ and dist/."""
    project = os.environ.get("TFWHEELS_PROJECT")
    build = os.environ.get("TFWHEELS_BUILD")
    dist = os.environ.get("TFWHEELS_DIST")
    return Layout.at(
        Path(project) if project else root,
        Path(build) if build else None,
        Path(dist) if dist else None,
    )


def project_name(short: str) -> str:
    """``tf``/``tff`` (or the full name) -> the project's full name."""
    from tfwheels.profiles import PROJECT_DIRS

    if short in PROJECTS:
        return PROJECTS[short]
    if short in PROJECT_DIRS:
        return short
    msg = f"--project {short!r}: use tf or tff"
    raise UsageError(msg)


def _require_profile(name: str | None) -> str:
    if not name:
        msg = "--profile is required; `invoke profiles` lists them"
        raise UsageError(msg)
    return name


def _profile(root: Path, project: str, name: str | None) -> tuple[Layout, Profile]:
    from tfwheels.profiles import load_profile

    name = _require_profile(name)
    layout = layout_for(root)
    return layout, load_profile(name, project, layout.configs, layout.root)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def build(
    root: Path,
    project: str,
    profile_name: str | None,
    *,
    source: str | None = None,
    dry_run: bool = False,
    as_json: bool = False,
    jobs: int | None = None,
    ram: int | None = None,
    allow_problems: bool = False,
    force: bool = False,
    remote: RemoteOptions | None = None,
    fix: bool = False,
    max_rounds: int = 5,
    wait: bool = False,
) -> int:
    """Build one profile end to end, or print its plan with ``dry_run``.

    A second build of the same source tree refuses at once, naming the first, unless ``wait``.

    ``fix`` patches undeclared inclusions and builds again, up to ``max_rounds`` builds
    (tfwheels.autofix).

    When the last build of this command line recorded its Bazel command and nothing it was
    planned from has changed, that command starts before the profile is even loaded, and the
    plan adopts it or stops it (tfwheels.early). Where the host and the environment are also
    unchanged, the recorded plan is the plan and the profile is not loaded at all; with ``fix``
    the fixer loads it if that build fails.
    """
    from tfwheels import early
    from tfwheels.remote_options import RemoteOptions

    remote = remote or RemoteOptions()
    if dry_run:
        from tfwheels.plan import BuildOptions, make_plan
        from tfwheels.source import source_tree

        layout, profile = _profile(root, project, profile_name)
        options = BuildOptions(jobs=jobs, local_ram_mb=ram, dry_run=True, remote=remote)
        plan = make_plan(profile, layout, source_tree(profile, layout, source), options)
        if as_json:
            _print_json(plan.to_json())
        else:
            _print_plan(plan)
        return 0
    profile_name = _require_profile(profile_name)
    settings = _BuildSettings(
        project, profile_name, source, jobs, ram, remote, as_json=as_json, allow_problems=allow_problems,
        force=force, fix=fix, max_rounds=max_rounds,
    )
    layout = layout_for(root)
    record_name = early.key(project, profile_name, source, jobs, ram, remote)
    record = None if force else early.lookup(layout, record_name)
    if record is not None:
        with hold(tree_lock_path(record.tree), f"source tree {record.tree}", wait=wait):
            # After a wait for another build of this tree, what the record was made from may differ.
            current = early.lookup(layout, record_name) if wait else record
            if current is not None and current.tree == record.tree:
                with early.started(current) as running_early:
                    saved = current.saved_plan()
                    done = _saved_tree_as_is(saved, source, force) if saved is not None else None
                    if saved is not None and done is not None:
                        console.err.print(f"source: {done}")
                        console.err.print("plan: the last build's (nothing it was made from has changed)")
                        chain = current.profile_chain
                        return _run_plan(saved, settings, record_name, running_early, lambda: chain, saved=True)
                    _, profile = _profile(root, project, profile_name)
                    if _tree_of(profile, layout, source) == current.tree:
                        return _build_locked(profile, layout, settings, record_name, running_early)
        # The profile names another tree now (the early Bazel has been stopped), or the record no
        # longer holds: build as usual.
    _, profile = _profile(root, project, profile_name)
    tree = _tree_of(profile, layout, source)
    with hold(tree_lock_path(tree), f"source tree {tree}", wait=wait):
        return _build_locked(profile, layout, settings, record_name, None)


@dataclass(frozen=True)
class _BuildSettings:
    """The command line of one ``build-tf``/``build-tff``."""

    project: str
    profile_ref: str
    source: str | None
    jobs: int | None
    ram: int | None
    remote: RemoteOptions
    as_json: bool
    allow_problems: bool
    force: bool
    fix: bool
    max_rounds: int

    def options(self) -> BuildOptions:
        """What this command line adds to the profile's plan."""
        from tfwheels.plan import BuildOptions

        return BuildOptions(jobs=self.jobs, local_ram_mb=self.ram, remote=self.remote)


def _saved_tree_as_is(plan: Plan, override: str | None, force: bool) -> str | None:
    """What ``prepare_source`` would say of the saved plan's tree, if it leaves it as it is;
    None when it would fetch or copy (the profile is then loaded and the source prepared)."""
    from tfwheels.source import tree_as_is

    git = plan.profile.source.git
    commit = git.commit if git is not None else None
    return tree_as_is(plan.tree, overridden=bool(override), commit=commit, force=force)


def _tree_of(profile: Profile, layout: Layout, source: str | None) -> Path:
    from tfwheels.source import source_tree

    return source_tree(profile, layout, source)


def _preflight(profile: Profile, layout: Layout) -> None:
    """Refuse what needs no source tree to refuse, before one is cloned or copied (a TF clone
    is gigabytes): a profile for another platform, no usable Bazel, a patch that does not
    match its pin. make_plan checks all of these again, with the tree."""
    from tfwheels.bazel import find_bazel
    from tfwheels.patches import load_series
    from tfwheels.profiles import host_platform

    host = host_platform()
    if profile.platform != host:
        msg = (
            f"{profile.file} platform: {profile.platform}, but this machine is {host}; build it "
            f"on a {profile.platform} machine (tfwheels does not cross-compile), or see its plan "
            "with --dry-run"
        )
        raise UsageError(msg)
    find_bazel(profile)
    load_series(profile, layout.patches)


def _build_locked(
    profile: Profile,
    layout: Layout,
    settings: _BuildSettings,
    record_name: str,
    early_bazel: EarlyBazel | None,
) -> int:
    from tfwheels.plan import make_plan
    from tfwheels.source import prepare_source

    _preflight(profile, layout)
    tree, done = prepare_source(profile, layout, settings.source, force=settings.force)
    console.err.print(f"source: {done}")
    plan = make_plan(profile, layout, tree, settings.options())

    def chain() -> list[Path]:
        from tfwheels.profiles import profile_files, resolve_profile_path

        path = resolve_profile_path(layout.configs, settings.project, settings.profile_ref)
        return profile_files(path, layout.configs)

    return _run_plan(plan, settings, record_name, early_bazel, chain)


def _run_plan(
    plan: Plan,
    settings: _BuildSettings,
    record_name: str,
    early_bazel: EarlyBazel | None,
    profile_chain: Callable[[], Iterable[Path]],
    *,
    saved: bool = False,
) -> int:
    """Build ``plan`` (with ``--fix`` rounds), record its command for the next build, print the
    result; ``profile_chain``: the profile's file and each it extends, for the record; ``saved``:
    the plan is the last build's (tfwheels.early)."""
    from tfwheels import early, pipeline
    from tfwheels.progress import make_display

    for warning in plan.warnings:
        console.err.print(f"[yellow]warning:[/yellow] {warning}")
    # The summary table ends every build, failed ones too; with --json it goes to stderr so
    # that stdout stays one JSON document.
    summary_console = console.err if settings.as_json else console.out

    unused_early = [early_bazel] if early_bazel is not None else []

    def execute(plan: Plan) -> pipeline.BuildResult:
        return pipeline.execute(
            plan,
            allow_problems=settings.allow_problems,
            display=make_display(console.err),
            on_finish=lambda finished: _print_summary(finished, summary_console),
            early=unused_early.pop() if unused_early else None,  # the first round's only
        )

    if settings.fix:
        result = _build_fixing(plan, execute, settings)
    else:
        result = execute(plan)
    if early_bazel is None or not early_bazel.adopted or result.wrote_tree:  # else it holds
        early.remember(record_name, result.plan, profile_chain())
    if settings.as_json:
        _print_json(_result_json(result, saved_plan=saved))
    return 0


def _build_fixing(
    plan: Plan,
    execute: Callable[[Plan], pipeline.BuildResult],
    settings: _BuildSettings,
) -> pipeline.BuildResult:
    """``--fix``: the first round is a build like any other; the fixer, and the profile models
    it edits, load only when that round fails (a rebuild of a fixed tree never needs them)."""
    from tfwheels.errors import BuildError

    if settings.max_rounds < 1:
        msg = f"--max-rounds must be at least 1, not {settings.max_rounds}"
        raise UsageError(msg)
    try:
        return execute(plan)
    except BuildError as failed:
        from tfwheels.autofix import build_with_fixes

        return build_with_fixes(
            plan, execute, profile_ref=settings.profile_ref, options=settings.options(),
            max_rounds=settings.max_rounds,
            first=failed,
        )


def _print_plan(plan: Plan) -> None:
    data = plan.to_json()
    console.out.print(f"[bold]plan for {data['profile']}[/bold] ({data['project']} {data['version']}, {data['platform']})")
    console.out.print(f"source: {data['source']}")
    console.out.print(f"bazel: {data['bazel']}")
    for dest in data["rendered"]:
        console.out.print(f"render: {dest}")
    for patch in data["patches"]:
        console.out.print(f"patch: {patch['file']} ({patch['sha256'][:12]})")
    for argv in data["commands"]:
        console.out.print(f"run: {format_argv(argv)}", highlight=False, markup=False)
    for warning in data["warnings"]:
        console.out.print(f"[yellow]warning:[/yellow] {warning}")


def _result_json(result: pipeline.BuildResult, *, saved_plan: bool) -> dict[str, Any]:
    from tfwheels.report import cache_figures

    collected = result.collected
    return {
        "profile": result.plan.profile.name,
        "stages": result.stages,
        "processes": result.processes,
        "actions_executed": result.executed,
        "cache": {k: cache_figures(result.processes)[k] for k in ("remote_cache_hits", "hit_ratio")},
        "wheels": collected.accepted if collected else [],
        "log": str(result.plan.log_path),
        "report": str(result.report_path) if result.report_path else None,
        "ok": result.ok,
        "early_start": result.early_start,
        "saved_plan": saved_plan,  # the last build's plan, taken up without loading the profile
    }


def _print_summary(result: pipeline.BuildResult, to: Console | None = None) -> None:
    """The end-of-build table (on ``to``, default stdout), read back from the report file so it
    shows what was saved."""
    from tfwheels import report as build_reports

    to = to or console.out
    path = result.report_path
    data = build_reports.load_report(path) if path else build_reports.build_report(result)
    to.print(build_reports.summary_table(data))
    if path:
        to.print(f"report: {path}", highlight=False, markup=False)


def configure(root: Path, project: str, profile_name: str | None, *, source: str | None, check: bool) -> int:
    """Render the profile's files into the source tree (or, with ``check``, say if they differ)."""
    from tfwheels.plan import BuildOptions, make_plan
    from tfwheels.render import stale_rendered, write_rendered
    from tfwheels.source import source_tree

    layout, profile = _profile(root, project, profile_name)
    tree = source_tree(profile, layout, source)
    if not tree.is_dir():
        msg = f"{tree} does not exist yet; run `invoke fetch --profile {profile.name}` or pass --source"
        raise UsageError(msg)
    plan = make_plan(profile, layout, tree, BuildOptions(dry_run=True))
    if check:
        stale = stale_rendered(plan.rendered, tree)
        for dest in stale:
            console.out.print(f"out of date: {dest}")
        return 1 if stale else 0
    with hold(tree_lock_path(tree), f"source tree {tree}", wait=False):
        written = write_rendered(plan.rendered, tree)
    for dest in sorted(plan.rendered):
        console.out.print(f"{'wrote' if dest in written else 'unchanged'}: {tree / dest}")
    return 0


def patch(root: Path, project: str, profile_name: str | None, *, source: str | None, revert: bool, as_json: bool) -> int:
    """Apply the profile's patch series to the tree (or revert what was applied)."""
    from tfwheels.patches import apply_series, load_series, read_state, revert_series
    from tfwheels.source import source_tree

    layout, profile = _profile(root, project, profile_name)
    tree = source_tree(profile, layout, source)
    if not tree.is_dir():
        msg = f"{tree} does not exist yet; run `invoke fetch --profile {profile.name}` or pass --source"
        raise UsageError(msg)
    with hold(tree_lock_path(tree), f"source tree {tree}", wait=False):
        if revert:
            report = revert_series(tree)
        else:
            report = apply_series(tree, load_series(profile, layout.patches))
    if as_json:
        _print_json({**report.to_json(), "state": read_state(tree)["applied"]})
        return 0
    for name in report.applied:
        console.out.print(f"applied: {name}")
    for name in report.skipped:
        console.out.print(f"already applied: {name}")
    for name in report.reverted:
        console.out.print(f"reverted: {name}")
    if not (report.applied or report.skipped or report.reverted):
        console.out.print("nothing to do")
    return 0


def collect(root: Path, project: str, profile_name: str | None, *, wheels: list[str], allow_problems: bool) -> int:
    """Verify wheels (default: the profile's wheelhouse) and move the good ones into dist/."""
    from tfwheels.wheels import collect as collect_wheels

    layout, profile = _profile(root, project, profile_name)
    paths = [Path(w) for w in wheels] or sorted(layout.wheelhouse(profile.key).glob("*.whl"))
    if not paths:
        msg = f"no wheels given and none in {layout.wheelhouse(profile.key)}; build first or name the wheels"
        raise UsageError(msg)
    metadata = {"profile": profile.name, "project": profile.project, "version": profile.version, "platform": profile.platform}
    result = collect_wheels(paths, profile.facts(), layout.dist, layout.rejected(), metadata, allow_problems)
    for entry in result.accepted:
        console.out.print(f"collected: {entry['wheel']}")
    for report in result.rejected:
        console.out.print(f"[red]rejected[/red]: {report.wheel} (report in {layout.rejected()})")
    return 1 if result.rejected else 0


def profiles(root: Path, *, as_json: bool) -> int:
    """List every profile with its project, version, platform and Bazel."""
    from rich.table import Table

    from tfwheels.profiles import list_profiles, load_profile

    layout = layout_for(root)
    rows: list[dict[str, Any]] = []
    for found in list_profiles(layout.configs):
        profile = load_profile(str(found.path), found.project, layout.configs, layout.root)
        rows.append(
            {
                "name": profile.name,
                "project": profile.project,
                "version": profile.version,
                "platform": profile.platform,
                "bazel_version": profile.bazel.version,
                "python": profile.python.version,
                "file": profile.file,
                "description": profile.description,
            }
        )
    if as_json:
        _print_json(rows)
        return 0
    table = Table(title="tfwheels profiles")
    widest = max((len(row["name"]) for row in rows), default=4)
    table.add_column("name", no_wrap=True, min_width=widest)  # a name cut short names nothing
    for column in ("project", "version", "platform", "bazel"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("name", "project", "version", "platform", "bazel_version")))
    console.out.print(table)
    return 0


def schema(root: Path, output: str | None) -> int:
    """Write the JSON Schema of profile files (default: schema/profile.schema.json)."""
    from tfwheels.profiles import profile_schema

    target = Path(output) if output else root / "schema" / "profile.schema.json"
    data = json.dumps(profile_schema(), indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_atomic(target, data)
    console.out.print(f"wrote {target}")
    return 0


def clean(root: Path, *, dist: bool, expunge: bool) -> int:
    """Remove build/ (and dist/ with ``dist``); ``expunge`` also shuts Bazel down in each tree."""
    layout = layout_for(root)
    if expunge and layout.sources.is_dir():
        bazel = which("bazel") or which("bazelisk")
        for tree in sorted(layout.sources.iterdir()):
            if bazel and (tree / "WORKSPACE").exists():
                run([str(bazel), "clean", "--expunge"], cwd=tree, check=False)
    for path in [layout.build, *([layout.dist] if dist else [])]:
        if path.exists():
            shutil.rmtree(path)
            console.out.print(f"removed {path}")
    return 0


def fetch(root: Path, project: str, profile_name: str | None, *, dest: str | None, force: bool) -> int:
    """Clone (or copy) the profile's source tree, checked against its pinned commit."""
    from tfwheels.fetch import fetch_source
    from tfwheels.source import default_tree

    layout, profile = _profile(root, project, profile_name)
    tree = Path(dest).resolve() if dest else default_tree(profile, layout)
    with hold(tree_lock_path(tree), f"source tree {tree}", wait=False):
        _tree, done = fetch_source(profile, layout, tree, force=force)
    console.out.print(done, highlight=False)
    return 0


def doctor(root: Path, project: str | None, profile_name: str | None, *, as_json: bool) -> int:
    """Check this host (and, with a profile, its Bazel and Python) before a long build."""
    from tfwheels import doctor as doctor_checks

    return doctor_checks.doctor_command(root, project, profile_name, as_json)


def verify_wheel(
    wheels: list[str],
    *,
    target: str | None,
    as_json: bool,
    python: str | None = None,
    fix_signatures: bool = False,
    output: str | None = None,
    resolve: bool = False,
    find_links: list[str] | None = None,
    index_url: str | None = None,
    no_index: bool = False,
    quick: bool = False,
) -> int:
    """Verify wheels (files or folders) as one set; exit 1 if any has a problem. ``quick``
    reads headers only (no CRC, RECORD hashes or code signatures)."""
    from tfwheels.resolve import ResolveOptions
    from tfwheels.verify_report import verify_command

    if (find_links or index_url or no_index) and not resolve:
        msg = "--find-links, --index-url and --no-index only apply with --resolve"
        raise UsageError(msg)
    if output and not fix_signatures:
        msg = "--output only applies with --fix-signatures (where to write repaired wheels)"
        raise UsageError(msg)
    if quick and fix_signatures:
        msg = "--quick skips code signatures, so it cannot go with --fix-signatures; drop one"
        raise UsageError(msg)
    options = ResolveOptions(tuple(find_links or ()), index_url, no_index) if resolve else None
    return verify_command(
        wheels, target, as_json, python=python, fix_signatures=fix_signatures, output=output,
        resolve=options, check_record=not quick,
    )


def report(
    root: Path,
    profile_name: str | None = None,
    *,
    project: str | None = None,
    as_json: bool = False,
    as_markdown: bool = False,
) -> int:
    """Print the newest build report again (of one profile or project, when given)."""
    from tfwheels import report as build_reports

    layout = layout_for(root)
    path = build_reports.latest_report(layout.build, profile_name, project_name(project) if project else None)
    if as_json:
        print(path.read_text("utf-8"), end="")
        return 0
    data = build_reports.load_report(path)
    if as_markdown:
        print(build_reports.markdown(data), end="")
        return 0
    console.out.print(build_reports.summary_table(data))
    console.out.print(f"report: {path}", highlight=False, markup=False)
    return 0


# The Python of CI jobs for profiles that leave python.version to the interpreter.
CI_DEFAULT_PYTHON = "3.11"


def _wheel_provider(profile: Profile, candidates: list[Profile]) -> Profile | None:
    """The newest of ``candidates`` that builds every wheel ``profile`` requires, or None."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    providers: list[Profile] = []
    for text in profile.requires.wheels:
        requirement = Requirement(text)
        matching = [
            c for c in candidates
            if canonicalize_name(c.wheel.distribution) == canonicalize_name(requirement.name)
            and requirement.specifier.contains(c.version, prereleases=True)
            and c.python.version == profile.python.version
        ]
        if not matching:
            return None
        providers.append(max(matching, key=lambda c: Version(c.version)))
    return providers[0] if providers else None


def ci_matrix_entries(layout: Layout, platform: str, project: str | None = None) -> list[dict[str, str]]:
    """The buildable profiles of ``platform`` as GitHub Actions matrix entries.

    A profile that needs another project's wheel (TFF needs TF's) names the profile that builds
    it as ``tf_profile``, and is left out, with a note on stderr, when no profile does.
    """
    from tfwheels.profiles import list_profiles, load_profile

    loaded = [
        load_profile(str(found.path), found.project, layout.configs, layout.root)
        for found in list_profiles(layout.configs)
    ]
    same_platform = [p for p in loaded if p.platform == platform]
    entries: list[dict[str, str]] = []
    for profile in same_platform:
        if project and profile.project != project:
            continue
        entry = {
            "project": profile.project_dir,
            "profile": profile.name,
            "python": profile.python.version or CI_DEFAULT_PYTHON,
        }
        if profile.requires.wheels:
            provider = _wheel_provider(profile, [p for p in same_platform if p is not profile])
            if provider is None:
                wanted = ", ".join(profile.requires.wheels)
                console.err.print(f"left out {profile.key}: no {platform} profile builds {wanted}", highlight=False)
                continue
            entry[f"{provider.project_dir}_profile"] = provider.name
        entries.append(entry)
    return entries


def ci_matrix(root: Path, *, platform: str = "darwin_arm64", project: str | None = None, as_json: bool = False) -> int:
    """Print the CI build matrix: every buildable profile of ``platform`` with its Python and
    ``cache_key``, the sha256 of what that profile builds from: its chain of files (the profile
    YAML and each file it ``extends:``) and its active patch series' sha256s. A change to one
    profile's configs or patches changes that profile's Bazel cache key only."""
    import hashlib

    from rich.table import Table

    from tfwheels.patches import load_series
    from tfwheels.atomic import file_sha256
    from tfwheels.profiles import load_profile, profile_files, resolve_profile_path

    layout = layout_for(root)
    entries = ci_matrix_entries(layout, platform, project_name(project) if project else None)
    configs = layout.configs.resolve()

    def cache_key(entry: dict[str, str]) -> str:
        full = project_name(entry["project"])
        path = resolve_profile_path(layout.configs, full, entry["profile"])
        profile = load_profile(str(path), full, layout.configs, layout.root)
        digest = hashlib.sha256()
        for file in reversed(profile_files(path, layout.configs)):
            name = file.relative_to(configs).as_posix() if file.is_relative_to(configs) else file.name
            digest.update(f"profile {name} {file_sha256(file)}\n".encode())
        # load_series checks each patch file against the sha256 the profile pins.
        for patch_file in load_series(profile, layout.patches):
            digest.update(f"patch {patch_file.name} {patch_file.sha256}\n".encode())
        return digest.hexdigest()

    for entry in entries:
        entry["cache_key"] = cache_key(entry)
    if as_json:
        # One line: the workflow passes it through $GITHUB_OUTPUT to strategy.matrix.
        print(json.dumps({"include": entries}, separators=(",", ":")))
        return 0
    table = Table(title=f"CI build matrix ({platform})")
    for column in ("project", "profile", "python", "needs", "cache key"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry["project"], entry["profile"], entry["python"], entry.get("tf_profile", ""),
                      entry["cache_key"][:12])
    console.out.print(table)
    return 0


def diagnose(root: Path, log: str | None, *, as_json: bool, source: str | None) -> int:
    """Diagnose a Bazel log (default: the last build's); exit 1 when failures were found."""
    from tfwheels.diagnose import diagnose_command

    return diagnose_command(log, as_json, source, layout_for(root).logs)
