"""The build report: written for every run, failed ones too, with Bazel's own figures.

The Bazel tests build the example unpatched (it fails) and patched (it builds) and check each
report against the ``INFO: N processes: …`` line that Bazel wrote into the same build's log,
against the wheel in dist/, and against the environment it must not carry.
"""

from __future__ import annotations

import doctest
import hashlib
import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FixedProject, copy_example, invoke, requires_bazel

from tfwheels import bazel as bazel_module
from tfwheels import report as report_module
from tfwheels.bazel import executed_actions, parse_processes
from tfwheels.report import (
    BAZEL_KEYS,
    KEYS,
    cache_figures,
    markdown,
    report_name,
    scrub,
    summary_rows,
)

# Summary lines of real Bazel 4.2.3 builds: a clean build, the same after `bazel clean` with a
# warm cache (research/bazel-facts.md 1.4 and 4), and a no-op rebuild.
CLEAN = "INFO: 9 processes: 5 internal, 4 local."
CACHED = "INFO: 7 processes: 5 remote cache hit, 2 internal."
NOOP = "INFO: 1 process: 1 internal."
# Summary lines of Bazel 5 builds quoted in bazelbuild/bazel#16043 and magma/magma#13362: Bazel 5
# and later name disk cache hits apart.
DISK_MACOS = "INFO: 1436 processes: 977 disk cache hit, 456 internal, 1 darwin-sandbox, 2 worker."
DISK_LINUX = "INFO: 4841 processes: 684 disk cache hit, 160 internal, 3997 linux-sandbox."


@pytest.mark.parametrize(
    ("line", "executed", "cacheable", "remote", "ratio"),
    [(CLEAN, 4, 4, 0, 0.0), (CACHED, 0, 5, 5, 1.0), (NOOP, 0, 0, 0, None)],
)
def test_cache_figures_come_from_bazels_summary_line(
    line: str, executed: int, cacheable: int, remote: int, ratio: float | None
) -> None:
    processes = parse_processes(line)
    assert processes is not None
    figures = cache_figures(processes)
    assert tuple(figures) == BAZEL_KEYS[BAZEL_KEYS.index("processes"):]
    assert figures["processes"] == processes
    assert (figures["actions_executed"], figures["cacheable_actions"], figures["remote_cache_hits"],
            figures["hit_ratio"]) == (executed, cacheable, remote, ratio)
    assert figures["cached_locally"] == 0  # 4.2.3 names no local cache kind


def test_a_fully_cached_build_executed_nothing() -> None:
    """Every action came from the cache: none ran, and the hit ratio is 1 (it said "5 executed,
    5 remote cache hits" before)."""
    processes = parse_processes(CACHED)
    assert processes is not None
    assert executed_actions(processes) == 0
    figures = cache_figures(processes)
    assert (figures["actions_executed"], figures["remote_cache_hits"], figures["hit_ratio"]) == (0, 5, 1.0)
    rows = dict(summary_rows(_report({"version": "4.2.3", "exit_code": 0, **figures})))
    assert rows["actions executed"] == "0 (7 processes: 5 remote cache hit, 2 internal)"
    assert rows["cached locally"] == "0"
    assert rows["remote/disk cache hits"] == "5"  # Bazel 4 counts disk cache hits as remote ones
    assert rows["cache hit ratio"] == "100% (5 of 5 cacheable actions)"


@pytest.mark.parametrize(
    ("line", "executed", "local", "cacheable", "ratio"),
    [(DISK_MACOS, 3, 977, 980, 0.9969), (DISK_LINUX, 3997, 684, 4681, 0.1461)],
)
def test_newer_bazels_disk_cache_hits_are_cached_locally_not_executed(
    line: str, executed: int, local: int, cacheable: int, ratio: float
) -> None:
    processes = parse_processes(line)
    assert processes is not None
    figures = cache_figures(processes)
    assert (figures["actions_executed"], figures["cached_locally"], figures["remote_cache_hits"],
            figures["cacheable_actions"], figures["hit_ratio"]) == (executed, local, 0, cacheable, ratio)
    rows = dict(summary_rows(_report({"version": "5.1.0", "exit_code": 0, **figures})))
    assert rows["remote cache hits"] == "0" and rows["cached locally"] == str(local)


def test_newer_bazels_local_cache_kinds_count_as_cached_locally() -> None:
    figures = cache_figures({"total": 10, "disk cache hit": 3, "remote cache hit": 2, "internal": 1,
                             "darwin-sandbox": 4})
    assert (figures["cached_locally"], figures["remote_cache_hits"], figures["hit_ratio"]) == (3, 2, 0.5556)
    assert (figures["actions_executed"], figures["cacheable_actions"]) == (4, 9)


def test_new_bazel_keys_come_last() -> None:
    """Readers of reports written before ``cacheable_actions`` find every older key in place."""
    assert BAZEL_KEYS[:8] == (
        "version", "exit_code", "exit_name", "processes", "actions_executed", "cached_locally",
        "remote_cache_hits", "hit_ratio",
    )
    assert BAZEL_KEYS[8:] == ("cacheable_actions",)


def test_reports_without_cacheable_actions_still_render() -> None:
    old = {"version": "4.2.3", "exit_code": 0, "processes": {"total": 7, "remote cache hit": 5, "internal": 2},
           "actions_executed": 5, "cached_locally": 0, "remote_cache_hits": 5, "hit_ratio": 1.0}
    rows = dict(summary_rows(_report(old)))
    assert rows["cache hit ratio"] == "100% (5 of 5 cacheable actions)"
    noop = dict(summary_rows(_report({**cache_figures({"total": 1, "internal": 1}), "version": "4.2.3",
                                      "exit_code": 0})))
    assert noop["actions executed"] == "0 (1 processes: 1 internal)"
    assert noop["cache hit ratio"] == "n/a (no cacheable action)"


def test_doctests() -> None:
    for module in (report_module, bazel_module):
        results = doctest.testmod(module)
        assert results.failed == 0 and results.attempted > 0, module.__name__


def _report(bazel: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": True, "profile": "p", "project": "tensorflow", "version": "1", "platform": "linux_x86_64",
        "stages": [], "seconds": 1.0, "bazel": bazel, "wheels": [], "warnings": [], "error": None,
        "diagnosis": [], "log": "x.log",
    }


def test_report_names_sort_by_time() -> None:
    names = [report_name(t, "tf", "2.16-darwin_arm64") for t in (1_700_000_000.5, 1_700_000_010.0)]
    assert names == sorted(names)
    assert names[0] == "20231114T221320.500Z-tf-2.16-darwin_arm64.json"
    assert report_name(0, "tff", "../odd name") == "19700101T000000.000Z-tff-.._odd_name.json"


def test_scrub_removes_credentials() -> None:
    environ = {"BUILDBUDDY_API_KEY": "s3cr3t-value", "HOME": "/root"}
    text = "bazel --remote_header=x-buildbuddy-api-key=s3cr3t-value build; key s3cr3t-value in /root"
    assert scrub(text, environ) == "bazel --remote_header=<redacted> build; key <redacted> in /root"


def test_markdown_escapes_table_cells() -> None:
    report = {
        "ok": False, "profile": "p", "project": "tensorflow", "version": "1", "platform": "linux_x86_64",
        "stages": [{"name": "build", "seconds": 1.0, "ok": False}], "seconds": 1.0,
        "bazel": {"version": "4.2.3", "exit_code": 1, "processes": {}, "actions_executed": 0,
                  "remote_cache_hits": 0, "cached_locally": 0, "hit_ratio": None},
        "wheels": [], "warnings": [], "error": "a | b", "diagnosis": [], "log": "x.log",
    }
    text = markdown(report)
    assert "| error | a \\| b |" in text.splitlines()
    assert text.startswith("### tfwheels build: p — **FAILED**\n")
    assert ("stage build", "1.00 s  (failed)") in summary_rows(report)


# --- real Bazel --------------------------------------------------------------------------------


@dataclass
class Runs:
    """The two real builds: their environment, output, logs and the failed one's BEP text."""

    env: dict[str, str]
    canary: str
    base: Path
    failed: subprocess.CompletedProcess[str]
    failed_log: Path
    failed_bep: str
    passed: subprocess.CompletedProcess[str]
    passed_log: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, bazel_trees: list[Path],
         fixed_example: FixedProject) -> Runs:
    """The example built unpatched (fails), then patched (builds), in one tree, with a canary
    variable in the environment that Bazel copies into its BEP file. Both use the project where
    `--fix` patched the example's second undeclared inclusion (conftest)."""
    base = tmp_path_factory.mktemp("report")
    tree = copy_example("tf-mini", base / "tf")
    bazel_trees.append(tree)
    unpatched = base / "unpatched.yaml"
    unpatched.write_text(fixed_example.unpatched_profile())
    canary = f"canary-{uuid.uuid4()}"
    env = {
        "TFWHEELS_PROJECT": str(fixed_example.root),
        "TFWHEELS_BUILD": str(base / "build"),
        "TFWHEELS_DIST": str(base / "dist"),
        "TFWHEELS_REPORT_CANARY": canary,
    }
    failed = invoke("build-tf", "--profile", str(unpatched), "--source", str(tree), "--json", env=env)
    failed_log = (base / "build" / "logs" / "latest.log").resolve()
    failed_bep = (base / "build" / "bep" / "tf-unpatched" / "build_events.json").read_text()
    passed = invoke("build-tf", "--profile", "example", "--source", str(tree), "--json", env=env)
    passed_log = (base / "build" / "logs" / "latest.log").resolve()
    return Runs(env, canary, base, failed, failed_log, failed_bep, passed, passed_log)


def reports(base: Path) -> list[Path]:
    return sorted((base / "build" / "reports").glob("*.json"))


def summary_of(log: Path) -> dict[str, int]:
    [counts] = [c for c in map(parse_processes, log.read_text().splitlines()) if c is not None]
    return counts


def agrees_with_bazel(report: dict[str, Any], log: Path) -> None:
    processes = summary_of(log)
    bazel = report["bazel"]
    assert tuple(bazel) == BAZEL_KEYS
    assert bazel["processes"] == processes
    cacheable = processes["total"] - processes.get("internal", 0)
    hits = sum(processes.get(k, 0) for k in ("remote cache hit", "disk cache hit", "action cache hit"))
    assert bazel["cacheable_actions"] == cacheable
    assert bazel["actions_executed"] == cacheable - hits
    assert bazel["remote_cache_hits"] == processes.get("remote cache hit", 0)
    assert bazel["cached_locally"] == processes.get("disk cache hit", 0) + processes.get("action cache hit", 0)
    assert bazel["hit_ratio"] == (round(hits / cacheable, 4) if cacheable else None)


@pytest.mark.bazel
@requires_bazel
def test_failed_build_writes_a_report(runs: Runs) -> None:
    failed = runs.failed
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert failed.stdout == ""  # --json: nothing but JSON, and no JSON
    first = reports(runs.base)[0]
    report = json.loads(first.read_text())
    assert tuple(report) == KEYS and tuple(report["bazel"]) == BAZEL_KEYS
    assert report["ok"] is False and report["profile"] == "unpatched" and report["wheels"] == []
    assert report["bazel"]["exit_code"] == 1 and report["bazel"]["exit_name"] == "BUILD_FAILURE"
    assert [(s["name"], s["ok"]) for s in report["stages"]] == [
        ("configure", True), ("patch", True), ("build", False),
    ]
    assert report["error"].startswith("bazel build failed (exit 1); full log: ")
    assert report["log"] == str(runs.failed_log)
    agrees_with_bazel(report, runs.failed_log)
    # The summary table ends failed builds too (on stderr, as --json keeps stdout for JSON).
    assert "tfwheels build: unpatched — FAILED" in failed.stderr


@pytest.mark.bazel
@requires_bazel
def test_report_figures_agree_with_bazels_summary_line(runs: Runs) -> None:
    passed = runs.passed
    assert passed.returncode == 0, passed.stderr[-3000:]
    summary = json.loads(passed.stdout)
    path = Path(summary["report"])
    assert path == reports(runs.base)[-1] and summary["ok"] is True
    report = json.loads(path.read_text())
    assert tuple(report) == KEYS and report["ok"] is True and report["error"] is None
    agrees_with_bazel(report, runs.passed_log)
    assert report["bazel"]["actions_executed"] == summary["actions_executed"]
    assert report["bazel"]["processes"] == summary["processes"]
    assert [s["name"] for s in report["stages"]] == ["configure", "patch", "build", "package", "collect"]
    assert report["started"] < report["finished"] and report["seconds"] > 0
    [wheel] = report["wheels"]
    built = Path(runs.env["TFWHEELS_DIST"]) / wheel["wheel"]
    assert wheel["sha256"] == hashlib.sha256(built.read_bytes()).hexdigest()
    assert wheel["size"] == built.stat().st_size and wheel["verified"] is True
    assert not list(path.parent.glob(".*"))  # written atomically: no temporary file left


@pytest.mark.bazel
@requires_bazel
def test_reports_carry_no_environment(runs: Runs) -> None:
    canary = runs.canary
    # Bazel did record it (the test would prove nothing otherwise), in its command line.
    [args] = [
        event["unstructuredCommandLine"]["args"]
        for event in map(json.loads, runs.failed_bep.splitlines())
        if "unstructuredCommandLine" in event["id"]
    ]
    assert f"--client_env=TFWHEELS_REPORT_CANARY={canary}" in args
    for path in reports(runs.base):
        assert canary not in path.read_text()


@pytest.mark.bazel
@requires_bazel
def test_invoke_report_prints_the_last_report_again(runs: Runs) -> None:
    env = runs.env
    last = reports(runs.base)[-1]
    as_json = invoke("report", "--json", env=env)
    assert as_json.returncode == 0 and as_json.stdout == last.read_text()
    table = invoke("report", "--profile", "example", "--project", "tf", env=env)
    assert table.returncode == 0 and "tfwheels build: example — ok" in table.stdout
    assert "actions executed" in table.stdout and f"report: {last}" in table.stdout
    failed = invoke("report", "--profile", "unpatched", "--markdown", env=env)
    assert failed.returncode == 0
    assert failed.stdout.startswith("### tfwheels build: unpatched — **FAILED**\n")
    assert "| stage build | " in failed.stdout and "(failed) |" in failed.stdout
    missing = invoke("report", "--profile", "no-such-profile", env=env)
    assert missing.returncode == 2
    assert "error: no build report of profile 'no-such-profile' in " in missing.stderr
