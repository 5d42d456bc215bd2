"""Shared fixtures: the project root, copies of the example workspaces, and Bazel clean-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"


def have_bazel() -> bool:
    """True when a Bazel (Debian's bazel-bootstrap in CI) is on PATH."""
    return shutil.which("bazel") is not None or shutil.which("bazelisk") is not None


requires_bazel = pytest.mark.skipif(
    not have_bazel() and not os.environ.get("CI"), reason="no bazel on PATH (CI installs it)"
)


@pytest.fixture(scope="session")
def bazel_trees() -> Iterator[list[Path]]:
    """Workspaces a test ran Bazel in; their servers are shut down when the session ends."""
    trees: list[Path] = []
    yield trees
    bazel = shutil.which("bazel-4") or shutil.which("bazel") or shutil.which("bazelisk")
    for tree in trees:
        if bazel and tree.is_dir():
            subprocess.run([bazel, "shutdown"], cwd=tree, check=False, capture_output=True)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty project folder (build/ and dist/ go here)."""
    return tmp_path


def copy_example(name: str, dest: Path) -> Path:
    """Copy examples/<name> (symlinks resolved, as tfwheels copies it) to ``dest``."""
    shutil.copytree(EXAMPLES / name, dest)
    return dest


def invoke(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``invoke ARGS`` as a user would, in the project root, and capture everything."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """End with the fault-injection figures when tests/faults/ ran."""
    from faultkit import summary_line

    failed = [r for r in terminalreporter.stats.get("failed", []) if "tests/faults/" in r.nodeid]
    line = summary_line(len(failed))
    if line:
        terminalreporter.write_line(line)
