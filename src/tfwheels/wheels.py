"""Collect built wheels into ``dist/``: verified, copied atomically, and listed in a manifest.

A wheel that fails verification goes to ``build/rejected/`` with its report instead, unless the
user allows problems. ``dist/`` never holds a partial file: each wheel is written under a
temporary name in ``dist/`` and renamed, and ``manifest.json`` likewise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfwheels.atomic import copy_atomic, file_sha256, write_atomic
from tfwheels.errors import UsageError, WheelError
from tfwheels.interrupts import checkpoint
from tfwheels.locks import dist_lock_path, hold
from tfwheels.probecache import file_digest
from tfwheels.problems import Problem

if TYPE_CHECKING:
    from tfwheels.profile_facts import ProfileFacts
    from tfwheels.smoke import SmokeResult
    from tfwheels.verify import WheelReport

MANIFEST = "manifest.json"


@dataclass
class Collected:
    """What collecting did with each wheel."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[WheelReport] = field(default_factory=list)
    reports: list[WheelReport] = field(default_factory=list)


def already_collected(wheels: Iterable[Path], dist: Path) -> Collected | None:
    """The manifest's entries when every wheel is in ``dist`` already, verified, byte for byte;
    else None. A no-op rebuild then neither re-verifies nor copies anything."""
    manifest = {entry["wheel"]: entry for entry in read_manifest(dist)["wheels"]}
    accepted = []
    for wheel in wheels:
        entry = manifest.get(wheel.name)
        target = dist / wheel.name
        if (
            entry is None
            or not entry.get("verified")
            or not target.is_file()
            or target.stat().st_size != wheel.stat().st_size
            or file_digest(wheel) != entry.get("sha256")
        ):
            return None
        accepted.append(entry)
    return Collected(accepted=accepted)


def read_manifest(dist: Path) -> dict[str, Any]:
    """``dist/manifest.json`` as data (an empty manifest when there is none)."""
    path = dist / MANIFEST
    if not path.is_file():
        return {"wheels": []}
    try:
        data = json.loads(path.read_text("utf-8"))
    except ValueError as exc:
        msg = f"{path}: not valid JSON ({exc}); remove it and collect again"
        raise WheelError(msg) from exc
    data.setdefault("wheels", [])
    return data


def write_manifest(dist: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically, wheels sorted by name."""
    manifest["wheels"] = sorted(manifest["wheels"], key=lambda w: w["wheel"])
    data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_atomic(dist / MANIFEST, data)


def name_problems(wheel: Path, profile: ProfileFacts) -> list[str]:
    """Ways the wheel's file name disagrees with what the profile builds."""
    from packaging.utils import canonicalize_name, parse_wheel_filename  # a no-op build has no new wheel

    try:
        name, version, _, tags = parse_wheel_filename(wheel.name)
    except ValueError as exc:
        return [f"{wheel.name}: not a wheel file name ({exc})"]
    problems = []
    if canonicalize_name(name) != canonicalize_name(profile.wheel.distribution):
        problems.append(f"distribution is {name!r}, the profile expects {profile.wheel.distribution!r}")
    pinned = profile.wheel.platform_tag
    if pinned and pinned not in {t.platform for t in tags}:
        got = sorted({t.platform for t in tags})
        problems.append(f"platform tag {'.'.join(got)} is not the profile's {pinned}")
    return problems


def collect(
    wheels: Iterable[Path],
    profile: ProfileFacts,
    dist: Path,
    rejected_dir: Path,
    metadata: dict[str, Any],
    allow_problems: bool = False,
    companions: Iterable[Path] = (),
    smoke: Callable[[Path], SmokeResult] | None = None,
) -> Collected:
    """Verify each wheel for the profile's platform and move the good ones into ``dist``.

    ``companions`` are the wheels the build consumed (the TF wheel under TFF): libraries the
    wheel loads from them are not external. Each wheel is verified as a set with them and with
    the wheels already in ``dist`` (those that fit the platform): its Requires-Dist must accept
    their versions, and its Requires-Python the profile's Python.

    ``smoke`` installs a verified wheel into a fresh venv and imports it (tfwheels.smoke); a
    wheel that fails it is rejected like one that fails verification (kind ``smoke-test``), so
    no wheel reaches ``dist/`` that would not import on a host like this one.

    A wheel that cannot be verified at all (not a zip, a name that is no wheel's) is rejected
    with a report that says so, and the others are still collected.

    A lock per dist folder (kept outside it, so ``dist/`` holds only wheels and the manifest)
    keeps two builds from writing the manifest at once; the second waits, naming the first.
    """
    from tfwheels.verify import verify_wheel  # parsing binaries costs imports; only here

    dist.mkdir(parents=True, exist_ok=True)
    rejected_dir.parent.mkdir(parents=True, exist_ok=True)
    result = Collected()
    # Collecting takes seconds: a second build waits for the first (and says for whom).
    with hold(dist_lock_path(dist), f"dist folder {dist}", wait=True):
        manifest = read_manifest(dist)
        for wheel in sorted(wheels):
            wheel_set = _wheel_set(wheel, companions, dist)
            try:
                report = verify_wheel(
                    wheel, profile.platform, companions=wheel_set, python=profile.python.version
                )
            except (UsageError, OSError) as exc:
                report = _unverifiable(wheel, profile.platform, exc)
            report.problems.extend(Problem("metadata", None, p) for p in name_problems(wheel, profile))
            tried = smoke(wheel) if smoke is not None and report.ok else None
            # Stopped during the smoke test: its failure says nothing about the wheel.
            checkpoint(f"{dist} holds only whole wheels, each listed in its manifest")
            if tried is not None and tried.status == "failed":
                report.problems.append(Problem("smoke-test", None, tried.detail))
            result.reports.append(report)
            if not report.ok and not allow_problems:
                _reject(wheel, report, rejected_dir)
                result.rejected.append(report)
                continue
            dest = dist / wheel.name
            digest = file_sha256(wheel)
            if not (dest.is_file() and file_sha256(dest) == digest):
                copy_atomic(wheel, dest)
            entry = {
                **metadata,
                "wheel": wheel.name,
                "sha256": digest,
                "size": wheel.stat().st_size,
                "verified": report.ok,
                "problems": [p.to_json() for p in report.problems],
                "smoke": tried.to_json() if tried is not None else None,
            }
            manifest["wheels"] = [w for w in manifest["wheels"] if w["wheel"] != wheel.name]
            manifest["wheels"].append(entry)
            result.accepted.append(entry)
            write_manifest(dist, manifest)  # after each wheel: dist/ never holds one unlisted
    return result


def _wheel_set(wheel: Path, companions: Iterable[Path], dist: Path) -> list[Path]:
    """The other wheels ``wheel`` is verified with: the build's companions and dist/'s wheels
    (verify_wheel leaves out those for another platform), each once, itself not included."""
    others = [*companions, *sorted(dist.glob("*.whl"))]
    seen = {wheel.name}
    chosen: list[Path] = []
    for other in others:
        if other.name not in seen:
            seen.add(other.name)
            chosen.append(other)
    return chosen


def _unverifiable(wheel: Path, target: str | None, exc: Exception) -> WheelReport:
    """The report on a file verify_wheel could not read as a wheel at all."""
    from packaging.utils import parse_wheel_filename

    from tfwheels.verify import WheelReport

    try:
        parse_wheel_filename(wheel.name)
    except ValueError:
        return WheelReport(wheel.name, target, [], [])  # name_problems says what is wrong
    return WheelReport(wheel.name, target, [], [Problem("zip-integrity", None, str(exc))])


def _reject(wheel: Path, report: WheelReport, rejected_dir: Path) -> None:
    rejected_dir.mkdir(parents=True, exist_ok=True)
    copy_atomic(wheel, rejected_dir / wheel.name)
    data = json.dumps(report.to_json(), indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_atomic(rejected_dir / f"{wheel.name}.report.json", data)
