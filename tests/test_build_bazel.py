"""The whole pipeline on real Bazel: the example TF fails unpatched, builds patched, TFF builds on it.

These run Debian's bazel-bootstrap 4.2.3 offline, as CI does, in copies of the example workspaces.
The example has a second undeclared inclusion that only `--fix` patches, so the builds here use
the copied project (TFWHEELS_PROJECT) in which conftest's ``fixed_example`` ran `--fix` once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import FixedProject, copy_example, invoke, requires_bazel
from tfwheels.profiles import load_profile
from tfwheels.run import format_argv

pytestmark = [pytest.mark.bazel, requires_bazel]


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, bazel_trees: list[Path], fixed_example: FixedProject
) -> dict[str, Path]:
    """Copies of both example workspaces, private build/ and dist/ folders, and the project whose
    example profile lists the fix patch."""
    assert fixed_example.result.returncode == 0, fixed_example.result.stderr[-3000:]
    base = tmp_path_factory.mktemp("pipeline")
    paths = {
        "root": fixed_example.root,
        "tf": copy_example("tf-mini", base / "tf"),
        "tff": copy_example("tff-mini", base / "tff"),
        "build": base / "build",
        "dist": base / "dist",
        "base": base,
    }
    bazel_trees.extend([paths["tf"], paths["tff"]])
    return paths


def run(project: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "TFWHEELS_PROJECT": str(project["root"]),
        "TFWHEELS_BUILD": str(project["build"]),
        "TFWHEELS_DIST": str(project["dist"]),
    }
    return invoke(*args, env=env)


def tree_bytes(tree: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in sorted(tree.rglob("*"))
        if p.is_file() and not p.relative_to(tree).parts[0].startswith(("bazel-", ".tfwheels"))
    }


def test_dry_run_json_plans_and_changes_nothing(project: dict[str, Path]) -> None:
    before = tree_bytes(project["tf"])
    result = run(project, "build-tf", "--profile", "example", "--source", str(project["tf"]), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["profile"] == "example" and plan["project"] == "tensorflow"
    assert plan["bazel_version"] == "4.2.3"
    build = plan["bazel_commands"][0]
    assert build[1:3] == ["build", "--curses=no"] and build[-1] == "//tensorflow/tools/pip_package:build_pip_package"
    assert any(a.startswith("--build_event_json_file=") for a in build)
    assert set(plan["rendered"]) == {".tf_configure.bazelrc", ".bazelrc.user"}
    assert [p["file"] for p in plan["patches"]] == [
        "tf/example/0001-framework-tensor-depends-on-platform-logging.patch",
        "tf/example/0002-str_util.patch",
    ]
    assert tree_bytes(project["tf"]) == before
    assert not project["build"].exists() and not project["dist"].exists()


def test_unpatched_example_fails_with_undeclared_inclusions(
    project: dict[str, Path], bazel_trees: list[Path]
) -> None:
    example = load_profile("example", "tensorflow", project["root"] / "configs", project["root"])
    unpatched = project["base"] / "unpatched.yaml"
    # --keep_going: Bazel reports both undeclared inclusions, whichever compiles first.
    flags = [*example.bazel.build_flags, "--keep_going"]
    unpatched.write_text(yaml.safe_dump({"extends": "tf/example", "patches": [], "bazel": {"build_flags": flags}}))
    tree = copy_example("tf-mini", project["base"] / "tf-unpatched")
    bazel_trees.append(tree)  # shut down at the end of the session, like every tree
    result = run(project, "build-tf", "--profile", str(unpatched), "--source", str(tree))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "undeclared inclusion(s) in rule '//tensorflow/core/framework:tensor'" in result.stderr
    assert "'tensorflow/core/platform/logging.h'" in result.stderr
    assert "undeclared inclusion(s) in rule '//tensorflow/core/lib/strings:str_util'" in result.stderr
    assert "'tensorflow/core/platform/types.h'" in result.stderr
    log = (project["build"] / "logs" / "latest.log").resolve()
    assert "undeclared inclusion(s) in rule '//tensorflow/core/framework:tensor'" in log.read_text()
    assert "error: bazel build failed (exit 1); full log:" in result.stderr
    assert not list(project["dist"].glob("*.whl"))


def test_patched_example_builds_and_collects(project: dict[str, Path]) -> None:
    result = run(project, "build-tf", "--profile", "example", "--source", str(project["tf"]), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    # Ran, or came from the shared disk cache that Bazel 4.2.3 counts as "remote cache hit".
    assert summary["processes"]["total"] - summary["processes"].get("internal", 0) > 0
    wheels = sorted(project["dist"].glob("*.whl"))
    assert [w.name.split("-")[:2] for w in wheels] == [["tensorflow", "0.1.0"]]
    tag = wheels[0].name.split("-")[-1]
    assert tag.startswith("linux_") or tag.startswith("macosx_")
    manifest = json.loads((project["dist"] / "manifest.json").read_text())
    [entry] = manifest["wheels"]
    assert entry["sha256"] == hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    assert entry["size"] == wheels[0].stat().st_size
    assert entry["profile"] == "example" and entry["bazel_version"] == "4.2.3"
    assert [p["file"] for p in entry["patches"]] == [
        "tf/example/0001-framework-tensor-depends-on-platform-logging.patch",
        "tf/example/0002-str_util.patch",
    ]
    for applied in entry["patches"]:
        patch = project["root"] / "patches" / applied["file"]
        assert applied["sha256"] == hashlib.sha256(patch.read_bytes()).hexdigest()
    assert entry["source"]["tree"] == str(project["tf"]) and entry["build_seconds"] > 0
    assert entry["verified"] is True
    # Installed into a fresh venv and imported from elsewhere, on this host it is built for.
    assert entry["smoke"]["status"] == "passed", entry["smoke"]
    state = json.loads((project["tf"] / ".tfwheels" / "state.json").read_text())
    assert [p["file"] for p in state["applied"]] == [p["file"] for p in entry["patches"]]
    assert not list(project["dist"].glob(".*"))  # no temporary or partial files left behind


def test_second_build_executes_no_bazel_action(project: dict[str, Path]) -> None:
    result = run(project, "build-tf", "--profile", "example", "--source", str(project["tf"]), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    # Read from Bazel's own summary line: only its internal workspace-status action ran.
    assert summary["processes"].get("total", 0) == summary["processes"].get("internal", 0)
    assert summary["actions_executed"] == 0
    assert "INFO: 1 process: 1 internal." in result.stderr
    # The first build recorded its Bazel command; this one started it before planning, found the
    # plan runs exactly that, and showed and logged its output as any build's.
    assert summary["early_start"] is True
    # Nothing the plan was made from changed either, so the first build's plan was taken up.
    assert summary["saved_plan"] is True
    assert [line for line in result.stderr.splitlines() if line.startswith("+ ")] == [
        f"+ {format_argv(json.loads(early_record(project, 'tf').read_text())['argv'])}"
    ]
    log = Path(summary["log"]).read_text()
    assert "INFO: Build completed successfully" in log and log == (project["build"] / "logs" / "latest.log").read_text()
    assert json.loads(Path(summary["report"]).read_text())["bazel"]["exit_code"] == 0


def test_a_no_op_rebuild_loads_no_profile(project: dict[str, Path]) -> None:
    # The saved plan stands in for the profile: neither pydantic nor a YAML loader of ours is
    # imported (read from Python's own -X importtime report).
    env = {"TFWHEELS_PROJECT": str(project["root"]), "TFWHEELS_BUILD": str(project["build"]),
           "TFWHEELS_DIST": str(project["dist"])}
    result = invoke("build-tf", "--profile", "example", "--source", str(project["tf"]), "--json", env=env,
                    python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["saved_plan"] is True and summary["actions_executed"] == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "tfwheels.pipeline" in imported  # the report is there
    assert not imported & {"pydantic", "tfwheels.profiles", "tfwheels.remote", "tfwheels.yamlsafe", "jinja2"}


def test_another_environment_plans_afresh(project: dict[str, Path]) -> None:
    args = ("build-tf", "--profile", "example", "--source", str(project["tf"]), "--json")
    result = invoke(*args, env={"TFWHEELS_PROJECT": str(project["root"]), "TFWHEELS_BUILD": str(project["build"]),
                                "TFWHEELS_DIST": str(project["dist"]), "TFW_TEST_NEW_VARIABLE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    # Bazel still starts early (the plan it made runs the same command), but the plan is new.
    assert summary["saved_plan"] is False and summary["early_start"] is True
    assert summary["actions_executed"] == 0
    again = json.loads(run(project, *args).stdout)
    assert again["saved_plan"] is True  # the record still holds for the environment it was made in


def early_record(project: dict[str, Path], tree: str) -> Path:
    """The early-start record of the builds of ``project[tree]``."""
    [found] = [
        path for path in (project["build"] / "early").glob("*.json")
        if json.loads(path.read_text())["tree"] == str(project[tree])
    ]
    return found


def test_an_early_command_the_plan_does_not_run_is_stopped_first(project: dict[str, Path]) -> None:
    # A record that names another command (here a long sleep) while its inputs look unchanged:
    # the plan decides, the early command is stopped, and the planned Bazel runs as usual.
    path = early_record(project, "tf")
    record = json.loads(path.read_text())
    planned = record["argv"]
    sleep = shutil.which("sleep")
    assert sleep is not None
    path.write_text(json.dumps({**record, "argv": [sleep, "61.25"]}))
    begun = time.monotonic()
    result = run(project, "build-tf", "--profile", "example", "--source", str(project["tf"]), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - begun < 60
    summary = json.loads(result.stdout)
    assert summary["early_start"] is False and summary["actions_executed"] == 0
    assert f"+ {format_argv(planned)}" in result.stderr and "61.25" not in result.stderr
    assert subprocess.run(["pgrep", "-f", "sleep 61.25"], capture_output=True).returncode == 1
    assert json.loads(path.read_text())["argv"] == planned  # recorded again from the plan


def test_a_fix_rebuild_starts_early_too(project: dict[str, Path]) -> None:
    # The README's command has --fix: its first build is a build like any other.
    # The fixer and the profile it edits load only if that build fails: here it does not.
    env = {"TFWHEELS_PROJECT": str(project["root"]), "TFWHEELS_BUILD": str(project["build"]),
           "TFWHEELS_DIST": str(project["dist"])}
    result = invoke("build-tf", "--profile", "example", "--source", str(project["tf"]), "--fix", "--json",
                    env=env, python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["early_start"] is True and summary["actions_executed"] == 0
    assert summary["saved_plan"] is True
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"tfwheels.autofix", "tfwheels.profiles", "pydantic"}


def test_a_changed_profile_outside_configs_is_not_started_early(project: dict[str, Path]) -> None:
    profile = project["base"] / "tf-verbose.yaml"
    example = load_profile("example", "tensorflow", project["root"] / "configs", project["root"])
    flags = [*example.bazel.build_flags]
    profile.write_text(yaml.safe_dump({"extends": "tf/example", "bazel": {"build_flags": [*flags, "--verbose_failures"]}}))
    args = ("build-tf", "--profile", str(profile), "--source", str(project["tf"]), "--json")
    first = run(project, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    profile.write_text(yaml.safe_dump({"extends": "tf/example", "bazel": {"build_flags": [*flags, "--show_progress"]}}))
    second = run(project, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout)["early_start"] is False
    assert json.loads(second.stdout)["saved_plan"] is False
    rc = (project["tf"] / ".bazelrc.user").read_text()  # where the profile's build flags go
    assert "--show_progress" in rc and "--verbose_failures" not in rc


def test_tff_builds_against_the_tf_wheel_and_both_import(project: dict[str, Path], tmp_path: Path) -> None:
    result = run(project, "build-tff", "--profile", "example", "--source", str(project["tff"]))
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(w.name.split("-")[0] for w in project["dist"].glob("*.whl"))
    assert names == ["tensorflow", "tensorflow_federated"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheels = [str(w) for w in project["dist"].glob("*.whl")]
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--quiet", *wheels],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    check = subprocess.run(
        [str(python), "-c", "import tensorflow_federated as tff; print(tff.tensorflow_version, tff.federated_sum([1.5, 2.5, 3]))"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["0.1.0", "7.0"]
    # A rebuild with the same TF wheel in dist/ takes up the last plan, required wheels included.
    again = run(project, "build-tff", "--profile", "example", "--source", str(project["tff"]), "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert summary["saved_plan"] is True and summary["early_start"] is True
    assert summary["actions_executed"] == 0


def test_tff_can_take_the_tf_wheel_from_a_folder_in_its_tree(project: dict[str, Path]) -> None:
    # TFF at HEAD reads local wheels from its own dist/ (local_wheel_dist_folder = "dist"):
    # requires.tree_folder puts the TF wheel there as well, and a rerun replaces only its own.
    profile = project["base"] / "tff-tree-folder.yaml"
    profile.write_text("extends: tff/example\nrequires:\n  tree_folder: dist\n")
    mine = project["tff"] / "dist" / "users-own.txt"
    mine.parent.mkdir(exist_ok=True)
    mine.write_text("not a wheel of ours")
    result = run(project, "build-tff", "--profile", str(profile), "--source", str(project["tff"]))
    assert result.returncode == 0, result.stderr[-3000:]
    staged = sorted(p.name for p in (project["tff"] / "dist").iterdir())
    tf_wheels = sorted(p.name for p in project["dist"].glob("tensorflow-*.whl"))
    assert staged == sorted([*tf_wheels, "users-own.txt"])
    record = json.loads((project["tff"] / ".tfwheels" / "staged-wheels.json").read_text())
    assert record == {"folder": "dist", "wheels": tf_wheels}


def test_tff_without_tf_wheel_says_what_to_do(project: dict[str, Path], tmp_path: Path) -> None:
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist")}
    result = invoke("build-tff", "--profile", "example", "--source", str(project["tff"]), env=env)
    assert result.returncode == 2
    assert "satisfies tensorflow==0.1.0; run invoke build-tf first" in result.stderr


# --- TF >= 2.17's way: the `wheel` rule writes the wheel into a directory output ------------------


def test_wheel_rule_outputs_reach_dist_and_the_wheelhouse(
    fixed_example: FixedProject, bazel_trees: list[Path], tmp_path: Path
) -> None:
    """`package.kind: outputs` on a tree artifact (ctx.actions.declare_directory("wheel_house")):
    the wheel is found from the BEP as Bazel 4.2.3 writes it, lands in dist/ with a manifest entry,
    and stays in build/wheelhouse/<key> for `invoke collect`."""
    import shutil
    assert fixed_example.result.returncode == 0, fixed_example.result.stderr[-3000:]
    profile = fixed_example.root / "configs" / "tf" / "example-wheel-rule.yaml"
    tree = copy_example("tf-mini", tmp_path / "tf-wheel")
    bazel_trees.append(tree)
    build, dist = tmp_path / "build", tmp_path / "dist"
    env = {"TFWHEELS_PROJECT": str(fixed_example.root), "TFWHEELS_BUILD": str(build),
           "TFWHEELS_DIST": str(dist)}
    result = invoke("build-tf", "--profile", str(profile), "--source", str(tree), "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    directory = "tensorflow/tools/pip_package/wheel_house"

    # How Bazel 4.2.3 reports the directory output: its files expanded in the namedSet, and
    # the directory itself in completed.directoryOutput (name and pathPrefix, no uri).
    bep = build / "bep" / "tf-example-wheel-rule" / "build_events.json"
    events = [json.loads(line) for line in bep.read_text().splitlines() if line.strip()]
    [completed] = [e["completed"] for e in events if "targetCompleted" in e["id"]]
    assert [d["name"] for d in completed["directoryOutput"]] == [directory]
    assert "uri" not in completed["directoryOutput"][0]
    sets = [e["namedSetOfFiles"] for e in events if "namedSet" in e["id"]]
    named = [f for s in sets for f in s.get("files", [])]
    [listed] = named
    assert listed["name"].startswith(directory + "/") and listed["name"].endswith(".whl")
    assert listed["uri"].startswith("file://")

    wheels = sorted(dist.glob("*.whl"))
    assert [w.name for w in wheels] == [listed["name"].rsplit("/", 1)[1]]
    name, version, python_tag, abi_tag, platform_tag = wheels[0].name[: -len(".whl")].split("-")
    assert (name, version) == ("tensorflow", "0.1.0")
    assert python_tag == abi_tag == f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert platform_tag.startswith(("linux_", "macosx_"))
    manifest = json.loads((dist / "manifest.json").read_text())
    [entry] = manifest["wheels"]
    assert entry["wheel"] == wheels[0].name and entry["profile"] == "example-wheel-rule"
    assert entry["sha256"] == hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    assert entry["verified"] is True and entry["smoke"]["status"] == "passed", entry
    # The same wheel waits in the wheelhouse, a plain writable file like the other steps leave.
    wheelhouse = build / "wheelhouse" / "tf-example-wheel-rule"
    [kept] = sorted(wheelhouse.glob("*.whl"))
    assert kept.read_bytes() == wheels[0].read_bytes() and kept.stat().st_mode & 0o200
    assert not list(dist.glob(".*"))

    # `invoke collect` finds it there, with nothing else to go on.
    shutil.rmtree(dist)
    collected = invoke("collect", "--profile", str(profile), env=env)
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert f"collected: {wheels[0].name}" in collected.stdout
    assert [w.name for w in dist.glob("*.whl")] == [wheels[0].name]

    # A no-op rebuild finds the same wheel through the BEP again and leaves dist/ as it is.
    again = invoke("build-tf", "--profile", str(profile), "--source", str(tree), "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["actions_executed"] == 0
    assert [w.name for w in wheelhouse.glob("*.whl")] == [wheels[0].name]
