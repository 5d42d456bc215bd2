"""The build report: one JSON file per run in ``build/reports/``, failed runs included.

``build/reports/<time>-<project>-<profile>.json`` keeps a stable schema (``SCHEMA``): profile,
project, version, platform, started/finished, stages, Bazel's figures, wheels, warnings, error,
diagnosis, log, ok. Every Bazel figure comes from Bazel's own ``INFO: N processes: …`` line, so
the report agrees with the log.

Nothing in it comes from the Build Event Protocol's command lines or client environment: the BEP
holds every environment variable as ``--client_env`` (research/bazel-facts.md 1.6). As a second
guard, every free-text field is scrubbed of credential-looking options and of the values of
secret-named environment variables before it is written.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from tfwheels import redact
from tfwheels.atomic import file_sha256, write_atomic
from tfwheels.bazel import LOCAL_CACHE_HITS, REMOTE_CACHE_HIT, cacheable_actions, executed_actions
from tfwheels.errors import UsageError

if TYPE_CHECKING:
    from tfwheels.pipeline import BuildResult

SCHEMA = 1
REPORTS = "reports"
# Keys of every report, in order; a test checks written reports against it.
KEYS = (
    "schema", "profile", "project", "version", "platform", "started", "finished", "seconds",
    "stages", "bazel", "wheels", "warnings", "error", "diagnosis", "log", "ok",
)
# New keys go at the end, so that readers of older reports keep their meaning.
BAZEL_KEYS = (
    "version", "exit_code", "exit_name", "processes", "actions_executed", "cached_locally",
    "remote_cache_hits", "hit_ratio", "cacheable_actions",
)
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|CREDENTIAL|AUTH|PRIVATE", re.IGNORECASE)
_SECRET_OPTION = re.compile(
    r"(--(?:remote_header|remote_cache_header|remote_exec_header|bes_header|client_env|"
    r"google_credentials|tls_client_key)[= ])\S+"
)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def iso_time(seconds: float) -> str:
    """A wall-clock time as ISO 8601 UTC with milliseconds.

    >>> iso_time(0)
    '1970-01-01T00:00:00.000Z'
    """
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scrub(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` without known secrets (tfwheels.redact), credential options' values, and values of
    secret-named environment variables.

    >>> scrub("bazel --remote_header=x-api-key=abc build", {})
    'bazel --remote_header=<redacted> build'
    >>> scrub("token is hunter2-hunter2", {"GH_TOKEN": "hunter2-hunter2"})
    'token is <redacted>'
    """
    environ = environ if environ is not None else os.environ
    text = _SECRET_OPTION.sub(r"\1<redacted>", redact.scrub(text))
    for name, value in environ.items():
        if len(value) >= 6 and _SECRET_NAME.search(name) and value in text:
            text = text.replace(value, "<redacted>")
    return text


def cache_figures(processes: Mapping[str, int]) -> dict[str, Any]:
    """Bazel's figures from its parsed ``INFO: N processes: …`` line.

    ``actions_executed`` counts the processes that really ran (no internal ones, no cache hits);
    ``cacheable_actions`` every process but Bazel's internal ones, the hit ratio's denominator;
    ``hit_ratio`` is None when there was nothing to cache (a no-op rebuild).

    >>> cache_figures({"total": 7, "remote cache hit": 5, "internal": 2})
    {'processes': {'total': 7, 'remote cache hit': 5, 'internal': 2}, 'actions_executed': 0, 'cached_locally': 0, 'remote_cache_hits': 5, 'hit_ratio': 1.0, 'cacheable_actions': 5}
    >>> cache_figures({"total": 9, "internal": 5, "local": 4})["actions_executed"]
    4
    >>> cache_figures({"total": 1, "internal": 1})["hit_ratio"] is None
    True
    """
    executed = executed_actions(processes)
    cacheable = cacheable_actions(processes)
    remote = processes.get(REMOTE_CACHE_HIT, 0)
    local = sum(processes.get(kind, 0) for kind in LOCAL_CACHE_HITS)
    ratio = round(min(1.0, (remote + local) / cacheable), 4) if cacheable > 0 else None
    return {
        "processes": dict(processes),
        "actions_executed": executed,
        "cached_locally": local,
        "remote_cache_hits": remote,
        "hit_ratio": ratio,
        "cacheable_actions": cacheable,
    }


def _wheels(result: BuildResult) -> list[dict[str, Any]]:
    collected = result.collected
    if collected is None:
        return []
    wheels = [
        {
            "wheel": entry["wheel"],
            "size": entry["size"],
            "sha256": entry["sha256"],
            "verified": entry["verified"],
            "problems": entry["problems"],
            "smoke": entry.get("smoke"),
        }
        for entry in collected.accepted
    ]
    rejected_dir = result.plan.layout.rejected()
    for report in collected.rejected:
        path = rejected_dir / report.wheel
        wheels.append(
            {
                "wheel": report.wheel,
                "size": path.stat().st_size if path.is_file() else None,
                "sha256": file_sha256(path) if path.is_file() else None,
                "verified": False,
                "problems": [p.to_json() for p in report.problems],
            }
        )
    return wheels


def build_report(result: BuildResult) -> dict[str, Any]:
    """The report of one run as JSON-ready data (keys in ``KEYS`` order)."""
    plan = result.plan
    profile = plan.profile
    started = result.started or time.time()
    finished = result.finished or time.time()
    stages = [
        {"name": name, "seconds": seconds, "ok": name != result.failed_stage}
        for name, seconds in result.stages.items()
    ]
    state = result.progress
    bazel = {
        "version": plan.bazel.version or "unknown",
        "exit_code": result.bazel_exit,
        "exit_name": state.exit_name if state is not None and state.exit_name else None,
        **cache_figures(result.processes),
    }
    report = {
        "schema": SCHEMA,
        "profile": profile.name,
        "project": profile.project,
        "version": profile.version,
        "platform": profile.platform,
        "started": iso_time(started),
        "finished": iso_time(finished),
        "seconds": round(finished - started, 3),
        "stages": stages,
        "bazel": bazel,
        "wheels": _wheels(result),
        "warnings": [scrub(w) for w in plan.warnings],
        "error": scrub(result.error) if result.error else None,
        "diagnosis": [scrub(d) for d in result.diagnosis],
        "log": str(plan.log_path),
        "ok": result.ok,
    }
    return {key: report[key] for key in KEYS}


def reports_dir(build: Path) -> Path:
    """Where reports go: ``build/reports/``."""
    return build / REPORTS


def report_name(started: float, project_dir: str, profile: str) -> str:
    """``20261125T102236.123Z-tf-example.json``: sorts by time, says what was built."""
    stamp = iso_time(started).replace("-", "").replace(":", "")
    return f"{stamp}-{project_dir}-{_UNSAFE_NAME.sub('_', profile)}.json"


def write_report(result: BuildResult) -> Path:
    """Write the run's report atomically and return its path."""
    plan = result.plan
    report = build_report(result)
    folder = reports_dir(plan.layout.build)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / report_name(result.started or time.time(), plan.profile.project_dir, plan.profile.name)
    write_atomic(path, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return path


def find_reports(build: Path, profile: str | None = None, project: str | None = None) -> list[Path]:
    """Reports under ``build/reports/``, oldest first, optionally of one profile or project."""
    folder = reports_dir(build)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if profile and data.get("profile") != profile:
            continue
        if project and data.get("project") != project:
            continue
        found.append(path)
    return found


def latest_report(build: Path, profile: str | None = None, project: str | None = None) -> Path:
    """The newest report (of ``profile``), or UsageError saying how to make one."""
    found = find_reports(build, profile, project)
    if not found:
        which = f" of profile {profile!r}" if profile else ""
        msg = f"no build report{which} in {reports_dir(build)}; run `invoke build-tf --profile P` first"
        raise UsageError(msg)
    return found[-1]


def load_report(path: Path) -> dict[str, Any]:
    """A report file as data."""
    return json.loads(path.read_text("utf-8"))


# --- rendering ----------------------------------------------------------------------------------


def _processes_text(bazel: Mapping[str, Any]) -> str:
    processes = dict(bazel.get("processes") or {})
    total = processes.pop("total", None)
    if total is None:
        return "no process summary from Bazel"
    kinds = ", ".join(f"{n} {kind}" for kind, n in processes.items())
    return f"{total} processes" + (f": {kinds}" if kinds else "")


def _cacheable(bazel: Mapping[str, Any]) -> int | None:
    """Actions that could have come from a cache; reports before ``cacheable_actions`` derive it."""
    if bazel.get("cacheable_actions") is not None:
        return int(bazel["cacheable_actions"])
    processes = bazel.get("processes") or {}
    return cacheable_actions(processes) if "total" in processes else None


def _remote_label(version: object) -> str:
    """Bazel 4.x counts disk-cache hits as remote cache hits (Bazel 5 splits them out), so its
    figure is labelled for both; an unknown version gets the honest label too.

    >>> _remote_label("4.2.3"), _remote_label("7.4.1"), _remote_label("unknown")
    ('remote/disk cache hits', 'remote cache hits', 'remote/disk cache hits')
    """
    match = re.match(r"(\d+)\.", str(version or ""))
    return "remote cache hits" if match and int(match.group(1)) >= 5 else "remote/disk cache hits"


def _ratio_text(bazel: Mapping[str, Any]) -> str:
    ratio = bazel.get("hit_ratio")
    cacheable = _cacheable(bazel)
    if ratio is None:
        return "n/a (no cacheable action)" if cacheable == 0 else "n/a"
    hits = bazel.get("remote_cache_hits", 0) + bazel.get("cached_locally", 0)
    of = f" ({hits} of {cacheable} cacheable actions)" if cacheable is not None else ""
    return f"{100 * ratio:.0f}%{of}"


def _wheel_text(wheel: Mapping[str, Any]) -> str:
    size = f"{wheel['size']:,} bytes" if wheel.get("size") is not None else "size unknown"
    digest = f"sha256 {wheel['sha256'][:16]}…" if wheel.get("sha256") else ""
    verdict = "verified" if wheel.get("verified") else f"{len(wheel.get('problems', []))} problem(s)"
    smoke = wheel.get("smoke") or {}
    tried = f"smoke test {smoke['status']}" if smoke.get("status") else ""
    return "  ".join(part for part in (wheel["wheel"], size, digest, verdict, tried) if part)


def summary_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary as (what, value) rows, shared by the rich table and the Markdown one."""
    rows: list[tuple[str, str]] = [
        ("result", "ok" if report["ok"] else "FAILED"),
        ("profile", f"{report['project']} {report['profile']} {report['version']} ({report['platform']})"),
    ]
    for stage in report["stages"]:
        mark = "" if stage["ok"] else "  (failed)"
        rows.append((f"stage {stage['name']}", f"{stage['seconds']:.2f} s{mark}"))
    rows.append(("total", f"{report['seconds']:.2f} s"))
    bazel = report["bazel"]
    exit_text = "not run" if bazel["exit_code"] is None else f"exit {bazel['exit_code']}"
    rows.append(("bazel", f"{bazel['version']}, {exit_text}"))
    rows.append(("actions executed", f"{bazel['actions_executed']} ({_processes_text(bazel)})"))
    rows.append(("cached locally", str(bazel.get("cached_locally", 0))))
    rows.append((_remote_label(bazel.get("version")), str(bazel.get("remote_cache_hits", 0))))
    rows.append(("cache hit ratio", _ratio_text(bazel)))
    for wheel in report["wheels"]:
        rows.append(("wheel", _wheel_text(wheel)))
    for warning in report["warnings"]:
        rows.append(("warning", warning))
    if report["error"]:
        rows.append(("error", report["error"]))
    for finding in report["diagnosis"]:
        rows.append(("diagnosis", finding))
    rows.append(("log", report["log"]))
    return rows


def summary_table(report: Mapping[str, Any]) -> Table:
    """The end-of-build summary as a rich table."""
    verdict = "[green]ok[/green]" if report["ok"] else "[bold red]FAILED[/bold red]"
    table = Table(title=f"tfwheels build: {report['profile']} — {verdict}", show_header=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for what, value in summary_rows(report):
        table.add_row(what, value, style="red" if what == "error" else None)
    return table


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(report: Mapping[str, Any]) -> str:
    """The summary as a Markdown table, for ``$GITHUB_STEP_SUMMARY``."""
    verdict = "ok" if report["ok"] else "**FAILED**"
    lines = [f"### tfwheels build: {_cell(report['profile'])} — {verdict}", "", "| | |", "| --- | --- |"]
    lines += [f"| {_cell(what)} | {_cell(value)} |" for what, value in summary_rows(report)]
    return "\n".join(lines) + "\n"
