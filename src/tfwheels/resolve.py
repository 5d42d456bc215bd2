"""Will the wheels, and everything they require, install on the target? Ask pip's own resolver.

pip resolves for another machine with ``--dry-run --only-binary=:all: --platform ...
--python-version ... --implementation cp``, and ``--report`` says what it would install and from
where. The wheels under test are put in a temporary find-links folder and named to pip as those
files, so pip takes exactly them, never an index's release of the same name and version (a
tfwheels build of TF 2.16.2 is not PyPI's). One that does not fit the target is reported and
left out of the next round.

pip stops at the first requirement it cannot meet. To name every one, each is stood in for by an
empty stub wheel of a version that meets it, and pip runs again, until it resolves (or a
conflict, which a stub cannot answer, ends it). Stubs never appear among the installs.

The platforms are those the wheels under test promise: for darwin_arm64 every tag packaging
lists for the macOS of their ``macosx_X_Y`` tag (11.0 at least), for Linux every manylinux tag
up to the glibc their tag names. Environment markers are evaluated for the target too, which
plain pip does not do (:mod:`tfwheels.pip_target`). pip reads its configuration (index,
find-links) as usual; ``--index-url``, ``--find-links`` and ``--no-index`` add to it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import mac_platforms
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from tfwheels.dependencies import marker_environments
from tfwheels.errors import UsageError
from tfwheels.problems import Problem
from tfwheels.run import run

Source = Literal["under-test", "find-links", "index"]

_MAX_STUBS = 25
_DEFAULT_GLIBC = (2, 17)  # manylinux2014, what TensorFlow's Linux wheels promise
_LEGACY_MANYLINUX = (("manylinux2014", (2, 17)), ("manylinux2010", (2, 12)), ("manylinux1", (2, 5)))
_MAC_ARCHS = {"darwin_arm64": "arm64", "darwin_x86_64": "x86_64", "darwin_universal2": "arm64"}
_MAC_FLOORS = {"arm64": (11, 0), "x86_64": (10, 9)}
_LINUX_ARCHS = {"linux_x86_64": "x86_64", "linux_aarch64": "aarch64"}
_NOT_FOUND = re.compile(
    r"Could not find a version that satisfies the requirement (?P<requirement>.+?)"
    r"(?: \(from (?P<parent>[^()]+)\))? \(from versions: (?P<versions>[^()]*)\)"
)
_CONFLICT = re.compile(r"^ERROR: Cannot install (?P<what>.+?) because", re.MULTILINE)
_CAUSE = re.compile(r"^\s{4}(?P<line>\S.* depends on .+)$", re.MULTILINE)
_IGNORED = re.compile(r"^ERROR: (Ignored the following versions .+)$", re.MULTILINE)
_UNSUPPORTED = re.compile(
    r"^ERROR: (?P<file>\S+\.whl) is not a supported wheel on this platform\.?$", re.MULTILINE
)


@dataclass(frozen=True)
class ResolveOptions:
    """Where pip may look, and for which Python (major.minor; default: the wheels' cpXY tag)."""

    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    no_index: bool = False
    python: str | None = None


@dataclass(frozen=True)
class Install:
    """One distribution pip would install: from the wheels under test, a find-links folder, or
    the index."""

    name: str
    version: str
    source: Source

    def to_json(self) -> dict[str, str]:
        """A plain dict for reports."""
        return {"name": self.name, "version": self.version, "source": self.source}


@dataclass(frozen=True)
class Unresolvable:
    """A requirement no wheel meets on the target, with pip's reason; ``wheel`` names a wheel
    under test that pip refused outright (its tags do not fit the target)."""

    requirement: str
    required_by: str | None
    reason: str
    wheel: str | None = None


@dataclass
class Resolution:
    """What pip's resolver said about the set."""

    target: str
    python: str
    platforms: list[str]
    installs: list[Install] = field(default_factory=list)
    unresolvable: list[Unresolvable] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when everything resolved."""
        return not self.unresolvable

    def problems_for(self, wheels: Sequence[Path]) -> dict[str, list[Problem]]:
        """The ``unresolvable`` problems by wheel file name.

        A requirement goes to the wheel under test that pip names as asking for it (or that it
        names); one pulled in by an index package goes to the first wheel, naming that package.
        """
        names: dict[str, str] = {
            canonicalize_name(parse_wheel_filename(w.name)[0]): w.name for w in wheels
        }
        found: dict[str, list[Problem]] = {wheel.name: [] for wheel in wheels}
        for item in self.unresolvable:
            owner = _owner(item, names) or wheels[0].name
            found[owner].append(Problem("unresolvable", None, self._detail(item)))
        return found

    def _detail(self, item: Unresolvable) -> str:
        by = f", required by {item.required_by}" if item.required_by else ""
        return (
            f"{item.requirement}{by}: nothing installs on {self.target} with CPython "
            f"{self.python}; pip: {item.reason}"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``resolution`` object of verify-wheel's JSON."""
        return {
            "ok": self.ok,
            "target": self.target,
            "python": self.python,
            "platforms": self.platforms,
            "installs": [install.to_json() for install in self.installs],
            "problems": [
                {"requirement": u.requirement, "required_by": u.required_by, "reason": u.reason}
                for u in self.unresolvable
            ],
        }


def _owner(item: Unresolvable, names: dict[str, str]) -> str | None:
    for text in (item.required_by, item.requirement):
        if text:
            try:
                name = canonicalize_name(Requirement(text).name)
            except InvalidRequirement:
                continue
            if name in names:
                return names[name]
    return None


def resolve_wheels(wheels: Sequence[Path], target: str, options: ResolveOptions) -> Resolution:
    """Ask pip whether ``wheels`` and all they require install on ``target``."""
    python = options.python or _python_of(wheels)
    resolution = Resolution(target, python, target_platforms(target, wheels))
    with tempfile.TemporaryDirectory(prefix="tfwheels-resolve-") as scratch:
        folders = _Folders(Path(scratch))
        for wheel in wheels:
            _offer(wheel, folders.tested)
        pins = {wheel.name: str(folders.tested / wheel.name) for wheel in wheels}
        for _round in range(_MAX_STUBS + 1):
            if not pins:
                break
            argv = pip_argv(list(pins.values()), resolution, options, folders)
            result = run(argv, check=False)
            if result.ok:
                report = json.loads(folders.report.read_text("utf-8"))
                resolution.installs = parse_pip_report(report, folders, options.find_links)
                break
            failures = parse_pip_failure(result.stderr + result.stdout)
            resolution.unresolvable += failures
            if not failures or not all(_go_on(item, pins, folders.stubs) for item in failures):
                break
    return resolution


def _go_on(item: Unresolvable, pins: dict[str, str], stubs: Path) -> bool:
    """Make the next round possible: leave out a refused wheel, or stub a missing requirement."""
    if item.wheel is not None:
        return pins.pop(item.wheel, None) is not None
    return _stub(item, stubs)


def _python_of(wheels: Iterable[Path]) -> str:
    versions = sorted(
        {
            f"{tag.interpreter[2]}.{tag.interpreter[3:]}"
            for wheel in wheels
            for tag in parse_wheel_filename(wheel.name)[3]
            if tag.interpreter.startswith("cp") and tag.interpreter[2:].isdigit()
        }
    )
    if len(versions) != 1:
        found = ", ".join(versions) or "none"
        msg = f"the wheels name no single CPython (found: {found}); give --python 3.11"
        raise UsageError(msg)
    return versions[0]


@dataclass(frozen=True)
class _Folders:
    root: Path

    @property
    def tested(self) -> Path:
        return self._folder("tested")

    @property
    def stubs(self) -> Path:
        return self._folder("stubs")

    @property
    def target(self) -> Path:
        return self.root / "target"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    def _folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path


def _offer(wheel: Path, folder: Path) -> None:
    """Put ``wheel`` in the find-links folder without copying hundreds of MB where avoidable."""
    dest = folder / wheel.name
    try:
        os.link(wheel, dest)
    except OSError:
        try:
            dest.symlink_to(wheel.resolve())
        except OSError:
            shutil.copyfile(wheel, dest)


def target_platforms(target: str, wheels: Iterable[Path]) -> list[str]:
    """The ``--platform`` values for ``target``: every tag a machine of that target accepts,
    for the OS version the wheels' own tags promise.

    >>> target_platforms("darwin_arm64", [Path("a-1-cp311-cp311-macosx_12_0_arm64.whl")])[:3]
    ['macosx_12_0_arm64', 'macosx_12_0_universal2', 'macosx_11_0_arm64']
    >>> linux = target_platforms("linux_aarch64", [Path("a-1-cp311-cp311-manylinux_2_28_aarch64.whl")])
    >>> linux[:3], linux[-3:]
    (['manylinux_2_28_aarch64', 'manylinux_2_27_aarch64', 'manylinux_2_26_aarch64'], ['manylinux_2_5_aarch64', 'manylinux1_aarch64', 'linux_aarch64'])
    """
    tags = [tag.platform for wheel in wheels for tag in parse_wheel_filename(wheel.name)[3]]
    if target in _MAC_ARCHS:
        arch = _MAC_ARCHS[target]
        promised = [_version(m) for t in tags if (m := re.fullmatch(r"macosx_(\d+)_(\d+)_\w+", t))]
        version = max([_MAC_FLOORS[arch], *promised])
        return list(mac_platforms(version, arch))
    if target in _LINUX_ARCHS:
        arch = _LINUX_ARCHS[target]
        return _linux_platforms(arch, _glibc_promised(tags) or _DEFAULT_GLIBC)
    msg = f"--resolve knows no platform tags for target '{target}'"
    raise UsageError(msg)


def _version(match: re.Match[str]) -> tuple[int, int]:
    return int(match[1]), int(match[2])


def _glibc_promised(tags: Iterable[str]) -> tuple[int, int] | None:
    found: list[tuple[int, int]] = []
    for tag in tags:
        if match := re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag):
            found.append(_version(match))
        found += [glibc for legacy, glibc in _LEGACY_MANYLINUX if tag.startswith(legacy + "_")]
    return max(found, default=None)


def _linux_platforms(arch: str, glibc: tuple[int, int]) -> list[str]:
    legacy = {version: name for name, version in _LEGACY_MANYLINUX}
    platforms: list[str] = []
    for minor in range(glibc[1], 4, -1):
        platforms.append(f"manylinux_{glibc[0]}_{minor}_{arch}")
        if (glibc[0], minor) in legacy:
            platforms.append(f"{legacy[(glibc[0], minor)]}_{arch}")
    return [*platforms, f"linux_{arch}"]


def target_environment(target: str, python: str) -> dict[str, str]:
    """The marker environment of a machine of ``target`` running CPython ``python``."""
    if target in _MAC_ARCHS:
        return marker_environments("macos", [_MAC_ARCHS[target]], python)[0]
    return marker_environments("linux", [_LINUX_ARCHS[target]], python)[0]


def pip_argv(
    pins: Sequence[str], resolution: Resolution, options: ResolveOptions, folders: _Folders
) -> list[str]:
    """The pip command line for one round."""
    environment = json.dumps(target_environment(resolution.target, resolution.python))
    argv = [
        sys.executable, "-m", "tfwheels.pip_target", environment,
        "install", "--dry-run", "--ignore-installed",
        "--only-binary=:all:", "--implementation", "cp",
        "--python-version", resolution.python, "--target", str(folders.target),
        "--report", str(folders.report), "--disable-pip-version-check", "--no-input",
        "--find-links", str(folders.tested), "--find-links", str(folders.stubs),
    ]  # fmt: skip
    for platform in resolution.platforms:
        argv += ["--platform", platform]
    for folder in options.find_links:
        argv += ["--find-links", folder]
    if options.no_index:
        argv.append("--no-index")
    elif options.index_url:
        argv += ["--index-url", options.index_url]
    return [*argv, *pins]


def parse_pip_failure(output: str) -> list[Unresolvable]:
    """What pip could not resolve, from its error output (pure, for tests on real pip lines).

    >>> line = ("ERROR: Could not find a version that satisfies the requirement missingdep>=1 "
    ...         "(from toppkg) (from versions: none)")
    >>> (item,) = parse_pip_failure(line)
    >>> item.requirement, item.required_by, item.reason.endswith("(from versions: none)")
    ('missingdep>=1', 'toppkg', True)
    """
    found = [
        Unresolvable(match["requirement"], match["parent"], _with_ignored(match[0], output))
        for match in _NOT_FOUND.finditer(output)
    ]
    found += [_unsupported(match) for match in _UNSUPPORTED.finditer(output)]
    if found:
        return found
    conflict = _CONFLICT.search(output)
    if conflict:
        causes = "; ".join(match["line"].strip() for match in _CAUSE.finditer(output))
        reason = f"conflicting dependencies: {causes}" if causes else "conflicting dependencies"
        return [Unresolvable(conflict["what"], None, reason)]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR")]
    reason = "; ".join(errors[-3:] or lines[-1:]) or "pip failed without saying why"
    return [Unresolvable("(the set)", None, reason)]


def _unsupported(match: re.Match[str]) -> Unresolvable:
    """A wheel under test whose tags the target does not accept."""
    filename = Path(match["file"]).name
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
        requirement = f"{name}=={version}"
    except ValueError:
        requirement = filename
    return Unresolvable(requirement, None, match[0].removeprefix("ERROR: "), wheel=filename)


def _with_ignored(reason: str, output: str) -> str:
    ignored = _IGNORED.search(output)
    return f"{reason}; {ignored[1]}" if ignored else reason


def _stub(item: Unresolvable, folder: Path) -> bool:
    """Write an empty wheel that meets ``item`` so pip goes on; False when none can."""
    try:
        requirement = Requirement(item.requirement)
    except InvalidRequirement:
        return False
    version = satisfying_version(requirement.specifier)
    if version is None:
        return False
    name = canonicalize_name(requirement.name).replace("-", "_")
    path = folder / f"{name}-{version}-py3-none-any.whl"
    if path.exists():
        return False  # pip refused the stub too: stubbing again would loop
    _write_stub(path, name, version)
    return True


def satisfying_version(specifier: SpecifierSet) -> str | None:
    """A version that ``specifier`` admits, or None.

    >>> satisfying_version(SpecifierSet("==2.14.*,>=2.14.0")), satisfying_version(SpecifierSet(">1,<1"))
    ('2.14', None)
    """
    candidates: list[str] = ["0", "1"]
    for spec in specifier:
        base = spec.version.removesuffix(".*")
        try:
            release = Version(base).release
        except InvalidVersion:
            continue
        candidates.append(base)
        for index in range(len(release)):
            bumped = [*release[:index], release[index] + 1]
            candidates.append(".".join(map(str, bumped)))
    candidates.append("9999")
    return next((c for c in candidates if specifier.contains(c, prereleases=True)), None)


def _write_stub(path: Path, name: str, version: str) -> None:
    info = f"{name}-{version}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tfwheels\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    rows = [
        f"{member},sha256={_digest(text.encode())},{len(text)}" for member, text in files.items()
    ]
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
        archive.writestr(f"{info}/RECORD", "\n".join([*rows, f"{info}/RECORD,,"]) + "\n")


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def parse_pip_report(
    report: dict[str, Any], folders: _Folders, find_links: Sequence[str]
) -> list[Install]:
    """The installs of a ``pip install --report`` document, stubs left out."""
    links = [Path(folder).resolve() for folder in find_links]
    tested = {path.name for path in folders.tested.iterdir()}
    installs: list[Install] = []
    for item in report.get("install", []):
        metadata = item.get("metadata", {})
        location = _local_path(item.get("download_info", {}).get("url", ""))
        if location is not None and location.parent.resolve() == folders.stubs.resolve():
            continue
        source = _source(location, tested, links)
        installs.append(Install(str(metadata["name"]), str(metadata["version"]), source))
    return installs


def _local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    return Path(url2pathname(parsed.path))


def _source(location: Path | None, tested: set[str], links: list[Path]) -> Source:
    """Where a wheel came from; a wheel under test counts as such from any folder (pip may
    take the same file from a --find-links folder that holds it too)."""
    if location is None:
        return "index"
    if location.name in tested:
        return "under-test"
    if any(location.resolve().is_relative_to(link) for link in links):
        return "find-links"
    return "index"


__all__ = [
    "Install",
    "Resolution",
    "ResolveOptions",
    "Unresolvable",
    "parse_pip_failure",
    "parse_pip_report",
    "pip_argv",
    "resolve_wheels",
    "satisfying_version",
    "target_platforms",
]
