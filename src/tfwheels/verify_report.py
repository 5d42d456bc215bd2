"""Show wheel verification results: rich tables for people, JSON for machines.

``verify-wheel`` can also repair stale ad-hoc signatures first (``--fix-signatures``, into new
files; :mod:`tfwheels.repair`) and ask pip whether the set installs on the target with all it
requires (``--resolve``; :mod:`tfwheels.resolve`).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tfwheels.console import out
from tfwheels.errors import UsageError
from tfwheels.repair import Repair, default_output_dir, repair_wheel
from tfwheels.resolve import Resolution, ResolveOptions, resolve_wheels
from tfwheels.verify import WheelReport, verify_wheels


def verify_command(
    paths: list[str],
    target: str | None,
    as_json: bool,
    *,
    python: str | None = None,
    fix_signatures: bool = False,
    output: str | None = None,
    resolve: ResolveOptions | None = None,
    check_record: bool = True,
) -> int:
    """Verify the wheels named by ``paths`` (a directory means every ``*.whl`` in it) and print.

    They are verified as one set (see verify_wheels), for ``python`` when given. With
    ``fix_signatures`` each wheel whose ad-hoc signatures went stale is first repaired into
    ``output`` (default: ``fixed/`` beside it), and the repaired copy is what gets verified.
    With ``resolve``, pip's resolver says whether the set and all it requires install on the
    target: once per target when the set mixes platforms, each time with the wheels that fit it.
    ``check_record=False`` reads headers only (see verify_wheel). JSON goes to stdout as
    ``{"wheels": [...]}`` (plus ``"repairs"`` and ``"resolution"``: one target's object, or
    ``{"ok", "targets": [...]}`` with one per target); otherwise tables go to the results console. Returns 0 when every wheel is
    OK and everything resolved, 1 otherwise. A path that is not a wheel, or an unknown target,
    raises UsageError (exit 2).
    """
    wheels = expand_wheel_paths(paths)
    repairs: list[Repair] = []
    if fix_signatures:
        repairs = [
            repair_wheel(wheel, Path(output) if output else default_output_dir(wheel))
            for wheel in wheels
        ]
        wheels = [repair.output or repair.wheel for repair in repairs]
    reports = verify_wheels(wheels, target, python=python, check_record=check_record)
    resolutions: list[Resolution] = []
    if resolve is not None:
        resolutions = _resolve(wheels, reports, target, dataclasses.replace(resolve, python=python))
    if as_json:
        document: dict[str, Any] = {"wheels": [report.to_json() for report in reports]}
        if fix_signatures:
            document["repairs"] = [repair.to_json() for repair in repairs]
        if len(resolutions) == 1:
            document["resolution"] = resolutions[0].to_json()
        elif resolutions:
            document["resolution"] = {
                "ok": all(r.ok for r in resolutions),
                "targets": [r.to_json() for r in resolutions],
            }
        print(json.dumps(document, indent=2))
    else:
        render_reports(reports)
        if fix_signatures:
            out.print(_repair_table(repairs))
        for resolution in resolutions:
            out.print(_resolution_table(resolution))
    ok = all(report.ok for report in reports) and all(r.ok for r in resolutions)
    return 0 if ok else 1


def _resolve(
    wheels: list[Path], reports: list[WheelReport], target: str | None, options: ResolveOptions
) -> list[Resolution]:
    """Resolve the set for ``target``, or, by default, once for each target the wheels' tags
    imply, with the wheels for that target and the pure ones (a linux wheel beside a mac one
    is not resolved for the Mac); file each unresolvable requirement in the report of the wheel
    it belongs to."""
    if target is not None:
        groups = {target: wheels}
    else:
        targets = list(dict.fromkeys(report.target for report in reports if report.target))
        pure = [w for w, report in zip(wheels, reports, strict=True) if report.target is None]
        groups = {
            chosen: [
                w for w, report in zip(wheels, reports, strict=True)
                if report.target == chosen or report.target is None
            ]
            for chosen in targets
        }
        if not groups and pure:
            msg = "--resolve needs a platform: give --target (the wheels are all pure Python)"
            raise UsageError(msg)
    resolutions = []
    by_name = {report.wheel: report for report in reports}
    for chosen, group in groups.items():
        resolution = resolve_wheels(group, chosen, options)
        for name, problems in resolution.problems_for(group).items():
            by_name[name].problems.extend(problems)
        resolutions.append(resolution)
    return resolutions


def expand_wheel_paths(paths: Iterable[str]) -> list[Path]:
    """The wheels to check: files as given, directories replaced by the ``*.whl`` inside them."""
    wheels: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(path.glob("*.whl"))
            if not found:
                msg = f"{path}: no *.whl files in this directory"
                raise UsageError(msg)
            wheels += found
        else:
            wheels.append(path)
    if not wheels:
        msg = "no wheels given; name wheel files or a directory holding them"
        raise UsageError(msg)
    return wheels


def render_reports(reports: Sequence[WheelReport], console: Console = out) -> None:
    """A summary table with one row per wheel, then one table of problems per failing wheel."""
    console.print(_summary_table(reports))
    for report in reports:
        if not report.ok:
            console.print(_problem_table(report))


def _summary_table(reports: Sequence[WheelReport]) -> Table:
    table = Table(title="Wheel verification", title_justify="left")
    table.add_column("Wheel", overflow="fold")
    table.add_column("Target")
    table.add_column("Binaries")
    table.add_column("Result")
    for report in reports:
        table.add_row(
            Text(report.wheel),
            Text(report.target or "any"),
            Text(_binary_summary(report)),
            Text("OK", style="green") if report.ok else Text(_count(report), style="bold red"),
        )
    return table


def _problem_table(report: WheelReport) -> Table:
    table = Table(title=Text(report.wheel), title_justify="left")
    table.add_column("Problem", style="red", no_wrap=True)
    table.add_column("File", overflow="fold")
    table.add_column("Detail", overflow="fold")
    for problem in report.problems:
        table.add_row(Text(problem.kind), Text(problem.file or "-"), Text(problem.detail))
    return table


def _repair_table(repairs: Sequence[Repair]) -> Table:
    table = Table(title="Signature repairs", title_justify="left")
    table.add_column("Wheel", overflow="fold")
    table.add_column("File", overflow="fold")
    table.add_column("Action")
    table.add_column("Detail", overflow="fold")
    for repair in repairs:
        written = f" -> {repair.output}" if repair.output else ""
        if repair.refused:
            table.add_row(
                Text(repair.wheel.name), Text("-"), Text("refused", style="red"), Text(repair.refused)
            )
            continue
        if not repair.fixes:
            table.add_row(Text(repair.wheel.name), Text("-"), Text("none"), Text("nothing stale"))
        for fix in repair.fixes:
            style = "red" if fix.action == "refused" else "green"
            table.add_row(
                Text(repair.wheel.name + written),
                Text(f"{fix.file} ({fix.arch})"),
                Text(fix.action, style=style),
                Text(fix.detail),
            )
    return table


def _resolution_table(resolution: Resolution) -> Table:
    verdict = "installs" if resolution.ok else "does not install"
    title = f"Resolution for {resolution.target}, CPython {resolution.python}: {verdict}"
    table = Table(title=title, title_justify="left")
    table.add_column("Distribution", overflow="fold")
    table.add_column("Version")
    table.add_column("From")
    for install in resolution.installs:
        table.add_row(Text(install.name), Text(install.version), Text(install.source))
    for item in resolution.unresolvable:
        table.add_row(
            Text(item.requirement, style="red"), Text("-"), Text("unresolvable", style="bold red")
        )
    return table


def _binary_summary(report: WheelReport) -> str:
    """``'67 arm64'`` or ``'1 x86_64+arm64, 2 arm64'``: how many binaries carry which slices."""
    counts = Counter("+".join(binary["archs"]) or "?" for binary in report.binaries)
    return ", ".join(f"{count} {archs}" for archs, count in counts.most_common()) or "none"


def _count(report: WheelReport) -> str:
    number = len(report.problems)
    return f"{number} problem{'s' if number != 1 else ''}"
