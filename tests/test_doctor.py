"""invoke doctor: each check on recorded macOS and Linux answers, the JSON contract, the real host.

No Mac runs these tests, so ``RecordedProbe`` stands in for macOS itself, fed answers in
tests/data/doctor/*.json; every other part (the checks, Bazel version logic, resources, the
command and its exit code) is the real code.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, ROOT, invoke

from tfwheels.doctor import Check, doctor_command, run_checks
from tfwheels.probe import LocalProbe, RecordedProbe
from tfwheels.profiles import Profile, load_profile

RECORDED = DATA / "doctor"


def answers(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text())


def profile(name: str, project: str = "tensorflow") -> Profile:
    return load_profile(name, project, ROOT / "configs", ROOT)


def checks_of(data: dict[str, Any], prof: Profile | None = None) -> dict[str, Check]:
    found = run_checks(RecordedProbe(data), prof, Path("/Users/me/tfwheels/build"))
    return {check.name: check for check in found}


def test_a_ready_m1_mac_passes_every_check() -> None:
    found = checks_of(answers("macos-m1"), profile("2.18-darwin_arm64"))
    assert list(found) == [
        "platform", "python", "git", "rosetta", "homebrew", "xcode", "bazel", "bazel_arch",
        "disk", "memory",
    ]
    assert {c.status for c in found.values()} == {"pass"}, found
    assert found["bazel"].detail == "bazelisk at /opt/homebrew/bin/bazelisk (runs Bazel 6.5.0)"
    assert found["memory"].detail == (
        "16 GB RAM, 8 cores: builds use --jobs=8 --local_ram_resources=8192"
    )


def test_python_under_rosetta_fails_with_the_arm64_python_fix() -> None:
    data = answers("macos-m1")
    data["machine"] = "x86_64"
    data["commands"]["sysctl -n sysctl.proc_translated"]["stdout"] = "1\n"
    found = checks_of(data, profile("2.18-darwin_arm64"))
    assert found["platform"].status == "pass"  # the hardware is still an arm64 Mac
    assert found["rosetta"].status == "fail"
    assert "sysctl.proc_translated=1" in found["rosetta"].detail
    assert found["rosetta"].fix.startswith("an arm64 Python, e.g. /opt/homebrew/bin/python3")


def test_an_x86_64_only_interpreter_fails() -> None:
    data = answers("macos-m1")
    data["commands"]["lipo -archs /opt/homebrew/bin/python3.11"]["stdout"] = "x86_64\n"
    rosetta = checks_of(data)["rosetta"]
    assert (rosetta.status, rosetta.fix) == ("fail", "an arm64 Python, e.g. /opt/homebrew/bin/python3")
    assert "x86_64 only" in rosetta.detail


def test_a_universal2_interpreter_passes() -> None:
    data = answers("macos-m1")
    data["commands"]["lipo -archs /opt/homebrew/bin/python3.11"]["stdout"] = "x86_64 arm64\n"
    assert checks_of(data)["rosetta"].status == "pass"


def test_intel_homebrew_warns_and_missing_brew_warns() -> None:
    data = answers("macos-m1")
    data["commands"]["brew --prefix"]["stdout"] = "/usr/local\n"
    intel = checks_of(data)["homebrew"]
    assert intel.status == "warn" and "Intel" in intel.detail and "/opt/homebrew" in intel.fix
    del data["commands"]["brew --prefix"]
    assert checks_of(data)["homebrew"].status == "warn"


def test_xcode_checks() -> None:
    data = answers("macos-m1")
    no_tools = copy.deepcopy(data)
    no_tools["commands"]["xcode-select -p"] = {"exit": 2, "stderr": "xcode-select: error"}
    assert checks_of(no_tools)["xcode"].status == "fail"
    assert "xcode-select --install" in checks_of(no_tools)["xcode"].fix

    clt = copy.deepcopy(data)
    clt["commands"]["xcode-select -p"]["stdout"] = "/Library/Developer/CommandLineTools\n"
    clt["commands"]["xcrun --show-sdk-path"]["stdout"] = "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk\n"
    clt["exists"] = []
    # Without a profile: only the Command Line Tools is a warning ...
    assert checks_of(clt)["xcode"].status == "warn"
    # ... but TF's release_macos_base sets DEVELOPER_DIR=/Applications/Xcode.app/...: a failure.
    release = checks_of(clt, profile("2.18-darwin_arm64"))["xcode"]
    assert release.status == "fail" and "DEVELOPER_DIR" in release.detail
    # 2.14 uses macos_arm64, which does not pin DEVELOPER_DIR.
    assert checks_of(clt, profile("2.14-darwin_arm64"))["xcode"].status == "warn"


def test_an_x86_64_bazelisk_fails_bazel_arch() -> None:
    data = answers("macos-m1")
    data["commands"]["lipo -archs /opt/homebrew/Cellar/bazelisk/1.25.0/bin/bazelisk"]["stdout"] = "x86_64\n"
    arch = checks_of(data, profile("2.16-darwin_arm64"))["bazel_arch"]
    assert arch.status == "fail" and "darwin_x86_64" in arch.detail
    assert "brew install bazelisk" in arch.fix


@pytest.mark.parametrize(("free_gb", "status"), [(19, "fail"), (20, "warn"), (49, "warn"), (50, "pass")])
def test_disk_thresholds(free_gb: int, status: str) -> None:
    data = answers("macos-m1")
    data["disk_free_gb"] = free_gb
    assert checks_of(data)["disk"].status == status


def test_the_profile_platform_must_match_the_host() -> None:
    found = checks_of(answers("macos-m1"), profile("2.18-linux_x86_64"))
    assert found["platform"].status == "fail"
    assert "darwin_arm64" in found["platform"].fix


def test_linux_checks_and_debian_bazel_without_version() -> None:
    found = checks_of(answers("linux-aarch64"), profile("2.18-linux_aarch64"))
    assert list(found) == [
        "platform", "python", "git", "compilers", "glibc", "bazel", "disk", "memory",
    ]
    assert found["glibc"].detail == "glibc 2.36"
    # The profile wants clang at /usr/lib/llvm-17/bin/clang, which this host lacks.
    assert found["compilers"].status == "fail" and "/usr/lib/llvm-17/bin/clang" in found["compilers"].detail
    assert found["bazel"].status == "fail" and "no_version" in found["bazel"].detail
    assert found["disk"].status == "warn"
    assert found["memory"].status == "warn" and "--jobs=4 --local_ram_resources=4096" in found["memory"].detail


def test_no_compiler_fails_and_non_hermetic_python_must_match() -> None:
    data = answers("linux-aarch64")
    data["which"] = {"git": "/usr/bin/git"}
    data["commands"]["/usr/bin/python3 -c import sys; print('%d.%d' % sys.version_info[:2])"]["stdout"] = "3.12\n"
    data["which"]["python3.11"] = "/usr/bin/python3"
    found = checks_of(data)
    assert found["compilers"].status == "fail"
    # TFF 0.87 builds with the interpreter on PATH (non-hermetic), which must be 3.11.
    tff = checks_of(data, profile("0.87-linux_aarch64", "tensorflow_federated"))["python"]
    assert tff.status == "fail" and "3.11" in tff.fix
    # A hermetic TF profile does not care which Python is on PATH.
    assert checks_of(data, profile("2.18-linux_aarch64"))["python"].status == "pass"


def test_doctor_command_json_contract_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code = doctor_command(ROOT, "tf", "2.18-darwin_arm64", True, probe=RecordedProbe(answers("macos-m1")))
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in report["checks"])
    data = answers("macos-m1")
    data["disk_free_gb"] = 5
    code = doctor_command(ROOT, "tf", "2.18-darwin_arm64", True, probe=RecordedProbe(data))
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [c["name"] for c in report["checks"] if c["status"] == "fail"] == ["disk"]


def test_doctor_on_this_host_through_invoke() -> None:
    """The real LocalProbe on the CI machine (Linux): the contract holds whatever it finds."""
    result = invoke("doctor", "--json")
    report = json.loads(result.stdout)
    names = [c["name"] for c in report["checks"]]
    assert names[:3] == ["platform", "python", "git"]
    assert "compilers" in names and "glibc" in names and "rosetta" not in names
    failed = any(c["status"] == "fail" for c in report["checks"])
    assert result.returncode == (1 if failed else 0), result.stderr


def test_local_probe_answers_a_missing_program_with_127() -> None:
    probe = LocalProbe()
    assert probe.run(["tfwheels-no-such-program", "--version"]).exit_code == 127
    assert probe.run(["git", "--version"]).first_line.startswith("git version")
    assert probe.system() == "Linux" or probe.sysctl("sysctl.proc_translated") in ("0", "1", None)


@pytest.mark.parametrize("task", ["doctor", "fetch"])
def test_new_tasks_are_listed_and_every_flag_documented(task: str) -> None:
    listed = invoke("--list")
    assert any(line.strip().startswith(task + " ") for line in listed.stdout.splitlines())
    result = invoke("--help", task)
    assert result.returncode == 0, result.stderr
    options = result.stdout.split("Options:", 1)[1]
    assert "--profile=STRING" in options and "--project=STRING" in options
    for line in options.splitlines():
        if line.strip().startswith("-"):
            flag, _, text = line.strip().partition("  ")
            assert text.strip(), f"{task}: {flag} has no help"


def test_arm64e_slices_count_as_arm64() -> None:
    data = answers("macos-m1")
    data["commands"]["lipo -archs /opt/homebrew/bin/python3.11"]["stdout"] = "x86_64 arm64e\n"
    data["commands"]["lipo -archs /opt/homebrew/Cellar/bazelisk/1.25.0/bin/bazelisk"]["stdout"] = "x86_64 arm64e\n"
    found = checks_of(data, profile("2.18-darwin_arm64"))
    assert found["rosetta"].status == "pass" and "arm64e" in found["rosetta"].detail
    assert found["bazel_arch"].status == "pass" and "arm64e" in found["bazel_arch"].detail
    data["commands"]["lipo -archs /opt/homebrew/bin/python3.11"]["stdout"] = "x86_64 i386\n"
    assert checks_of(data)["rosetta"].status == "fail"


def test_doctor_takes_a_tff_profile_name_without_project_tff(capsys: pytest.CaptureFixture[str]) -> None:
    # tasks.py passes the default --project tf as "tensorflow"
    code = doctor_command(ROOT, "tensorflow", "0.87-darwin_arm64", True, probe=RecordedProbe(answers("macos-m1")))
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["platform"]["status"] == "pass"
    assert checks["bazel"]["detail"] == "bazelisk at /opt/homebrew/bin/bazelisk (runs Bazel 6.5.0)"
    assert code == (1 if any(c["status"] == "fail" for c in report["checks"]) else 0)


def test_doctor_cli_takes_a_tff_profile_name() -> None:
    result = invoke("doctor", "--profile", "0.87-linux_x86_64", "--json")
    assert result.returncode in (0, 1), result.stderr
    assert "no tensorflow profile" not in result.stderr
    assert [c["name"] for c in json.loads(result.stdout)["checks"]][:3] == ["platform", "python", "git"]


def test_bazel_fix_names_bazel_bootstrap_only_for_bazel_4_2_3(tmp_path: Path) -> None:
    from tfwheels.bazel import BazelTool, check_version, find_bazel
    from tfwheels.errors import ToolMissingError

    # doctor on Debian with bazel-bootstrap, for a 6.5.0 profile: bazelisk, not bazel-bootstrap
    fix = checks_of(answers("linux-aarch64"), profile("2.18-linux_aarch64"))["bazel"].fix
    assert "npm install -g @bazel/bazelisk" in fix and "brew install bazelisk" in fix
    assert "bazel-bootstrap" not in fix and "allow_unversioned" not in fix
    # a wrong version found, for a 6.5.0 profile
    wrong = BazelTool(Path("/usr/bin/bazel"), "bazel", "4.2.3", "bazel 4.2.3")
    with pytest.raises(ToolMissingError) as info:
        check_version(wrong, profile("2.18-linux_x86_64"), None)
    assert "needs Bazel 6.5.0; install bazelisk" in str(info.value)
    assert "bazel-bootstrap" not in str(info.value) and "allow_unversioned" not in str(info.value)
    # Debian's unversioned bazel on PATH
    fake = tmp_path / "bin" / "bazel"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bazel no_version'\n")
    fake.chmod(0o755)
    with pytest.raises(ToolMissingError) as info:
        find_bazel(profile("2.18-linux_x86_64"), str(fake.parent))
    message = str(info.value)
    assert "reports 'bazel no_version'" in message and "npm install -g @bazel/bazelisk" in message
    assert "bazel-bootstrap" not in message and "allow_unversioned" not in message
    # ... where the profile pins Debian's 4.2.3, both are the fix
    example = profile("example")
    strict = example.model_copy(update={"bazel": example.bazel.model_copy(update={"allow_unversioned": False})})
    with pytest.raises(ToolMissingError) as info:
        find_bazel(strict, str(fake.parent))
    assert "set bazel.allow_unversioned: true" in str(info.value)
    with pytest.raises(ToolMissingError, match=r"or apt install bazel-bootstrap for Bazel 4\.2\.3"):
        check_version(wrong.__class__(Path("/usr/bin/bazel"), "bazel", "6.5.0", "bazel 6.5.0"), example, None)
    assert "apt install bazel-bootstrap" in checks_of(answers("linux-aarch64"), example)["bazel"].fix
