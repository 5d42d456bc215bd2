"""Read Bazel's Build Event Protocol JSON file (``--build_event_json_file``).

One JSON object a line; int64 values are strings, defaults are omitted, and a file being written
may end in half a line. Outputs come from ``namedSet`` events referenced by ``targetCompleted``,
as Bazel's docs describe, never from globbing ``bazel-bin``.

A directory output (a tree artifact, ``ctx.actions.declare_directory``: TF >= 2.17's
``wheel_house``) is reported by Bazel 4.2.3 twice over: its files, expanded, in the target's
``namedSet`` (each ``name`` under the directory, e.g. ``.../wheel_house/tensorflow-….whl``, with
a ``file://`` uri), and the directory itself in ``completed.directoryOutput[]`` as a name and a
``pathPrefix`` only, with no uri. Both are kept: ``files`` and ``directories`` (whose path is
``workspaceInfo.localExecRoot`` / pathPrefix / name, when the BEP names the exec root).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


def iter_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Parse BEP lines, skipping a torn last line (the file may still be written)."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in a BEP file."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", errors="replace") as handle:
        return list(iter_events(handle))


@dataclass(frozen=True)
class OutputFile:
    """One output file as the BEP names it: ``name`` relative to the output root (``bin``)."""

    name: str
    path: Path | None
    path_prefix: tuple[str, ...] = ()


@dataclass
class BuildSummary:
    """What a finished (or cut-off) build reported about itself."""

    finished: bool = False
    success: bool = False
    exit_name: str = ""
    exit_code: int = 0
    outputs: dict[str, list[Path]] = field(default_factory=dict)
    files: dict[str, list[OutputFile]] = field(default_factory=dict)
    directories: dict[str, list[OutputFile]] = field(default_factory=dict)
    exec_root: Path | None = None
    failed_targets: list[str] = field(default_factory=list)
    failed_action_stderr: list[Path] = field(default_factory=list)
    actions_created: int = 0
    actions_executed: int = 0
    targets_configured: int = 0


def _file_path(entry: dict[str, Any]) -> Path | None:
    uri = entry.get("uri", "")
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    return None


def _expand_sets(roots: Iterable[str], named: dict[str, dict[str, Any]]) -> list[OutputFile]:
    found: list[OutputFile] = []
    seen: set[str] = set()
    queue = deque(roots)
    while queue:
        set_id = queue.popleft()
        if set_id in seen or set_id not in named:
            continue
        seen.add(set_id)
        files = named[set_id]
        for entry in files.get("files", []):
            prefix = tuple(str(p) for p in entry.get("pathPrefix", []))
            found.append(OutputFile(str(entry.get("name", "")), _file_path(entry), prefix))
        queue.extend(s["id"] for s in files.get("fileSets", []))
    return found


def summarize(events: Iterable[dict[str, Any]]) -> BuildSummary:
    """Fold events into a BuildSummary."""
    summary = BuildSummary()
    named: dict[str, dict[str, Any]] = {}
    for event in events:
        ids = event.get("id", {})
        if "namedSet" in ids:
            named[ids["namedSet"]["id"]] = event.get("namedSetOfFiles", {})
        elif "targetConfigured" in ids:
            summary.targets_configured += 1
        elif "targetCompleted" in ids:
            target = ids["targetCompleted"]
            if target.get("aspect"):
                continue
            label = target.get("label", "")
            completed = event.get("completed")
            if completed is None or not completed.get("success"):
                summary.failed_targets.append(label)
                continue
            roots = [
                s["id"]
                for group in completed.get("outputGroup", [])
                if group.get("name") == "default"
                for s in group.get("fileSets", [])
            ]
            files = _expand_sets(roots, named)
            summary.files[label] = files
            summary.outputs[label] = [f.path for f in files if f.path is not None]
            summary.directories[label] = [
                OutputFile(str(d["name"]), None, tuple(str(p) for p in d.get("pathPrefix", [])))
                for d in completed.get("directoryOutput", [])
                if d.get("name")
            ]
        elif "workspace" in ids:
            root = event.get("workspaceInfo", {}).get("localExecRoot")
            summary.exec_root = Path(root) if root else None
        elif "actionCompleted" in ids:
            action = event.get("action", {})
            if not action.get("success"):
                stderr = _file_path(action.get("stderr", {}))
                if stderr is not None:
                    summary.failed_action_stderr.append(stderr)
        elif "buildFinished" in ids:
            finished = event.get("finished", {})
            summary.finished = True
            summary.success = bool(finished.get("overallSuccess"))
            exit_code = finished.get("exitCode", {})
            summary.exit_name = exit_code.get("name", "SUCCESS" if summary.success else "")
            summary.exit_code = int(exit_code.get("code", 0))
        elif "buildMetrics" in ids:
            actions = event.get("buildMetrics", {}).get("actionSummary", {})
            summary.actions_created = int(actions.get("actionsCreated", 0))
            summary.actions_executed = int(actions.get("actionsExecuted", 0))
    if summary.exec_root is not None:
        root = summary.exec_root
        summary.directories = {
            label: [OutputFile(d.name, root.joinpath(*d.path_prefix, d.name), d.path_prefix)
                    for d in dirs]
            for label, dirs in summary.directories.items()
        }
    return summary


def summarize_file(path: Path) -> BuildSummary:
    """Summarize a BEP file on disk."""
    return summarize(read_events(path))
