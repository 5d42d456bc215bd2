"""Find the right Bazel, check its version, build its command lines and run it with a log.

``bazelisk`` is preferred (it fetches the version the profile pins); else ``bazel``. Debian's
``bazel-bootstrap`` reports ``no_version``: that is accepted only where a profile says so, and its
real version is then read from the package manager and shown as such.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tfwheels.errors import ToolMissingError
from tfwheels.probecache import cached
from tfwheels.run import Result, Started, run, which

if TYPE_CHECKING:
    from tfwheels.profile_facts import ProfileFacts
    from tfwheels.profiles import Profile

# Debian's bazel-bootstrap: Bazel 4.2.3, whose binary reports ``no_version``.
DEBIAN_BAZEL = "4.2.3"
INSTALL_HINT = (
    "install bazelisk (macOS: brew install bazelisk; Debian: npm install -g @bazel/bazelisk), "
    "which runs exactly the Bazel the profile and .bazelversion pin"
)
_DEBIAN_HINT = (
    "install bazelisk (macOS: brew install bazelisk; Debian: npm install -g @bazel/bazelisk, "
    f"or apt install bazel-bootstrap for Bazel {DEBIAN_BAZEL})"
)


def install_hint(profile: Profile | None = None) -> str:
    """How to get the right Bazel: bazelisk; Debian's bazel-bootstrap only where 4.2.3 is pinned."""
    if profile is not None and profile.bazel.version == DEBIAN_BAZEL:
        return _DEBIAN_HINT
    return INSTALL_HINT

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PROCESSES = re.compile(r"^INFO: (\d[\d,]*) process(?:es)?(?:: (.*?))?\.?$")


# ``BazelTool.reported`` of the Bazel a dry run assumes where this host has no usable one.
NOT_FOUND = "not found"


@dataclass(frozen=True)
class BazelTool:
    """The Bazel that will run: its path, how it was found and what version it is."""

    path: Path
    kind: str  # "bazelisk" or "bazel"
    version: str | None
    reported: str
    unversioned: bool = False

    def describe(self) -> str:
        """One line for users: path and version, saying honestly where the version came from."""
        if self.kind == "bazelisk":
            if self.reported == NOT_FOUND:
                return f"bazelisk, not found on this host (the plan assumes it, running Bazel {self.version})"
            return f"bazelisk at {self.path} (runs Bazel {self.version})"
        if self.unversioned:
            got = self.version or "unknown"
            return f"bazel at {self.path}: {got} per its Debian package (the binary reports {self.reported!r})"
        return f"bazel {self.version} at {self.path}"


def _debian_version() -> str | None:
    if which("dpkg-query") is None:
        return None
    status = Path("/var/lib/dpkg/status")  # dpkg rewrites it on every install and removal
    version: str | None = cached("debian-bazel-version", [status], _ask_dpkg)
    return version


def _ask_dpkg() -> str | None:
    for package in ("bazel-bootstrap", "bazel"):
        result = run(
            ["dpkg-query", "-W", "-f=${Version}", package], check=False, echo=False
        )
        match = re.match(r"(\d+\.\d+\.\d+)", result.stdout.strip())
        if result.ok and match:
            return match.group(1)
    return None


def _ask_version(bazel: Path) -> str:
    result = run([str(bazel), "--version"], check=False, echo=False)
    return (result.stdout or result.stderr).strip() or f"exit {result.exit_code}"


def parse_version_output(text: str) -> str | None:
    """The version in ``bazel --version`` output (``bazel 6.5.0``), None for ``no_version``."""
    match = re.search(r"bazel (\d+\.\d+\.\d+\S*)", text)
    return match.group(1) if match else None


def _real_binary(wrapper: Path, version: str | None) -> Path:
    """Debian's ``bazel`` is a wrapper that reads .bazelversion and execs ``bazel-<version>``;
    ``.bazelversion`` says 4.2.3 but the binary is ``bazel-4``, so call that binary directly."""
    if version is None:
        return wrapper
    real_dir = wrapper.resolve().parent
    for name in (f"bazel-{version}", f"bazel-{version.split('.')[0]}"):
        candidate = real_dir / name
        if candidate.is_file():
            return candidate
    return wrapper


def find_bazel(profile: Profile, search_path: str | None = None) -> BazelTool:
    """The Bazel to use for ``profile``, or ToolMissingError with how to get it."""
    bazelisk = which("bazelisk", search_path)
    if bazelisk is not None:
        return BazelTool(bazelisk, "bazelisk", profile.bazel.version, "bazelisk")
    bazel = which("bazel", search_path)
    if bazel is None:
        msg = f"neither bazelisk nor bazel is on PATH; {install_hint(profile)}"
        raise ToolMissingError(msg)
    # Wrappers (Debian's, bazelisk-like ones) choose a binary from their folder and from the
    # .bazelversion where they run: both are part of the answer.
    pinned = Path.cwd() / ".bazelversion"
    depends = [bazel, bazel.resolve().parent, *([pinned] if pinned.is_file() else [])]
    reported = cached(f"bazel-version:{bazel}:{Path.cwd()}", depends, lambda: _ask_version(bazel))
    version = parse_version_output(reported)
    if version is not None:
        return BazelTool(bazel, "bazel", version, reported)
    if not profile.bazel.allow_unversioned:
        wanted = profile.bazel.version
        msg = f"{bazel} reports {reported!r}, not a version, so it cannot be checked against {wanted} ({profile.file}); "
        if wanted == DEBIAN_BAZEL:
            msg += (
                f"if it is Debian's bazel-bootstrap ({DEBIAN_BAZEL}), set bazel.allow_unversioned: "
                f"true in the profile; else {INSTALL_HINT}"
            )
        else:
            msg += INSTALL_HINT
        raise ToolMissingError(msg)
    debian = _debian_version()
    return BazelTool(_real_binary(bazel, debian), "bazel", debian, reported, unversioned=True)


def read_bazelversion(tree: Path) -> str | None:
    """The first line of the workspace's ``.bazelversion``, if there is one."""
    path = tree / ".bazelversion"
    if not path.is_file():
        return None
    line = path.read_text("utf-8", errors="replace").strip().splitlines()
    return line[0].strip() if line else None


def check_version(tool: BazelTool, profile: Profile, tree: Path | None) -> list[str]:
    """Raise if Bazel, the profile and the workspace disagree; return warnings."""
    warnings: list[str] = []
    wanted = profile.bazel.version
    pinned = read_bazelversion(tree) if tree is not None else None
    if pinned is not None and pinned != wanted:
        msg = (
            f"{tree}/.bazelversion pins Bazel {pinned} but {profile.file} says bazel.version "
            f"{wanted}; make the profile match the source it builds"
        )
        raise ToolMissingError(msg)
    if tool.version is None:
        warnings.append(f"{tool.describe()}: version unknown, assuming {wanted}")
        return warnings
    if tool.version != wanted:
        msg = f"found {tool.describe()}, but {profile.file} needs Bazel {wanted}; {install_hint(profile)}"
        raise ToolMissingError(msg)
    return warnings


def bazel_env(tool: BazelTool, profile: ProfileFacts, base: Mapping[str, str]) -> dict[str, str]:
    """The environment Bazel runs in: bazelisk is told the exact version."""
    env = dict(base)
    if tool.kind == "bazelisk":
        env["USE_BAZEL_VERSION"] = profile.bazel.version
    return env


def build_argv(
    tool: BazelTool,
    *,
    startup: Sequence[str],
    command: str,
    flags: Sequence[str],
    targets: Sequence[str],
    run_args: Sequence[str] = (),
) -> list[str]:
    """``bazel <startup> <command> <flags> <targets> [-- run_args]``."""
    argv = [str(tool.path), *startup, command, *flags, *targets]
    if run_args:
        argv += ["--", *run_args]
    return argv


def parse_processes(line: str) -> dict[str, int] | None:
    """Parse Bazel's ``INFO: 7 processes: 5 remote cache hit, 2 internal.`` summary line.

    >>> parse_processes("INFO: 1 process: 1 internal.")
    {'total': 1, 'internal': 1}
    >>> parse_processes("INFO: 7 processes: 5 remote cache hit, 2 internal.")
    {'total': 7, 'remote cache hit': 5, 'internal': 2}
    """
    match = _PROCESSES.match(_ANSI.sub("", line).strip())
    if not match:
        return None
    counts = {"total": int(match.group(1).replace(",", ""))}
    for part in (match.group(2) or "").split(", "):
        part = part.strip().rstrip(".")
        found = re.match(r"(\d[\d,]*) (.+)", part)
        if found:
            counts[found.group(2)] = int(found.group(1).replace(",", ""))
    return counts


# Process kinds of Bazel's summary line that were served from a cache, not run. Bazel 4.x counts
# disk-cache hits as "remote cache hit" and reports no action-cache hits; Bazel 5 splits them out.
REMOTE_CACHE_HIT = "remote cache hit"
LOCAL_CACHE_HITS = ("disk cache hit", "action cache hit")


def cacheable_actions(counts: Mapping[str, int]) -> int:
    """Processes that could come from a cache: all but Bazel's internal bookkeeping.

    >>> cacheable_actions({"total": 7, "remote cache hit": 5, "internal": 2})
    5
    """
    return max(0, counts.get("total", 0) - counts.get("internal", 0))


def executed_actions(counts: Mapping[str, int]) -> int:
    """Processes that really ran: the cacheable ones less every kind of cache hit, which Bazel
    counts as processes but did not run.

    >>> executed_actions({"total": 9, "internal": 5, "local": 4})
    4
    >>> executed_actions({"total": 7, "remote cache hit": 5, "internal": 2})
    0
    >>> executed_actions({"total": 1, "internal": 1})
    0
    """
    hits = sum(counts.get(kind, 0) for kind in (REMOTE_CACHE_HIT, *LOCAL_CACHE_HITS))
    return max(0, cacheable_actions(counts) - hits)


def run_bazel(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    on_line: Callable[[str], None] | None = None,
    started: Started | None = None,
) -> Result:
    """Run Bazel, streaming its output to ``on_line`` and appending it whole to ``log_path``.

    ``started`` is this very command already running (tfwheels.early): it is finished instead,
    its output so far shown and logged first."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        if started is not None:
            return started.finish(on_line=on_line, log=log, echo=True)
        return run(argv, cwd=cwd, env=env, stream=True, on_line=on_line, log=log, check=False)
