"""`invoke diagnose` as a user types it: the log as a bare argument, --log FILE, -l FILE, --log=FILE."""

from __future__ import annotations

import json

import pytest
from conftest import DATA, invoke

D01 = DATA / "logs" / next(p.name for p in (DATA / "logs").glob("D01-*.txt"))


@pytest.mark.parametrize(
    "args",
    [
        [str(D01)],
        ["--log", str(D01)],
        ["-l", str(D01)],
        [f"--log={D01}"],
        ["--json", "-l", str(D01)],
    ],
    ids=["bare", "long", "short", "equals", "json-first"],
)
def test_diagnose_log_argument_forms(args: list[str]) -> None:
    result = invoke("diagnose", *args, *([] if "--json" in args else ["--json"]))
    assert result.returncode == 1, result.stderr
    assert "needed value" not in result.stderr
    [finding] = json.loads(result.stdout)["findings"]
    assert finding["kind"] == "out-of-memory"


@pytest.mark.parametrize("flag", ["--wheel", "-w"])
def test_verify_wheel_flag_takes_its_value(tmp_path, flag: str) -> None:
    missing = tmp_path / "nope-1.0-py3-none-any.whl"
    result = invoke("verify-wheel", flag, str(missing), "--json")
    assert "needed value" not in result.stderr + result.stdout
    assert "nope-1.0" in result.stderr + result.stdout
