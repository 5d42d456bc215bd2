"""Profiles: the bundled ones load, and every kind of bad profile gets one precise line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, invoke
from tfwheels.errors import ProfileError
from tfwheels.profiles import host_platform, list_profiles, load_profile, profile_schema

CONFIGS = ROOT / "configs"

GOOD = """\
project: tensorflow
version: "2.16.1"
platform: darwin_arm64
source:
  git:
    url: https://github.com/tensorflow/tensorflow.git
    ref: v2.16.1
    commit: 5bc9d26649cca274750ad3625bd93422617eed4b
bazel:
  version: "6.5.0"
  configs: [release_macos_arm64]
  targets: ["//tensorflow/tools/pip_package:build_pip_package"]
package:
  kind: script
  script: bazel-bin/tensorflow/tools/pip_package/build_pip_package
  args: ["%output%"]
wheel:
  distribution: tensorflow
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / "tf" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(folder: Path, name: str, text: str) -> str:
    write(folder, name, text)
    with pytest.raises(ProfileError) as info:
        load_profile(name, "tensorflow", folder, folder)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_bundled_example_profiles_load() -> None:
    tf = load_profile("example", "tensorflow", CONFIGS, ROOT)
    tff = load_profile("example", "tensorflow_federated", CONFIGS, ROOT)
    assert tf.project == "tensorflow" and tff.project == "tensorflow_federated"
    assert tf.platform == host_platform()
    # extends: shared/debian-bazel supplies the Bazel version and the offline overrides
    assert tf.bazel.version == "4.2.3" and tf.bazel.allow_unversioned
    assert any("rules_cc_shim" in flag for flag in tff.bazel.build_flags)
    assert tf.bazel.defines == {"TF_VERSION": "%version%"}
    assert tff.requires.wheels == ("tensorflow==0.1.0",)


def test_every_profile_under_configs_loads() -> None:
    found = list_profiles(CONFIGS)
    assert {(p.project, p.name) for p in found} >= {
        ("tensorflow", "example"),
        ("tensorflow_federated", "example"),
    }
    for item in found:
        assert load_profile(str(item.path), item.project, CONFIGS, ROOT).name == item.name


def test_good_profile_loads(tmp_path: Path) -> None:
    write(tmp_path, "good", GOOD)
    profile = load_profile("good", "tensorflow", tmp_path, tmp_path)
    assert profile.bazel.configs == ("release_macos_arm64",)
    assert profile.default_platform_tag() == "macosx_12_0_arm64"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('  version: "6.5.0"', '  version: "6.x"', "tf/bad.yaml:10 bazel.version: '6.x' is not a version; write a Bazel release such as 6.5.0"),
        ("platform: darwin_arm64", "platform: darwin_arm65", "tf/bad.yaml:3 platform: 'darwin_arm65' is not allowed"),
        ("wheel:\n", "wheels:\n", "tf/bad.yaml:17 wheels: is not a known field; did you mean 'wheel'?"),
        ('  targets: ["//tensorflow/tools/pip_package:build_pip_package"]', "  targets: [tensorflow]", "tf/bad.yaml:12 bazel.targets.0: 'tensorflow' is not a Bazel target label"),
        ("  configs: [release_macos_arm64]", "  configs: [--config=x]", "tf/bad.yaml:11 bazel.configs.0: '--config=x' is not a --config name"),
        ('  args: ["%output%"]', '  args: ["%ouput%"]', "tf/bad.yaml:16 package.args.0: unknown placeholder %ouput%; did you mean %output%?"),
        ("    commit: 5bc9d26649cca274750ad3625bd93422617eed4b", "    commit: 5bc9d26", "tf/bad.yaml:8 source.git.commit: is not a full commit sha"),
        ("  distribution: tensorflow", '  distribution: "-rf"', "tf/bad.yaml:18 wheel.distribution: '-rf' starts with '-' where a value is expected"),
        ("  distribution: tensorflow", '  distribution: "tf\\nbuild --x"', "tf/bad.yaml:18 wheel.distribution: contains a newline or NUL"),
    ],
)
def test_bad_field_gets_file_line_field_and_fix(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    message = error_of(tmp_path, "bad", GOOD.replace(old, new))
    assert message.startswith(expected), message


def test_missing_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, "bad", GOOD.replace("wheel:\n  distribution: tensorflow\n", ""))
    assert message.endswith("wheel: is required; add it")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("project: tensorflow\nproject: tensorflow\n", ":2 project: duplicate key; keep one of them"),
        ("a: !!python/object/apply:os.system [echo hi]\n", ":1 tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
        ("project: [unclosed\n", ":2 YAML syntax error"),
        ("project:\n\tversion: 1\n", "indent with spaces, not tabs"),
        ("", ":1 is empty"),
        ("- a\n- b\n", ":1 top level must be a mapping"),
        ("just a string\n", ":1 top level must be a mapping"),
    ],
)
def test_broken_yaml(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, "broken", text)


def test_non_utf8_and_nul(tmp_path: Path) -> None:
    path = write(tmp_path, "bin", "")
    path.write_bytes(b"project: tensorflow\nversion: \xff\n")
    with pytest.raises(ProfileError, match=r"bin.yaml:2 is not valid UTF-8"):
        load_profile("bin", "tensorflow", tmp_path, tmp_path)
    path.write_bytes(b"project: tensorflow\n\x00\n")
    with pytest.raises(ProfileError, match=r"bin.yaml:2 contains a NUL byte"):
        load_profile("bin", "tensorflow", tmp_path, tmp_path)


def test_extends_overrides_base_and_reports_child_lines(tmp_path: Path) -> None:
    write(tmp_path, "_base", GOOD)
    child = 'extends: _base\nversion: "2.16.2"\nbazel:\n  version: "6.x"\n'
    message = error_of(tmp_path, "child", child)
    assert message.startswith("tf/child.yaml:4 bazel.version: '6.x' is not a version; write a Bazel release such as 6.5.0")
    write(tmp_path, "child", 'extends: _base\nversion: "2.16.2"\n')
    profile = load_profile("child", "tensorflow", tmp_path, tmp_path)
    assert profile.version == "2.16.2" and profile.bazel.version == "6.5.0"
    assert profile.bazel.targets == ("//tensorflow/tools/pip_package:build_pip_package",)


def test_extends_missing_and_cycle(tmp_path: Path) -> None:
    assert "extends: no profile 'nowhere'" in error_of(tmp_path, "a", "extends: nowhere\n")
    write(tmp_path, "b", "extends: c\n")
    message = error_of(tmp_path, "c", "extends: b\n")
    assert "extends: cycle" in message and "remove one" in message


def test_unknown_profile_name_suggests(tmp_path: Path) -> None:
    write(tmp_path, "2.16-darwin_arm64", GOOD)
    with pytest.raises(ProfileError, match=r"did you mean '2.16-darwin_arm64'\?"):
        load_profile("2.16-darwin-arm64", "tensorflow", tmp_path, tmp_path)


def test_wrong_project_is_refused() -> None:
    with pytest.raises(ProfileError, match="use invoke build-tff"):
        load_profile(str(CONFIGS / "tff" / "example.yaml"), "tensorflow", CONFIGS, ROOT)


def test_schema_describes_profiles() -> None:
    schema = profile_schema()
    assert schema["title"] == "tfwheels build profile"
    assert {"project", "version", "platform", "bazel", "extends"} <= set(schema["properties"])
    assert "host" in schema["properties"]["platform"]["enum"]


def test_cli_bad_profile_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace('  version: "6.5.0"', '  version: "6.x"'))
    result = invoke("build-tf", "--profile", str(bad), "--dry-run")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {bad}:10 bazel.version: '6.x' is not a version; write a Bazel release such as 6.5.0"]
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_schema_writes_json(tmp_path: Path) -> None:
    target = tmp_path / "profile.schema.json"
    result = invoke("schema", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text())["title"] == "tfwheels build profile"


# --- a name resolves in the other project's folder; tasks for one project still refuse it -------


def test_a_tff_name_resolves_without_project_tff_and_tasks_say_how() -> None:
    # doctor (any_project): a TFF name needs no --project tff
    tff = load_profile("0.87-darwin_arm64", "tensorflow", CONFIGS, ROOT, any_project=True)
    assert (tff.project, tff.file) == ("tensorflow_federated", "configs/tff/0.87-darwin_arm64.yaml")
    # a task for TF refuses it, naming both ways out
    with pytest.raises(ProfileError) as info:
        load_profile("0.87-darwin_arm64", "tensorflow", CONFIGS, ROOT)
    message = str(info.value)
    assert message.startswith("configs/tff/0.87-darwin_arm64.yaml:")
    assert "use invoke build-tff, or add --project tff" in message and "\n" not in message
    # ... and vice versa
    with pytest.raises(ProfileError, match=r"use invoke build-tf, or add --project tf "):
        load_profile("2.18-darwin_arm64", "tensorflow_federated", CONFIGS, ROOT)
    # a name both projects have is the asked project's
    assert load_profile("example", "tensorflow_federated", CONFIGS, ROOT, any_project=True).project == (
        "tensorflow_federated"
    )
    assert load_profile("example", "tensorflow", CONFIGS, ROOT, any_project=True).project == "tensorflow"


def test_a_name_neither_project_has_still_suggests(tmp_path: Path) -> None:
    write(tmp_path, "2.16-darwin_arm64", GOOD)
    (tmp_path / "tff").mkdir()
    with pytest.raises(ProfileError, match=r"no tensorflow profile named 'nope'"):
        load_profile("nope", "tensorflow", tmp_path, tmp_path, any_project=True)


@pytest.mark.parametrize(
    ("task", "name", "refusal"),
    [("build-tf", "0.87-darwin_arm64", "use invoke build-tff"), ("build-tff", "2.18-darwin_arm64", "use invoke build-tf,")],
)
def test_build_tasks_refuse_the_other_projects_profile(task: str, name: str, refusal: str) -> None:
    result = invoke(task, "--profile", name, "--dry-run")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and refusal in lines[0] and "project: this is a" in lines[0], lines
    assert "Traceback" not in result.stderr


# --- configure values that would break an rc line --------------------------------------------


@pytest.mark.parametrize(
    ("answer", "field", "problem"),
    [
        ('PYTHON_BIN_PATH: \'/opt/my "py"/bin/python3\'', "configure.PYTHON_BIN_PATH", "holds a double quote"),
        ("PYTHON_BIN_PATH: 'C:\\Python\\python.exe'", "configure.PYTHON_BIN_PATH", "holds a backslash"),
        ('PYTHON_LIB_PATH: \'/x/"site"\'', "configure.PYTHON_LIB_PATH", "holds a double quote"),
        ("CLANG_COMPILER_PATH: /opt/my llvm/bin/clang", "configure.CLANG_COMPILER_PATH", "holds whitespace"),
        ("CLANG_COMPILER_PATH: \"/opt/llvm/bin/clang\\t\"", "configure.CLANG_COMPILER_PATH", "holds whitespace"),
        ('CLANG_COMPILER_PATH: \'/opt/"llvm"/clang\'', "configure.CLANG_COMPILER_PATH", "holds a double quote"),
        ('PYTHON_BIN_PATH: "/usr/bin/python3\\0"', "configure.PYTHON_BIN_PATH", "contains a newline or NUL"),
        ('TF_SYSTEM_LIBS: [\'zlib"\']', "configure.TF_SYSTEM_LIBS.0", "holds a double quote"),
    ],
)
def test_configure_values_that_break_rc_lines_are_refused(
    tmp_path: Path, answer: str, field: str, problem: str
) -> None:
    message = error_of(tmp_path, "rc", GOOD + "configure:\n  " + answer + "\n")
    assert message.startswith(f"tf/rc.yaml:20 {field}: "), message
    assert problem in message, message
    assert "; use a path without" in message or "; remove it" in message, message  # the fix


def test_plain_configure_paths_still_load(tmp_path: Path) -> None:
    write(tmp_path, "ok", GOOD + "configure:\n  PYTHON_BIN_PATH: '/Users/me/my env/bin/python3'\n"
          "  CLANG_COMPILER_PATH: /usr/lib/llvm-17/bin/clang\n")
    profile = load_profile("ok", "tensorflow", tmp_path, tmp_path)
    assert profile.configure.PYTHON_BIN_PATH == "/Users/me/my env/bin/python3"  # quoted: spaces are fine


@pytest.mark.parametrize(
    ("addition", "expected"),
    [
        ("name: ../../../tmp/escape\n", "tf/bad.yaml:19 name: '../../../tmp/escape' is not a profile name"),
        ("name: a/b\n", "tf/bad.yaml:19 name: 'a/b' is not a profile name"),
        ("name: .hidden\n", "tf/bad.yaml:19 name: '.hidden' is not a profile name"),
        ("render:\n  - template: ../../etc/passwd\n    dest: x\n",
         "tf/bad.yaml:20 render.0.template: '../../etc/passwd' is not a file name in templates/"),
    ],
)
def test_names_that_would_leave_their_folders_are_refused(tmp_path: Path, addition: str, expected: str) -> None:
    message = error_of(tmp_path, "bad", GOOD + addition)
    assert message.startswith(expected), message


@pytest.mark.parametrize(
    "flag",
    [
        "--remote_header=x-api-key=literalsecret123",
        "--remote_cache_header=authorization=Bearer abc",
        "--bes_header=x=y",
        "--google_credentials=/home/me/key.json",
        "--credential_helper=/usr/bin/helper",
        "--remote_cache=https://user:pass@cache.example",
    ],
)
def test_credentials_in_build_flags_are_refused(tmp_path: Path, flag: str) -> None:
    text = GOOD.replace('  configs: [release_macos_arm64]', f'  configs: [release_macos_arm64]\n  build_flags: ["{flag}"]')
    message = error_of(tmp_path, "bad", text)
    assert message.startswith("tf/bad.yaml:12 bazel.build_flags.0: "), message
    assert "remote" in message and "literalsecret123" not in message and "pass@" not in message, message


def test_a_template_that_is_not_there_is_one_line_at_plan_time(tmp_path: Path) -> None:
    profile = tmp_path / "missing-template.yaml"
    profile.write_text("extends: tf/example\nrender:\n  - template: nope.j2\n    dest: x.rc\n")
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist")}
    result = invoke("build-tf", "--profile", str(profile), "--dry-run", env=env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "render.template: 'nope.j2' is not in" in lines[0], result.stderr
    assert "bazelrc.user.j2" in lines[0] and "Traceback" not in result.stderr
