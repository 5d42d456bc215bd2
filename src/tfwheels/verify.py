"""Prove a wheel right for its platform: a sound zip, a RECORD and metadata that match the contents,
and native binaries that fit the platform tag (or an explicit target).

Every member is read once, by streaming: the first bytes tell whether it is a native binary (then
its headers are parsed on the way), and the rest feeds the RECORD hash. Nothing is extracted and
no member is held in memory whole. With ``check_record=False`` only the headers are read, which
is what the quick architecture and minimum-OS checks need.

The same pass checks the code signature of every arm64 Mach-O (thin, or the arm64 slice of a
universal2 file): its pages are hashed as they stream past and compared with the signature's
CodeDirectory (:mod:`tfwheels.codesign`), because macOS kills a process that maps arm64 code whose
signature does not match. The header-only pass skips this.

Wheels verified together (a set: TFF beside the TF wheel it needs) are also held against each
other's Requires-Dist, and each against its Requires-Python (:mod:`tfwheels.dependencies`).

Problems are reported with a fixed set of kinds (the contract with reports and CI):
tag-mismatch, arch-mismatch, min-os, external-library, glibc, zip-integrity, unsafe-path,
record-mismatch, metadata, malformed-binary, code-signature, dependency-mismatch (and
unresolvable, from :mod:`tfwheels.resolve`).
"""

from __future__ import annotations

import base64
import csv
import difflib
import hashlib
import io
import os
import posixpath
import re
import stat
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from functools import cache
from pathlib import Path
from typing import IO, Any, Literal

from packaging.tags import Tag, mac_platforms, parse_tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from tfwheels.binaries import BinaryInfo, Slice, glibc_version, inspect_binary, is_native
from tfwheels.codesign import KILLED, describe_pages
from tfwheels.dependencies import metadata_from_headers, read_metadata, set_problems
from tfwheels.errors import UsageError
from tfwheels.problems import Problem, ProblemKind
from tfwheels.zipheads import member_heads

OperatingSystem = Literal["macos", "linux"]

# Zip bomb guard. TensorFlow 2.16's macOS wheel inflates to 1.0 GB, its largest member 33x.
MAX_UNCOMPRESSED_BYTES = 8 * 1024**3
MAX_COMPRESSION_RATIO = 200
_RATIO_CHECK_FROM = 1024 * 1024  # tiny members (empty files, license stubs) compress absurdly well

_CHUNK = 1024 * 1024
_PEEK_READ_SIZE = 256
_HEADER_LIMIT = 1024 * 1024  # WHEEL / METADATA header blocks are a few KB
_NEWEST_MACOS = 99  # upper bound for packaging's list of compatible macOS tags
_ARM64_FIRST_MACOS = (11, 0)  # no arm64 Mac runs anything older, whatever the tag says
_MACOS_SYSTEM_PREFIXES = ("/usr/lib/", "/System/")
# Where the dynamic loader of every manylinux distribution finds system libraries.
_LINUX_SYSTEM_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")
_RECORD_ALGORITHMS = frozenset(
    {"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"}
)
_UNSIGNED_RECORD_FILES = ("RECORD", "RECORD.jws", "RECORD.p7s")
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# auditwheel's manylinux policy (src/auditwheel/policy/manylinux-policy.json in auditwheel 6.8):
# libraries every mainstream glibc distribution ships with a stable ABI. libz.so.1 has been on it
# since pypa/auditwheel#334 (2021); the glibc loaders are always there.
_MANYLINUX_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libutil.so.1",
        "libnsl.so.1",
        "libanl.so.1",
        "libresolv.so.2",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libatomic.so.1",
        "libz.so.1",
        "libX11.so.6",
        "libXext.so.6",
        "libXrender.so.1",
        "libICE.so.6",
        "libSM.so.6",
        "libGL.so.1",
        "libgobject-2.0.so.0",
        "libgthread-2.0.so.0",
        "libglib-2.0.so.0",
    }
)
_MANYLINUX_LIBRARIES_SINCE = {"libexpat.so.1": (2, 12), "libmvec.so.1": (2, 24)}
_GLIBC_LOADERS = re.compile(r"ld-linux[-.\w]*\.so\.\d+|ld64\.so\.[12]")
# What reading a damaged member can raise: zipfile's own errors, and those of the decompressors.
# RuntimeError: an encrypted member; NotImplementedError: an unknown compression method.
_MEMBER_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    OSError,
)


@dataclass(frozen=True)
class Target:
    """A platform to check binaries against: every binary must carry all of ``archs``."""

    name: str
    os: OperatingSystem
    archs: tuple[str, ...]


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("darwin_arm64", "macos", ("arm64",)),
        Target("darwin_x86_64", "macos", ("x86_64",)),
        Target("darwin_universal2", "macos", ("arm64", "x86_64")),
        Target("linux_x86_64", "linux", ("x86_64",)),
        Target("linux_aarch64", "linux", ("aarch64",)),
    )
}


@dataclass(frozen=True)
class PlatformTag:
    """A wheel platform tag, split into what the checks need.

    ``version`` is the macOS version of a ``macosx_*`` tag or the glibc version a ``manylinux``
    tag allows; ``os`` is 'any' for pure wheels and 'other' for platforms tfwheels does not check.
    """

    tag: str
    os: Literal["macos", "linux", "any", "other"]
    archs: tuple[str, ...] = ()
    version: tuple[int, int] | None = None


@dataclass(frozen=True)
class WheelReport:
    """The verdict on one wheel: the binaries found and every problem, in a stable order."""

    wheel: str
    target: str | None
    binaries: list[dict[str, Any]]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-ready dict: wheel, ok, target, binaries, problems."""
        return {
            "wheel": self.wheel,
            "ok": self.ok,
            "target": self.target,
            "binaries": self.binaries,
            "problems": [problem.to_json() for problem in self.problems],
        }


@dataclass(frozen=True)
class _WheelName:
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]
    platforms: tuple[PlatformTag, ...]


@dataclass(frozen=True)
class _RecordEntry:
    algorithm: str | None
    digest: str | None
    size: int | None


@dataclass(frozen=True)
class _Scan:
    """What one pass over a member found; ``size`` and ``digest`` only if it was read to the end."""

    info: zipfile.ZipInfo
    size: int | None = None
    digest: str | None = None
    binary: BinaryInfo | None = None
    error: str | None = None


def resolve_target(name: str) -> Target:
    """The target called ``name``, or a UsageError that lists the choices."""
    if name in TARGETS:
        return TARGETS[name]
    msg = f"unknown target '{name}'; choose one of {', '.join(TARGETS)}"
    close = difflib.get_close_matches(name, TARGETS, n=1)
    if close:
        msg += f". Perhaps you meant '{close[0]}'?"
    raise UsageError(msg)


def parse_platform_tag(tag: str) -> PlatformTag:
    """Split a platform tag; packaging has no public parser for them.

    >>> tag = parse_platform_tag("macosx_10_9_universal2")
    >>> tag.os, tag.archs, tag.version
    ('macos', ('arm64', 'x86_64'), (10, 9))
    >>> parse_platform_tag("manylinux2014_aarch64").version
    (2, 17)
    """
    if tag == "any":
        return PlatformTag(tag, "any")
    mac = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", tag)
    if mac:
        arch = mac[3]
        archs = ("arm64", "x86_64") if arch == "universal2" else (arch,)
        return PlatformTag(tag, "macos", archs, (int(mac[1]), int(mac[2])))
    many = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", tag)
    if many:
        return PlatformTag(tag, "linux", (many[3],), (int(many[1]), int(many[2])))
    legacy, _, arch = tag.partition("_")
    if legacy in _LEGACY_MANYLINUX:
        return PlatformTag(tag, "linux", (arch,), _LEGACY_MANYLINUX[legacy])
    if legacy == "linux":
        return PlatformTag(tag, "linux", (arch,))
    return PlatformTag(tag, "other")


def verify_wheels(
    paths: Iterable[str | os.PathLike[str]],
    target: str | None = None,
    *,
    check_record: bool = True,
    python: str | None = None,
) -> list[WheelReport]:
    """Verify wheels as one set: each may load libraries the others install, and must accept
    the others' versions where it requires them; see verify_wheel."""
    wheels = [Path(path) for path in paths]
    return [
        verify_wheel(
            wheel,
            target,
            check_record=check_record,
            companions=[other for other in wheels if other != wheel],
            python=python,
        )
        for wheel in wheels
    ]


def companion_names(companions: Iterable[Path]) -> frozenset[str]:
    """Files the other wheels of a set install (site-packages-relative, like a wheel's own)."""
    names: set[str] = set()
    for wheel in companions:
        try:
            with zipfile.ZipFile(wheel) as archive:
                names.update(archive.namelist())
        except (OSError, zipfile.BadZipFile):
            continue  # that wheel gets its own report; here it simply provides nothing
    return frozenset(names)


def verify_wheel(
    path: str | os.PathLike[str],
    target: str | None = None,
    *,
    check_record: bool = True,
    companions: Iterable[Path] = (),
    python: str | None = None,
) -> WheelReport:
    """Check one wheel and report every problem found.

    ``target`` (a key of :data:`TARGETS`) overrides what the platform tag implies; pure ``any``
    wheels imply none. ``check_record=False`` reads only headers: zip layout, metadata and
    binaries, without CRC, RECORD hashes or code signatures. ``companions`` are wheels installed
    beside this one (TFF next to the TF wheel whose libtensorflow_framework it links): a library
    found in them through an rpath is not external, and those that fit the target must meet this
    wheel's Requires-Dist. ``python`` (major.minor) is the Python to hold Requires-Python and
    markers against; default: the wheel's cpXY tag. Raises UsageError when ``path`` is not a
    wheel at all (bad file name, not a zip archive) or the target is unknown; a zip whose end
    is cut off is a wheel with a ``zip-integrity`` problem. The tag must fit the target, the
    implied one too: pip on an arm64 Mac never installs ``macosx_12_3_arm64``.
    """
    path = Path(path)
    companions = list(companions)
    requested = resolve_target(target) if target is not None else None
    wheel_name = _parse_wheel_name(path)
    try:
        archive = _open_zip(path)
    except _DamagedZip as exc:
        # A zip whose end was cut off (an interrupted download or copy): a damaged wheel, not
        # something else passed by mistake, so it gets a report like any other damage.
        chosen, found = _choose_target(requested, wheel_name.platforms, [])
        problem = Problem("zip-integrity", None, str(exc))
        return WheelReport(path.name, chosen.name if chosen else None, [], [problem, *found])
    with archive:
        contents = _read_archive(archive, wheel_name, check_record=check_record)
    problems = contents.problems
    binaries = [scan.binary for scan in contents.scans if scan.binary is not None]
    problems += _purelib_problems(contents.wheel_headers, binaries, contents.dist_info)
    chosen, found = _choose_target(requested, wheel_name.platforms, binaries)
    problems += found
    companions = [c for c in companions if _companion_fits(c, chosen)]
    names = frozenset(info.filename for info in contents.files) | companion_names(companions)
    problems += _binary_problems(binaries, chosen, wheel_name.platforms, names)
    problems += _set_problems(path, contents, companions, chosen, python)
    return WheelReport(
        path.name,
        chosen.name if chosen else None,
        [binary.to_json() for binary in binaries],
        problems,
    )


@dataclass(frozen=True)
class _Contents:
    """What reading the archive found, before binaries are held against the target."""

    files: list[zipfile.ZipInfo]
    dist_info: str | None
    wheel_headers: Message | None
    metadata: Message | None
    scans: list[_Scan]
    problems: list[Problem]


def _read_archive(
    archive: zipfile.ZipFile, wheel_name: _WheelName, *, check_record: bool
) -> _Contents:
    """Layout, metadata, then one pass over the members (and RECORD, when checked)."""
    members = archive.infolist()
    files = [info for info in members if not info.is_dir()]
    problems = _layout_problems(members)
    found, unreadable = _bomb_problems(files)
    problems += found
    dist_info, found = _find_dist_info(files, wheel_name)
    problems += found
    wheel_headers, metadata, found = _metadata_problems(archive, files, dist_info, wheel_name)
    problems += found
    record: dict[str, _RecordEntry] | None = None
    if check_record and dist_info is not None:
        record, found = _read_record(archive, files, dist_info, unreadable)
        problems += found
    readable = [info for info in files if id(info) not in unreadable]
    scans = _scan_members(archive, readable, record, full=check_record)
    problems += [Problem("zip-integrity", s.info.filename, s.error) for s in scans if s.error]
    if record is not None:
        problems += _record_problems(record, scans, files, dist_info)
    return _Contents(files, dist_info, wheel_headers, metadata, scans, problems)


# --- the wheel as a file -----------------------------------------------------------------------


def _parse_wheel_name(path: Path) -> _WheelName:
    try:
        name, version, _build, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        msg = f"{path.name}: not a wheel file name ({exc})"
        raise UsageError(msg) from exc
    platforms = tuple(parse_platform_tag(p) for p in sorted({tag.platform for tag in tags}))
    return _WheelName(name, version, tags, platforms)


class _DamagedZip(Exception):
    """Internal: the file starts as a zip archive but zipfile cannot read its central directory."""


_ZIP_LOCAL_HEADER = b"PK\x03\x04"


def _open_zip(path: Path) -> zipfile.ZipFile:
    """The archive; _DamagedZip when it starts like a zip but is cut off or damaged (a report),
    UsageError when it is no zip at all (exit 2)."""
    if not path.is_file():
        msg = f"{path}: no such file"
        raise UsageError(msg)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        try:
            with path.open("rb") as handle:
                head = handle.read(len(_ZIP_LOCAL_HEADER))
        except OSError:
            head = b""
        if head == _ZIP_LOCAL_HEADER:
            msg = (
                f"the archive is truncated or damaged: its central directory cannot be read "
                f"({exc}); download or build the wheel again"
            )
            raise _DamagedZip(msg) from exc
        msg = f"{path.name}: not a zip archive ({exc})"
        raise UsageError(msg) from exc


def _layout_problems(members: list[zipfile.ZipInfo]) -> list[Problem]:
    """Duplicate names and names that would escape the install directory."""
    problems = [
        Problem("zip-integrity", name, f"appears {count} times in the archive")
        for name, count in Counter(info.filename for info in members).items()
        if count > 1
    ]
    for info in members:
        reason = _unsafe_reason(info)
        if reason:
            problems.append(Problem("unsafe-path", info.filename, reason))
    return problems


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link entry"
    if "\\" in name:
        return "backslash in name"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' component leaves the install directory"
    return None


def _bomb_problems(files: list[zipfile.ZipInfo]) -> tuple[list[Problem], set[int]]:
    """Refuse archives or members that inflate beyond the limits; returns ids of members to skip."""
    total = sum(info.file_size for info in files)
    if total > MAX_UNCOMPRESSED_BYTES:
        detail = (
            f"inflates to {_size(total)}, over the {_size(MAX_UNCOMPRESSED_BYTES)} limit; "
            "contents not read"
        )
        return [Problem("zip-integrity", None, detail)], {id(info) for info in files}
    problems: list[Problem] = []
    skipped: set[int] = set()
    for info in files:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= _RATIO_CHECK_FROM and ratio > MAX_COMPRESSION_RATIO:
            detail = (
                f"inflates {ratio:.0f}x ({info.file_size} bytes from {info.compress_size}), "
                f"over the {MAX_COMPRESSION_RATIO}x limit; not read"
            )
            problems.append(Problem("zip-integrity", info.filename, detail))
            skipped.add(id(info))
    return problems, skipped


def _size(count: int) -> str:
    """``8.0 GiB``, ``64.0 KiB``: sizes as people read them."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


# --- metadata ----------------------------------------------------------------------------------


def _find_dist_info(
    files: list[zipfile.ZipInfo], wheel_name: _WheelName
) -> tuple[str | None, list[Problem]]:
    tops = sorted({info.filename.split("/", 1)[0] for info in files if "/" in info.filename})
    candidates = [top for top in tops if top.endswith(".dist-info")]
    matching = [
        c for c in candidates if _names_this_wheel(c.removesuffix(".dist-info"), wheel_name)
    ]
    if not candidates:
        return None, [Problem("metadata", None, "no .dist-info directory")]
    if len(candidates) > 1:
        detail = f"several .dist-info directories: {', '.join(candidates)}"
        return (matching or candidates)[0], [Problem("metadata", None, detail)]
    if not matching:
        detail = f"does not match the file name ({wheel_name.name} {wheel_name.version})"
        return candidates[0], [Problem("metadata", candidates[0], detail)]
    return candidates[0], []


def _names_this_wheel(stem: str, wheel_name: _WheelName) -> bool:
    name, _, version = stem.rpartition("-")
    try:
        return canonicalize_name(name) == wheel_name.name and Version(version) == wheel_name.version
    except InvalidVersion:
        return False


def _metadata_problems(
    archive: zipfile.ZipFile,
    files: list[zipfile.ZipInfo],
    dist_info: str | None,
    wheel_name: _WheelName,
) -> tuple[Message | None, Message | None, list[Problem]]:
    """Check WHEEL and METADATA against the file name; returns both header blocks for later."""
    if dist_info is None:
        return None, None, []
    by_name = {info.filename: info for info in files}
    wheel_file, metadata_file = f"{dist_info}/WHEEL", f"{dist_info}/METADATA"
    problems: list[Problem] = []
    headers: dict[str, Message] = {}
    for name in (wheel_file, metadata_file):
        read = _read_headers(archive, by_name.get(name), name)
        if isinstance(read, Problem):
            problems.append(read)
        else:
            headers[name] = read
    if wheel_file in headers:
        problems += _wheel_file_problems(headers[wheel_file], wheel_file, wheel_name)
    if metadata_file in headers:
        problems += _core_metadata_problems(headers[metadata_file], metadata_file, wheel_name)
    return headers.get(wheel_file), headers.get(metadata_file), problems


def _read_headers(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo | None, name: str
) -> Message | Problem:
    """The RFC 822 header block of a member, read up to its first blank line, or the problem."""
    if info is None:
        return Problem("metadata", name, "missing")
    lines: list[bytes] = []
    read = 0
    try:
        with archive.open(info) as member:
            for line in iter(lambda: member.readline(_HEADER_LIMIT), b""):
                read += len(line)
                if not line.strip() or read > _HEADER_LIMIT:
                    break
                lines.append(line)
    except _MEMBER_READ_ERRORS as exc:
        return Problem("metadata", name, f"unreadable: {exc}")
    return BytesHeaderParser().parsebytes(b"".join(lines))


def _wheel_file_problems(headers: Message, name: str, wheel_name: _WheelName) -> list[Problem]:
    problems: list[Problem] = []
    wheel_version = headers.get("Wheel-Version", "").strip()
    if wheel_version.split(".")[0] != "1":
        problems.append(Problem("metadata", name, f"Wheel-Version '{wheel_version}' is not 1.x"))
    if headers.get("Root-Is-Purelib", "").strip().lower() not in ("true", "false"):
        problems.append(Problem("metadata", name, "Root-Is-Purelib is not 'true' or 'false'"))
    try:
        declared = frozenset(tag for line in headers.get_all("Tag", []) for tag in parse_tag(line))
    except ValueError as exc:
        return [*problems, Problem("metadata", name, f"unreadable Tag line: {exc}")]
    if declared != wheel_name.tags:
        detail = (
            f"Tag lines {_tag_list(declared)} do not match the file name's "
            f"{_tag_list(wheel_name.tags)}"
        )
        problems.append(Problem("metadata", name, detail))
    return problems


def _tag_list(tags: Iterable[Tag]) -> str:
    return ", ".join(sorted(str(tag) for tag in tags)) or "(none)"


def _core_metadata_problems(metadata: Message, name: str, wheel_name: _WheelName) -> list[Problem]:
    problems: list[Problem] = []
    project = metadata.get("Name", "").strip()
    if canonicalize_name(project) != wheel_name.name:
        detail = f"Name '{project}' does not match the file name's '{wheel_name.name}'"
        problems.append(Problem("metadata", name, detail))
    version = metadata.get("Version", "").strip()
    try:
        same = Version(version) == wheel_name.version
    except InvalidVersion:
        same = False
    if not same:
        detail = f"Version '{version}' does not match the file name's '{wheel_name.version}'"
        problems.append(Problem("metadata", name, detail))
    return problems


def _purelib_problems(
    wheel_headers: Message | None, binaries: list[BinaryInfo], dist_info: str | None
) -> list[Problem]:
    """Native code outside ``.data/platlib`` needs Root-Is-Purelib: false."""
    if wheel_headers is None or dist_info is None:
        return []
    if wheel_headers.get("Root-Is-Purelib", "").strip().lower() != "true":
        return []
    data_dir = dist_info.removesuffix(".dist-info") + ".data/"
    rooted = [binary.path for binary in binaries if not binary.path.startswith(data_dir)]
    if not rooted:
        return []
    more = f" and {len(rooted) - 1} more" if len(rooted) > 1 else ""
    detail = f"Root-Is-Purelib is true, but the wheel ships native code ({rooted[0]}{more})"
    return [Problem("metadata", f"{dist_info}/WHEEL", detail)]


# --- RECORD ------------------------------------------------------------------------------------


def _read_record(
    archive: zipfile.ZipFile, files: list[zipfile.ZipInfo], dist_info: str, unreadable: set[int]
) -> tuple[dict[str, _RecordEntry] | None, list[Problem]]:
    record_name = f"{dist_info}/RECORD"
    info = next((i for i in files if i.filename == record_name), None)
    if info is None:
        return None, [Problem("record-mismatch", record_name, "RECORD is missing")]
    if id(info) in unreadable:  # the zip bomb guard has reported it
        return None, []
    try:
        with archive.open(info) as member:
            text = io.TextIOWrapper(member, encoding="utf-8", newline="").read()
    except (*_MEMBER_READ_ERRORS, UnicodeDecodeError) as exc:
        return None, [Problem("record-mismatch", record_name, f"RECORD is unreadable: {exc}")]
    return _parse_record(text, record_name)


def _parse_record(text: str, record_name: str) -> tuple[dict[str, _RecordEntry], list[Problem]]:
    """Parse RECORD rows (path, algorithm=urlsafe-b64-digest, size) the way installers do."""
    entries: dict[str, _RecordEntry] = {}
    problems: list[Problem] = []
    rows = csv.reader(io.StringIO(text))
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a stray carriage return inside a field
            detail = f"line {rows.line_num} is not valid CSV: {exc}"
            problems.append(Problem("record-mismatch", record_name, detail))
            break
        if not row:
            continue
        if len(row) != 3:
            detail = f"line {rows.line_num} has {len(row)} fields, expected path,hash,size"
            problems.append(Problem("record-mismatch", record_name, detail))
            continue
        path, hash_field, size_field = row
        if path in entries:
            problems.append(Problem("record-mismatch", path, "listed more than once in RECORD"))
        entry, complaint = _record_entry(path, hash_field, size_field, record_name)
        entries[path] = entry
        if complaint:
            problems.append(Problem("record-mismatch", path, complaint))
    return entries, problems


def _record_entry(
    path: str, hash_field: str, size_field: str, record_name: str
) -> tuple[_RecordEntry, str | None]:
    algorithm, _, digest = hash_field.partition("=")
    size = int(size_field) if size_field.isdigit() else None
    if size_field and size is None:
        return _RecordEntry(None, None, None), f"size '{size_field}' in RECORD is not a number"
    if not hash_field:
        unsigned = posixpath.dirname(path) == posixpath.dirname(record_name) and (
            posixpath.basename(path) in _UNSIGNED_RECORD_FILES
        )
        return _RecordEntry(None, None, size), None if unsigned else "no hash in RECORD"
    if algorithm not in _RECORD_ALGORITHMS or not digest:
        detail = f"hash '{hash_field}' in RECORD is not sha256 or stronger"
        return _RecordEntry(None, None, size), detail
    return _RecordEntry(algorithm, digest, size), None


def _record_problems(
    record: dict[str, _RecordEntry],
    scans: list[_Scan],
    files: list[zipfile.ZipInfo],
    dist_info: str | None,
) -> list[Problem]:
    problems: list[Problem] = []
    unlisted_ok = {f"{dist_info}/{name}" for name in _UNSIGNED_RECORD_FILES}
    for scan in scans:
        name = scan.info.filename
        entry = record.get(name)
        if entry is None:
            if name not in unlisted_ok:
                problems.append(Problem("record-mismatch", name, "not listed in RECORD"))
        elif scan.size is not None:
            problems += _entry_problems(name, entry, scan)
    present = {info.filename for info in files}
    problems += [
        Problem("record-mismatch", path, "listed in RECORD but not in the wheel")
        for path in record
        if path not in present
    ]
    return problems


def _entry_problems(name: str, entry: _RecordEntry, scan: _Scan) -> list[Problem]:
    problems: list[Problem] = []
    if entry.digest is not None and scan.digest != entry.digest:
        detail = f"{entry.algorithm} is {scan.digest}, RECORD says {entry.digest}"
        problems.append(Problem("record-mismatch", name, detail))
    if entry.size is not None and scan.size != entry.size:
        detail = f"size is {scan.size}, RECORD says {entry.size}"
        problems.append(Problem("record-mismatch", name, detail))
    return problems


# --- reading members ---------------------------------------------------------------------------


class _HashingReader:
    """Passes a member's bytes through while hashing and counting them."""

    def __init__(self, raw: IO[bytes], algorithm: str) -> None:
        self._raw = raw
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return base64.urlsafe_b64encode(self._hash.digest()).rstrip(b"=").decode("ascii")


def _scan_members(
    archive: zipfile.ZipFile,
    files: list[zipfile.ZipInfo],
    record: dict[str, _RecordEntry] | None,
    *,
    full: bool,
) -> list[_Scan]:
    """Scan every member, in archive order. A full scan reads to the end (CRC and RECORD hash)."""
    lock = threading.Lock()
    if not full:
        # Header reads are interpreter-bound; threads would only add overhead. Members whose
        # first bytes show they are no binary need no second look.
        candidates = [info for info in files if info.file_size >= 8]
        heads = member_heads(Path(archive.filename), candidates) if archive.filename else {}
        return [
            _scan_member(archive, info, None, lock)
            for info in candidates
            if (head := heads.get(id(info))) is None or is_native(head)
        ]

    def algorithm(info: zipfile.ZipInfo) -> str:
        entry = (record or {}).get(info.filename)
        return entry.algorithm if entry and entry.algorithm else "sha256"

    # Inflating and hashing release the GIL; start the biggest members first so one huge
    # library does not finish alone at the end.
    order = sorted(files, key=lambda info: info.compress_size, reverse=True)
    workers = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scans = pool.map(lambda info: _scan_member(archive, info, algorithm(info), lock), order)
        by_member = {id(scan.info): scan for scan in scans}
    return [by_member[id(info)] for info in files]


def _scan_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, algorithm: str | None, lock: threading.Lock
) -> _Scan:
    try:
        with _open_member(archive, info, lock) as raw:
            if algorithm is None:
                # ZipExtFile inflates at least 4 KiB per read; 8 bytes tell whether a member is a
                # binary, and this halves the time of a header-only pass over 10,000 members.
                raw.MIN_READ_SIZE = _PEEK_READ_SIZE  # type: ignore[attr-defined]
                return _Scan(info, binary=inspect_binary(info.filename, raw, size=info.file_size))
            if info.file_size <= _CHUNK:  # most members: one read, one hash call
                data = raw.read()  # zipfile stops at the declared size
                digest = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest())
                binary = (
                    inspect_binary(info.filename, data, signatures=True) if len(data) >= 8 else None
                )
                return _Scan(info, len(data), digest.rstrip(b"=").decode("ascii"), binary)
            reader = _HashingReader(raw, algorithm)
            binary = inspect_binary(
                info.filename,
                reader,
                size=info.file_size,
                signatures=True,
                reopen=lambda: _open_member(archive, info, lock),
            )
            reader.drain()
            return _Scan(info, reader.size, reader.digest(), binary)
    except _MEMBER_READ_ERRORS as exc:
        return _Scan(info, error=f"unreadable: {exc}")


@contextmanager
def _open_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, lock: threading.Lock
) -> Iterator[IO[bytes]]:
    """``archive.open(info)``, safe to use from several threads.

    ZipFile.open and ZipExtFile.close update the archive's count of open handles without a lock;
    a lost update closes the file under another reader, or leaks it. zipfile locks the reads.
    """
    with lock:
        member = archive.open(info)
    try:
        yield member
    finally:
        with lock:
            member.close()


# --- binaries against the target ---------------------------------------------------------------


def _choose_target(
    requested: Target | None, platforms: tuple[PlatformTag, ...], binaries: list[BinaryInfo]
) -> tuple[Target | None, list[Problem]]:
    """The target to check against, and any tag-mismatch with it."""
    tags = ", ".join(f"'{p.tag}'" for p in platforms)
    problems: list[Problem] = []
    if all(p.os == "any" for p in platforms) and binaries:
        detail = f"tagged 'any' but ships native code ({binaries[0].path})"
        problems.append(Problem("tag-mismatch", binaries[0].path, detail))
    if requested is None and all(p.os == "any" for p in platforms):
        return None, problems
    chosen = requested if requested is not None else _implied_target(platforms)
    if chosen is None:
        detail = f"platform tag {tags} is not one tfwheels checks ({', '.join(TARGETS)})"
        problems.append(Problem("tag-mismatch", None, detail))
    elif not any(_fits(p, chosen) for p in platforms):
        # Also for the target the tag implies: macosx_12_3_arm64 names an arm64 Mac, but pip
        # there only accepts macosx_N_0 (N >= 11) for arm64; such a wheel never installs.
        verb = "does" if len(platforms) == 1 else "do"
        noun = "tag" if len(platforms) == 1 else "tags"
        detail = f"platform {noun} {tags} {verb} not fit target '{chosen.name}'"
        if requested is None:
            detail += "; pip on that platform never accepts it (see packaging.tags.mac_platforms)"
        problems.append(Problem("tag-mismatch", None, detail))
    return chosen, problems


def _implied_target(platforms: tuple[PlatformTag, ...]) -> Target | None:
    specific = [p for p in platforms if p.os != "any"]
    systems = {p.os for p in specific}
    archs = {arch for p in specific for arch in p.archs}
    return next((t for t in TARGETS.values() if {t.os} == systems and set(t.archs) == archs), None)


def _fits(platform: PlatformTag, target: Target) -> bool:
    if platform.os == "any":
        return True
    if target.os == "macos":
        return all(platform.tag in _mac_platforms(arch) for arch in target.archs)
    return platform.os == "linux" and platform.archs == target.archs


@cache
def _mac_platforms(arch: str) -> frozenset[str]:
    """Every macOS platform tag pip installs on a Mac of this arch (packaging's own list)."""
    return frozenset(mac_platforms((_NEWEST_MACOS, 0), arch))


def _binary_problems(
    binaries: list[BinaryInfo],
    target: Target | None,
    platforms: tuple[PlatformTag, ...],
    names: frozenset[str],
) -> list[Problem]:
    search_dirs = _wheel_search_dirs(binaries)
    glibc_cap = min((p.version for p in platforms if p.os == "linux" and p.version), default=None)
    problems: list[Problem] = []
    for binary in binaries:
        if binary.malformed:
            problems.append(Problem("malformed-binary", binary.path, binary.malformed))
            continue
        if target is not None:
            problems += _arch_problems(binary, target)
        if binary.format == "mach-o":
            problems += _min_os_problems(binary, target, platforms)
            problems += _macho_library_problems(binary, names, search_dirs)
            problems += _signature_problems(binary, target)
        else:
            problems += _glibc_problems(binary, glibc_cap)
            problems += _elf_library_problems(binary, names, search_dirs, glibc_cap)
    return problems


def _arch_problems(binary: BinaryInfo, target: Target) -> list[Problem]:
    need = _quoted(target.archs)
    wanted_format = "mach-o" if target.os == "macos" else "elf"
    if binary.format != wanted_format:
        detail = (
            f"have {_FORMAT_NAMES[binary.format]} {_quoted(binary.archs)}, "
            f"need {_FORMAT_NAMES[wanted_format]} {need}"
        )
        return [Problem("arch-mismatch", binary.path, detail)]
    if all(arch in binary.archs for arch in target.archs):
        return []
    return [Problem("arch-mismatch", binary.path, f"have {_quoted(binary.archs)}, need {need}")]


_FORMAT_NAMES = {"mach-o": "Mach-O", "elf": "ELF"}


def _quoted(archs: Iterable[str]) -> str:
    """``'arm64'`` or ``'arm64' + 'x86_64'``: how problems name sets of architectures."""
    return " + ".join(f"'{arch}'" for arch in archs) or "nothing"


def _min_os_problems(
    binary: BinaryInfo, target: Target | None, platforms: tuple[PlatformTag, ...]
) -> list[Problem]:
    promised = min((p.version for p in platforms if p.os == "macos" and p.version), default=None)
    if promised is None:
        return []
    problems: list[Problem] = []
    for piece in binary.slices:
        if piece.min_os is None or (target is not None and piece.arch not in target.archs):
            continue
        floor = max(promised, _ARM64_FIRST_MACOS) if piece.arch.startswith("arm64") else promised
        if _version_tuple(piece.min_os) > floor:
            detail = (
                f"'{piece.arch}' slice needs macOS {piece.min_os}, "
                f"the wheel tag promises {floor[0]}.{floor[1]}"
            )
            problems.append(Problem("min-os", binary.path, detail))
    return problems


def _signature_problems(binary: BinaryInfo, target: Target | None) -> list[Problem]:
    """An arm64 slice with no signature, or one its code no longer matches."""
    if target is not None and "arm64" not in target.archs:
        return []  # that Mac never maps the arm64 slice
    return [
        Problem("code-signature", binary.path, detail)
        for piece in binary.slices
        if (detail := _signature_detail(piece, posixpath.basename(binary.path))) is not None
    ]


def _signature_detail(piece: Slice, filename: str) -> str | None:
    check = piece.signature
    if check is None or check.ok:
        return None
    resign = f"codesign --force --sign - {filename}"
    if check.status == "unsigned":
        return (
            f"'{piece.arch}' slice has no code signature (no LC_CODE_SIGNATURE): {KILLED}; "
            f"sign it on macOS with `{resign}`"
        )
    if check.status == "malformed":
        return (
            f"'{piece.arch}' code signature is unreadable ({check.detail}): {KILLED}; "
            f"re-sign it on macOS with `{resign}`"
        )
    what = [check.detail] if check.detail else []
    if check.bad_pages:
        count = len(check.bad_pages)
        pages = describe_pages(check.bad_pages, check.page_size or 4096)
        what.insert(
            0,
            f"{count} of {check.pages} pages {'differs' if count == 1 else 'differ'} from the "
            f"signature's {check.hash_name} hashes: {pages}",
        )
    fix = (
        f"re-sign it on macOS with `{resign}`, or run `invoke verify-wheel WHEEL --fix-signatures`"
        if check.signer and check.signer.startswith("ad-hoc")
        else "re-sign it with the original identity (codesign --force --sign 'Developer ID ...')"
    )
    return (
        f"'{piece.arch}' slice changed after it was signed ({check.signer}): "
        f"{'; '.join(what)}. {KILLED}; {fix}"
    )


def _set_problems(
    path: Path,
    contents: _Contents,
    companions: list[Path],
    target: Target | None,
    python: str | None,
) -> list[Problem]:
    """Requires-Python, and Requires-Dist against the companions that fit the target."""
    metadata_file = f"{contents.dist_info}/METADATA" if contents.metadata is not None else None
    wheel = metadata_from_headers(path, metadata_file, contents.metadata)
    others = [meta for meta in map(read_metadata, companions) if meta is not None]
    return set_problems(
        wheel,
        others,
        system=target.os if target is not None else None,
        archs=target.archs if target is not None else (),
        python=python,
    )


def _companion_fits(companion: Path, target: Target | None) -> bool:
    """True for a wheel of the set that installs on the target (pure wheels always do): a
    dist/ folder holds wheels for several platforms, and only this one's are the set."""
    if target is None:
        return True
    try:
        tags = parse_wheel_filename(companion.name)[3]
    except InvalidWheelFilename:
        return True  # it provides nothing anyway; see companion_names
    return tags_fit(tags, target)


def tags_fit(tags: Iterable[Tag], target: Target) -> bool:
    """True when one of a wheel's tags installs on ``target``, as pip there decides (an ``any``
    wheel always does)."""
    return any(_fits(parse_platform_tag(tag.platform), target) for tag in tags)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _glibc_problems(binary: BinaryInfo, cap: tuple[int, int] | None) -> list[Problem]:
    if cap is None or binary.glibc is None:
        return []
    needed = glibc_version(f"GLIBC_{binary.glibc}")
    if needed is None or needed <= cap:
        return []
    detail = f"needs GLIBC_{binary.glibc}, the manylinux tag allows up to {cap[0]}.{cap[1]}"
    return [Problem("glibc", binary.path, detail)]


def _wheel_search_dirs(binaries: list[BinaryInfo]) -> frozenset[str]:
    """In-wheel directories any binary's rpath names.

    dyld and ld.so also search the rpaths of the binary that loaded a library, so a dependency
    found through another binary's rpath is not reported missing.
    """
    dirs = set()
    for binary in binaries:
        here = posixpath.dirname(binary.path)
        for rpath in binary.rpaths:
            expanded = _expand_rpath(here, rpath)
            if expanded is not None:
                dirs.add(expanded)
    return frozenset(dirs)


def _expand_rpath(here: str, rpath: str) -> str | None:
    """An rpath as a directory inside the wheel, or None when it points elsewhere."""
    for token in ("@loader_path", "$ORIGIN", "${ORIGIN}"):
        if rpath == token or rpath.startswith(token + "/"):
            return posixpath.normpath(posixpath.join(here or ".", rpath[len(token) + 1 :]))
    return None


def _in_wheel(directory: str, name: str, names: frozenset[str]) -> bool:
    return posixpath.normpath(posixpath.join(directory, name)) in names


def _macho_library_problems(
    binary: BinaryInfo, names: frozenset[str], search_dirs: frozenset[str]
) -> list[Problem]:
    problems = [
        Problem("external-library", binary.path, f"rpath {rpath} points outside the wheel")
        for rpath in binary.rpaths
        if rpath.startswith("/") and not rpath.startswith(_MACOS_SYSTEM_PREFIXES)
    ]
    for library in binary.libraries:
        reason = _macho_library_reason(library, binary, search_dirs, names)
        if reason:
            problems.append(Problem("external-library", binary.path, reason))
    return problems


def _macho_library_reason(
    library: str, binary: BinaryInfo, search_dirs: frozenset[str], names: frozenset[str]
) -> str | None:
    """Why dyld would not find ``library`` inside the wheel or macOS, or None when it would."""
    here = posixpath.dirname(binary.path)
    if library.startswith("@rpath/"):
        leaf = library.removeprefix("@rpath/")
        own_dirs = [d for d in (_expand_rpath(here, r) for r in binary.rpaths) if d is not None]
        if any(_in_wheel(d, leaf, names) for d in (*own_dirs, *search_dirs)):
            return None
        # An rpath into macOS (/usr/lib/swift) may well provide it; we cannot look there.
        if any(r.startswith(_MACOS_SYSTEM_PREFIXES) for r in binary.rpaths):
            return None
        rpaths = ", ".join(binary.rpaths) or "none"
        return f"links {library}, but no rpath ({rpaths}) finds it in the wheel"
    if library.startswith("@loader_path/"):
        candidate = posixpath.normpath(
            posixpath.join(here or ".", library.removeprefix("@loader_path/"))
        )
        return (
            None if candidate in names else f"links {library}, but {candidate} is not in the wheel"
        )
    if library.startswith("@executable_path/"):
        return f"links {library}, which is relative to the Python executable, outside the wheel"
    if library.startswith(_MACOS_SYSTEM_PREFIXES):
        return None
    if library.startswith("/"):
        return f"links {library}, outside the wheel and not part of macOS"
    return f"links {library}, a relative path dyld resolves against the current directory"


def _elf_library_problems(
    binary: BinaryInfo,
    names: frozenset[str],
    search_dirs: frozenset[str],
    glibc_cap: tuple[int, int] | None,
) -> list[Problem]:
    here = posixpath.dirname(binary.path)
    own_dirs = [d for d in (_expand_rpath(here, r) for r in binary.rpaths) if d is not None]
    problems = [
        Problem("external-library", binary.path, reason)
        for rpath in binary.rpaths
        if (reason := _elf_rpath_reason(here, rpath)) is not None
    ]
    for library in binary.libraries:
        if _manylinux_allows(library, glibc_cap):
            continue
        if "/" not in library and any(
            _in_wheel(d, library, names) for d in (*own_dirs, *search_dirs)
        ):
            continue
        detail = (
            f"needs {library}, which is neither in the wheel (or the wheels verified with it) "
            "nor on the manylinux allow-list"
        )
        problems.append(Problem("external-library", binary.path, detail))
    return problems


def _elf_rpath_reason(here: str, rpath: str) -> str | None:
    """Why an RPATH/RUNPATH entry points off the user's machine (a build directory, /home,
    /tmp, /opt ...), or None for $ORIGIN-relative ones and the system library directories."""
    if _expand_rpath(here, rpath) is not None:
        return None
    if rpath.startswith("/"):
        normal = posixpath.normpath(rpath)
        if any(normal == d or normal.startswith(d + "/") for d in _LINUX_SYSTEM_DIRS):
            return None
        return f"rpath {rpath} points outside the wheel"
    return f"rpath {rpath} is relative to the current directory, not to the library ($ORIGIN)"


def _manylinux_allows(library: str, glibc_cap: tuple[int, int] | None) -> bool:
    if library in _MANYLINUX_LIBRARIES or _GLIBC_LOADERS.fullmatch(library):
        return True
    since = _MANYLINUX_LIBRARIES_SINCE.get(library)
    return since is not None and (glibc_cap is None or glibc_cap >= since)


__all__ = [
    "MAX_COMPRESSION_RATIO",
    "MAX_UNCOMPRESSED_BYTES",
    "TARGETS",
    "PlatformTag",
    "Problem",
    "ProblemKind",
    "Target",
    "WheelReport",
    "parse_platform_tag",
    "resolve_target",
    "verify_wheel",
    "verify_wheels",
]
