"""The TFF HEAD profiles (configs/tff/head-*.yaml): TFF's untagged HEAD pinned by commit alone.

Expected values were read from google-parfait/tensorflow-federated at HEAD 63f73da (its
.bazelversion, pyproject.toml, WORKSPACE, .bazelrc and tools/python_package/); see
configs/tff/_base-head.yaml. No network and no mirror is needed: the patches are checked by their
pinned sha256 and their headers, not applied.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, invoke

from tfwheels.errors import ProfileError
from tfwheels.layout import Layout
from tfwheels.patches import load_series, touched_files
from tfwheels.plan import BuildOptions, Plan, make_plan
from tfwheels.atomic import file_sha256
from tfwheels.profiles import Profile, load_profile
from tfwheels.source import default_tree, pinned_by_commit

CONFIGS = ROOT / "configs"
HEAD = "63f73da486b2a98e1de1538b4d22834eaaea19ab"
VERSION = "0.89.1.dev20260821"
PLATFORMS = ("darwin_arm64", "linux_x86_64", "linux_aarch64")
TARGET = "//tools/python_package:build_python_package"
TOOLCHAIN = "--extra_toolchains=@rules_ml_toolchain//cc:{}_{}"
SERIES = {
    "tff/head/0001-build-python-package-any-platform.patch": ["tools/python_package/build_python_package.sh"],
    "tff/head/0002-pyproject-no-hardcoded-plat-name.patch": ["pyproject.toml"],
    "tff/head/0003-bazelrc-haswell-opt-in-macos-cxx17.patch": [".bazelrc"],
    "tff/head/0004-workspace-linux-toolchains-per-build.patch": ["WORKSPACE"],
    "tff/head/0005-version-head-dev.patch": ["tensorflow_federated/version.py"],
}


def head(platform: str, configs: Path = CONFIGS, root: Path = ROOT) -> Profile:
    return load_profile(f"head-{platform}", "tensorflow_federated", configs, root)


def plan_for(profile: Profile, tmp_path: Path) -> Plan:
    layout = Layout.at(ROOT, tmp_path / "build", tmp_path / "dist")
    return make_plan(profile, layout, default_tree(profile, layout), BuildOptions(dry_run=True))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_head_profile_pins(platform: str) -> None:
    profile = head(platform)
    git = profile.source.git
    assert git is not None
    assert git.url == "https://github.com/google-parfait/tensorflow-federated.git"
    assert (git.ref, git.commit) == (HEAD, HEAD)
    assert pinned_by_commit(git)  # invoke fetch fetches exactly this sha, no tag
    assert (profile.project, profile.version, profile.platform) == ("tensorflow_federated", VERSION, platform)
    assert profile.bazel.version == "7.7.0"
    assert (profile.python.version, profile.python.hermetic, profile.python.interpreter) == ("3.12", True, "python3.12")
    assert profile.requires.wheels == ("tensorflow==2.21.*",)
    assert profile.bazel.targets == (TARGET,)
    assert (profile.package.kind, profile.package.target) == ("run", TARGET)
    assert profile.package.args == ("--output_dir=%output%", "--plat_name=%platform_tag%")
    assert profile.rc_files == (".bazelrc.user",)
    assert [p.name for p in load_series(profile, ROOT / "patches")] == list(SERIES)
    if platform == "darwin_arm64":
        assert profile.bazel.configs == ()
        assert profile.bazel.build_flags == ("--copt=-mcpu=apple-m1", "--macos_minimum_os=12.0")
        assert profile.default_platform_tag() == "macosx_12_0_arm64"
    else:
        arch = platform.removeprefix("linux_")
        assert profile.bazel.configs == (("haswell",) if arch == "x86_64" else ())
        assert profile.bazel.build_flags == (TOOLCHAIN.format(platform, platform),)
        assert profile.default_platform_tag() == platform


@pytest.mark.parametrize("platform", PLATFORMS)
def test_head_dry_run_plan(platform: str, tmp_path: Path) -> None:
    plan = plan_for(head(platform), tmp_path)
    data = plan.to_json()
    rc = f"--bazelrc={plan.tree / '.bazelrc.user'}"
    build, run = data["commands"]
    assert build[1:3] == [rc, "build"] and build[-1] == TARGET
    assert run[1:3] == [rc, "run"]
    assert run[-4:] == [TARGET, "--", f"--output_dir={plan.host.output}", f"--plat_name={plan.host.platform_tag}"]
    for command in (build, run):
        assert "--repo_env=HERMETIC_PYTHON_VERSION=3.12" in command and "--repo_env=TF_PYTHON_VERSION=3.12" in command
    assert (data["version"], data["bazel_version"], data["targets"]) == (VERSION, "7.7.0", [TARGET])
    assert [p["file"] for p in data["patches"]] == list(SERIES)
    assert set(data["rendered"]) == {".bazelrc.user"}
    lines = [line for line in data["rendered"][".bazelrc.user"].splitlines() if not line.startswith("#")]
    if platform == "darwin_arm64":
        assert lines == [
            "build --copt=-mcpu=apple-m1",
            "build --macos_minimum_os=12.0",
            "build --action_env=MACOSX_DEPLOYMENT_TARGET=12.0",
        ]
        assert data["env"]["MACOSX_DEPLOYMENT_TARGET"] == "12.0"
        assert data["wheel"]["platform_tag"] == "macosx_12_0_arm64"
    else:
        configs = ["build --config=haswell"] if platform == "linux_x86_64" else []
        assert lines == [*configs, f"build {TOOLCHAIN.format(platform, platform)}"]
        assert data["wheel"]["platform_tag"] == platform
    # configs/tf/ has no TF 2.21 profile, so an empty dist/ lacks the wheel: a warning, not an error.
    assert any("tensorflow==2.21.*" in w for w in data["warnings"])
    assert data["requires"] == []


def test_invoke_build_tff_head_dry_run_json_on_this_host(tmp_path: Path) -> None:
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist")}
    result = invoke("build-tff", "--profile", "head-darwin_arm64", "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["profile"], data["version"], data["bazel_version"]) == ("head-darwin_arm64", VERSION, "7.7.0")
    assert data["commands"][1][-1] == "--plat_name=macosx_12_0_arm64"
    assert any("tensorflow==2.21.*" in w for w in data["warnings"])
    assert not (tmp_path / "build" / "src").exists()  # a dry run touches nothing


def test_head_patches_match_their_pins_and_carry_a_header() -> None:
    profile = head("darwin_arm64")
    pinned = {entry.file: entry.sha256 for entry in profile.patches}
    assert list(pinned) == list(SERIES)
    on_disk = sorted(p.relative_to(ROOT / "patches").as_posix() for p in (ROOT / "patches" / "tff" / "head").glob("*"))
    assert on_disk == sorted(SERIES)  # no stray file beside the series
    for name, files in SERIES.items():
        path = ROOT / "patches" / name
        assert file_sha256(path) == pinned[name], f"{name}: sha256 differs from configs/tff/_base-head.yaml"
        text = path.read_text()
        header = text.split("diff --git", 1)[0]
        for part in ("What:", "Why:", "Upstream:", "Checked:"):
            assert part in header, f"{name} header lacks {part}"
        assert f"HEAD {HEAD}" in header.split("Checked:", 1)[1], f"{name}: Checked: names no HEAD commit"
        assert touched_files(text) == files


def test_the_head_facts_entry_guards_python_and_tensorflow(tmp_path: Path) -> None:
    shutil.copytree(CONFIGS, tmp_path / "configs")
    profile = tmp_path / "configs" / "tff" / "head-linux_x86_64.yaml"
    original = profile.read_text()
    profile.write_text(original + 'python:\n  version: "3.11"\n')
    with pytest.raises(ProfileError, match=r"TensorFlow Federated 0\.89\.1\.dev20260821 requires Python <4,>=3\.12"):
        head("linux_x86_64", tmp_path / "configs", tmp_path)
    profile.write_text(original + 'requires:\n  wheels: ["tensorflow==2.20.*"]\n')
    with pytest.raises(ProfileError, match=r"admits tensorflow 2\.20\.0"):
        head("linux_x86_64", tmp_path / "configs", tmp_path)
