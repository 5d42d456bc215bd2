"""Say why a Bazel build failed and how to fix it, from its log.

A log is streamed in binary chunks, so a log of any size, or a hostile one (no newline in a
gigabyte, binary garbage, invalid UTF-8, ANSI escapes), is read in bounded memory and never makes
the diagnoser raise. Lines are split here, not by Python, and each is cut to ``MAX_LINE_BYTES``.

Speed comes from a prefilter. Only a few lines are ever decoded and parsed:

- a line holding one of ``NEEDLES`` (each searched over the raw bytes at 3-5 GB/s);
- the line just before it (messages such as TF's "You have bazel X installed." come first);
- ``CONTEXT_LINES`` lines after it (the compiler or Starlark output under an ``ERROR`` line);
- the lines an open multi-line block still wants (an undeclared-inclusion header list, the
  symbols of an "Undefined symbols" list).

``diagnose_lines`` (pure, for text already in memory) applies the same rule line by line, so both
paths report the same findings. Each line is cleaned (``clean_line``) and handed to the pure
``parse_*`` functions.

Finding kinds (a contract other tools read; ``Finding.to_json`` gives each one's fields):

``undeclared-inclusion``
    A C++ source includes headers its rule does not declare. ``toolchain`` is true when every
    header is a compiler or SDK header: then the fix is ``bazel clean --expunge``, not a BUILD
    patch.
``incompatible-architecture``
    A binary of one architecture is loaded or linked by another (x86_64 under Rosetta).
``bazel-version``
    The running Bazel is not the one the checkout needs (stated, or implied by a known symptom).
    ``recovered`` is true when the log shows the build went on with the required version.
``out-of-memory``
    The kernel killed a compiler or the Bazel server, or the Bazel JVM ran out of heap.
``xcode-toolchain``
    Xcode, xcrun, SDK or Apple clang problems, and undefined symbols that are a missing
    framework rather than an architecture mismatch.
``python-environment``
    No usable Python or numpy for the build, or a hermetic requirements lock missing.
``fetch-failure``
    An external repository could not be downloaded. Mirror 404 warnings alone are not one:
    Bazel tries the next URL.
``layering-check``
    clang's layering check: an include not covered by the rule's deps (modules wording).
``missing-toolchain``
    No C++ toolchain for the target CPU (``darwin_arm64`` with an old or x86_64 Bazel).
``protobuf-version-skew``
    Generated ``.pb.h`` files and the Protocol Buffer headers come from different protobufs.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rich.markup import escape

from tfwheels import hostinfo
from tfwheels.console import out
from tfwheels.errors import UsageError

__all__ = [
    "BazelVersion",
    "FetchFailure",
    "Finding",
    "HostResources",
    "IncompatibleArchitecture",
    "LayeringCheck",
    "MissingToolchain",
    "OutOfMemory",
    "ProtobufVersionSkew",
    "PythonEnvironment",
    "UndeclaredHeader",
    "UndeclaredInclusion",
    "XcodeToolchain",
    "clean_line",
    "diagnose_command",
    "diagnose_file",
    "diagnose_lines",
    "diagnose_stream",
    "is_toolchain_header",
    "parse_architecture",
    "parse_bazel_version",
    "parse_header_path",
    "parse_included_by",
    "parse_layering_check",
    "parse_missing_toolchain",
    "parse_out_of_memory",
    "parse_protobuf_skew",
    "parse_python",
    "parse_undeclared_inclusion",
    "parse_xcode",
]

MAX_LINE_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
CONTEXT_LINES = 30
# Upper bounds on what one finding keeps, so a hostile log cannot grow memory through them.
_MAX_HEADERS = 1000
_MAX_SYMBOLS = 50
_MAX_EVIDENCE = 20

# Every line a parser below recognises holds one of these, or follows a line that does within
# CONTEXT_LINES, or is the line just before one. Each needle costs one pass over the log, so there
# are few: "rror" covers error/Error in compiler, xcrun, dlopen, Starlark "Error in fail:",
# "Server terminated abruptly (error code ...)", java's OutOfMemoryError and bazelisk's download
# errors; version_check messages follow an ERROR line; "WARNING: Download from" comes just before
# the repository's ERROR line. The others stand alone in configure or import output.
# "--jobs" finds the command line of the failed build: the resources it ran with (--jobs and, on
# the same line or in its context, --local_ram_resources) make the out-of-memory advice.
NEEDLES: tuple[bytes, ...] = (
    b"ERROR",
    b"rror",
    b"rchitecture",
    b"bazel installation",
    b"out of memory",
    b"AVX instructions",
    b"--jobs",
)
_NEEDLE_TEXTS: tuple[str, ...] = tuple(n.decode() for n in NEEDLES)
# A needle counts only where it stands as a failure word does (``SIGNALS``, one pattern per needle,
# each starting with its needle), so that a healthy build's lines (``errors.cc``, ``-Werror``,
# ``mirror.bazel.build``, ``error_codes.pb.h``, a linker warning's "(architecture arm64)") are
# skipped inside the regex engine's literal scan instead of costing a parse of their context.
# No pattern uses ``$`` or a look-ahead: a match in a line's first MAX_LINE_BYTES is then also a
# match in the whole line, which the byte scanner relies on.
SIGNALS: tuple[bytes, ...] = (
    rb"ERROR",
    rb"rror(?:[:;)]| code| downloading| in \w+:| \d| This| incompatible|(?<=OutOfMemoryError))",
    rb"rchitecture(?:(?<=incompatible architecture)|(?<=wrong architecture)"
    rb"|(?<=for architecture)|(?<=found architecture)|(?<=required architecture)"
    rb"|(?<=the architecture))",
    rb"bazel installation",
    rb"out of memory",
    rb"AVX instructions",
    rb"--jobs[= ]\d",
)
_SIGNAL_BYTES = tuple(re.compile(pattern) for pattern in SIGNALS)
_SIGNAL_TEXT = tuple(re.compile(pattern.decode(), re.ASCII) for pattern in SIGNALS)


# --------------------------------------------------------------------------------------------
# Findings


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One distinct failure in a log, with what to do about it.

    ``count`` says how often the same failure (same kind and ``KEY`` fields) was seen.
    """

    kind: ClassVar[str] = "finding"
    KEY: ClassVar[tuple[str, ...]] = ()

    message: str
    fix: str
    location: str | None = None
    count: int = 1

    def key(self) -> tuple[object, ...]:
        """What makes two findings the same failure: the kind and the ``KEY`` fields."""
        return (self.kind, *(getattr(self, name) for name in self.KEY))

    def to_json(self) -> dict[str, object]:
        """``{"kind", "message", "fix", "location", <kind fields>..., "count"}``."""
        data: dict[str, object] = {"kind": self.kind}
        for f in fields(self):
            if f.name != "count":
                value = getattr(self, f.name)
                data[f.name] = list(value) if isinstance(value, tuple) else value
        data["count"] = self.count
        return data


@dataclass(frozen=True, kw_only=True)
class UndeclaredInclusion(Finding):
    """``undeclared inclusion(s) in rule '<rule>'`` with every header Bazel listed."""

    kind: ClassVar[str] = "undeclared-inclusion"
    KEY: ClassVar[tuple[str, ...]] = ("rule", "source")

    rule: str
    source: str | None
    headers: tuple[str, ...]
    build_file: str | None
    line: int | None
    column: int | None = None
    toolchain: bool = False


@dataclass(frozen=True, kw_only=True)
class IncompatibleArchitecture(Finding):
    """A Mach-O of architecture ``have`` where ``need`` was required."""

    kind: ClassVar[str] = "incompatible-architecture"
    KEY: ClassVar[tuple[str, ...]] = ("file", "have", "need")

    file: str | None
    have: str | None
    need: str | None
    needs: tuple[str, ...] = ()  # every architecture the loader accepts, ``need`` first


@dataclass(frozen=True, kw_only=True)
class BazelVersion(Finding):
    """The running Bazel (``found``) is not the one needed (``required``: ``5.1.0``, ``>=3.7.2``)."""

    kind: ClassVar[str] = "bazel-version"
    KEY: ClassVar[tuple[str, ...]] = ("cause", "required", "found")

    required: str | None
    found: str | None
    cause: str
    recovered: bool = False


@dataclass(frozen=True, kw_only=True)
class OutOfMemory(Finding):
    """``process`` was killed or ran out of memory; ``jobs``/``local_ram_resources`` fit this host."""

    kind: ClassVar[str] = "out-of-memory"
    KEY: ClassVar[tuple[str, ...]] = ("process",)

    process: str
    jobs: int
    local_ram_resources: int
    host_jvm_args: str | None = None
    build_jobs: int | None = None  # what the failed build passed, when the log shows it
    build_local_ram_resources: int | None = None


@dataclass(frozen=True, kw_only=True)
class XcodeToolchain(Finding):
    """An Xcode / xcrun / SDK / Apple clang problem; ``detail`` is the SDK, tool or framework."""

    kind: ClassVar[str] = "xcode-toolchain"
    KEY: ClassVar[tuple[str, ...]] = ("problem", "detail")

    problem: str
    detail: str | None = None
    symbols: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PythonEnvironment(Finding):
    """The build's Python is missing or unusable; ``module`` names a missing Python module."""

    kind: ClassVar[str] = "python-environment"
    KEY: ClassVar[tuple[str, ...]] = ("problem", "module")

    problem: str
    module: str | None = None
    detail: str | None = None


@dataclass(frozen=True, kw_only=True)
class FetchFailure(Finding):
    """An external repository could not be fetched."""

    kind: ClassVar[str] = "fetch-failure"
    KEY: ClassVar[tuple[str, ...]] = ("repository",)

    repository: str | None
    url: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class LayeringCheck(Finding):
    """clang's layering check: ``rule`` includes ``header`` without a dep that exports it."""

    kind: ClassVar[str] = "layering-check"
    KEY: ClassVar[tuple[str, ...]] = ("rule", "header")

    rule: str
    header: str
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class MissingToolchain(Finding):
    """No C++ toolchain for ``cpu`` (or none of ``toolchain_type`` matched)."""

    kind: ClassVar[str] = "missing-toolchain"
    KEY: ClassVar[tuple[str, ...]] = ("cpu", "toolchain_type")

    cpu: str | None
    toolchain_type: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProtobufVersionSkew(Finding):
    """Generated protobuf code (``file``) does not match the protobuf headers; one per log."""

    kind: ClassVar[str] = "protobuf-version-skew"
    KEY: ClassVar[tuple[str, ...]] = ()

    file: str | None
    protoc: str | None = None


# --------------------------------------------------------------------------------------------
# This host's resources, for out-of-memory advice


@dataclass(frozen=True)
class HostResources:
    """Cores and RAM of the machine the advice is for, and what the failed build ran with.

    After an out-of-memory kill the advice must run the build with fewer resources than it had:
    below what builds use by default here (``tfwheels.hostinfo.resources``: the ``--jobs`` and
    ``--local_ram_resources`` every build passes unless told otherwise) and below the
    ``used_jobs``/``used_ram_mb`` the log shows the failed build passed, when it shows them.
    ``jobs`` is half of the lower of those (at least 1); ``local_ram_resources`` three quarters
    of the lower RAM figure (37.5% of the RAM against the default's half), since Bazel only
    schedules by it and the rest must hold the Bazel JVM, the OS and the user's programs.
    """

    cores: int
    total_ram_mb: int
    used_jobs: int | None = None
    used_ram_mb: int | None = None

    @classmethod
    def detect(cls) -> HostResources:
        """This machine, counted as builds count it (``tfwheels.hostinfo.resources``)."""
        here = hostinfo.resources()
        return cls(cores=here.cores, total_ram_mb=here.total_ram_mb)

    @property
    def defaults(self) -> hostinfo.Resources:
        """What a build on this host passes to Bazel when not told otherwise."""
        return hostinfo.resources(self.cores, self.total_ram_mb)

    @property
    def jobs(self) -> int:
        """``--jobs``: half of the default's (or of the failed build's, if lower), at least 1."""
        ran = min(self.defaults.jobs, self.used_jobs or self.defaults.jobs)
        return max(1, ran // 2)

    @property
    def local_ram_resources(self) -> int:
        """``--local_ram_resources`` in MB: 3/4 of the default's (or the failed build's) share."""
        ran = min(self.defaults.local_ram_mb, self.used_ram_mb or self.defaults.local_ram_mb)
        return max(256, ran * 3 // 4)

    @property
    def jvm_heap_mb(self) -> int:
        """A Bazel server heap (``-Xmx``): a quarter of the RAM, between 2 and 16 GB."""
        return min(16384, max(2048, self.total_ram_mb // 4))


_USED_JOBS = re.compile(r"--jobs[= ](?P<jobs>\d+)\b")
_USED_RAM = re.compile(
    r"--local_(?:ram_)?resources[= ](?:memory=)?(?:(?P<mb>\d+)\b|HOST_RAM\*(?P<share>[\d.]+))"
)


# --------------------------------------------------------------------------------------------
# Cleaning a line

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves (curses progress bar)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: terminal titles, hyperlinks
    r"|\x1b[@-Z\\-_]"
    r"|\\(?:x1b|033|u001b|e)\[[0-9;]*[A-Za-z]"  # the same, printed as text by a Python repr
)
_ISO_TIME = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_PREFIX = re.compile(
    rf"""(?:
        {_ISO_TIME}\s                                # GitHub Actions, Jenkins, most CI
      | [\[(]{_ISO_TIME}[\])]\s?
      | [\[(]\d\d:\d\d:\d\d(?:[.,]\d+)?[\])]\s?       # [12:34:56], Bazel --show_timestamps
      | \d{{4}}/\d\d/\d\d\ \d\d:\d\d:\d\d\s           # Go's log package (bazelisk)
      | (?:\d+\ *)?\|\ ?                               # log-viewer gutters "  | ", "12 | "
      | \#\#\[\w+\]                                   # GitHub Actions ##[error]
    )""",
    re.VERBOSE,
)


def clean_line(text: str) -> str:
    """The message in one raw log line: no ANSI escapes, timestamps, gutters or outer blanks.

    >>> clean_line("2023-01-02T03:04:05.1234567Z \\x1b[31mERROR:\\x1b[0m boom\\r\\n")
    'ERROR: boom'
    >>> clean_line("[12:34:56]   | (12:34:56) INFO: Found 1 target...")
    'INFO: Found 1 target...'
    >>> clean_line("b'\\\\x1b[31mERROR: The project\\\\x1b[0m'")
    "b'ERROR: The project'"
    """
    text = text.rstrip("\r\n")
    if "\r" in text:  # a progress line redrawn in place: the last drawing is what was shown
        text = next((part for part in reversed(text.split("\r")) if part.strip()), "")
    if "\x1b" in text or "\\" in text:
        text = _ANSI.sub("", text)
    for _ in range(4):
        text = text.lstrip()
        match = _PREFIX.match(text)
        if match is None:
            break
        text = text[match.end() :]
    return text.strip()


# --------------------------------------------------------------------------------------------
# Pure parsers: one cleaned line in, a finding (or the parsed parts) out

# Patterns are anchored or start with a literal, and names before a literal are bounded, so that
# a hostile 64 KB line costs linear time. Bazel's ERROR starts a cleaned line (or a bytes repr).
_ERROR_LOCATION = re.compile(r"(?:b')?ERROR: (?P<path>.+?):(?P<line>\d+):(?P<col>\d+): ")
_COMPILER_POSITION = re.compile(r"(?P<file>.+?):\d+:\d+:")


def _error_location(line: str) -> str | None:
    match = _ERROR_LOCATION.match(line)
    return f"{match['path']}:{match['line']}:{match['col']}" if match else None


def _compiler_file(before: str) -> str | None:
    """The file of a ``file:line:col:`` among the last words of ``before`` (compiler output)."""
    for word in before.split()[-3:]:
        if match := _COMPILER_POSITION.fullmatch(word):
            return match["file"]
    return None


@dataclass(frozen=True)
class UndeclaredHeader:
    """The first line of an undeclared-inclusion report."""

    rule: str
    build_file: str | None
    line: int | None
    column: int | None
    source: str | None


_UNDECLARED = re.compile(
    r"(?:Compiling (?P<src>\S+)(?: \[for \w+\])? failed: )?"
    r"undeclared inclusion\(s\) in rule '(?P<rule>[^']+)'"
)
_INCLUDED_BY = re.compile(
    r"this rule is missing dependency declarations for the following files included by "
    r"'(?P<src>[^']+)'"
)
_HEADER_PATH = re.compile(r"'(?P<path>[^']+)'\.?")


def parse_undeclared_inclusion(line: str) -> UndeclaredHeader | None:
    """The rule, BUILD file and source of an undeclared-inclusion header line (either form).

    >>> parse_undeclared_inclusion("ERROR: /ws/pkg/BUILD:3:10: Compiling pkg/a.cc [for host] "
    ...     "failed: undeclared inclusion(s) in rule '@@grpc+//src/core:lib':")
    UndeclaredHeader(rule='@@grpc+//src/core:lib', build_file='/ws/pkg/BUILD', line=3, column=10, source='pkg/a.cc')
    >>> parse_undeclared_inclusion("ERROR: undeclared inclusion(s) in rule '//k:nccl':")
    UndeclaredHeader(rule='//k:nccl', build_file=None, line=None, column=None, source=None)
    """
    if "undeclared inclusion" not in line:
        return None
    match = _UNDECLARED.search(line)
    if match is None:
        return None
    where = _ERROR_LOCATION.match(line)
    return UndeclaredHeader(
        rule=match["rule"],
        build_file=where["path"] if where else None,
        line=int(where["line"]) if where else None,
        column=int(where["col"]) if where else None,
        source=match["src"],
    )


def parse_included_by(line: str) -> str | None:
    """The source named by ``this rule is missing dependency declarations ... included by``."""
    match = _INCLUDED_BY.search(line)
    return match["src"] if match else None


def parse_header_path(line: str) -> str | None:
    """One listed header: ``'path'`` (Bazel indents it; some reports end the list with ``'.``).

    >>> parse_header_path("'/usr/include/stdio.h'.")
    '/usr/include/stdio.h'
    """
    match = _HEADER_PATH.fullmatch(line)
    return match["path"] if match else None


_TOOLCHAIN_HEADER = re.compile(
    r"""^/(?:
        Library/Developer/                 # Command Line Tools and their SDKs
      | Applications/Xcode[^/]*\.app/       # any Xcode, Xcode-beta, Xcode_15.4
      | usr/include/
      | usr/lib(?:64)?/gcc/
      | usr/lib/llvm-\d[^/]*/               # Debian/Ubuntu LLVM: /usr/lib/llvm-17/include/c++/v1
      | (?:opt/homebrew|usr/local)/(?:opt|Cellar)/llvm(?:@\d+)?/   # Homebrew LLVM
    )
    | \.sdk/                               # an Apple SDK wherever it lives
    | \.xctoolchain/                       # an Xcode toolchain, in any Xcode wherever installed
    | /include/c\+\+/v1/                    # libc++ of any LLVM install
    | /lib(?:64)?/clang/\d                 # a clang resource dir: .../lib/clang/15.0.0/include
    """,
    re.VERBOSE,
)


def is_toolchain_header(path: str) -> bool:
    """True for an absolute compiler or SDK header path (never for a project header).

    >>> is_toolchain_header("/usr/lib64/clang/10.0.0/include/stddef.h")
    True
    >>> is_toolchain_header("/opt/homebrew/opt/llvm/include/c++/v1/vector")
    True
    >>> is_toolchain_header("/home/me/tensorflow/tensorflow/core/graph/graph.h")
    False
    """
    return path.startswith("/") and _TOOLCHAIN_HEADER.search(path) is not None


_MACHO_INCOMPATIBLE = re.compile(
    r"(?:'(?P<file>[^']+)' )?\(mach-o file, but is an incompatible architecture "
    r"\(have \(?'?(?P<have>\w[\w.]*)'?\)?, need \(?(?P<needs>'?\w[\w.]*'?(?: or '?\w[\w.]*'?)*)\)?\)"
)
_DLOPEN = re.compile(r"dlopen\((?P<file>[^,)]+)")
_MACHO_WRONG = re.compile(r": mach-o,? but wrong architecture")
_AVX = re.compile(r"(?:built|compiled) (?:using|to use) (?P<isa>AVX\w*) instructions")
_LD_IGNORING = (
    re.compile(
        r"ignoring file '?(?P<file>[^',]+)'?, building for (?:\w+-)?(?P<need>\w+) but "
        r"attempting to link with file built for (?:\w+-)?(?P<have>\w+)"
    ),
    re.compile(
        r"ignoring file '?(?P<file>[^',]+)'?, file was built for (?P<have>\w+) which is not "
        r"the architecture being linked \((?P<need>\w+)\)"
    ),
    re.compile(
        r"ignoring file '?(?P<file>[^',]+?)'?[,:] found architecture '(?P<have>\w+)', "
        r"required architecture '(?P<need>\w+)'"
    ),
)

_ARCH_FIX_RUNTIME = (
    "Use an arm64 Python, not one running under Rosetta: `python3 -c 'import platform; "
    "print(platform.machine())'` must print arm64 (check `file $(which python3)`; start it with "
    "`arch -arm64` or use an arm64-only Python), then install or build the macosx_*_arm64 wheel "
    "for it (check the extension with `file <module>.so`)."
)
_ARCH_FIX_LINK = (
    "Link like with like: build the consumer with an arm64 toolchain (not a Go, Python or "
    "compiler running under Rosetta) or build the library for the consumer's architecture. "
    "Check both sides with `lipo -info` or `file`."
)


def parse_architecture(line: str) -> IncompatibleArchitecture | None:
    """A dlopen or CPU-feature architecture mismatch in one line (not linker warnings).

    >>> f = parse_architecture("ImportError: dlopen(/x/_m.so, 0x000A): tried: '/x/_m.so' "
    ...     "(mach-o file, but is an incompatible architecture (have 'x86_64', need 'arm64e'))")
    >>> (f.file, f.have, f.need)
    ('/x/_m.so', 'x86_64', 'arm64e')
    >>> parse_architecture("(mach-o file, but is an incompatible architecture (have 'x86_64', "
    ...     "need 'arm64e' or 'arm64'))").needs
    ('arm64e', 'arm64')
    """
    match = _MACHO_INCOMPATIBLE.search(line)
    if match:
        file = match["file"]
        if file is None and (dlopen := _DLOPEN.search(line)):
            file = dlopen["file"]
        needs = tuple(part.strip("'") for part in match["needs"].split(" or "))
        return IncompatibleArchitecture(
            message=f"{file or 'a Mach-O file'} is {match['have']}, the process needs "
            f"{' or '.join(needs)}",
            fix=_ARCH_FIX_RUNTIME,
            location=file,
            file=file,
            have=match["have"],
            need=needs[0],
            needs=needs,
        )
    if match := _MACHO_WRONG.search(line):
        file = line[: match.start()].strip() or None
        return IncompatibleArchitecture(
            message=f"{file or 'a Mach-O file'} is built for another architecture than the "
            "running process (mach-o, but wrong architecture)",
            fix=_ARCH_FIX_RUNTIME,
            location=file,
            file=file,
            have=None,
            need=None,
        )
    if match := _AVX.search(line):
        return IncompatibleArchitecture(
            message=f"an x86_64 build that needs {match['isa']} runs on a CPU without it: on "
            "Apple Silicon, an x86_64 Python under Rosetta picked an x86_64 wheel",
            fix=_ARCH_FIX_RUNTIME,
            file=None,
            have=f"x86_64 ({match['isa']})",
            need=None,
        )
    return None


def _parse_ld_ignoring(line: str) -> IncompatibleArchitecture | None:
    """A linker warning that it skipped a file of the wrong architecture (evidence, not a failure)."""
    for pattern in _LD_IGNORING:
        if match := pattern.search(line):
            return IncompatibleArchitecture(
                message=f"the linker ignored {match['file']}: it is {match['have']}, the link is "
                f"for {match['need']}",
                fix=_ARCH_FIX_LINK,
                location=match["file"],
                file=match["file"],
                have=match["have"],
                need=match["need"],
            )
    return None


_BAZEL_AT_LEAST = re.compile(
    r"Current (?:running )?Bazel version is (?P<found>[^\s,;]+)[,;] expected at "
    r"(?P<bound>least|most) (?P<required>[\w.\-]+)"
)
_BAZEL_WRAPPER = re.compile(
    r"requires Bazel (?P<required>[\w.\-]+)(?: \((?P<reason>[^)]*)\))?, but it wasn\\?'t found "
    r"in (?P<dir>[^\s\\]+)"
)
_VERSION_IN_PATH = re.compile(r"/bazel[/-](?P<version>\d+\.\d+(?:\.\d+)?[\w.\-]*?)(?:/|$)")
_BAZELISK_DOWNLOAD = re.compile(
    r"could not download Bazel: .*?releases\.bazel\.build/(?P<required>[\w.\-]+)/"
)
_BAZELISK_RESOLVE = re.compile(
    r"could not resolve the version '(?P<required>[^']+)' to an actual version number"
)
_TF_CONFIGURE = re.compile(
    r"Please (?P<verb>upgrade|downgrade) your bazel installation to version "
    r"(?P<required>[\w.\-]+) or (?:higher|lower)"
)
_TF_CONFIGURE_HAVE = re.compile(r"You have bazel (?P<found>\S+?)\.? installed")
_LD_NAMESPEC = re.compile(r"library not found for -l:(?P<lib>\S+)")
_TRANSITION = re.compile(
    r"Invalid transition input '//command_line_option:(?P<option>[^']+)'"
    r"|Cannot transition on --experimental_\* or --incompatible_\* options"
)
_UNRECOGNIZED = re.compile(r"Unrecognized option: (?P<option>--?[\w\-]+)")
_BAZEL_IN_USE = re.compile(
    r"Bazel version: (?P<v1>\d[\w.\-]*)|Bazel binary path: \S*bazel-(?P<v2>\d+\.\d+\.\d+[\w.]*?)-"
)

_BAZEL_FIX = (
    "Run the Bazel this checkout pins: use bazelisk (it reads .bazelversion; "
    "`USE_BAZEL_VERSION=<version>` overrides it) or install that version, and keep it in the "
    "profile's `bazel.version`. Do not guess from min/max messages: the .bazelversion of the "
    "TensorFlow release is the tested one."
)


def _bazel_version(
    message: str, cause: str, required: str | None = None, found: str | None = None
) -> BazelVersion:
    fix = _BAZEL_FIX
    if required and required[0].isdigit():
        fix = fix.replace("<version>", required)
    return BazelVersion(message=message, fix=fix, required=required, found=found, cause=cause)


def parse_bazel_version(line: str, previous: str | None = None) -> BazelVersion | None:
    """A Bazel version mismatch in ``line`` (``previous``: the line before it, or None).

    >>> f = parse_bazel_version("Current Bazel version is 3.4.1, expected at least 3.7.2")
    >>> (f.required, f.found)
    ('>=3.7.2', '3.4.1')
    >>> f = parse_bazel_version("Please upgrade your bazel installation to version 0.24.1 or "
    ...     "higher to build TensorFlow!", "You have bazel 0.23.0 installed.")
    >>> (f.required, f.found)
    ('>=0.24.1', '0.23.0')
    """
    if match := _BAZEL_AT_LEAST.search(line):
        bound = ">=" if match["bound"] == "least" else "<="
        return _bazel_version(
            f"Bazel {match['found']} runs, the workspace needs at {match['bound']} "
            f"{match['required']} (version_check)",
            "version_check",
            f"{bound}{match['required']}",
            match["found"],
        )
    if match := _BAZEL_WRAPPER.search(line):
        in_path = _VERSION_IN_PATH.search(match["dir"].rstrip("."))
        return _bazel_version(
            f"the workspace requires Bazel {match['required']} ({match['reason'] or 'pinned'}) "
            f"but {match['dir'].rstrip('.')} does not have it",
            "bazelversion",
            match["required"],
            in_path["version"] if in_path else None,
        )
    if match := _BAZELISK_DOWNLOAD.search(line) or _BAZELISK_RESOLVE.search(line):
        return _bazel_version(
            f"bazelisk could not get Bazel {match['required']}: no such release, or no network "
            "(an offline machine needs it pre-seeded in BAZELISK_HOME)",
            "bazelisk",
            match["required"],
        )
    if match := _TF_CONFIGURE.search(line):
        have = _TF_CONFIGURE_HAVE.search(previous or "")
        bound = ">=" if match["verb"] == "upgrade" else "<="
        return _bazel_version(
            f"TensorFlow's configure wants Bazel {bound}{match['required']}"
            + (f", found {have['found']}" if have else ""),
            "configure",
            f"{bound}{match['required']}",
            have["found"] if have else None,
        )
    return _parse_implicit_bazel_version(line)


def _parse_implicit_bazel_version(line: str) -> BazelVersion | None:
    """Symptoms that mean "wrong Bazel" although no version is printed."""
    if match := _LD_NAMESPEC.search(line):
        return _bazel_version(
            f"Bazel passed GNU ld's `-l:{match['lib']}` to Apple's linker: a Bazel 6.4.0 "
            "regression on macOS (bazelbuild/bazel#20487), not a missing library",
            "ld-namespec",
        )
    if match := _TRANSITION.search(line):
        option = match["option"] or "an --incompatible_* option"
        return _bazel_version(
            f"the pinned Starlark rules (rules_apple) transition on {option}, which this Bazel "
            "does not accept: the Bazel in use is not the one the rules were pinned for",
            "transition",
        )
    if match := _UNRECOGNIZED.search(line):
        return _bazel_version(
            f"this Bazel does not know {match['option']}: the .bazelrc was written for another "
            "Bazel version",
            "unrecognized-option",
        )
    return None


def _bazel_in_use(line: str) -> str | None:
    """The Bazel version a build tool says it goes on with (jax's build.py prints it)."""
    match = _BAZEL_IN_USE.search(line)
    return (match["v1"] or match["v2"]) if match else None


_OOM = (
    (re.compile(r"Killed signal terminated program (?P<process>[\w+\-.]+)"), "compiler"),
    (re.compile(r"internal compiler error: Killed \(program (?P<process>[\w+\-.]+)\)"), "compiler"),
    (
        re.compile(r"(?P<process>[\w+\-.]{1,64}): error: unable to execute command: Killed"),
        "compiler",
    ),
    (re.compile(r"(?P<process>[\w+\-.]{1,64}) terminated with signal 9 \[Killed\]"), "compiler"),
    (re.compile(r"(?P<process>[\w+\-.]{1,64}): out of memory allocating"), "compiler"),
    (re.compile(r"virtual memory exhausted"), "compiler"),
    (re.compile(r"Server terminated abruptly \(error code: (?P<code>\d+)"), "server"),
    (re.compile(r"java\.lang\.OutOfMemoryError|ran out of memory and crashed"), "jvm"),
)


def parse_out_of_memory(line: str, host: HostResources) -> OutOfMemory | None:
    """A process killed for memory, with ``--jobs``/``--local_ram_resources`` for ``host``.

    >>> f = parse_out_of_memory("gcc: internal compiler error: Killed (program cc1plus)",
    ...     HostResources(cores=8, total_ram_mb=16384))
    >>> (f.process, f.jobs, f.local_ram_resources)
    ('cc1plus', 4, 6144)
    """
    for pattern, who in _OOM:
        if match := pattern.search(line):
            return _out_of_memory(who, match, host)
    return None


def _out_of_memory(who: str, match: re.Match[str], host: HostResources) -> OutOfMemory:
    flags = f"--jobs={host.jobs} --local_ram_resources={host.local_ram_resources}"
    defaults = host.defaults
    ran = (
        f"the failed build ran with --jobs={host.used_jobs or defaults.jobs} "
        f"--local_ram_resources={host.used_ram_mb or defaults.local_ram_mb}"
        + ("" if host.used_jobs or host.used_ram_mb else " (this host's defaults)")
    )
    rerun = (
        f"Re-run with fewer resources: `{flags}` (tfwheels: `invoke build-tf --jobs {host.jobs} "
        f"--ram {host.local_ram_resources}`; {ran}; this host: {host.cores} cores, "
        f"{host.total_ram_mb // 1024} GB), close other programs or add swap; Bazel resumes "
        "where it stopped."
    )
    used = {"build_jobs": host.used_jobs, "build_local_ram_resources": host.used_ram_mb}
    if who == "jvm":
        heap = f"-Xmx{host.jvm_heap_mb}m"
        return OutOfMemory(
            message="the Bazel server (Java) ran out of heap (exit 33)",
            fix=f"Give Bazel a bigger heap with `startup --host_jvm_args={heap}` (a startup "
            f"option: it restarts the server) and lower parallelism. {rerun}",
            process="bazel server",
            jobs=host.jobs,
            local_ram_resources=host.local_ram_resources,
            host_jvm_args=heap,
            **used,
        )
    if who == "server":
        return OutOfMemory(
            message=f"the Bazel server died mid-build (error code {match['code']}): usually the "
            "kernel's OOM killer",
            fix="Check `dmesg` or the system log for 'Out of memory: Killed process'. " + rerun,
            process="bazel server",
            jobs=host.jobs,
            local_ram_resources=host.local_ram_resources,
            **used,
        )
    process = match.groupdict().get("process") or "compiler"
    return OutOfMemory(
        message=f"{process} was killed for lack of memory (the OOM killer; not a compiler bug "
        "despite 'internal compiler error' or 'submit a bug report')",
        fix=rerun,
        process=process,
        jobs=host.jobs,
        local_ram_resources=host.local_ram_resources,
        **used,
    )


_XCODE = (
    (re.compile(r"Xcode version must be specified to use an Apple CROSSTOOL"), "xcode-version"),
    (re.compile(r"xcrun: error: SDK \"(?P<detail>[^\"]+)\" cannot be located"), "sdk-not-found"),
    (
        re.compile(
            r"SDK version \[(?P<version>[^\]]+)\] for platform \[(?P<platform>[^\]]+)\] "
            r"is unsupported"
        ),
        "sdk-not-found",
    ),
    (re.compile(r"unable to lookup item '\w+' in SDK '(?P<detail>[^']+)'"), "sdk-not-found"),
    (re.compile(r"xcrun: error: invalid active developer path"), "developer-tools-missing"),
    (re.compile(r"xcode-select: error: tool '(?P<detail>[^']+)' requires Xcode"), "xcode-select"),
    (re.compile(r"xcrun: error: unable to find utility \"(?P<detail>[^\"]+)\""), "xcode-select"),
    (
        re.compile(
            r"does not support '-march=native'|unsupported argument 'native' to option '-march='"
        ),
        "march-native",
    ),
)
_XCODE_FIXES = {
    "xcode-version": (
        "Bazel could not determine a usable Xcode. Install the full Xcode (not only the Command "
        "Line Tools), accept its license (`sudo xcodebuild -license accept`), select it "
        "(`sudo xcode-select -s /Applications/Xcode.app`; check `xcode-select -p`), then "
        "`bazel shutdown` and `bazel clean --expunge`. Check that this Xcode is recent enough "
        "for the TensorFlow release."
    ),
    "sdk-not-found": (
        "xcrun cannot find the requested SDK: do not force `--macos_sdk_version` (or "
        "`--xcode_version`) to an SDK that is not installed; install the full Xcode and select "
        "it (`sudo xcode-select -s /Applications/Xcode.app`), then `bazel clean --expunge`."
    ),
    "developer-tools-missing": (
        "No developer tools are selected: run `xcode-select --install` (or install Xcode and "
        "`sudo xcode-select -s /Applications/Xcode.app`), then `bazel clean --expunge`."
    ),
    "xcode-select": (
        "The active developer directory is only the Command Line Tools: install Xcode and "
        "select it with `sudo xcode-select -s /Applications/Xcode.app`, then "
        "`bazel clean --expunge`."
    ),
    "march-native": (
        "Apple clang on arm64 (before AppleClang 15) rejects -march=native: remove it from "
        "`--copt`/CC_OPT_FLAGS on darwin_arm64 (TF's --config=opt adds it) or use "
        "`-mcpu=apple-m1`."
    ),
}
_XCODE_MESSAGES = {
    "xcode-version": "Xcode version must be specified to use an Apple CROSSTOOL",
    "sdk-not-found": "xcrun cannot locate the SDK {detail}",
    "developer-tools-missing": "xcrun: invalid active developer path (no Command Line Tools)",
    "xcode-select": "the active developer directory is not a full Xcode ({detail} needs one)",
    "march-native": "Apple clang does not support -march=native on arm64",
}


def parse_xcode(line: str) -> XcodeToolchain | None:
    """An Xcode, xcrun, SDK or Apple clang problem in one line.

    >>> parse_xcode('xcrun: error: SDK "macosx10.11" cannot be located').detail
    'macosx10.11'
    >>> parse_xcode("SDK version [10.11] for platform [MacOSX] is unsupported ...").detail
    'macosx10.11'
    """
    for pattern, problem in _XCODE:
        if match := pattern.search(line):
            groups = match.groupdict()
            detail = groups.get("detail")
            if groups.get("platform"):
                detail = f"{groups['platform'].lower()}{groups['version']}"
            return XcodeToolchain(
                message=_XCODE_MESSAGES[problem].format(detail=detail),
                fix=_XCODE_FIXES[problem],
                problem=problem,
                detail=detail,
            )
    return None


_UNDEFINED_SYMBOLS = re.compile(r"Undefined symbols for architecture (?P<arch>\w+):")
_SYMBOLS_NOT_FOUND = re.compile(r"symbol\(s\) not found for architecture (?P<arch>\w+)")
_LINK_FAILED = re.compile(r"linker command failed with exit code")
_SYMBOL_REFERENCED = re.compile(r'"(?P<symbol>[^"]+)", referenced from:')
_SYMBOL_LIST_LINE = re.compile(
    r'"[^"]+", referenced from:|\S+ in \S+|\(maybe you meant: .*\)|-exported_symbols?\S* .*'
)
# A symbol's prefix names the framework that defines it; data, so new ones are one line.
_FRAMEWORK_PREFIXES = (
    ("_OBJC_CLASS_$_MTL", "Metal"),
    ("_OBJC_CLASS_$_NS", "Foundation"),
    ("_OBJC_CLASS_$_MPS", "MetalPerformanceShaders"),
    ("_MTL", "Metal"),
    ("_MPS", "MetalPerformanceShaders"),
    ("_kCF", "CoreFoundation"),
    ("_CF", "CoreFoundation"),
    ("_kSec", "Security"),
    ("_Sec", "Security"),
    ("_kIO", "IOKit"),
    ("_IO", "IOKit"),
    ("_CG", "CoreGraphics"),
    ("_vDSP_", "Accelerate"),
    ("_vImage", "Accelerate"),
    ("_cblas_", "Accelerate"),
    ("_NS", "Foundation"),
)


def _framework_for(symbols: Iterable[str]) -> str | None:
    for symbol in symbols:
        for prefix, framework in _FRAMEWORK_PREFIXES:
            if symbol.startswith(prefix):
                return framework
    return None


def _undefined_symbols(arch: str, symbols: tuple[str, ...]) -> XcodeToolchain:
    framework = _framework_for(symbols)
    shown = ", ".join(symbols[:3]) + (", ..." if len(symbols) > 3 else "")
    what = f"the {framework} framework" if framework else "a framework or library"
    fix = (
        f'Add `-framework {framework}` to the target\'s linkopts (`linkopts = ["-framework", '
        f'"{framework}"]`, or `--linkopt=-framework --linkopt={framework}`).'
        if framework
        else "Find which library or framework defines the symbols (`nm -gU <lib> | grep <symbol>`)"
        " and add it to the target's deps or linkopts."
    )
    return XcodeToolchain(
        message=f"undefined symbols for architecture {arch}"
        + (f" ({shown})" if shown else "")
        + f": {what} is missing from the link; no file of another architecture was ignored, so "
        "this is not an architecture mismatch",
        fix=fix,
        problem="undefined-symbols",
        detail=framework,
        symbols=symbols,
    )


_PYTHON = (
    (re.compile(r"'?PYTHON_BIN_PATH'? environment variable is not set"), "python-bin-path-unset"),
    (
        re.compile(r"Invalid python path: (?P<detail>\S+) cannot be found"),
        "python-bin-path-invalid",
    ),
    (
        re.compile(r"PYTHON_BIN_PATH='?(?P<detail>[^'\s]+)'? is not executable"),
        "python-bin-path-invalid",
    ),
    (re.compile(r"Invalid PYTHON_BIN_PATH setting"), "python-bin-path-invalid"),
    (
        re.compile(
            r"Cannot find python in PATH|Could not find a Python interpreter"
            r"|(?P<detail>python3?): command not found"
        ),
        "python-not-found",
    ),
    (re.compile(r"No module named '?(?P<module>numpy)\b"), "numpy-missing"),
    (re.compile(r"Problem getting numpy include path|Is numpy installed"), "numpy-missing"),
    (re.compile(r"No module named '?(?P<module>[\w.]+)"), "module-missing"),
    (
        re.compile(r"Could not find requirements_lock\.txt file matching specified Python version"),
        "requirements-lock-missing",
    ),
    (re.compile(r"Failed to execute overlay script"), "repository-python-failed"),
)
_PYTHON_FIXES = {
    "python-bin-path-unset": (
        "Bazel ran without TensorFlow's configure step, so @local_config_python has no "
        "interpreter: run `invoke configure` (it renders .tf_configure.bazelrc) or TF's "
        "./configure, or pass `--repo_env=PYTHON_BIN_PATH=$(which python3)` (profile: "
        "`bazel.repo_env`)."
    ),
    "python-bin-path-invalid": (
        "PYTHON_BIN_PATH does not point at a runnable python: set it (profile `bazel.repo_env`) "
        "to the interpreter the wheel is for, e.g. the venv's `bin/python3`, and re-run configure."
    ),
    "python-not-found": (
        "A repository rule found no python on PATH: put a real Python 3 first on PATH (not a "
        "Store alias or a stub) or pass `--repo_env=PYTHON_BIN_PATH=<python>`, then rebuild."
    ),
    "numpy-missing": (
        "The build's Python has no numpy: install it into exactly that interpreter "
        "(`<python> -m pip install numpy`) or point PYTHON_BIN_PATH at a venv that has it, then "
        "re-run configure."
    ),
    "module-missing": (
        "The build's Python lacks a module the build imports: install the TensorFlow build "
        "requirements into that interpreter (`<python> -m pip install -r "
        "requirements_lock_<version>.txt`) or point PYTHON_BIN_PATH at a venv that has them."
    ),
    "requirements-lock-missing": (
        "TensorFlow's hermetic Python has no requirements_lock_<version>.txt for the requested "
        "Python version: use a Python version this TF release supports (profile "
        "`python.version`, HERMETIC_PYTHON_VERSION) or add the lock file the release expects."
    ),
    "repository-python-failed": (
        "A repository rule could not run the host python3 (stub, sandbox or permissions): make "
        "a working python3 first on PATH while fetching, or pass "
        "`--repo_env=PYTHON_BIN_PATH=<python>`, then `bazel sync` or rebuild."
    ),
}
_PYTHON_MESSAGES = {
    "python-bin-path-unset": "PYTHON_BIN_PATH is not set for @local_config_python",
    "python-bin-path-invalid": "PYTHON_BIN_PATH is not a usable python",
    "python-not-found": "no python found on PATH for a repository rule",
    "numpy-missing": "numpy cannot be imported by the build's Python",
    "module-missing": "the build's Python cannot import {module}",
    "requirements-lock-missing": "no requirements_lock.txt matches the hermetic Python version",
    "repository-python-failed": "a repository rule failed to run python (llvm overlay script)",
}


def parse_python(line: str) -> PythonEnvironment | None:
    """A missing or unusable Python (or numpy) for the build.

    >>> parse_python("ImportError: No module named numpy").problem
    'numpy-missing'
    """
    for pattern, problem in _PYTHON:
        if match := pattern.search(line):
            groups = match.groupdict()
            module = groups.get("module") or ("numpy" if problem == "numpy-missing" else None)
            return PythonEnvironment(
                message=_PYTHON_MESSAGES[problem].format(module=module),
                fix=_PYTHON_FIXES[problem],
                problem=problem,
                module=module,
                detail=groups.get("detail"),
            )
    return None


_OVERLAY_PYTHON = re.compile(r"'?(?P<python>\S*python[\d.]*)\s")


@dataclass(frozen=True)
class _FetchEvent:
    """A download or repository-fetch message; ``harmless`` for a mirror 404 Bazel recovers from."""

    repository: str | None
    url: str | None
    reason: str | None
    strong: bool
    harmless: bool = False


_ERROR_DOWNLOADING = re.compile(
    r"Error downloading \[(?P<urls>[^\]]*)\] to (?P<dest>\S+?):? (?P<reason>.*)"
)
_DOWNLOAD_WARNING = re.compile(r"Download from (?P<url>\S+) failed: (?P<reason>.*)")
_REPO_FETCH_ERROR = re.compile(
    r"An error occurred during the fetch of repository '@{0,2}(?P<repo>[^']+)'"
)
_NO_SUCH_PACKAGE = re.compile(r"no such package '@{1,2}(?P<repo>[^/']+)//[^']*': (?P<reason>.*)")
_EXTERNAL_REPO = re.compile(r"/external/(?P<repo>[^/]+)/")
_FETCH_WORDS = re.compile(r"(?i)download|fetch|IOException|Traceback|repository")
_HARMLESS_DOWNLOAD = re.compile(r"\b404\b|Not Found")


def _parse_fetch(line: str) -> _FetchEvent | None:
    if match := _ERROR_DOWNLOADING.search(line):
        repo = _EXTERNAL_REPO.search(match["dest"])
        url = match["urls"].split(",")[0].strip() or None
        return _FetchEvent(repo["repo"] if repo else None, url, match["reason"].strip(), True)
    if match := _DOWNLOAD_WARNING.search(line):
        harmless = _HARMLESS_DOWNLOAD.search(match["reason"]) is not None
        return _FetchEvent(None, match["url"], match["reason"].strip(), False, harmless)
    if match := _REPO_FETCH_ERROR.search(line):
        return _FetchEvent(match["repo"], None, None, False)
    if (match := _NO_SUCH_PACKAGE.search(line)) and _FETCH_WORDS.search(match["reason"]):
        return _FetchEvent(match["repo"], None, None, False)
    return None


def _fetch_failure(repository: str | None, url: str | None, reason: str | None) -> FetchFailure:
    what = f"@{repository}" if repository else "an external repository"
    message = f"fetching {what} failed" + (f": {url}: {reason}" if url else "")
    fix = (
        f"A network or mirror problem while downloading {url or what}: retry (Bazel resumes), "
        "check the connection and proxy (HTTPS_PROXY), and on flaky or offline machines pre-seed "
        "the archive with `--repository_cache=<dir>` or `--distdir=<dir>` (the file under its "
        "original name)."
    )
    if reason and "Checksum" in reason:
        fix = (
            "The archive's checksum does not match the pinned sha256: the download was truncated "
            "or replaced upstream (or a proxy rewrote it). Retry, or pre-seed the right archive "
            "with `--distdir=<dir>`; do not change the pinned sha256 blindly."
        )
    return FetchFailure(message=message, fix=fix, repository=repository, url=url, reason=reason)


_LAYERING = re.compile(
    r"error: module (?P<rule>\S+) does not depend on a module exporting '(?P<header>[^']+)'"
)


def parse_layering_check(line: str) -> LayeringCheck | None:
    """clang's layering check (``does not depend on a module exporting``)."""
    match = _LAYERING.search(line)
    if match is None:
        return None
    source = _compiler_file(line[: match.start()])
    return LayeringCheck(
        message=f"{match['rule']} includes '{match['header']}' but no dep exports it "
        "(clang layering_check)",
        fix="Add the dependency that provides the header to the rule's deps (for an external "
        "repository, with a patch to its BUILD file), or build with `--features=-layering_check` "
        "(and `--host_features=-layering_check`). Not an out-of-memory or toolchain-install "
        "problem.",
        location=source,
        rule=match["rule"],
        header=match["header"],
        source=source,
    )


_NO_TOOLCHAIN = (
    re.compile(r"does not contain a toolchain for cpu '(?P<cpu>[^']+)'"),
    re.compile(r"No toolchain found for cpu '(?P<cpu>[^']+)'"),
    re.compile(r"No matching toolchains found for types:? (?P<type>[^\s,]+)"),
)


def parse_missing_toolchain(line: str) -> MissingToolchain | None:
    """No C++ toolchain for a CPU (``cc_toolchain_suite ... does not contain a toolchain``)."""
    for pattern in _NO_TOOLCHAIN:
        if match := pattern.search(line):
            groups = match.groupdict()
            cpu = groups.get("cpu")
            toolchain_type = groups["type"].rstrip(".") if groups.get("type") else None
            return MissingToolchain(
                message=f"no C++ toolchain for cpu '{cpu}'"
                if cpu
                else f"no toolchain matches {toolchain_type}",
                fix="Use a native arm64 Bazel recent enough for darwin_arm64 (the profile's "
                "`bazel.version` / the checkout's .bazelversion; check `file $(which bazel)` is "
                "not x86_64 under Rosetta), select the full Xcode (`xcode-select -p`), then "
                "`bazel clean --expunge`.",
                cpu=cpu,
                toolchain_type=toolchain_type,
            )
    return None


_PROTOBUF = re.compile(
    r"#error This file was generated by an? (?P<protoc>newer|older) version of protoc"
    r"|#error incompatible with your Protocol Buffer"
    r"|Protobuf C\+\+ gencode is built with an incompatible version of"
)


def parse_protobuf_skew(line: str) -> ProtobufVersionSkew | None:
    """Generated protobuf code that does not match the protobuf headers it is compiled with."""
    match = _PROTOBUF.search(line)
    if match is None:
        return None
    file = _compiler_file(line[: match.start()])
    protoc = match["protoc"]
    return ProtobufVersionSkew(
        message="generated protobuf code and the Protocol Buffer headers are from different "
        "protobuf versions" + (f" (protoc is {protoc})" if protoc else ""),
        fix="The .pb.h files come from one protoc and the headers from another (for "
        "tensorflow-text: its workspace's protoc vs the installed TensorFlow's headers): build "
        "against the TensorFlow version this source release pins, so both use the same "
        "protobuf, then `bazel clean`. Not a network or memory problem.",
        location=file,
        file=file,
        protoc=protoc,
    )


# --------------------------------------------------------------------------------------------
# Multi-line blocks


@dataclass
class _UndeclaredBlock:
    """An undeclared-inclusion report being read: its header, then the listed paths."""

    header: UndeclaredHeader
    order: int
    source: str | None = None
    headers: list[str] = field(default_factory=list)
    listed: bool = False
    done: bool = False

    def take(self, line: str) -> bool:
        if not self.listed:
            source = parse_included_by(line)
            if source is None:
                return False
            self.source, self.listed = source, True
            return True
        path = parse_header_path(line)
        if path is None:
            return False
        if len(self.headers) < _MAX_HEADERS:
            self.headers.append(path)
        return True


@dataclass
class _SymbolsBlock:
    """An ``Undefined symbols for architecture`` list, up to ``ld: symbol(s) not found``."""

    arch: str
    order: int
    symbols: list[str] = field(default_factory=list)
    done: bool = False

    def take(self, line: str) -> bool:
        if _SYMBOLS_NOT_FOUND.search(line):
            self.done = True
            return True
        if not _SYMBOL_LIST_LINE.fullmatch(line):
            return False
        if (match := _SYMBOL_REFERENCED.match(line)) and len(self.symbols) < _MAX_SYMBOLS:
            self.symbols.append(match["symbol"])
        return True


@dataclass
class _OverlayBlock:
    """The line after "Failed to execute overlay script:" names the python that failed."""

    order: int
    python: str | None = None
    done: bool = False

    def take(self, line: str) -> bool:
        match = _OVERLAY_PYTHON.match(line)
        self.python = match["python"] if match else None
        self.done = True
        return match is not None


_Block = _UndeclaredBlock | _SymbolsBlock | _OverlayBlock


# --------------------------------------------------------------------------------------------
# The diagnosis: cleaned lines in, findings out


class _Diagnosis:
    """Consumes cleaned lines (with whether each follows the previous one) and keeps findings."""

    def __init__(self, host: HostResources | None, source: Path | None) -> None:
        self._host = host
        self._source = source
        self._found: dict[tuple[object, ...], tuple[int, Finding]] = {}
        self._block: _Block | None = None
        self._previous: str | None = None
        self._error_location: str | None = None
        self._order = 0
        self._ld_ignored: list[IncompatibleArchitecture] = []
        self._weak_fetches: dict[str, tuple[int, _FetchEvent | None]] = {}
        self._download_failures: list[_FetchEvent] = []  # not yet tied to a repository
        self._bazels_in_use: set[str] = set()
        self._oom_lines: dict[tuple[object, ...], str] = {}  # to redo the advice at the end
        self._used_jobs: int | None = None
        self._used_ram: tuple[int | None, float | None] | None = None  # (MB, HOST_RAM share)

    @property
    def wants_more(self) -> bool:
        """True while a multi-line block is open and needs the very next line."""
        return self._block is not None

    def feed(self, line: str, follows: bool) -> None:
        """Read one cleaned line; ``follows`` says it comes right after the previous one fed."""
        self._order += 1
        if not follows:
            self._close_block()
            self._previous = None
            self._error_location = None
        if self._block is not None:
            consumed = self._block.take(line)
            if not consumed or self._block.done:
                self._close_block()
            if consumed:
                self._previous = line
                return
        self._parse(line)
        self._previous = line

    def finish(self) -> list[Finding]:
        """All findings: unrecovered first, then in the order they appeared."""
        self._close_block()
        self._add_fetch_failures()
        self._resize_out_of_memory()
        ordered = sorted(
            self._found.values(),
            key=lambda item: (getattr(item[1], "recovered", False), item[0]),
        )
        return [self._relate(finding) for _, finding in ordered]

    # -- one line ------------------------------------------------------------------------------

    def _parse(self, line: str) -> None:
        if "ERROR: " in line:
            self._error_location = _error_location(line)
        if "-j" in line or "_resources" in line:
            self._note_resources(line)
        if header := parse_undeclared_inclusion(line):
            self._block = _UndeclaredBlock(header, self._order)
            return
        if match := _UNDEFINED_SYMBOLS.search(line):
            self._block = _SymbolsBlock(match["arch"], self._order)
            return
        if "Failed to execute overlay script" in line:
            self._block = _OverlayBlock(self._order)
            return
        self._parse_link(line)
        for finding in self._single_line_findings(line):
            self._add(finding, self._order)
        if version := _bazel_in_use(line):
            self._bazels_in_use.add(version)
            self._mark_recovered()
        if event := _parse_fetch(line):
            self._note_fetch(event)

    def _single_line_findings(self, line: str) -> Iterator[Finding]:
        candidates = (
            parse_architecture(line),
            parse_bazel_version(line, self._previous),
            self._parse_oom(line),
            parse_xcode(line),
            parse_python(line),
            parse_layering_check(line),
            parse_missing_toolchain(line),
            parse_protobuf_skew(line),
        )
        for finding in candidates:
            if finding is not None:
                if finding.location is None and self._error_location:
                    finding = replace(finding, location=self._error_location)
                yield finding

    def _parse_oom(self, line: str) -> OutOfMemory | None:
        if not any(word in line for word in ("Killed", "memory", "terminated", "OutOfMemory")):
            return None
        if self._host is None:
            self._host = HostResources.detect()
        finding = parse_out_of_memory(line, self._host)
        if finding is not None:
            self._oom_lines.setdefault(finding.key(), line)
        return finding

    def _note_resources(self, line: str) -> None:
        """The ``--jobs``/``--local_ram_resources`` a build command line passed (the last wins)."""
        for match in _USED_JOBS.finditer(line):
            self._used_jobs = int(match["jobs"])
        for match in _USED_RAM.finditer(line):
            share = float(match["share"]) if match["share"] else None
            self._used_ram = (int(match["mb"]) if match["mb"] else None, share)

    def _resize_out_of_memory(self) -> None:
        """Out-of-memory advice below what the failed build used, once the whole log is read."""
        if not self._oom_lines or self._host is None:
            return
        if self._used_jobs is None and self._used_ram is None:
            return
        ram = None
        if self._used_ram is not None:
            mb, share = self._used_ram
            ram = mb if mb is not None else int(self._host.total_ram_mb * (share or 0)) or None
        host = replace(self._host, used_jobs=self._used_jobs, used_ram_mb=ram)
        for key, line in self._oom_lines.items():
            order, known = self._found[key]
            redone = parse_out_of_memory(line, host)
            if redone is not None:
                self._found[key] = (order, replace(redone, location=known.location, count=known.count))

    def _parse_link(self, line: str) -> None:
        """Linker output: skipped wrong-arch files are evidence until the link fails."""
        if ignored := _parse_ld_ignoring(line):
            if len(self._ld_ignored) < _MAX_EVIDENCE:
                self._ld_ignored.append(ignored)
            return
        if match := _SYMBOLS_NOT_FOUND.search(line):
            self._link_failed(match["arch"], ())
        elif _LINK_FAILED.search(line) and self._ld_ignored:
            self._link_failed(None, ())

    def _link_failed(self, arch: str | None, symbols: tuple[str, ...], order: int = 0) -> None:
        order = order or self._order
        if self._ld_ignored:
            for ignored in self._ld_ignored:
                self._add(ignored, order)
            self._ld_ignored.clear()
        elif arch is not None:
            self._add(_undefined_symbols(arch, symbols), order)

    # -- blocks --------------------------------------------------------------------------------

    def _close_block(self) -> None:
        block, self._block = self._block, None
        if isinstance(block, _UndeclaredBlock):
            self._add(self._undeclared(block), block.order)
        elif isinstance(block, _SymbolsBlock):
            self._link_failed(block.arch, tuple(block.symbols), block.order)
        elif isinstance(block, _OverlayBlock):
            finding = parse_python("Failed to execute overlay script")
            if finding is not None:
                finding = replace(finding, detail=block.python, location=self._error_location)
                self._add(finding, block.order)

    def _undeclared(self, block: _UndeclaredBlock) -> UndeclaredInclusion:
        header = block.header
        source = block.source or header.source
        headers = tuple(block.headers)
        toolchain = bool(headers) and all(is_toolchain_header(h) for h in headers)
        location = (
            f"{header.build_file}:{header.line}:{header.column}" if header.build_file else source
        )
        message = (
            f"{len(headers)} undeclared {'header' if len(headers) == 1 else 'headers'} in "
            f"{header.rule}, included by {source or 'a source file'}"
            + (" (all from the compiler or SDK)" if toolchain else "")
        )
        return UndeclaredInclusion(
            message=message,
            fix=_undeclared_fix(header.rule, headers, toolchain),
            location=location,
            rule=header.rule,
            source=source,
            headers=headers,
            build_file=header.build_file,
            line=header.line,
            column=header.column,
            toolchain=toolchain,
        )

    # -- fetches and versions ------------------------------------------------------------------

    def _note_fetch(self, event: _FetchEvent) -> None:
        if event.strong:
            self._add(_fetch_failure(event.repository, event.url, event.reason), self._order)
        elif event.repository is not None:
            # Bazel warns about each failed URL before it reports the repository's fetch error.
            evidence = self._download_failures[0] if self._download_failures else None
            self._download_failures.clear()
            known = self._weak_fetches.get(event.repository)
            if known is None or known[1] is None:
                order = known[0] if known else self._order
                self._weak_fetches[event.repository] = (order, evidence)
        elif not event.harmless and len(self._download_failures) < _MAX_EVIDENCE:
            self._download_failures.append(event)

    def _add_fetch_failures(self) -> None:
        """A bare "error during the fetch of repository" counts only without a better cause.

        It follows from a python, Xcode or download problem alike; when another finding explains
        the log it is that one. A non-404 download failure just before it makes it a real fetch
        failure. Mirror 404 warnings alone never do: Bazel falls back to the next URL.
        """
        others = any(f.kind != FetchFailure.kind for _, f in self._found.values())
        for repository, (order, evidence) in self._weak_fetches.items():
            if evidence is not None or not others:
                url, reason = (evidence.url, evidence.reason) if evidence else (None, None)
                self._add(_fetch_failure(repository, url, reason), order)

    def _mark_recovered(self) -> None:
        for key, (order, finding) in list(self._found.items()):
            if (
                isinstance(finding, BazelVersion)
                and finding.required
                and finding.required.lstrip("<>=") in self._bazels_in_use
            ):
                self._found[key] = (order, replace(finding, recovered=True))

    # -- bookkeeping ---------------------------------------------------------------------------

    def _add(self, finding: Finding, order: int) -> None:
        key = finding.key()
        if key not in self._found:
            self._found[key] = (order, finding)
            return
        first_order, known = self._found[key]
        gaps = {
            f.name: getattr(finding, f.name)
            for f in fields(known)
            if getattr(known, f.name) is None and getattr(finding, f.name) is not None
        }
        self._found[key] = (first_order, replace(known, count=known.count + 1, **gaps))

    def _relate(self, finding: Finding) -> Finding:
        """Paths inside ``--source`` become relative to it; others stay as the log has them."""
        if self._source is None:
            return finding
        changes: dict[str, Any] = {}
        for name in ("location", "build_file", "file", "source"):
            value = getattr(finding, name, None)
            if isinstance(value, str):
                changes[name] = _relative(value, self._source)
        if isinstance(finding, UndeclaredInclusion):
            changes["headers"] = tuple(_relative(h, self._source) for h in finding.headers)
        return replace(finding, **changes)


def _relative(path: str, source: Path) -> str:
    return path.removeprefix(str(source).rstrip("/") + "/")


# Advice that depends on which headers are involved; data so a new case is one entry. With a
# hint whose ``patchable`` is False a dependency does not fix the build (NCCL does not exist on
# macOS: the NCCL kernels must not be built at all), so no BUILD patch, and no `--fix`, is offered.
_HEADER_HINTS = (
    (
        "nccl",
        "NCCL is Linux/CUDA only: on macOS build with `--config=nonccl` (TensorFlow's own fix; "
        "in a profile, add `nonccl` to its Bazel configs).",
        False,
    ),
)


def _undeclared_fix(rule: str, headers: tuple[str, ...], toolchain: bool) -> str:
    if toolchain:
        apple = any(
            h.startswith(("/Library/", "/Applications/")) or ".sdk/" in h or ".xctoolchain/" in h
            for h in headers
        )
        steps = (
            "after an Xcode or Command Line Tools upgrade the cached @local_config_cc still lists "
            "the old builtin include directories. Run `bazel clean --expunge` (or `bazel sync "
            "--configure`), check `xcode-select -p` points at the Xcode you mean, and rebuild"
            if apple
            else "the configured C++ toolchain was made for another compiler (CC changed, or "
            "another clang). Run `bazel clean --expunge`, re-run configure with one consistent "
            "CC/CXX, and rebuild"
        )
        return (
            f"These are compiler/SDK headers, not project files: {steps}. If it persists, declare "
            "the directories in the toolchain's cxx_builtin_include_directories. Do not patch "
            "BUILD files."
        )
    matched = [(hint, patchable) for word, hint, patchable in _HEADER_HINTS
               if any(word in h for h in headers)]
    hints = [hint for hint, _ in matched]
    if any(not patchable for _, patchable in matched):
        return " ".join(
            [
                *hints,
                f"Adding a dependency to {rule} would not help (there is nothing to depend on "
                "for this platform), so do not patch its BUILD file; `invoke build-tf --fix` "
                "cannot fix this one.",
            ]
        )
    first = headers[0] if headers else "<header>"
    return " ".join(
        [
            *hints,
            (
                f"Add the target that declares these headers to the deps of {rule}: "
                f"`bazel query {first}` (workspace-relative path) names its package, then "
                f"`buildozer 'add deps <owner>' {rule}`; `invoke build-tf --fix` does this for "
                "you. Or move to a release whose BUILD files are fixed. `bazel clean` will not help."
            ),
        ]
    )


# --------------------------------------------------------------------------------------------
# Feeding: which lines reach the diagnosis (the same rule for text and for byte streams)


def _has_needle(text: str) -> bool:
    """True when a needle stands in ``text`` as a failure word (``SIGNALS``)."""
    return any(
        needle in text and signal.search(text) is not None
        for needle, signal in zip(_NEEDLE_TEXTS, _SIGNAL_TEXT)
    )


class _TextFeeder:
    """Applies the prefilter rule to text lines one at a time (see the module docstring)."""

    def __init__(self, diagnosis: _Diagnosis) -> None:
        self._diagnosis = diagnosis
        self._index = -1
        self._last_fed = -2
        self._held: str | None = None  # the previous line, when it was not fed
        self._context = 0

    def push(self, raw: str) -> None:
        self._index += 1
        raw = raw[:MAX_LINE_BYTES]
        hit = _has_needle(raw)
        if self._context > 0 or self._diagnosis.wants_more:
            self._context = CONTEXT_LINES if hit else max(0, self._context - 1)
            self._feed(raw, self._index)
        elif hit:
            if self._held is not None:
                self._feed(self._held, self._index - 1)
            self._context = CONTEXT_LINES
            self._feed(raw, self._index)
        self._held = raw if self._last_fed != self._index else None

    def _feed(self, raw: str, index: int) -> None:
        self._diagnosis.feed(clean_line(raw), follows=index == self._last_fed + 1)
        self._last_fed = index


class _Readable(Protocol):
    """What the stream reader needs: ``readinto`` (files, pipes, ``io.BytesIO``)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _finder(needle: bytes, signal: re.Pattern[bytes]) -> Callable[[bytearray, int, int], int]:
    """Where ``signal`` next matches in ``block[pos:end]`` (-1: nowhere).

    Measured on a log with realistic healthy lines: ``bytes.find`` (memchr-based, 2-3 GB/s) for
    the needle, then ``signal.match`` at each occurrence, is fastest for needles that are rare in
    a healthy log; for "rror" (``errors.cc``, ``-Werror``, mirror URLs in every few hundred
    lines) sre's own scan, which skips those occurrences in C, is.
    """
    if len(needle) <= 4:
        search = signal.search

        def scan(block: bytearray, pos: int, end: int) -> int:
            match = search(block, pos, end)
            return match.start() if match else -1

        return scan
    if signal.pattern == re.escape(needle):
        return lambda block, pos, end: block.find(needle, pos, end)
    match = signal.match

    def find(block: bytearray, pos: int, end: int) -> int:
        while (at := block.find(needle, pos, end)) >= 0:
            if match(block, at, end):
                return at
            pos = at + 1
        return -1

    return find


class _ByteFeeder:
    """The same rule over the raw bytes of whole lines, without decoding what it skips."""

    def __init__(self, diagnosis: _Diagnosis) -> None:
        self._diagnosis = diagnosis
        self._finders = [_finder(n, signal) for n, signal in zip(NEEDLES, _SIGNAL_BYTES)]
        self._context = 0
        self._held: bytes | None = None  # the previous block's last line, when it was not fed
        self._held_follows = False  # whether the line before that one was fed
        self._fed_last = False  # whether the previous block's last line was fed
        self._fed_end = -1  # offset just past the last line fed from the current block

    def scan(self, block: bytearray, begin: int, end: int) -> None:
        """Feed what the rule selects from ``block[begin:end]``: whole lines, each ending in \\n."""
        self._fed_end = begin if self._fed_last else -1
        pos = self._follow(block, begin, end)
        upcoming = [find(block, pos, end) for find in self._finders]
        while True:
            hits = [at for at in upcoming if at >= 0]
            if not hits:
                break
            pos = self._hit(block, min(hits), pos, begin, end)
            upcoming = [
                find(block, pos, end) if 0 <= at < pos else at
                for find, at in zip(self._finders, upcoming)
            ]
        last = block.rfind(b"\n", begin, end - 1) + 1 or begin
        self._fed_last = self._fed_end == end
        if self._fed_last:
            self._held = None
        else:
            self._held = bytes(block[last : min(end - 1, last + MAX_LINE_BYTES)])
            self._held_follows = self._fed_end == last

    def _hit(self, block: bytearray, at: int, pos: int, begin: int, end: int) -> int:
        """Feed the line holding ``at`` (and the one before, and what follows); return the next."""
        start = block.rfind(b"\n", pos, at) + 1 or pos
        stop = block.index(b"\n", at, end)
        if stop - start > MAX_LINE_BYTES and not _has_needle_bytes(block[start:stop]):
            return stop + 1  # the needle lies in the cut-off part of an over-long line
        follows = start == self._fed_end
        if not follows and start > begin:
            before = block.rfind(b"\n", begin, start - 1) + 1 or begin
            self._feed(block[before : start - 1], before == self._fed_end)
            follows = True
        elif not follows and self._held is not None:
            self._feed(self._held, self._held_follows)
            follows = True
        self._context = CONTEXT_LINES
        self._feed(block[start:stop], follows)
        self._fed_end = stop + 1
        return self._follow(block, stop + 1, end)

    def _follow(self, block: bytearray, pos: int, end: int) -> int:
        """Feed the context lines and the lines an open block wants, from ``pos``."""
        while pos < end and (self._context > 0 or self._diagnosis.wants_more):
            stop = block.index(b"\n", pos, end)
            line = block[pos:stop]
            self._context = CONTEXT_LINES if _has_needle_bytes(line) else max(0, self._context - 1)
            self._feed(line, pos == self._fed_end)
            pos = self._fed_end = stop + 1
        return pos

    def _feed(self, raw: bytes | bytearray, follows: bool) -> None:
        text = raw[:MAX_LINE_BYTES].decode("utf-8", "replace")
        self._diagnosis.feed(clean_line(text), follows=follows)


def _has_needle_bytes(line: bytes | bytearray) -> bool:
    head = line[:MAX_LINE_BYTES]
    return any(
        needle in head and signal.search(head) is not None
        for needle, signal in zip(NEEDLES, _SIGNAL_BYTES)
    )


def _line_blocks(stream: _Readable) -> Iterator[tuple[bytearray, int, int]]:
    """Spans ``(buffer, begin, end)`` of whole lines read from ``stream``, each line cut to
    ``MAX_LINE_BYTES``.

    One buffer of ``CHUNK_BYTES + MAX_LINE_BYTES`` is reused for the whole stream: an unfinished
    line is moved to its front before the next read, and never grows past the cap (its head is
    cut off as a line, the rest skipped up to the next newline). Nothing is copied per chunk.
    """
    buffer = bytearray(CHUNK_BYTES + MAX_LINE_BYTES + 1)
    view = memoryview(buffer)
    kept = 0  # bytes of an unfinished line at the front of the buffer
    skipping = False  # inside the cut-off rest of an over-long line
    while read := stream.readinto(view[kept : kept + CHUNK_BYTES]):
        size, begin = kept + read, 0
        if skipping:
            newline = buffer.find(b"\n", 0, size)
            if newline < 0:
                continue
            begin, skipping = newline + 1, False
        end = buffer.rfind(b"\n", begin, size) + 1 or begin
        if size - end > MAX_LINE_BYTES:
            buffer[end + MAX_LINE_BYTES] = 0x0A  # the cut: the rest of the line is skipped
            yield buffer, begin, end + MAX_LINE_BYTES + 1
            kept, skipping = 0, True
            continue
        if end > begin:
            yield buffer, begin, end
        kept = size - end
        buffer[:kept] = buffer[end:size]
    if kept:
        buffer[kept] = 0x0A
        yield buffer, 0, kept + 1


# --------------------------------------------------------------------------------------------
# Entry points


def diagnose_lines(
    lines: Iterable[str], *, source: Path | None = None, host: HostResources | None = None
) -> list[Finding]:
    """Findings in a log given as text lines (no I/O).

    ``source`` relates paths inside it to it; ``host`` (default: this machine) sizes the
    out-of-memory advice.
    """
    diagnosis = _Diagnosis(host, source)
    feeder = _TextFeeder(diagnosis)
    for line in lines:
        feeder.push(line)
    return diagnosis.finish()


def diagnose_stream(
    stream: _Readable, *, source: Path | None = None, host: HostResources | None = None
) -> list[Finding]:
    """Findings in a binary stream (anything with ``readinto``) of a log of any size.

    Memory stays near ``CHUNK_BYTES + MAX_LINE_BYTES`` plus the findings, whatever the input.
    """
    diagnosis = _Diagnosis(host, source)
    feeder = _ByteFeeder(diagnosis)
    for block, begin, end in _line_blocks(stream):
        feeder.scan(block, begin, end)
    return diagnosis.finish()


def diagnose_file(
    path: str | Path, *, source: Path | None = None, host: HostResources | None = None
) -> list[Finding]:
    """Findings in the log at ``path`` (see ``diagnose_stream``)."""
    with open(path, "rb") as stream:
        return diagnose_stream(stream, source=source, host=host)


def diagnose_command(log: str | None, as_json: bool, source: str | None, logs_dir: Path) -> int:
    """``invoke diagnose``: report the findings in ``log`` (default: the newest build log).

    Prints a readable report, or ``{"findings": [...]}`` with ``as_json``, to stdout. Returns 1
    when a failure was found, 0 when nothing was recognised or every finding is ``recovered``
    (the build went on past it: a warning, not the failure). A missing log or ``--source`` raises
    ``UsageError``.
    """
    path = _log_path(log, logs_dir)
    source_dir = _source_dir(source)
    try:
        findings = diagnose_file(path, source=source_dir)
    except OSError as exc:
        msg = f"cannot read the log {path}: {exc.strerror or exc}; pass a readable log file"
        raise UsageError(msg) from exc
    if as_json:
        payload = {"findings": [finding.to_json() for finding in findings]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        _print_report(path, findings)
    return 1 if any(not _recovered(finding) for finding in findings) else 0


def _recovered(finding: Finding) -> bool:
    return bool(getattr(finding, "recovered", False))


def _log_path(log: str | None, logs_dir: Path) -> Path:
    if log is not None:
        path = Path(log)
        if not path.is_file():
            msg = f"no log file at {path}: pass the path of a Bazel log (build logs are in {logs_dir})"
            raise UsageError(msg)
        return path
    latest = logs_dir / "latest.log"
    if latest.is_file():
        return latest
    logs = (
        sorted(logs_dir.glob("*.log"), key=lambda p: p.stat().st_mtime) if logs_dir.is_dir() else []
    )
    if logs:
        return logs[-1]
    msg = f"no build log at {latest}: run `invoke build-tf` first, or pass a log file"
    raise UsageError(msg)


def _source_dir(source: str | None) -> Path | None:
    if source is None:
        return None
    path = Path(source).expanduser()
    if not path.is_dir():
        msg = f"--source {source} is not a directory: pass the source tree the log was built in"
        raise UsageError(msg)
    return path.resolve()


def _print_report(path: Path, findings: list[Finding]) -> None:
    if not findings:
        out.print(
            f"{escape(str(path))}: nothing recognised. No known failure pattern is in this log; "
            "read the first ERROR line near its end."
        )
        return
    noun = "problem" if len(findings) == 1 else "problems"
    out.print(f"[bold]{escape(str(path))}[/bold]: {len(findings)} {noun} found\n")
    for number, finding in enumerate(findings, 1):
        _print_finding(number, finding)
    if all(_recovered(finding) for finding in findings):
        out.print(
            "All recovered: the build went on past "
            + ("it" if len(findings) == 1 else "them")
            + ", so this log shows no failure (exit 0); the advice avoids the warning next time."
        )


def _print_finding(number: int, finding: Finding) -> None:
    where = f" at {escape(finding.location)}" if finding.location else ""
    seen = f" [dim](seen {finding.count} times)[/dim]" if finding.count > 1 else ""
    recovered = (
        " [dim](recovered: the build went on)[/dim]" if getattr(finding, "recovered", False) else ""
    )
    out.print(f"[bold red]{number}. {finding.kind}[/bold red]{where}{seen}{recovered}")
    out.print(f"   {escape(finding.message)}")
    if isinstance(finding, UndeclaredInclusion):
        for header in finding.headers[:10]:
            out.print(f"     [dim]{escape(header)}[/dim]")
        if len(finding.headers) > 10:
            out.print(f"     [dim]... and {len(finding.headers) - 10} more[/dim]")
    out.print(f"   [green]fix:[/green] {escape(finding.fix)}\n")
