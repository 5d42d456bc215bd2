"""Build profiles: YAML files under ``configs/`` validated once, at the edge, into frozen models.

A profile names what to build (project, version, platform), where the source is, which Bazel and
flags, the answers TensorFlow's ``configure.py`` would ask for, the patch series, how the wheel is
packaged and what it must be called. ``extends:`` lets a version profile override a shared base:
mappings merge key by key, everything else (lists included) is replaced by the child.

Every problem becomes one line: ``file:line field: problem; fix``.
"""

from __future__ import annotations

import copy
import difflib
import platform as _platform
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tfwheels.errors import ProfileError
from tfwheels.profile_facts import (
    BazelFacts,
    GitFacts,
    PackageFacts,
    ProfileFacts,
    PythonVersionFacts,
    RequiresFacts,
    SourceFacts,
    WheelFacts,
)
from tfwheels.remote import RemoteSpec, no_leading_dash
from tfwheels.yamlsafe import Loc, Located, load_located

PROJECT_DIRS = {"tensorflow": "tf", "tensorflow_federated": "tff"}
PLATFORMS = ("darwin_arm64", "linux_x86_64", "linux_aarch64")
PLACEHOLDERS = (
    "workspace",
    "output",
    "dist",
    "python",
    "platform_tag",
    "python_tag",
    "version",
)
_PLACEHOLDER = re.compile(r"%([A-Za-z_]+)%")
_MAX_EXTENDS = 8


# --- value checks shared by many fields --------------------------------------------------------


def _safe_text(value: str) -> str:
    if any(c in value for c in "\n\r\0"):
        msg = "contains a newline or NUL, which would break out of an rc line; remove it"
        raise ValueError(msg)
    for name in _PLACEHOLDER.findall(value):
        if name not in PLACEHOLDERS:
            guess = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
            hint = f"did you mean %{guess[0]}%?" if guess else f"known: {', '.join(PLACEHOLDERS)}"
            msg = f"unknown placeholder %{name}%; {hint}"
            raise ValueError(msg)
    return value


def _value(value: str) -> str:
    return no_leading_dash(_safe_text(value))


def _rc_quoted(value: str) -> str:
    """A value configure.py writes inside double quotes (``build --action_env NAME="value"``)."""
    value = _value(value)
    for char, name in (('"', "a double quote"), ("\\", "a backslash")):
        if char in value:
            msg = (
                f"{value!r} holds {name}, which would end or escape the quoted value in "
                '.tf_configure.bazelrc (build --action_env NAME="..."); use a path without '
                "quotes or backslashes (e.g. a symlink to it)"
            )
            raise ValueError(msg)
    return value


def _rc_path(value: str) -> str:
    """A path written both bare (``build --repo_env=CC=path``) and quoted in an rc line."""
    value = _rc_quoted(value)
    if any(c.isspace() for c in value):
        msg = (
            f"{value!r} holds whitespace, which would split the rc line "
            "build --repo_env=CC=<path> in two; use a path without spaces (e.g. a symlink to it)"
        )
        raise ValueError(msg)
    return value


# Bazel options whose values are credentials: in a profile they would be written into rendered
# rc files and shown in plans. remote: takes them from the environment instead.
_CREDENTIAL_OPTIONS = re.compile(
    r"^--(?:no)?(?:remote_header|remote_cache_header|remote_exec_header|remote_downloader_header|"
    r"bes_header|google_credentials|google_auth_scopes|credential_helper|tls_client_key|"
    r"tls_client_certificate)(?:=|$)"
)
_URL_WITH_PASSWORD = re.compile(r"://[^/@\s]+:[^/@\s]*@")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def _flag(value: str) -> str:
    value = _safe_text(value)
    if not value.startswith("-"):
        msg = f"{value!r} is not a flag; flags start with '--' (e.g. --copt=-O2)"
        raise ValueError(msg)
    option = value.split("=", 1)[0]
    if _CREDENTIAL_OPTIONS.match(value):
        msg = (
            f"{option} carries a credential, which would be written into rendered files and logs; "
            "set it under remote: (headers: {NAME: env:VARIABLE}, or credential_helper)"
        )
        raise ValueError(msg)
    if _URL_WITH_PASSWORD.search(value):
        msg = (
            f"{option} holds a URL with a user name and password; put the credential in an "
            "environment variable named under remote.headers instead"
        )
        raise ValueError(msg)
    return value


def _profile_name(value: str) -> str:
    if not _PROFILE_NAME.fullmatch(value):
        msg = (
            f"{value!r} is not a profile name: it names folders under build/, so use letters, "
            "digits and . _ + - only (e.g. 2.16-darwin_arm64)"
        )
        raise ValueError(msg)
    return value


def _template_name(value: str) -> str:
    value = _value(value)
    if "/" in value or "\\" in value or value.startswith("."):
        msg = f"{value!r} is not a file name in templates/; give just the name, e.g. bazelrc.user.j2"
        raise ValueError(msg)
    return value


def _label(value: str) -> str:
    value = _value(value)
    if not re.fullmatch(r"(@@?[\w.~+-]*)?//[\w./+-]*(:[\w./+@=,-]+)?", value):
        msg = f"{value!r} is not a Bazel target label; write it like //tensorflow/tools/pip_package:wheel"
        raise ValueError(msg)
    return value


def _config_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value) or value.startswith("-"):
        msg = f"{value!r} is not a --config name; use the bare name, e.g. release_macos_arm64"
        raise ValueError(msg)
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        msg = f"{value!r} is not an environment variable name; use letters, digits and _"
        raise ValueError(msg)
    return value


def _bazel_version(value: str) -> str:
    if not re.fullmatch(r"\d+\.\d+\.\d+(rc\d+|-pre\.\S+)?", value):
        msg = f"{value!r} is not a version; write a Bazel release such as 6.5.0"
        raise ValueError(msg)
    return value


def _pep440(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion as exc:
        msg = f"{value!r} is not a version; write one such as 2.16.1"
        raise ValueError(msg) from exc
    return value


def _python_version(value: str) -> str:
    if not re.fullmatch(r"3\.\d{1,2}", value):
        msg = f"{value!r} is not a Python version; write major.minor such as 3.11"
        raise ValueError(msg)
    return value


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        msg = "is not a sha256; write 64 lowercase hex digits (sha256sum FILE)"
        raise ValueError(msg)
    return value


def _commit(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{40}", value):
        msg = "is not a full commit sha; write all 40 hex digits (git rev-parse TAG^{commit})"
        raise ValueError(msg)
    return value


def _specifier(value: str) -> str:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet  # only a patch's range

    try:
        SpecifierSet(value)
    except InvalidSpecifier as exc:
        msg = f"{value!r} is not a version range; write one such as '>=2.16,<2.18'"
        raise ValueError(msg) from exc
    return value


def _patch_path(value: str) -> str:
    value = _value(value)
    parts = Path(value).parts
    if value.startswith(("/", "\\")) or ".." in parts or "\\" in value:
        msg = f"{value!r} leaves patches/; give a path relative to patches/ without '..'"
        raise ValueError(msg)
    return value


SafeText = Annotated[str, AfterValidator(_safe_text)]
Value = Annotated[str, AfterValidator(_value)]
ProfileName = Annotated[str, AfterValidator(_profile_name)]
TemplateName = Annotated[str, AfterValidator(_template_name)]
RcQuoted = Annotated[str, AfterValidator(_rc_quoted)]
RcPath = Annotated[str, AfterValidator(_rc_path)]
Flag = Annotated[str, AfterValidator(_flag)]
Label = Annotated[str, AfterValidator(_label)]
ConfigName = Annotated[str, AfterValidator(_config_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
BazelVersion = Annotated[str, AfterValidator(_bazel_version)]
Pep440 = Annotated[str, AfterValidator(_pep440)]
PythonVersion = Annotated[str, AfterValidator(_python_version)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
Commit = Annotated[str, AfterValidator(_commit)]
Specifier = Annotated[str, AfterValidator(_specifier)]
PatchPath = Annotated[str, AfterValidator(_patch_path)]


def _refuse_march_native(flags: tuple[str, ...], field: str) -> None:
    """Refuse -march=native (alone or inside --copt=) in a darwin_arm64 profile."""
    for flag in flags:
        if flag == "-march=native" or flag.endswith("=-march=native"):
            msg = (
                f"{field}: {flag!r} fails on darwin_arm64, where Apple clang rejects -march=native "
                "('the clang compiler does not support -march=native'); use -mcpu=apple-m1"
            )
            raise ValueError(msg)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# --- the profile ------------------------------------------------------------------------------


class GitSource(_Model):
    """A git repository at a release tag, pinned to the commit the tag must resolve to."""

    url: Value
    ref: Value
    commit: Commit


class Source(_Model):
    """Where the source tree comes from: a pinned git tag, or a local directory."""

    git: GitSource | None = None
    path: Value | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Source:
        if (self.git is None) == (self.path is None):
            msg = "give exactly one of source.git (url, ref, commit) or source.path"
            raise ValueError(msg)
        return self


class BazelSpec(_Model):
    """Which Bazel runs and how."""

    version: BazelVersion
    allow_unversioned: bool = Field(
        default=False,
        description="Accept a Bazel that reports no version (Debian's bazel-bootstrap says "
        "'no_version'); its version is then read from the package manager.",
    )
    startup_flags: tuple[Flag, ...] = ()
    build_flags: tuple[Flag, ...] = ()
    configs: tuple[ConfigName, ...] = ()
    targets: tuple[Label, ...] = Field(min_length=1)
    defines: dict[EnvName, SafeText] = Field(
        default_factory=dict, description="--define NAME=VALUE pairs (merged key by key)."
    )
    repo_env: dict[EnvName, SafeText] = Field(default_factory=dict)
    action_env: dict[EnvName, SafeText] = Field(default_factory=dict)


class PythonSpec(_Model):
    """The Python the wheel is for; ``version`` None means the interpreter's own."""

    version: PythonVersion | None = None
    interpreter: Value | None = Field(
        default=None,
        description="The Python that builds run with (a name on PATH or a path); default: the "
        "Python running tfwheels.",
    )
    hermetic: bool = Field(
        default=False,
        description="TF >= 2.14: pass HERMETIC_PYTHON_VERSION/TF_PYTHON_VERSION and require "
        "requirements_lock_3_X.txt in the source tree.",
    )


class ConfigureAnswers(_Model):
    """What TensorFlow's configure.py asks, answered ahead of time."""

    PYTHON_BIN_PATH: RcQuoted | None = None
    PYTHON_LIB_PATH: RcQuoted | None = None
    TF_NEED_CUDA: bool = False
    TF_NEED_ROCM: bool = False
    TF_NEED_CLANG: bool | None = None
    CLANG_COMPILER_PATH: RcPath | None = None
    TF_DOWNLOAD_CLANG: bool | None = None
    TF_ENABLE_XLA: bool | None = None
    CC_OPT_FLAGS: tuple[Flag, ...] = ("-Wno-sign-compare",)
    TF_SET_ANDROID_WORKSPACE: bool = False
    TF_CONFIGURE_IOS: bool = False
    TF_SYSTEM_LIBS: tuple[RcQuoted, ...] = ()

    @field_validator("CC_OPT_FLAGS")
    @classmethod
    def _no_march_native(cls, flags: tuple[str, ...]) -> tuple[str, ...]:
        for flag in flags:
            if " " in flag:
                msg = f"{flag!r} holds a space; give each compiler flag as its own list item"
                raise ValueError(msg)
        return flags


class PatchEntry(_Model):
    """One patch of the series, pinned by its sha256; ``versions`` limits it to a range."""

    file: PatchPath
    sha256: Sha256
    versions: Specifier | None = None


class PackageStep(_Model):
    """How the wheel comes out of the build.

    - ``script``: run a built program (TF <= 2.16 ``build_pip_package <dir>``);
    - ``outputs``: take ``*.whl`` from a bazel-bin directory (TF >= 2.17 ``wheel_house``);
    - ``run``: ``bazel run <target> -- <args>`` (TFF ``build_python_package --output_dir``).
    """

    kind: Literal["script", "outputs", "run"]
    script: Value | None = None
    target: Label | None = None
    directory: Value | None = None
    args: tuple[SafeText, ...] = ()

    @model_validator(mode="after")
    def _fields_for_kind(self) -> PackageStep:
        needed = {"script": "script", "outputs": "directory", "run": "target"}[self.kind]
        if getattr(self, needed) is None:
            msg = f"package.kind {self.kind!r} needs package.{needed}"
            raise ValueError(msg)
        return self


class WheelSpec(_Model):
    """What the wheel must be called: distribution and (optionally pinned) platform tag."""

    distribution: Value
    platform_tag: Value | None = None


class Requires(_Model):
    """Wheels this build consumes from dist/ (TFF takes the TF wheel that build-tf made)."""

    wheels: tuple[Value, ...] = ()
    folder_env: EnvName = Field(
        default="LOCAL_WHEEL_DIST_FOLDER",
        description="The --repo_env through which the workspace finds the folder of those wheels "
        "(TFF's WORKSPACE reads local wheels from local_wheel_dist_folder).",
    )
    tree_folder: Value | None = Field(
        default=None,
        description="A folder inside the source tree to put those wheels in as well, for a "
        "WORKSPACE that reads them from there (TFF at HEAD: local_wheel_dist_folder = \"dist\").",
    )

    @field_validator("tree_folder")
    @classmethod
    def _in_tree(cls, folder: str | None) -> str | None:
        if folder is not None and (folder.startswith("/") or ".." in Path(folder).parts):
            msg = f"{folder!r} leaves the source tree; give a folder relative to it, e.g. dist"
            raise ValueError(msg)
        return folder


class RenderedFile(_Model):
    """A Jinja2 template from templates/ rendered into the source tree."""

    template: TemplateName
    dest: Value

    @field_validator("dest")
    @classmethod
    def _inside(cls, dest: str) -> str:
        if dest.startswith("/") or ".." in Path(dest).parts:
            msg = f"{dest!r} leaves the source tree; give a path relative to it"
            raise ValueError(msg)
        return dest


class Profile(_Model):
    """A complete, validated build profile."""

    name: ProfileName
    file: str
    project: Literal["tensorflow", "tensorflow_federated"]
    version: Pep440
    platform: Literal["darwin_arm64", "linux_x86_64", "linux_aarch64"]
    description: SafeText = ""
    source: Source
    bazel: BazelSpec
    python: PythonSpec = PythonSpec()
    configure: ConfigureAnswers = ConfigureAnswers()
    render: tuple[RenderedFile, ...] = ()
    rc_files: tuple[Value, ...] = Field(
        default=(),
        description="Rendered files passed to Bazel with --bazelrc (for workspaces whose "
        ".bazelrc does not try-import them).",
    )
    patches: tuple[PatchEntry, ...] = ()
    package: PackageStep
    wheel: WheelSpec
    requires: Requires = Requires()
    env: dict[EnvName, SafeText] = Field(default_factory=dict)
    test_command: tuple[SafeText, ...] = ()
    remote: RemoteSpec = Field(
        default_factory=RemoteSpec,
        description="Disk/remote caches and remote execution (README: Sharing builds across machines and CI).",
    )

    @field_validator("configure")
    @classmethod
    def _no_native_cc_opt_on_darwin_arm64(
        cls, configure: ConfigureAnswers, info: ValidationInfo
    ) -> ConfigureAnswers:
        if info.data.get("platform") == "darwin_arm64":
            _refuse_march_native(configure.CC_OPT_FLAGS, "CC_OPT_FLAGS")
        return configure

    @field_validator("bazel")
    @classmethod
    def _no_native_copt_on_darwin_arm64(cls, bazel: BazelSpec, info: ValidationInfo) -> BazelSpec:
        if info.data.get("platform") == "darwin_arm64":
            _refuse_march_native(bazel.build_flags, "build_flags")
        return bazel

    @property
    def project_dir(self) -> str:
        """The folder of this project under configs/ and patches/ (``tf`` or ``tff``)."""
        return PROJECT_DIRS[self.project]

    @property
    def key(self) -> str:
        """A name unique across projects (``tf-example``) for folders under build/."""
        return f"{self.project_dir}-{self.name}"

    def active_patches(self) -> tuple[PatchEntry, ...]:
        """The patches whose version range admits this profile's version."""
        if all(p.versions is None for p in self.patches):
            return self.patches
        from packaging.specifiers import SpecifierSet

        version = Version(self.version)
        return tuple(
            p for p in self.patches if p.versions is None or version in SpecifierSet(p.versions)
        )

    def default_platform_tag(self) -> str:
        """The wheel platform tag this profile expects."""
        if self.wheel.platform_tag:
            return self.wheel.platform_tag
        if self.platform == "darwin_arm64":
            return "macosx_12_0_arm64"
        return self.platform.replace("linux_", "linux_")

    def python_version(self) -> str:
        """The Python major.minor the wheel is for."""
        return self.python.version or f"{sys.version_info.major}.{sys.version_info.minor}"

    def facts(self) -> ProfileFacts:
        """What the build stages read of this profile, as plain data (tfwheels.profile_facts)."""
        git = self.source.git
        step = self.package
        return ProfileFacts(
            name=self.name,
            file=self.file,
            key=self.key,
            project=self.project,
            project_dir=self.project_dir,
            version=self.version,
            platform=self.platform,
            source=SourceFacts(
                git=GitFacts(git.url, git.ref, git.commit) if git is not None else None,
                path=self.source.path,
            ),
            bazel=BazelFacts(
                self.bazel.version, tuple(self.bazel.targets), tuple(self.bazel.configs),
                tuple(self.bazel.build_flags), dict(sorted(self.bazel.repo_env.items())),
            ),
            package=PackageFacts(step.kind, step.script, step.target, step.directory, tuple(step.args)),
            wheel=WheelFacts(self.wheel.distribution, self.wheel.platform_tag),
            python=PythonVersionFacts(self.python.version),
            requires=RequiresFacts(
                tuple(self.requires.wheels), self.requires.folder_env, self.requires.tree_folder
            ),
            test_command=tuple(self.test_command),
        )


# --- finding, loading, merging ----------------------------------------------------------------


@dataclass(frozen=True)
class ProfileFile:
    """A profile's file and the name users call it by."""

    name: str
    project: str
    path: Path


def host_platform() -> str:
    """The tfwheels platform name of this machine."""
    system = sys.platform
    machine = _platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "arm64", "aarch64": "aarch64", "x86_64": "x86_64"}.get(
        machine, machine
    )
    if system == "darwin":
        return f"darwin_{'arm64' if arch in ('arm64', 'aarch64') else arch}"
    return f"linux_{'aarch64' if arch in ('arm64', 'aarch64') else arch}"


def list_profiles(configs: Path, project: str | None = None) -> list[ProfileFile]:
    """Every buildable profile under ``configs/`` (files starting with ``_`` are bases)."""
    found: list[ProfileFile] = []
    for proj, sub in sorted(PROJECT_DIRS.items()):
        if project and proj != project:
            continue
        for path in sorted((configs / sub).glob("*.yaml")):
            if not path.name.startswith("_"):
                found.append(ProfileFile(path.stem, proj, path))
    return found


def resolve_profile_path(configs: Path, project: str, name: str) -> Path:
    """Turn ``--profile NAME`` (or a path to a YAML file) into a file path."""
    candidate = Path(name)
    if name.endswith((".yaml", ".yml")) or "/" in name:
        if not candidate.is_file():
            msg = f"{name}: no such profile file; give a path to a YAML file or a profile name"
            raise ProfileError(msg)
        return candidate
    sub = PROJECT_DIRS[project]
    path = configs / sub / f"{name}.yaml"
    if path.is_file():
        return path
    # Not among this project's profiles: a name only the other project has is that profile
    # (`invoke doctor --profile 0.87-darwin_arm64`); load_profile still refuses it where the
    # task is for one project (build-tf builds no TFF profile) and says how to name it.
    others = [
        configs / other / f"{name}.yaml"
        for proj, other in sorted(PROJECT_DIRS.items())
        if proj != project and (configs / other / f"{name}.yaml").is_file()
    ]
    if len(others) == 1:
        return others[0]
    names = [p.name for p in list_profiles(configs, project)]
    guess = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {guess[0]!r}?" if guess else f"available: {', '.join(names) or 'none'}"
    msg = f"{configs / sub}: no {project} profile named {name!r}; {hint} (invoke profiles lists them)"
    raise ProfileError(msg)


@dataclass
class _Merged:
    data: dict[str, Any]
    where: dict[Loc, tuple[str, int]]


def _merge(base: _Merged, child: Located) -> _Merged:
    """Overlay ``child`` on ``base``: mappings merge key by key, other values replace."""

    def merge(into: dict[str, Any], new: dict[str, Any], loc: Loc) -> None:
        for key, value in new.items():
            here = (*loc, key)
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value, here)
                continue
            into[key] = copy.deepcopy(value)
            for old in [k for k in base.where if k[: len(here)] == here]:
                del base.where[old]

    merge(base.data, child.data, ())
    for loc, line in child.lines.items():
        base.where[loc] = (child.file, line)
    return base


def _display(path: Path, root: Path | None) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve())) if root else str(path)
    except ValueError:
        return str(path)


def profile_files(path: Path, configs: Path) -> list[Path]:
    """The files a profile is read from, its bases first: ``path`` and each file it
    ``extends:``, resolved as load_profile resolves them."""
    return [file for file, _ in _read_chain(path, configs, None)]


def _load_chain(path: Path, project: str, configs: Path, root: Path | None) -> list[Located]:
    return [located for _, located in _read_chain(path, configs, root)]


def _read_chain(path: Path, configs: Path, root: Path | None) -> list[tuple[Path, Located]]:
    chain: list[tuple[Path, Located]] = []
    seen: list[Path] = []
    current: Path | None = path
    while current is not None:
        resolved = current.resolve()
        if resolved in seen:
            cycle = " -> ".join(_display(p, root) for p in [*seen, resolved])
            first = chain[-1][1]
            msg = f"{first.file}:{first.lines.get(('extends',), 1)} extends: cycle {cycle}; remove one"
            raise ProfileError(msg)
        if len(seen) >= _MAX_EXTENDS:
            msg = f"{_display(current, root)}:1 extends: more than {_MAX_EXTENDS} levels; flatten it"
            raise ProfileError(msg)
        seen.append(resolved)
        located = load_located(current, _display(current, root))
        chain.append((resolved, located))
        parent = located.data.get("extends")
        if parent is None:
            current = None
            continue
        line = located.lines.get(("extends",), 1)
        if not isinstance(parent, str) or not re.fullmatch(r"[\w.+-]+(/[\w.+-]+)*", parent) or (
            ".." in parent.split("/")
        ):
            msg = (
                f"{located.file}:{line} extends: give a profile name in the same folder, or a "
                "path under configs/ such as shared/debian-bazel"
            )
            raise ProfileError(msg)
        folder = configs if "/" in parent else current.parent
        current = folder / f"{parent}.yaml"
        if not current.is_file():
            msg = f"{located.file}:{line} extends: no profile {parent!r} ({_display(current, root)} is missing); check the name"
            raise ProfileError(msg)
    chain.reverse()
    return chain


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _error_line(error: dict[str, Any], merged: _Merged, fallback: str) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    # pydantic appends the validator name for Annotated/function validators; keep data keys only.
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "json-"))))
    field = _field_name(loc)
    kind = error["type"]
    where: tuple[str, int] | None = None
    probe = loc
    while probe and where is None:
        where = merged.where.get(probe)
        probe = probe[:-1]
    file, line = where or merged.where.get((), (fallback, 1))
    if kind == "missing":
        problem = "is required; add it"
    elif kind == "extra_forbidden":
        parent_keys = _known_keys(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), parent_keys, n=1)
        problem = "is not a known field" + (f"; did you mean {guess[0]!r}?" if guess else "; remove it")
    elif kind == "literal_error":
        problem = f"{error.get('input')!r} is not allowed; {error['msg'].replace('Input should be', 'use')}"
    else:
        problem = str(error["msg"]).removeprefix("Value error, ")
    return f"{file}:{line} {field}: {problem}"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: Any = Profile
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model = _inner_model(info.annotation)
    return list(getattr(model, "model_fields", {}))


def _inner_model(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def load_profile(
    name_or_path: str,
    project: str,
    configs: Path,
    root: Path | None = None,
    *,
    any_project: bool = False,
) -> Profile:
    """Load, merge (``extends:``) and validate a profile; raise ProfileError with one line.

    ``project`` is where a bare name is looked up first (then in the other project's folder);
    a profile of the other project is refused unless ``any_project`` (``invoke doctor``).
    """
    path = resolve_profile_path(configs, project, name_or_path)
    chain = _load_chain(path, project, configs, root)
    merged = _Merged({}, {})
    for located in chain:
        merged = _merge(merged, located)
    data = dict(merged.data)
    data.pop("extends", None)
    data.setdefault("name", path.stem)
    data["file"] = chain[-1].file
    if data.get("platform") == "host":
        data["platform"] = host_platform()
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        # A misspelt key also shows up as a missing one; the misspelling is the useful line.
        errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        raise ProfileError(_error_line(dict(first), merged, chain[-1].file)) from None
    if profile.project != project and not any_project:
        short = PROJECT_DIRS[profile.project]
        msg = (
            f"{chain[-1].file}:{merged.where.get(('project',), ('', 1))[1]} project: this is a "
            f"{profile.project} profile; use invoke build-{short}, or add --project {short} "
            "to the other tasks"
        )
        raise ProfileError(msg)
    if profile.project == "tensorflow_federated":
        from tfwheels.tff_facts import check_tff_profile  # TF builds need none of it

        # TFF's own METADATA pins its TensorFlow and Python (configs/facts/tff_requirements.yaml).
        check_tff_profile(
            profile.version, profile.requires.wheels, profile.python.version, configs,
            lambda loc: _where(merged, loc, chain[-1].file),
        )
    return profile


def _where(merged: _Merged, loc: Loc, fallback: str) -> str:
    """``file:line`` of the value at ``loc``, or of its nearest parent that has one."""
    probe = loc
    while probe:
        if probe in merged.where:
            file, line = merged.where[probe]
            return f"{file}:{line}"
        probe = probe[:-1]
    return f"{fallback}:1"


def profile_schema() -> dict[str, Any]:
    """The JSON Schema of a profile file, for editors."""
    schema = Profile.model_json_schema()
    schema["properties"].pop("file", None)
    schema["properties"]["extends"] = {
        "type": "string",
        "description": "Name of a profile in the same folder whose values this one overrides.",
    }
    schema["properties"]["platform"] = {"enum": [*PLATFORMS, "host"]}
    schema["required"] = [r for r in schema.get("required", []) if r not in ("file", "name")]
    schema["title"] = "tfwheels build profile"
    return schema


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside nested data (for secret and placeholder scans)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from iter_strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from iter_strings(item)
