"""The real TF and TFF profiles: what they pin, the --configs they may use, and their dry-run plans.

The expected values come from /work/shared/research/tf-build-facts.md and the tag evidence in
each profile's header; a change to a profile that drifts from them fails here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, invoke

from tfwheels.errors import ProfileError
from tfwheels.layout import Layout
from tfwheels.patches import load_series, touched_files
from tfwheels.plan import BuildOptions, Plan, make_plan
from tfwheels.profiles import Profile, list_profiles, load_profile
from tfwheels.source import default_tree

CONFIGS = ROOT / "configs"
FACTS = yaml.safe_load((CONFIGS / "facts" / "tf_bazelrc_configs.yaml").read_text())

PIP = "//tensorflow/tools/pip_package:build_pip_package"
WHEEL = "//tensorflow/tools/pip_package:wheel"
# line: (version, tag commit, Bazel, target)
TF_LINES = {
    "2.14": ("2.14.0", "4dacf3f368eb7965e9b5c3bbdd5193986081c3b2", "6.1.0", PIP),
    "2.15": ("2.15.0", "6887368d6d46223f460358323c4b76d61d1558a8", "6.1.0", PIP),
    "2.16": ("2.16.2", "810f233968cec850915324948bbbc338c97cf57f", "6.5.0", PIP),
    "2.17": ("2.17.0", "ad6d8cc177d0c868982e39e0823d0efbfb95f04c", "6.5.0", WHEEL),
    "2.18": ("2.18.0", "6550e4bd80223cdb8be6c3afd1f81e86a4d433c3", "6.5.0", WHEEL),
    "2.19": ("2.19.0", "e36baa302922ea3c7131b302c2996bd2051ee5c4", "6.5.0", WHEEL),
    "2.20": ("2.20.0", "72fbba3d20f4616d7312b5e2b7f79daf6e82f2fa", "7.4.1", WHEEL),
}
TF_PROFILES = [f"{line}-darwin_arm64" for line in TF_LINES] + [
    f"{line}-{plat}" for line in ("2.14", "2.18", "2.19", "2.20") for plat in ("linux_x86_64", "linux_aarch64")
]
TFF_TAGS = {"0.87": "cca8ab5975da96722eeb3b7b9425b0c66987f30d", "0.89": "e245ed4a57db0e36e4ddc9cb0259f6aa3ec12048"}
TFF_PROFILES = [f"{v}-{p}" for v in TFF_TAGS for p in ("darwin_arm64", "linux_x86_64", "linux_aarch64")]
# TFF's untagged HEAD, pinned by commit (tests/test_tff_head.py pins what they hold).
TFF_HEAD_PROFILES = [f"head-{p}" for p in ("darwin_arm64", "linux_x86_64", "linux_aarch64")]
PROJECT = {"tensorflow": "tf", "tensorflow_federated": "tff"}


def tf(name: str) -> Profile:
    return load_profile(name, "tensorflow", CONFIGS, ROOT)


def tff(name: str) -> Profile:
    return load_profile(name, "tensorflow_federated", CONFIGS, ROOT)


def real_profiles() -> list[Profile]:
    return [
        load_profile(str(found.path), found.project, CONFIGS, ROOT)
        for found in list_profiles(CONFIGS)
        if not found.name.startswith("example")  # the bundled miniature workspaces
    ]


# --- what the profiles pin ----------------------------------------------------------------------


def test_every_real_profile_is_listed_and_loads() -> None:
    names = {(p.project, p.name) for p in real_profiles()}
    tff = TFF_PROFILES + TFF_HEAD_PROFILES
    assert names == {("tensorflow", n) for n in TF_PROFILES} | {("tensorflow_federated", n) for n in tff}


def test_invoke_profiles_json_lists_them_with_their_facts() -> None:
    result = invoke("profiles", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["project"], r["name"]): r for r in json.loads(result.stdout)}
    row = rows[("tensorflow", "2.20-darwin_arm64")]
    assert (row["version"], row["platform"], row["bazel_version"]) == ("2.20.0", "darwin_arm64", "7.4.1")
    assert rows[("tensorflow_federated", "0.87-linux_aarch64")]["bazel_version"] == "6.5.0"
    expected = len(TF_PROFILES) + len(TFF_PROFILES) + len(TFF_HEAD_PROFILES)
    assert len([k for k in rows if not k[1].startswith("example")]) == expected


@pytest.mark.parametrize("name", TF_PROFILES)
def test_tf_profile_pins(name: str) -> None:
    line, platform = name.split("-", 1)
    version, commit, bazel, target = TF_LINES[line]
    profile = tf(name)
    assert (profile.version, profile.platform, profile.bazel.version) == (version, platform, bazel)
    assert profile.source.git is not None
    assert profile.source.git.url == "https://github.com/tensorflow/tensorflow.git"
    assert (profile.source.git.ref, profile.source.git.commit) == (f"v{version}", commit)
    assert profile.bazel.targets == (target,)
    assert (profile.python.version, profile.python.hermetic) == ("3.11", True)
    answers = profile.configure
    assert (answers.TF_NEED_CUDA, answers.TF_NEED_ROCM, answers.TF_ENABLE_XLA) == (False, False, True)
    assert (answers.TF_CONFIGURE_IOS, answers.TF_SET_ANDROID_WORKSPACE) == (False, False)
    assert answers.PYTHON_BIN_PATH is None and answers.PYTHON_LIB_PATH is None  # from the interpreter
    if target == PIP:
        assert profile.package.kind == "script"
        assert profile.package.script == "bazel-bin/tensorflow/tools/pip_package/build_pip_package"
        assert profile.package.args == ("%output%",)
        assert "WHEEL_NAME" not in profile.bazel.repo_env
    else:
        assert (profile.package.kind, profile.package.directory) == ("outputs", "tensorflow/tools/pip_package/wheel_house")
        assert profile.bazel.repo_env == {"WHEEL_NAME": "tensorflow"}
    if platform == "darwin_arm64":
        expected = ("macos_arm64", "opt") if line == "2.14" else ("release_macos_arm64", "opt")
        assert profile.bazel.configs == expected
        assert "--macos_minimum_os=12.0" in profile.bazel.build_flags
        assert profile.bazel.action_env == {"MACOSX_DEPLOYMENT_TARGET": "12.0"}
        assert answers.CC_OPT_FLAGS == ("-mcpu=apple-m1",)
        assert profile.default_platform_tag() == "macosx_12_0_arm64"
    else:
        assert profile.bazel.configs == ("opt",)
        assert answers.TF_NEED_CLANG is True
        assert profile.default_platform_tag() == platform


@pytest.mark.parametrize("name", TFF_PROFILES)
def test_tff_profile_pins(name: str) -> None:
    version, platform = name.split("-", 1)
    profile = tff(name)
    assert profile.source.git is not None
    assert (profile.source.git.ref, profile.source.git.commit) == (f"v{version}.0", TFF_TAGS[version])
    assert profile.source.git.url == "https://github.com/google-parfait/tensorflow-federated.git"
    assert (profile.platform, profile.bazel.version) == (platform, "6.5.0")
    assert profile.bazel.targets == ("//tools/python_package:build_python_package",)
    assert profile.package.kind == "run" and profile.package.target == "//tools/python_package:build_python_package"
    assert profile.package.args == ("--output_dir=%output%", "--plat_name=%platform_tag%")
    assert (profile.python.version, profile.python.hermetic) == ("3.11", False)
    assert profile.requires.wheels == ("tensorflow==2.14.*",)
    assert profile.rc_files == (".bazelrc.user",)
    assert [p.name for p in load_series(profile, ROOT / "patches")] == [
        "tff/0.87/0001-build-python-package-any-platform.patch",
        "tff/0.87/0002-pyproject-no-hardcoded-plat-name.patch",
        "tff/0.87/0003-bazelrc-haswell-opt-in-macos-cxx17.patch",
    ]
    assert profile.bazel.configs == (("haswell",) if platform == "linux_x86_64" else ())


def test_tff_patches_carry_a_header_and_touch_only_the_linux_only_files() -> None:
    touched = {}
    for patch in sorted((ROOT / "patches" / "tff" / "0.87").glob("*.patch")):
        text = patch.read_text()
        header = text.split("diff --git", 1)[0]
        for part in ("What:", "Why:", "Upstream:", "Checked:"):
            assert part in header, f"{patch.name} header lacks {part}"
        touched[patch.name[:4]] = touched_files(text)
    assert touched == {
        "0001": ["tools/python_package/build_python_package.sh"],
        "0002": ["pyproject.toml"],
        "0003": [".bazelrc"],
    }


def test_march_native_is_refused_for_darwin_arm64(tmp_path: Path) -> None:
    folder = tmp_path / "configs" / "tf"
    shutil.copytree(CONFIGS / "tf", folder)
    (folder / "native.yaml").write_text("extends: 2.18-darwin_arm64\nconfigure:\n  CC_OPT_FLAGS: [-march=native]\n")
    with pytest.raises(ProfileError) as info:
        load_profile("native", "tensorflow", tmp_path / "configs", tmp_path)
    assert "Apple clang rejects -march=native" in str(info.value) and "-mcpu=apple-m1" in str(info.value)
    (folder / "copt.yaml").write_text("extends: 2.18-darwin_arm64\nbazel:\n  build_flags: [--copt=-march=native]\n")
    with pytest.raises(ProfileError, match="build_flags: '--copt=-march=native'"):
        load_profile("copt", "tensorflow", tmp_path / "configs", tmp_path)
    # The same flag is fine where the compiler supports it.
    (folder / "linux.yaml").write_text("extends: 2.18-linux_x86_64\nconfigure:\n  CC_OPT_FLAGS: [-march=native]\n")
    assert load_profile("linux", "tensorflow", tmp_path / "configs", tmp_path).configure.CC_OPT_FLAGS == ("-march=native",)


# --- the --configs each release line defines ----------------------------------------------------


def undefined_configs(profile: Profile, facts: dict[str, Any]) -> list[str]:
    """The profile's --config names that neither its line's .bazelrc nor a rendered file defines."""
    line = ".".join(profile.version.split(".")[:2])
    defined = set(facts.get(profile.project, {}).get(line, {}))
    rendered_files = {item.dest for item in profile.render}
    defined |= {name for name, item in facts["rendered"].items() if item["file"] in rendered_files}
    return [name for name in profile.bazel.configs if name not in defined]


def test_facts_entries_say_how_they_are_known() -> None:
    for project in ("tensorflow", "tensorflow_federated"):
        for line, configs in FACTS[project].items():
            for name, item in configs.items():
                assert item["status"] in ("verified", "inferred"), (project, line, name)
                assert len(item["evidence"]) > 20, (project, line, name)
    assert set(FACTS["tensorflow"]) >= set(TF_LINES)


@pytest.mark.parametrize("profile", real_profiles(), ids=lambda p: f"{p.project_dir}-{p.name}")
def test_every_config_a_profile_uses_is_defined_by_its_line(profile: Profile) -> None:
    assert undefined_configs(profile, FACTS) == []


def test_the_config_check_catches_a_config_the_line_lacks() -> None:
    profile = tf("2.14-darwin_arm64")
    wrong = profile.model_copy(update={"bazel": profile.bazel.model_copy(update={"configs": ("release_macos_arm64", "opt")})})
    assert undefined_configs(wrong, FACTS) == ["release_macos_arm64"]
    no_render = tf("2.18-darwin_arm64").model_copy(update={"render": ()})
    assert undefined_configs(no_render, FACTS) == ["opt"]


# --- dry-run plans on any host ------------------------------------------------------------------


def plan_for(profile: Profile, tmp_path: Path) -> Plan:
    layout = Layout.at(ROOT, tmp_path / "build", tmp_path / "dist")
    return make_plan(profile, layout, default_tree(profile, layout), BuildOptions(dry_run=True))


needs_python311 = pytest.mark.skipif(
    shutil.which("python3.11") is None, reason="TFF profiles build with python3.11 from PATH"
)


@pytest.mark.parametrize("name", TF_PROFILES)
def test_tf_dry_run_plan(name: str, tmp_path: Path) -> None:
    profile = tf(name)
    plan = plan_for(profile, tmp_path)
    data = plan.to_json()
    assert (data["bazel_version"], data["targets"], data["configs"]) == (
        profile.bazel.version, list(profile.bazel.targets), list(profile.bazel.configs)
    )
    build = data["bazel_commands"][0]
    assert build[1] == "build" and build[-1] == profile.bazel.targets[0]
    assert "--repo_env=HERMETIC_PYTHON_VERSION=3.11" in build and "--repo_env=TF_PYTHON_VERSION=3.11" in build
    assert set(data["rendered"]) == {".tf_configure.bazelrc", ".bazelrc.user"}
    if profile.package.kind == "script":
        assert data["commands"][1] == [
            str(plan.tree / "bazel-bin/tensorflow/tools/pip_package/build_pip_package"), str(plan.host.output)
        ]
    else:
        assert len(data["commands"]) == 1
    if profile.platform == "darwin_arm64":
        assert data["env"]["MACOSX_DEPLOYMENT_TARGET"] == "12.0"
        assert data["wheel"]["platform_tag"] == "macosx_12_0_arm64"


@needs_python311
@pytest.mark.parametrize("name", TFF_PROFILES)
def test_tff_dry_run_plan(name: str, tmp_path: Path) -> None:
    plan = plan_for(tff(name), tmp_path)
    data = plan.to_json()
    rc = f"--bazelrc={plan.tree / '.bazelrc.user'}"
    build, run = data["commands"]
    assert build[1:3] == [rc, "build"] and build[-1] == "//tools/python_package:build_python_package"
    assert run[1:3] == [rc, "run"]
    assert run[-3:] == ["--", f"--output_dir={plan.host.output}", f"--plat_name={plan.host.platform_tag}"]
    assert len(data["patches"]) == 3
    # No TF 2.14 wheel in an empty dist/: a warning in a dry run, not an error.
    assert any("tensorflow==2.14.*" in w for w in data["warnings"])


def test_rendered_files_for_2_16_darwin_are_what_configure_py_writes(tmp_path: Path) -> None:
    """The .tf_configure.bazelrc lines of tf-build-facts §1.3 (macOS, CPU only, Android/iOS off),
    with CC_OPT_FLAGS=-mcpu=apple-m1 and TF_ENABLE_XLA=1."""
    plan = plan_for(tf("2.16-darwin_arm64"), tmp_path)
    python, lib = plan.host.python_bin, plan.host.python_lib
    mac = "-benchmark-test,-no_oss,-oss_excluded,-gpu,-nomac,-no_mac,-mac_excluded"
    configure = [line for line in plan.rendered[".tf_configure.bazelrc"].splitlines() if not line.startswith("#")]
    assert configure == [
        f'build --action_env PYTHON_BIN_PATH="{python}"',
        f'build --action_env PYTHON_LIB_PATH="{lib}"',
        f'build --python_path="{python}"',
        "build --define=with_xla_support=true",
        "build:opt --copt=-mcpu=apple-m1",
        "build:opt --host_copt=-mcpu=apple-m1",
        "test --test_size_filters=small,medium",
        f"test:v1 --test_tag_filters={mac},-oss_serial",
        f"test:v1 --build_tag_filters={mac}",
        f"test:v2 --test_tag_filters={mac},-oss_serial,-v1only",
        f"test:v2 --build_tag_filters={mac},-v1only",
    ]
    user = [line for line in plan.rendered[".bazelrc.user"].splitlines() if not line.startswith("#")]
    assert user == [
        "build --config=release_macos_arm64",
        "build --config=opt",
        "build --macos_minimum_os=12.0",
        "build --action_env=MACOSX_DEPLOYMENT_TARGET=12.0",
    ]


def test_invoke_build_tf_dry_run_json_on_this_host(tmp_path: Path) -> None:
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist")}
    result = invoke("build-tf", "--profile", "2.17-darwin_arm64", "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["bazel_version"], data["targets"]) == ("6.5.0", [WHEEL])
    assert "build --repo_env=WHEEL_NAME=tensorflow" in data["rendered"][".bazelrc.user"]
    assert not (tmp_path / "build" / "src").exists()  # a dry run touches nothing


def test_dry_run_without_the_pinned_bazel_says_the_plan_only_assumes_one(tmp_path: Path) -> None:
    # PATH holds no Bazel at all: the plan still stands, but claims no Bazel it did not find.
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist"),
           "PATH": str(Path(sys.executable).parent)}
    result = invoke("build-tf", "--profile", "2.17-darwin_arm64", "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["bazel_found_version"] is None
    assert data["bazel"].startswith("bazelisk, not found on this host")
    assert data["bazel_commands"][0][0] == "bazelisk"
    assert any("neither bazelisk nor bazel is on PATH" in w for w in data["warnings"])


def test_a_missing_requirements_lock_stops_a_dry_run_with_one_line(tmp_path: Path) -> None:
    tree = tmp_path / "tensorflow"
    (tree / "tensorflow" / "tools" / "pip_package").mkdir(parents=True)
    (tree / "WORKSPACE").write_text('workspace(name = "org_tensorflow")\n')
    (tree / ".bazelversion").write_text("6.5.0\n")
    (tree / "tensorflow" / "BUILD").write_text("")
    (tree / "requirements_lock_3_12.txt").write_text("")  # a lock, but not 2.18's Python 3.11
    before = sorted(p.relative_to(tree) for p in tree.rglob("*"))
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist")}
    result = invoke("build-tf", "--profile", "2.18-darwin_arm64", "--source", str(tree), "--dry-run", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: requirements_lock_3_11.txt is missing in {tree}")
    assert "python.version" in lines[0] and "Traceback" not in result.stderr
    assert sorted(p.relative_to(tree) for p in tree.rglob("*")) == before  # nothing rendered


TF_214_WHEELS = (
    "tensorflow-2.14.1-cp311-cp311-linux_x86_64.whl",
    "tensorflow-2.14.1-cp311-cp311-macosx_12_0_arm64.whl",
    "tensorflow-2.14.1-cp312-cp312-manylinux_2_17_aarch64.whl",
    "tensorflow-2.14.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    "tensorflow-2.15.0-cp311-cp311-linux_aarch64.whl",
)


def _find(name: str, dist: Path, wheels: tuple[str, ...] = TF_214_WHEELS) -> tuple[list[str], list[str]]:
    from tfwheels.plan import _find_required

    dist.mkdir(exist_ok=True)
    for wheel in wheels:
        (dist / wheel).write_bytes(b"")
    found, missing = _find_required(tff(name), Layout.at(ROOT, dist.parent / "build", dist))
    return [p.name for p in found], missing


def test_tff_takes_the_tf_wheel_for_its_platform_and_python(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    assert _find("0.87-darwin_arm64", dist) == (["tensorflow-2.14.1-cp311-cp311-macosx_12_0_arm64.whl"], [])
    assert _find("0.87-linux_x86_64", dist) == (["tensorflow-2.14.1-cp311-cp311-linux_x86_64.whl"], [])
    # cp312 and 2.15 do not fit 0.87 (Python 3.11, tensorflow==2.14.*): the cp311 2.14.0 does
    assert _find("0.87-linux_aarch64", dist) == (
        ["tensorflow-2.14.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"], []
    )


def test_tff_required_wheel_accepts_py3_abi3_universal2_and_says_what_misfits(tmp_path: Path) -> None:
    assert _find("0.87-darwin_arm64", tmp_path / "a", (
        "tensorflow-2.14.1-cp39-abi3-macosx_11_0_universal2.whl",
        "tensorflow-2.14.1-cp312-abi3-macosx_12_0_arm64.whl",  # abi3 from 3.12 on: not for 3.11
    ))[0] == ["tensorflow-2.14.1-cp39-abi3-macosx_11_0_universal2.whl"]
    assert _find("0.87-linux_x86_64", tmp_path / "b", ("tensorflow-2.14.1-py3-none-any.whl",))[0] == [
        "tensorflow-2.14.1-py3-none-any.whl"
    ]
    found, missing = _find("0.87-darwin_arm64", tmp_path / "c", (
        "tensorflow-2.14.1-cp311-cp311-linux_x86_64.whl",
        "tensorflow-2.14.1-cp312-cp312-macosx_12_0_arm64.whl",
    ))
    assert found == []
    assert missing == [
        "tensorflow==2.14.* for cp311 on darwin_arm64 (not for them: "
        "tensorflow-2.14.1-cp311-cp311-linux_x86_64.whl, tensorflow-2.14.1-cp312-cp312-macosx_12_0_arm64.whl)"
    ]


def test_tff_dry_run_plan_names_the_tf_wheel_of_its_platform(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    for wheel in TF_214_WHEELS[:2]:
        (dist / wheel).write_bytes(b"")
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(dist)}
    # the macOS wheel sorts last; a Linux plan must still take the Linux one
    result = invoke("build-tff", "--profile", "0.87-linux_x86_64", "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requires"] == [str(dist / TF_214_WHEELS[0])]
