"""Show wheel verification results: rich tables for people, JSON for machines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tfwheels.console import out
from tfwheels.errors import UsageError
from tfwheels.verify import WheelReport, verify_wheels


def verify_command(paths: list[str], target: str | None, as_json: bool) -> int:
    """Verify the wheels named by ``paths`` (a directory means every ``*.whl`` in it) and print.

    JSON goes to stdout as ``{"wheels": [...]}``; otherwise tables go to the results console.
    Returns 0 when every wheel is OK, 1 otherwise. A path that is not a wheel, or an unknown
    target, raises UsageError (exit 2).
    """
    reports = verify_wheels(expand_wheel_paths(paths), target)
    if as_json:
        print(json.dumps({"wheels": [report.to_json() for report in reports]}, indent=2))
    else:
        render_reports(reports)
    return 0 if all(report.ok for report in reports) else 1


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


def _binary_summary(report: WheelReport) -> str:
    """``'67 arm64'`` or ``'1 x86_64+arm64, 2 arm64'``: how many binaries carry which slices."""
    counts = Counter("+".join(binary["archs"]) or "?" for binary in report.binaries)
    return ", ".join(f"{count} {archs}" for archs, count in counts.most_common()) or "none"


def _count(report: WheelReport) -> str:
    number = len(report.problems)
    return f"{number} problem{'s' if number != 1 else ''}"
