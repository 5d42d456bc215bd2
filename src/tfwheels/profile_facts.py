"""What the build stages read from a profile once the plan is made: plain frozen data.

The pydantic ``Profile`` (tfwheels.profiles) validates a profile; a plan keeps only these facts
of it, so a plan can be saved and taken up again (tfwheels.early) by a rebuild that never
imports pydantic or a YAML loader. Field names follow the profile's, so ``plan.profile.wheel.
distribution`` reads the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GitFacts:
    """``source.git``: where the tree comes from and the commit it must be at."""

    url: str
    ref: str
    commit: str


@dataclass(frozen=True)
class SourceFacts:
    """``source``: a git checkout or a path in the project."""

    git: GitFacts | None = None
    path: str | None = None


@dataclass(frozen=True)
class BazelFacts:
    """``bazel``: the pinned version and what to build."""

    version: str
    targets: tuple[str, ...]
    configs: tuple[str, ...] = ()
    build_flags: tuple[str, ...] = ()
    repo_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PackageFacts:
    """``package``: the step that turns build outputs into wheels."""

    kind: str  # "script", "outputs" or "run"
    script: str | None = None
    target: str | None = None
    directory: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class WheelFacts:
    """``wheel``: the distribution expected and, if pinned, its platform tag."""

    distribution: str
    platform_tag: str | None = None


@dataclass(frozen=True)
class PythonVersionFacts:
    """``python``: the version the wheels are for (None: the interpreter's)."""

    version: str | None = None


@dataclass(frozen=True)
class RequiresFacts:
    """``requires``: the wheels the build consumes and where it finds them."""

    wheels: tuple[str, ...] = ()
    folder_env: str = "LOCAL_WHEEL_DIST_FOLDER"
    tree_folder: str | None = None


@dataclass(frozen=True)
class ProfileFacts:
    """A validated profile as the build stages, the manifest and the report read it."""

    name: str
    file: str
    key: str
    project: str
    project_dir: str
    version: str
    platform: str
    source: SourceFacts
    bazel: BazelFacts
    package: PackageFacts
    wheel: WheelFacts
    python: PythonVersionFacts = PythonVersionFacts()
    requires: RequiresFacts = RequiresFacts()
    test_command: tuple[str, ...] = ()
