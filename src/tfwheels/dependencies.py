"""Do the wheels of a set fit together, and the Python they are for?

A TFF wheel verified beside a TensorFlow wheel must accept that TensorFlow: each ``Requires-Dist``
of a wheel that names another wheel of the set must be met by it, with names compared as
packaging normalises them (so ``tensorflow-macos`` is not ``tensorflow``) and environment markers
evaluated for the target platform and Python, not for this machine. Each wheel's
``Requires-Python`` must admit that Python.

The Python is, in order: the one asked for (``--python 3.11``, a profile's python.version), the
wheel's own ``cpXY`` tag, the ``cpXY`` tag of another wheel of the set. A wheel for which none
is known (a pure ``py3`` wheel alone) has its Requires-Python left unchecked.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tfwheels.problems import Problem

_METADATA_LIMIT = 4 * 1024 * 1024  # METADATA is a few KB; the long description rarely 1 MB
_SYSTEMS = {"macos": ("darwin", "Darwin"), "linux": ("linux", "Linux")}


@dataclass(frozen=True)
class WheelMetadata:
    """What one wheel declares about what it needs, and what it provides (its name, version)."""

    filename: str
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]
    metadata_file: str | None
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None

    @property
    def python(self) -> str | None:
        """The Python of the wheel's ``cpXY-cpXY`` tags ('3.11'), None for py3/abi3 wheels."""
        versions = {
            f"{tag.interpreter[2]}.{tag.interpreter[3:]}"
            for tag in self.tags
            if tag.interpreter.startswith("cp")
            and tag.abi == tag.interpreter
            and tag.interpreter[2:].isdigit()
        }
        return versions.pop() if len(versions) == 1 else None

    def describe(self) -> str:
        """``'tensorflow-2.16.2-....whl (tensorflow 2.16.2)'``: how problems name a wheel."""
        return f"{self.filename} ({self.name} {self.version})"


def metadata_from_headers(
    wheel: Path | str, metadata_file: str | None, headers: Message | None
) -> WheelMetadata:
    """A wheel's requirements, from its file name and its METADATA headers (None: none read)."""
    filename = Path(wheel).name
    name, version, _build, tags = parse_wheel_filename(filename)
    if headers is None:
        return WheelMetadata(filename, name, version, tags, metadata_file)
    requires_python = headers.get("Requires-Python")
    return WheelMetadata(
        filename,
        name,
        version,
        tags,
        metadata_file,
        tuple(str(value).strip() for value in headers.get_all("Requires-Dist", [])),
        str(requires_python).strip() if requires_python is not None else None,
    )


def read_metadata(wheel: Path) -> WheelMetadata | None:
    """The requirements of a wheel of the set, or None when it cannot be read (its own report
    says why)."""
    try:
        name, _version, _build, _tags = parse_wheel_filename(wheel.name)
        with zipfile.ZipFile(wheel) as archive:
            member = dist_info_member(archive, name, "METADATA")
            if member is None:
                return metadata_from_headers(wheel, None, None)
            with archive.open(member) as stream:
                data = stream.read(_METADATA_LIMIT)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, RuntimeError):
        return None
    return metadata_from_headers(wheel, member, BytesHeaderParser().parsebytes(data))


def dist_info_member(
    archive: zipfile.ZipFile, name: NormalizedName | None, filename: str
) -> str | None:
    """The wheel's own ``<name>-<version>.dist-info/<filename>`` (METADATA, RECORD): at the top
    level and for ``name`` (a vendored package's dist-info deeper down, or another project's,
    is not it); else the only top-level one; else None."""
    found = [
        n for n in archive.namelist() if n.count("/") == 1 and n.endswith(f".dist-info/{filename}")
    ]
    for member in found:
        stem = member.split("/", 1)[0].removesuffix(".dist-info")
        project, _, _ = stem.rpartition("-")
        if name is not None and canonicalize_name(project) == name:
            return member
    return found[0] if len(found) == 1 else None


def marker_environments(
    system: str | None, archs: Sequence[str], python: str | None
) -> list[dict[str, str]]:
    """PEP 508 marker environments of the target: one per arch (two for universal2).

    ``system`` is 'macos' or 'linux' (None: keep this machine's platform values); ``python`` is
    major.minor (None: this interpreter's). Values are what CPython reports there
    (``platform.machine()`` is 'arm64' on Apple Silicon, 'aarch64' on Linux).

    >>> env = marker_environments("macos", ["arm64"], "3.11")[0]
    >>> env["sys_platform"], env["platform_machine"], env["python_full_version"]
    ('darwin', 'arm64', '3.11.0')
    >>> Marker('sys_platform == "darwin" and platform_machine == "arm64"').evaluate(env)
    True
    """
    base: dict[str, str] = {"extra": ""}
    if python is not None:
        base.update(
            python_version=python,
            python_full_version=f"{python}.0",
            implementation_version=f"{python}.0",
            implementation_name="cpython",
            platform_python_implementation="CPython",
        )
    if system is None:
        return [base]
    sys_platform, platform_system = _SYSTEMS[system]
    common = {**base, "sys_platform": sys_platform, "platform_system": platform_system}
    common.update(os_name="posix", platform_release="", platform_version="")
    return [{**common, "platform_machine": arch} for arch in archs or ("",)]


def requirement_problems(
    wheel: WheelMetadata, others: Iterable[WheelMetadata], environments: list[dict[str, str]]
) -> list[Problem]:
    """Each Requires-Dist of ``wheel`` that names a wheel in ``others`` and is not met by it."""
    by_name: dict[str, list[WheelMetadata]] = {}
    for other in others:
        by_name.setdefault(other.name, []).append(other)
    problems: list[Problem] = []
    for text in wheel.requires_dist:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(
                Problem(
                    "metadata", wheel.metadata_file, f"Requires-Dist '{text}': {_first_line(exc)}"
                )
            )
            continue
        providers = by_name.get(canonicalize_name(requirement.name), [])
        try:
            if not providers or not _applies(requirement.marker, environments):
                continue
        except (UndefinedComparison, UndefinedEnvironmentName) as exc:
            detail = f"Requires-Dist '{text}': its marker cannot be evaluated ({_first_line(exc)})"
            problems.append(Problem("metadata", wheel.metadata_file, detail))
            continue
        if any(requirement.specifier.contains(p.version, prereleases=True) for p in providers):
            continue
        named = ", ".join(provider.describe() for provider in providers)
        detail = f"Requires-Dist '{text}' is not met by {named}"
        problems.append(Problem("dependency-mismatch", wheel.metadata_file, detail))
    return problems


def _first_line(exc: Exception) -> str:
    """packaging's parse errors draw a caret under the text on further lines; keep the first."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _applies(marker: Marker | None, environments: list[dict[str, str]]) -> bool:
    return marker is None or any(marker.evaluate(env) for env in environments)


def requires_python_problems(wheel: WheelMetadata, python: str, source: str) -> list[Problem]:
    """Requires-Python of ``wheel`` against ``python``; ``source`` says where that Python came from.

    >>> tff = WheelMetadata("t.whl", canonicalize_name("tff"), Version("0.87.0"), frozenset(),
    ...                     "t.dist-info/METADATA", requires_python="<3.12,>=3.9")
    >>> [p.detail for p in requires_python_problems(tff, "3.12", "--python 3.12")]
    ["Requires-Python '<3.12,>=3.9' excludes Python 3.12 (--python 3.12)"]
    """
    if wheel.requires_python is None:
        return []
    try:
        allowed = SpecifierSet(wheel.requires_python)
    except InvalidSpecifier as exc:
        detail = f"Requires-Python '{wheel.requires_python}': {_first_line(exc)}"
        return [Problem("metadata", wheel.metadata_file, detail)]
    if allowed.contains(python, prereleases=True):
        return []
    detail = f"Requires-Python '{wheel.requires_python}' excludes Python {python} ({source})"
    return [Problem("dependency-mismatch", wheel.metadata_file, detail)]


def python_for(
    wheel: WheelMetadata, others: Iterable[WheelMetadata], requested: str | None
) -> tuple[str | None, str]:
    """The Python to check ``wheel`` for, and where it came from (for messages)."""
    if requested is not None:
        return requested, f"--python {requested}"
    if wheel.python is not None:
        return wheel.python, f"the wheel's cp{wheel.python.replace('.', '')} tag"
    for other in others:
        if other.python is not None:
            return other.python, f"the cp{other.python.replace('.', '')} tag of {other.filename}"
    return None, "unknown"


def set_problems(
    wheel: WheelMetadata,
    others: Sequence[WheelMetadata],
    *,
    system: str | None,
    archs: Sequence[str],
    python: str | None,
) -> list[Problem]:
    """Requires-Python and the Requires-Dist that the other wheels of the set must meet."""
    chosen, source = python_for(wheel, others, python)
    problems = requires_python_problems(wheel, chosen, source) if chosen is not None else []
    environments = marker_environments(system, archs, chosen)
    return problems + requirement_problems(wheel, others, environments)


__all__ = [
    "WheelMetadata",
    "marker_environments",
    "metadata_from_headers",
    "python_for",
    "read_metadata",
    "requirement_problems",
    "requires_python_problems",
    "set_problems",
]
