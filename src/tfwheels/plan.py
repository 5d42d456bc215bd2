"""Turn a profile into a build plan: every file to render, patch to apply and command to run.

Making a plan changes nothing on disk, so ``--dry-run`` prints exactly what a build would do.

A plan is plain data (no pydantic model in it): ``Plan.snapshot`` and ``Plan.from_snapshot``
let a rebuild take up the last build's plan without loading the profile (tfwheels.early). The
profile and remote models, Jinja2 and psutil load only when a plan is made afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfwheels.bazel import NOT_FOUND, BazelTool, bazel_env, build_argv, check_version, find_bazel
from tfwheels.errors import ProfileError, TfwheelsError, UsageError
from tfwheels.layout import Layout
from tfwheels.patches import PatchFile, load_series
from tfwheels.profile_facts import ProfileFacts
from tfwheels.pyenv import PythonFacts, probe_python
from tfwheels.remote_options import RemoteOptions
from tfwheels.remote_plan import RemotePlan
from tfwheels.render import HostValues, expand, render

if TYPE_CHECKING:
    from tfwheels.profiles import Profile

# Not secrets, but they change every run; Bazel must not see them as build inputs.
_BEP_NAME = "build_events.json"


@dataclass(frozen=True)
class BuildOptions:
    """What the command line adds to a profile."""

    jobs: int | None = None
    local_ram_mb: int | None = None
    dry_run: bool = False
    extra_flags: tuple[str, ...] = ()
    remote: RemoteOptions = field(default_factory=RemoteOptions)


@dataclass
class Plan:
    """Everything one build of a profile will do, in order."""

    profile: ProfileFacts
    layout: Layout
    tree: Path
    bazel: BazelTool
    host: HostValues
    rendered: dict[str, str]
    series: list[PatchFile]
    startup: list[str]
    flags: list[str]
    package_argv: list[str] | None
    env_overrides: dict[str, str]
    log_path: Path
    bep_path: Path
    required_wheels: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    remote: RemotePlan = field(default_factory=RemotePlan)

    @property
    def build_argv(self) -> list[str]:
        """The ``bazel build`` command line."""
        return build_argv(
            self.bazel,
            startup=self.startup,
            command="build",
            flags=[*self.flags, f"--build_event_json_file={self.bep_path}"],
            targets=list(self.profile.bazel.targets),
        )

    def bazel_commands(self) -> list[list[str]]:
        """Every Bazel command, in order."""
        commands = [self.build_argv]
        if self.profile.package.kind == "run" and self.package_argv:
            commands.append(self.package_argv)
        return commands

    def commands(self) -> list[list[str]]:
        """Every command the build runs, Bazel's and the packaging step's, in order."""
        commands = [self.build_argv]
        if self.package_argv:
            commands.append(self.package_argv)
        return commands

    def environment(self) -> dict[str, str]:
        """The environment Bazel and the packaging step run in."""
        base = {**os.environ, **self.env_overrides}
        # Credentials reach Bazel only through the private rc file, never its client env (the BEP
        # records every client variable).
        base = {k: v for k, v in base.items() if k not in self.remote.secret_env}
        return bazel_env(self.bazel, self.profile, base)

    def snapshot(self) -> dict[str, Any]:
        """The plan as JSON-able data, for ``from_snapshot``."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Plan:
        """The plan ``snapshot`` saved, with a log file of this run's own; ValueError if the data
        is not a plan (of this tfwheels)."""
        import dacite

        if not isinstance(data, dict):
            raise ValueError(f"not a saved plan: a {type(data).__name__}, not a mapping")
        config = dacite.Config(type_hooks={Path: Path}, cast=[tuple], strict=True)
        try:
            plan = dacite.from_dict(cls, data, config)
        except (dacite.DaciteError, TypeError, ValueError) as exc:  # a cast of a wrong type
            raise ValueError(f"not a saved plan: {exc}") from exc
        return dataclasses.replace(plan, log_path=log_file(plan.layout, plan.profile.key))

    def to_json(self) -> dict[str, Any]:
        """The plan as the ``--dry-run --json`` contract: stable keys, argv lists in order."""
        profile = self.profile
        return {
            "profile": profile.name,
            "profile_file": profile.file,
            "project": profile.project,
            "version": profile.version,
            "platform": profile.platform,
            "source": str(self.tree),
            "bazel": self.bazel.describe(),
            "bazel_version": profile.bazel.version,
            "bazel_found_version": None if self.bazel.reported == NOT_FOUND else self.bazel.version,
            "bazel_commands": self.bazel_commands(),
            "commands": self.commands(),
            "targets": list(profile.bazel.targets),
            "configs": list(profile.bazel.configs),
            "env": dict(sorted(self.env_overrides.items())),
            "rendered": dict(sorted(self.rendered.items())),
            "patches": [{"file": p.name, "sha256": p.sha256} for p in self.series],
            "wheel": {
                "distribution": profile.wheel.distribution,
                "platform_tag": self.host.platform_tag,
                "output_dir": str(self.host.output),
            },
            "requires": [str(p) for p in self.required_wheels],
            "log": str(self.log_path),
            "warnings": list(self.warnings),
            "remote": self.remote.to_json(),
        }


def _fits_python(tags: frozenset[Any], python_version: str) -> bool:
    """A tag for this Python: cpXY, py3/pyXY, or a stable-ABI (abi3) build for cpXY or older."""
    major, minor = (int(part) for part in python_version.split("."))
    for tag in tags:
        interpreter = tag.interpreter
        if interpreter in (f"cp{major}{minor}", f"py{major}", f"py{major}{minor}"):
            return True
        if tag.abi == "abi3" and interpreter.startswith(f"cp{major}"):
            older = interpreter.removeprefix(f"cp{major}")
            if older.isdigit() and int(older) <= minor:
                return True
    return False


def _fits_platform(tags: frozenset[Any], platform: str) -> bool:
    """A tag that installs on the profile's platform, as verify-wheel decides it."""
    from tfwheels.verify import TARGETS, tags_fit  # only TFF builds get here

    return tags_fit(tags, TARGETS[platform])


def _find_required(
    profile: Profile, layout: Layout, python_version: str | None = None
) -> tuple[list[Path], list[str]]:
    """The wheels in dist/ that ``requires.wheels`` names, for the profile's platform and the
    plan's Python (default: the profile's); the newest version wins. Missing ones say why."""
    if not profile.requires.wheels:
        return [], []
    from packaging.requirements import InvalidRequirement, Requirement  # only TFF requires wheels
    from packaging.utils import canonicalize_name, parse_wheel_filename

    python_version = python_version or profile.python_version()
    python_tag = f"cp{python_version.replace('.', '')}"
    found: list[Path] = []
    missing: list[str] = []
    for text in profile.requires.wheels:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            msg = f"{profile.file} requires.wheels: {text!r} is not a requirement; write e.g. 'tensorflow==2.14.*'"
            raise ProfileError(msg) from exc
        matches: list[tuple[Any, str, Path]] = []  # (packaging Version, name, path)
        misfits: list[str] = []
        for wheel in sorted(layout.dist.glob("*.whl")):
            try:
                name, version, _, tags = parse_wheel_filename(wheel.name)
            except ValueError:
                continue
            if canonicalize_name(name) != canonicalize_name(requirement.name) or not (
                requirement.specifier.contains(version, prereleases=True)
            ):
                continue
            if _fits_platform(tags, profile.platform) and _fits_python(tags, python_version):
                matches.append((version, wheel.name, wheel))
            else:
                misfits.append(wheel.name)
        if matches:
            found.append(max(matches)[2])
        elif misfits:
            missing.append(
                f"{text} for {python_tag} on {profile.platform} (not for them: {', '.join(misfits)})"
            )
        else:
            missing.append(text)
    return found, missing


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _hermetic_python(profile: Profile, tree: Path, python_version: str) -> list[str]:
    if not profile.python.hermetic:
        return []
    lock = tree / f"requirements_lock_{python_version.replace('.', '_')}.txt"
    if tree.is_dir() and not lock.is_file():
        msg = (
            f"{lock.name} is missing in {tree}: this TensorFlow has no hermetic Python "
            f"{python_version}; set python.version to one it ships a requirements lock for"
        )
        raise ProfileError(msg)
    return [
        f"--repo_env=HERMETIC_PYTHON_VERSION={python_version}",
        f"--repo_env=TF_PYTHON_VERSION={python_version}",
    ]


def _python(profile: Profile, options: BuildOptions, warnings: list[str]) -> PythonFacts:
    """The build's Python; in a dry run a missing one is a warning, so plans work on any host."""
    interpreter = profile.configure.PYTHON_BIN_PATH or profile.python.interpreter or sys.executable
    try:
        return probe_python(interpreter)
    except TfwheelsError as exc:
        if not options.dry_run or profile.python.version is None:
            raise
        warnings.append(str(exc))
        major, minor = (int(part) for part in profile.python.version.split("."))
        site = f"<site-packages of {interpreter}>"
        return PythonFacts(interpreter, major, minor, site)


def log_file(layout: Layout, key: str) -> Path:
    """This build's log file under build/logs/, named by the profile's key and the second."""
    return layout.logs / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def make_plan(profile: Profile, layout: Layout, tree: Path, options: BuildOptions) -> Plan:
    """Resolve a profile against this host into a Plan, touching nothing."""
    from tfwheels.hostinfo import resources
    from tfwheels.remote import resolve_remote

    warnings: list[str] = []
    python = _python(profile, options, warnings)
    python_version = profile.python.version or python.version
    if profile.python.version and profile.python.version != python.version and not profile.python.hermetic:
        msg = (
            f"{profile.file} python.version: {profile.python.version}, but "
            f"{python.executable} is Python {python.version}; point python.interpreter at a "
            f"Python {profile.python.version}"
        )
        raise ProfileError(msg)
    output = layout.wheelhouse(profile.key)
    host = HostValues(
        workspace=tree,
        dist=layout.dist,
        output=output,
        python_bin=python.executable,
        python_lib=python.site_packages,
        python_tag=f"cp{python_version.replace('.', '')}",
        platform_tag=profile.default_platform_tag(),
        version=profile.version,
    )
    try:
        bazel = find_bazel(profile)
        warnings += check_version(bazel, profile, tree if tree.is_dir() else None)
    except TfwheelsError as exc:
        if not options.dry_run:
            raise
        warnings.append(str(exc))
        bazel = BazelTool(Path("bazelisk"), "bazelisk", profile.bazel.version, NOT_FOUND)
    values = host.placeholders()
    rendered = render(profile, host, layout.templates)
    series = load_series(profile, layout.patches)
    required, missing = _find_required(profile, layout, python_version)
    if missing:
        project = "build-tf" if any("tensorflow" in m for m in missing) else "build"
        msg = f"no wheel in {layout.dist} satisfies {', '.join(missing)}; run invoke {project} first"
        if not options.dry_run:
            raise UsageError(msg)
        warnings.append(msg)
    res = resources()
    flags = [
        "--curses=no",
        "--color=no",
        f"--jobs={options.jobs or res.jobs}",
        f"--local_ram_resources={options.local_ram_mb or res.local_ram_mb}",
    ]
    if os.environ.get("CI"):
        flags.append("--show_progress_rate_limit=5")
    flags += _hermetic_python(profile, tree, python_version)
    if required:
        deps = layout.build / "deps" / profile.key
        flags += [
            f"--repo_env={profile.requires.folder_env}={deps}",
            f"--repo_env={profile.requires.folder_env}_DIGEST={_digest(required)}",
        ]
    remote = resolve_remote(
        profile, options.remote, layout.configs, bazel.version or profile.bazel.version,
        dry_run=options.dry_run,
    )
    warnings += remote.warnings
    flags += remote.flags
    flags += list(options.extra_flags)
    startup = [f"--bazelrc={tree / rc}" for rc in profile.rc_files]
    startup += remote.startup
    env_overrides = {k: expand(v, values) for k, v in profile.env.items()}
    env_overrides.setdefault("PYTHON_BIN_PATH", python.executable)
    package_argv = _package_argv(profile, tree, bazel, startup, flags, values)
    return Plan(
        profile=profile.facts(),
        layout=layout,
        tree=tree,
        bazel=bazel,
        host=host,
        rendered=rendered,
        series=series,
        startup=startup,
        flags=flags,
        package_argv=package_argv,
        env_overrides=env_overrides,
        log_path=log_file(layout, profile.key),
        bep_path=layout.build / "bep" / profile.key / _BEP_NAME,
        required_wheels=required,
        warnings=warnings,
        remote=remote,
    )


def _package_argv(
    profile: Profile,
    tree: Path,
    bazel: BazelTool,
    startup: list[str],
    flags: list[str],
    values: dict[str, str],
) -> list[str] | None:
    step = profile.package
    args = [expand(a, values) for a in step.args]
    if step.kind == "script":
        assert step.script is not None
        return [str(tree / expand(step.script, values)), *args]
    if step.kind == "run":
        assert step.target is not None
        return build_argv(
            bazel, startup=startup, command="run", flags=flags, targets=[step.target], run_args=args
        )
    return None
