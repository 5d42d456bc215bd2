"""Secrets: a canary in every credential variable the shipped configs name, through the paths that
print or write things — dry-run plans, a remote that cannot be reached, a failing build — and then
a scan of the source tree, build/, dist/ and everything printed finds it 0 times.

(tests/test_remote.py runs the same canary through real builds against a real cache server.)
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_example, invoke, requires_bazel
from faultkit import count

CANARY = f"tfw-canary-{secrets.token_hex(12)}"
REMOTE_CONFIGS = sorted(p.stem for p in (ROOT / "configs" / "remote").glob("*.yaml"))


def credential_variables() -> list[str]:
    """Every NAME in an ``env:NAME`` credential reference under configs/ (comments included:
    a user may uncomment one)."""
    names = set()
    for path in (ROOT / "configs").rglob("*.yaml"):
        names.update(re.findall(r"\benv:([A-Z_][A-Z0-9_]*)", path.read_text()))
    return sorted(names)


def canary_env(base: Path) -> dict[str, str]:
    env = {name: CANARY for name in credential_variables()}
    return {**env, "TFWHEELS_BUILD": str(base / "build"), "TFWHEELS_DIST": str(base / "dist")}


def files_with_canary(*roots: Path) -> list[str]:
    hits = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file() and not path.is_symlink() and CANARY.encode() in path.read_bytes():
                hits.append(str(path))
    return hits


def test_configs_name_credential_variables() -> None:
    assert {"BUILDBUDDY_API_KEY", "BAZEL_REMOTE_AUTH"} <= set(credential_variables())


@pytest.mark.parametrize("config", REMOTE_CONFIGS)
def test_dry_run_plans_show_credentials_redacted(tmp_path: Path, config: str) -> None:
    result = invoke("build-tf", "--profile", "example", "--remote-config", config, "--dry-run", "--json",
                    env=canary_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert CANARY not in result.stdout + result.stderr
    fragment = yaml.safe_load((ROOT / "configs" / "remote" / f"{config}.yaml").read_text())
    if fragment["remote"].get("headers"):
        assert "<redacted:env:" in result.stdout
    assert files_with_canary(tmp_path) == []
    count("secret scans")


@requires_bazel
@pytest.mark.bazel
@pytest.mark.parametrize("config", ["buildbuddy", "bazel-remote"])
def test_unreachable_remote_error_path_leaks_nothing(tmp_path: Path, config: str) -> None:
    tree = copy_example("tf-mini", tmp_path / "tree")
    result = invoke("build-tf", "--profile", "example", "--source", str(tree), "--remote-config", config,
                    env=canary_env(tmp_path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and CANARY not in result.stdout + result.stderr
    assert files_with_canary(tmp_path) == []
    count("secret scans")
