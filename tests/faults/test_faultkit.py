"""The closing ``faults:`` line counts setup errors as failures, not only failed tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT
from faultkit import fault_failures, summary_line


def test_setup_errors_count_as_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = {
        "failed": [SimpleNamespace(nodeid="tests/faults/test_a.py::test_x")],
        "error": [SimpleNamespace(nodeid="tests/faults/test_a.py::test_y"),
                  SimpleNamespace(nodeid="tests/test_other.py::test_z")],
        "passed": [SimpleNamespace(nodeid="tests/faults/test_a.py::test_ok")],
    }
    assert fault_failures(stats) == 2
    assert fault_failures({}) == 0
    from collections import Counter

    import faultkit

    monkeypatch.setattr(faultkit, "COUNTS", Counter())  # this process's own figures stay untouched
    assert summary_line(fault_failures(stats)) == "faults: 2 failures"
    faultkit.COUNTS["profiles"] = 3
    assert summary_line(0) == "faults: 3 profiles, 0 failures"


def test_the_summary_line_of_a_run_with_a_broken_fixture(tmp_path: Path) -> None:
    """End to end: a fault test whose fixture raises is counted in the closing line."""
    faults = tmp_path / "tests" / "faults"
    faults.mkdir(parents=True)
    (tmp_path / "tests" / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "tests" / "faultkit.py").write_text((ROOT / "tests" / "faultkit.py").read_text())
    (faults / "test_broken.py").write_text(
        "import pytest\n"
        "from faultkit import count\n"
        "@pytest.fixture\n"
        "def broken():\n"
        "    raise RuntimeError('setup fails')\n"
        "def test_uses_it(broken):\n"
        "    pass\n"
        "def test_counts():\n"
        "    count('profiles')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", "/dev/null", str(faults)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(tmp_path / "tests"), "PATH": "/usr/bin:/bin"},
    )
    assert "1 error" in result.stdout, result.stdout
    assert "faults: 1 profiles, 1 failures" in result.stdout, result.stdout
