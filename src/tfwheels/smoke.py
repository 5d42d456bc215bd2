"""Smoke-test wheels the way a user meets them: a fresh venv, pip install, import from elsewhere.

Runs only where the host can run the wheel: its tags are among those of the Python the wheel is
for (the profile's interpreter, asked in a subprocess); otherwise the result says why it was
skipped. The set's own wheels come from the wheel's folder (``dist/``): each distribution found
there is pinned to its file there by a constraint, so pip never swaps in a build of the same name
from an index. Everything else (absl-py, numpy ...) comes from the index pip is configured with.

A wheel is not failed for the host's network: when the index cannot be reached, or the run is
offline (``offline=True``, ``TFWHEELS_OFFLINE=1`` or pip's own ``PIP_NO_INDEX``) and a requirement
is not in the folder, the result is ``skipped`` with the reason. As cibuildwheel does, the import
runs from a temporary directory, so the source tree cannot shadow the installed package.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import sys_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from tfwheels.dependencies import read_metadata
from tfwheels.errors import TfwheelsError
from tfwheels.render import expand
from tfwheels.run import run

# The interpreter's tags in preference order; pip's vendored packaging when packaging is absent.
_TAGS_SCRIPT = """\
try:
    from packaging.tags import sys_tags
except ImportError:
    from pip._vendor.packaging.tags import sys_tags
print("\\n".join(str(tag) for tag in sys_tags()))
"""
_MISSING = re.compile(r"No matching distribution found for (\S+)")
# What pip (urllib3, requests) says when it cannot talk to an index at all.
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Connection refused|"
    r"Temporary failure in name resolution|Name or service not known|nodename nor servname|"
    r"Network is unreachable|No route to host|ProxyError|ConnectTimeoutError|"
    r"Read timed out|Max retries exceeded|Could not fetch URL|SSLError|ConnectionError"
)
# pip logs an index it cannot reach only at debug level (-vv), as it goes on to the next source.
_NOT_FETCHED = re.compile(
    r"Could not fetch URL \S+: (connection error|There was a problem confirming the ssl)[^\n]*"
)
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test found: ``passed``, ``failed`` or ``skipped``, and why."""

    status: str
    detail: str
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The result for the manifest and the report."""
        return {"status": self.status, "detail": self.detail, "seconds": round(self.seconds, 3)}


def runnable_here(wheel: Path, python: str | None = None) -> str | None:
    """None when ``python`` (default: this interpreter) can install ``wheel``; else the reason
    it cannot."""
    tags = interpreter_tags(python)
    if isinstance(tags, str):
        return tags
    _, _, _, wheel_tags = parse_wheel_filename(wheel.name)
    if {str(tag) for tag in wheel_tags} & set(tags):
        return None
    return f"{wheel.name} is not for this host ({tags[0]}); it is tested on its target"


def interpreter_tags(python: str | None = None) -> tuple[str, ...] | str:
    """The tags ``python`` installs, most preferred first (asked in a subprocess, as packaging
    computes them there); or why they could not be learned."""
    if python is None:
        return tuple(str(tag) for tag in sys_tags())
    return _tags_of(python)


@cache
def _tags_of(python: str) -> tuple[str, ...] | str:
    try:
        asked = run([python, "-c", _TAGS_SCRIPT], check=False, echo=False)
    except TfwheelsError as exc:
        return f"cannot ask {python} which wheels it installs: {exc}"
    tags = tuple(line.strip() for line in asked.stdout.splitlines() if line.strip())
    if not asked.ok or not tags:
        last = (asked.stderr or asked.stdout).strip().splitlines()
        why = last[-1] if last else f"exit {asked.exit_code}"
        return f"cannot ask {python} which wheels it installs (no packaging or pip there?): {why}"
    return tags


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return any(os.environ.get(name, "").strip().lower() in _TRUE
               for name in ("TFWHEELS_OFFLINE", "PIP_NO_INDEX"))


def own_wheel_constraints(wheel: Path, folder: Path, tags: Sequence[str]) -> list[str]:
    """``name @ file:///...`` for each distribution the folder holds a wheel of that ``tags``
    install (the highest version the wheel's own Requires-Dist accepts, when several), except
    the wheel's own name: the set's wheels come from the folder, never from an index."""
    supported = set(tags)
    own = parse_wheel_filename(wheel.name)[0]
    wanted = _wanted_specifiers(wheel)
    best: dict[NormalizedName, tuple[Version, Path]] = {}
    for other in sorted(folder.glob("*.whl")):
        try:
            name, version, _, other_tags = parse_wheel_filename(other.name)
        except InvalidWheelFilename:
            continue
        if name == own or not {str(tag) for tag in other_tags} & supported:
            continue
        specifier = wanted.get(name)
        if specifier is not None and not specifier.contains(version, prereleases=True):
            continue
        if name not in best or version > best[name][0]:
            best[name] = (version, other)
    return [f"{name} @ {path.resolve().as_uri()}" for name, (_, path) in sorted(best.items())]


def _wanted_specifiers(wheel: Path) -> dict[NormalizedName, Any]:
    metadata = read_metadata(wheel)
    wanted = {}
    for line in metadata.requires_dist if metadata is not None else ():
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        wanted[canonicalize_name(requirement.name)] = requirement.specifier
    return wanted


def _pip_can_target(python: str) -> bool:
    """Whether ``python``'s own pip is 22.3 or newer, which installs into other interpreters."""

    result = run([python, "-m", "pip", "--version"], check=False, echo=False)
    found = re.match(r"pip (\d+(?:\.\d+)*)", result.stdout) if result.ok else None
    return found is not None and Version(found.group(1)) >= Version("22.3")


def _unreachable_index(pip: Sequence[str], requirement: str) -> str | None:
    """What pip says when it looks ``requirement`` up in its configured indexes, if it could
    not reach one of them; None when they answered."""
    name = re.split(r"[\s<>=!~;\[(@]", requirement, maxsplit=1)[0]
    probe = run(
        [*pip, "index", "versions", name, "-vv", "--disable-pip-version-check"],
        check=False,
        echo=False,
    )
    found = _NOT_FETCHED.search(f"{probe.stdout}\n{probe.stderr}")
    return found.group(0) if found else None


def _install_outcome(
    output: str, folder: Path, offline: bool, elapsed: float, pip: Sequence[str]
) -> SmokeResult:
    """Why pip failed: the host's network or an offline run (skipped), or the wheel (failed)."""
    missing = _MISSING.findall(output)
    lines = output.strip().splitlines()
    if missing and offline:
        detail = (
            f"not run: {', '.join(missing)} is not in {folder} and this run is offline "
            "(no index); the wheel is tested where its requirements can be installed"
        )
        return SmokeResult("skipped", detail, elapsed)
    unreachable = next((line.strip() for line in lines if _UNREACHABLE.search(line)), None)
    if unreachable is None and missing:
        unreachable = _unreachable_index(pip, missing[0])
    if unreachable is not None:
        needed = f" to install {', '.join(missing)}" if missing else ""
        detail = (
            f"not run: the package index could not be reached{needed} ({unreachable[-200:]}); "
            "the wheel is not at fault"
        )
        return SmokeResult("skipped", detail, elapsed)
    return SmokeResult("failed", f"pip install failed: {lines[-1] if lines else 'no output'}", elapsed)


def import_name(wheel: Path) -> str:
    """The package to import: the wheel's top_level.txt, else its normalised name."""
    import zipfile

    name, _, _, _ = parse_wheel_filename(wheel.name)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith(".dist-info/top_level.txt"):
                first = archive.read(member).decode("utf-8", "replace").split()
                if first:
                    return first[0]
    return str(name).replace("-", "_")


def smoke_test(
    wheel: Path,
    find_links: Path,
    python: str,
    test_command: Sequence[str] = (),
    *,
    offline: bool | None = None,
) -> SmokeResult:
    """Install ``wheel`` into a fresh venv made by ``python`` and import it from a temp dir.

    The set's wheels come from ``find_links``, the rest from pip's configured index; with
    ``offline`` (default: ``TFWHEELS_OFFLINE`` or ``PIP_NO_INDEX`` set) no index is used.
    """
    reason = runnable_here(wheel, python)
    if reason:
        return SmokeResult("skipped", reason)
    offline = _offline(offline)
    tags = interpreter_tags(python)
    constraints = own_wheel_constraints(wheel, find_links, tags if isinstance(tags, tuple) else ())
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfwheels-smoke-") as tmp:
        venv = Path(tmp) / "venv"
        venv_python = str(venv / "bin" / "python")
        # Seeding pip into every venv (ensurepip) takes seconds; pip >= 22.3 installs into
        # another interpreter with --python, so the venv needs no pip of its own.
        outer_pip = _pip_can_target(python)
        made = run([python, "-m", "venv", *(["--without-pip"] if outer_pip else []), str(venv)],
                   check=False, echo=False)
        if not made.ok:
            return SmokeResult("failed", f"could not create a venv: {made.stderr.strip()[-300:]}")
        pip = [python, "-m", "pip", "--python", venv_python] if outer_pip else [venv_python, "-m", "pip"]
        pinned = Path(tmp) / "constraints.txt"
        pinned.write_text("".join(f"{line}\n" for line in constraints), "utf-8")
        install = run(
            [*pip, "install", "--quiet", "--disable-pip-version-check",
             *(["--no-index"] if offline else []), "--find-links", str(find_links),
             "--constraint", str(pinned), str(wheel)],
            check=False,
            echo=False,
        )
        if not install.ok:
            output = f"{install.stdout}\n{install.stderr}"
            return _install_outcome(output, find_links, offline, time.monotonic() - start, pip)
        package = import_name(wheel)
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        imported = run([venv_python, "-c", f"import {package}"], cwd=cwd, check=False, echo=False)
        if not imported.ok:
            last = imported.stderr.strip().splitlines()
            return SmokeResult("failed", f"import {package} failed: {last[-1] if last else imported.exit_code}",
                               time.monotonic() - start)
        if test_command:
            argv = [expand(part, {"python": venv_python}) for part in test_command]
            tested = run(argv, cwd=cwd, check=False, echo=False)
            if not tested.ok:
                last = (tested.stderr or tested.stdout).strip().splitlines()
                return SmokeResult("failed", f"test command failed: {last[-1] if last else tested.exit_code}",
                                   time.monotonic() - start)
            return SmokeResult("passed", f"import {package} and the test command passed", time.monotonic() - start)
        return SmokeResult("passed", f"installed in a fresh venv; import {package} works", time.monotonic() - start)
