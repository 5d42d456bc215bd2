"""Wheels that must fit together: Requires-Dist within a set, Requires-Python, TFF's pins in the
profile, and pip's resolver run offline on fixture wheels and small wheels made in tmp_path.

The TensorFlow Federated facts are real: TFF 0.87.0's METADATA on PyPI says
``Requires-Dist: tensorflow ==2.14.*,>=2.14.0`` and ``Requires-Python: <3.12,>=3.9``; the wheels
here carry those lines, without TFF's code.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, invoke
from wheelfactory import make_wheel

from tfwheels.errors import ProfileError
from tfwheels.profiles import load_profile
from tfwheels.resolve import ResolveOptions, parse_pip_failure, resolve_wheels
from tfwheels.tff_facts import load_facts
from tfwheels.verify import WheelReport, verify_wheel, verify_wheels
from tfwheels.verify_report import verify_command
from tfwheels.wheels import collect

WHEELS = Path(__file__).resolve().parent / "data" / "wheels"
ARM64 = WHEELS / "markupsafe-3.0.4-cp311-cp311-macosx_11_0_arm64.whl"
X86_64 = WHEELS / "markupsafe-3.0.4-cp311-cp311-macosx_10_9_x86_64.whl"
MAC = "macosx_12_0_arm64"
TFF_REQUIRES_TF = "tensorflow ==2.14.*,>=2.14.0"
TFF_REQUIRES_PYTHON = "<3.12,>=3.9"
TFF_METADATA = "tensorflow_federated-0.87.0.dist-info/METADATA"


def tff(folder: Path, tag: str = f"py3-none-{MAC}") -> Path:
    """A wheel with TFF 0.87.0's name, version and dependency metadata."""
    return make_wheel(
        folder,
        "tensorflow_federated",
        "0.87.0",
        tag,
        requires_dist=[
            "tensorflow-model-optimization ==0.7.5",
            TFF_REQUIRES_TF,
            'portpicker ~=1.6 ; sys_platform == "linux"',
        ],
        requires_python=TFF_REQUIRES_PYTHON,
    )


def tf(
    folder: Path, version: str, tag: str = f"cp311-cp311-{MAC}", name: str = "tensorflow"
) -> Path:
    return make_wheel(folder, name, version, tag, requires_python=">=3.9")


def problems(
    reports: Sequence[WheelReport], kind: str = "dependency-mismatch"
) -> list[tuple[str, str | None, str]]:
    return [(r.wheel, p.file, p.detail) for r in reports for p in r.problems if p.kind == kind]


# --- Requires-Dist within a set ------------------------------------------------------------------


def test_tff_087_beside_tf_216_is_refused(tmp_path: Path) -> None:
    tff_wheel, tf_wheel = tff(tmp_path), tf(tmp_path, "2.16.2")
    reports = verify_wheels([tff_wheel, tf_wheel])
    assert problems(reports) == [
        (
            tff_wheel.name,
            TFF_METADATA,
            f"Requires-Dist '{TFF_REQUIRES_TF}' is not met by {tf_wheel.name} (tensorflow 2.16.2)",
        )
    ]
    assert [r.ok for r in reports] == [False, True]


def test_tff_087_beside_tf_214_is_fine(tmp_path: Path) -> None:
    reports = verify_wheels([tff(tmp_path), tf(tmp_path, "2.14.1")])
    assert [(r.ok, r.problems) for r in reports] == [(True, []), (True, [])]


def test_tensorflow_macos_does_not_satisfy_tensorflow(tmp_path: Path) -> None:
    macos = tf(tmp_path, "2.14.0", name="tensorflow-macos")
    tf_wheel = tf(tmp_path, "2.16.2")
    reports = verify_wheels([tff(tmp_path), macos, tf_wheel])
    ((_, _, detail),) = problems(reports)
    assert detail.endswith(f"is not met by {tf_wheel.name} (tensorflow 2.16.2)")
    assert macos.name not in detail
    # With only tensorflow-macos beside it, the set holds no 'tensorflow' to hold TFF against.
    assert problems(verify_wheels([tff(tmp_path), macos])) == []


def test_names_are_compared_normalised(tmp_path: Path) -> None:
    # PEP 503: case does not matter; '-', '_' and '.' are one separator, but they separate.
    top = make_wheel(tmp_path, "top", "1.0", requires_dist=["MARKUPSafe>=4", "markup-safe>=9"])
    reports = verify_wheels([top, ARM64])
    assert [d for _, _, d in problems(reports)] == [
        f"Requires-Dist 'MARKUPSafe>=4' is not met by {ARM64.name} (markupsafe 3.0.4)"
    ]


def test_markers_are_evaluated_for_the_target_not_this_machine(tmp_path: Path) -> None:
    top = make_wheel(
        tmp_path,
        "top",
        "1.0",
        requires_dist=[
            'markupsafe>=4 ; sys_platform == "linux"',
            'markupsafe>=5 ; platform_machine == "x86_64"',
            'markupsafe>=6 ; python_version >= "3.12"',
        ],
    )
    on_mac = problems(verify_wheels([top, ARM64], "darwin_arm64"))
    assert on_mac == []  # none of the markers holds for CPython 3.11 on Apple Silicon
    on_linux = problems(verify_wheels([top, WHEELS / LINUX_X86_64], "linux_x86_64"))
    assert [d.split("'")[1] for _, _, d in on_linux] == [
        'markupsafe>=4 ; sys_platform == "linux"',
        'markupsafe>=5 ; platform_machine == "x86_64"',
    ]
    newer = problems(verify_wheels([top, ARM64], "darwin_arm64", python="3.12"))
    assert [d.split("'")[1] for _, _, d in newer] == ['markupsafe>=6 ; python_version >= "3.12"']


LINUX_X86_64 = (
    "markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64."
    "manylinux_2_28_x86_64.whl"
)


def test_companions_for_another_platform_are_not_the_set(tmp_path: Path) -> None:
    linux_tf = tf(tmp_path, "2.16.2", tag="cp311-cp311-manylinux_2_17_x86_64")
    assert problems(verify_wheels([tff(tmp_path), linux_tf])) == []


def test_extras_only_requirements_do_not_apply(tmp_path: Path) -> None:
    top = make_wheel(tmp_path, "top", "1.0", requires_dist=['markupsafe>=9 ; extra == "speed"'])
    assert problems(verify_wheels([top, ARM64])) == []


# --- Requires-Python -----------------------------------------------------------------------------


def test_requires_python_against_the_sets_cp_tag(tmp_path: Path) -> None:
    tff_wheel = tff(tmp_path)
    tf_312 = tf(tmp_path, "2.14.1", tag=f"cp312-cp312-{MAC}")
    reports = verify_wheels([tff_wheel, tf_312])
    assert problems(reports) == [
        (
            tff_wheel.name,
            TFF_METADATA,
            (
                f"Requires-Python '{TFF_REQUIRES_PYTHON}' excludes Python 3.12 "
                f"(the cp312 tag of {tf_312.name})"
            ),
        )
    ]


def test_requires_python_against_python_flag(tmp_path: Path) -> None:
    report = verify_wheel(tff(tmp_path), python="3.12")
    assert [p.detail for p in report.problems] == [
        f"Requires-Python '{TFF_REQUIRES_PYTHON}' excludes Python 3.12 (--python 3.12)"
    ]
    assert verify_wheel(tff(tmp_path), python="3.11").ok


def test_requires_python_against_the_wheels_own_tag(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ext", "1.0", f"cp312-cp312-{MAC}", requires_python="<3.12")
    assert [p.detail for p in verify_wheel(wheel).problems] == [
        "Requires-Python '<3.12' excludes Python 3.12 (the wheel's cp312 tag)"
    ]


def test_a_pure_wheel_alone_has_no_python_to_check(tmp_path: Path) -> None:
    assert verify_wheel(tff(tmp_path, tag="py3-none-any")).ok


def test_unreadable_requirements_are_metadata_problems(tmp_path: Path) -> None:
    top = make_wheel(
        tmp_path,
        "top",
        "1.0",
        f"cp311-cp311-{MAC}",
        requires_dist=["markupsafe >>> 3", 'markupsafe>=4 ; platform_release ~= "x"'],
        requires_python="3..",
    )
    details = sorted(p.detail for p in verify_wheels([top, ARM64])[0].problems)
    assert [d.split(":")[0] for d in details] == [
        "Requires-Dist 'markupsafe >>> 3'",
        "Requires-Dist 'markupsafe>=4 ; platform_release ~= \"x\"'",
        "Requires-Python '3..'",
    ]
    assert "its marker cannot be evaluated" in details[1]
    assert all("\n" not in detail for detail in details)


def test_pip_failing_without_an_error_line() -> None:
    output = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'pip'\n"
    ((item),) = parse_pip_failure(output)
    assert (item.requirement, item.reason) == (
        "(the set)",
        "ModuleNotFoundError: No module named 'pip'",
    )


# --- collect: a new wheel against dist/ ----------------------------------------------------------


def test_collect_rejects_tff_against_the_tf_in_dist(tmp_path: Path) -> None:
    profile = load_profile("0.87-darwin_arm64", "tensorflow_federated", ROOT / "configs", ROOT)
    dist, build = tmp_path / "dist", tmp_path / "build"
    dist.mkdir()
    tf(dist, "2.16.2")
    tf(dist, "2.14.1", tag="cp311-cp311-manylinux_2_17_x86_64")  # another platform: not the set
    (tmp_path / "wheelhouse").mkdir()
    wheel = tff(tmp_path / "wheelhouse")
    result = collect([wheel], profile, dist, build / "rejected", {"profile": profile.name})
    assert [r.wheel for r in result.rejected] == [wheel.name]
    assert problems(result.rejected) == [
        (
            wheel.name,
            TFF_METADATA,
            (
                f"Requires-Dist '{TFF_REQUIRES_TF}' is not met by "
                "tensorflow-2.16.2-cp311-cp311-macosx_12_0_arm64.whl (tensorflow 2.16.2)"
            ),
        )
    ]
    tf(dist, "2.14.1")
    accepted = collect([wheel], profile, dist, build / "rejected", {"profile": profile.name})
    assert [entry["wheel"] for entry in accepted.accepted] == [wheel.name]


# --- TFF's pins, checked when the profile loads --------------------------------------------------


def test_facts_file_holds_tff_087s_real_metadata() -> None:
    facts = load_facts(ROOT / "configs")
    assert facts is not None
    release = facts.tensorflow_federated["0.87.0"]
    assert (release.tensorflow, release.requires_python) == (
        "tensorflow==2.14.*,>=2.14.0",
        TFF_REQUIRES_PYTHON,
    )
    assert "PyPI" in release.evidence


def test_a_broken_facts_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "facts").mkdir()
    (tmp_path / "facts" / "tff_requirements.yaml").write_text(
        'tensorflow_federated:\n  "0.87.0":\n    tensorflow: "tensorflow=2.14"\n'
        '    requires_python: ">=3.9"\n    evidence: typo\n'
    )
    with pytest.raises(ProfileError) as caught:
        load_facts(tmp_path)
    message = str(caught.value)
    assert "tff_requirements.yaml:3 tensorflow_federated.0.87.0.tensorflow:" in message
    assert "'tensorflow=2.14' is not a requirement" in message and "\n" not in message


def tff_profile(tmp_path: Path, text: str) -> Path:
    """A TFF profile extending the real 0.87 one, in a copy of configs/tff."""
    folder = tmp_path / "tff"
    shutil.copytree(ROOT / "configs" / "tff", folder)
    path = folder / "mine.yaml"
    path.write_text("extends: 0.87-darwin_arm64\n" + text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'requires:\n  wheels: ["tensorflow==2.16.*"]\n',
            (
                "mine.yaml:3 requires.wheels: 'tensorflow==2.16.*' admits tensorflow 2.16.0, but "
                "TensorFlow Federated 0.87.0 requires tensorflow==2.14.*,>=2.14.0 "
                "(configs/facts/tff_requirements.yaml); require 'tensorflow==2.14.*,>=2.14.0' instead"
            ),
        ),
        (
            'requires:\n  wheels: ["tensorflow>=2.14"]\n',
            "requires.wheels: 'tensorflow>=2.14' admits tensorflow 2.15.0, but",
        ),
        (
            'requires:\n  wheels: ["tensorflow-macos==2.14.*"]\n',
            "requires.wheels: names no tensorflow, but TensorFlow Federated 0.87.0 requires",
        ),
        (
            'python:\n  version: "3.12"\n',
            (
                "mine.yaml:3 python.version: 3.12, but TensorFlow Federated 0.87.0 requires Python "
                "<3.12,>=3.9 (configs/facts/tff_requirements.yaml); set python.version to one it "
                "admits (e.g. 3.11)"
            ),
        ),
    ],
    ids=["tf-2.16", "tf-open-range", "tf-macos", "python-3.12"],
)
def test_tff_profile_disagreeing_with_tff_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tff_profile(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(str(path), "tensorflow_federated", ROOT / "configs", ROOT)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_tff_profile_agreeing_with_tff_loads(tmp_path: Path) -> None:
    path = tff_profile(tmp_path, 'requires:\n  wheels: ["tensorflow==2.14.1"]\n')
    profile = load_profile(str(path), "tensorflow_federated", ROOT / "configs", ROOT)
    assert profile.requires.wheels == ("tensorflow==2.14.1",)


def test_build_tff_stops_before_bazel(tmp_path: Path) -> None:
    path = tff_profile(tmp_path, 'python:\n  version: "3.12"\n')
    result = invoke("build-tff", "--profile", str(path), "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "python.version: 3.12, but TensorFlow Federated 0.87.0 requires Python" in lines[0]
    assert "bazel" not in result.stdout.lower()


# --- pip's resolver, offline -----------------------------------------------------------------------


@pytest.fixture
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip with no configuration: this machine's pip.conf, PIP_* variables and constraints
    must not steer a resolve that the test describes in full."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


@pytest.fixture
def links(tmp_path: Path) -> Path:
    """A find-links folder: the MarkupSafe fixtures and a few small wheels."""
    folder = tmp_path / "links"
    folder.mkdir()
    for wheel in WHEELS.glob("*.whl"):
        shutil.copyfile(wheel, folder / wheel.name)
    make_wheel(folder, "helper", "1.2")
    return folder


def test_resolve_a_fixture_wheel_alone(offline_pip: None) -> None:
    resolution = resolve_wheels([ARM64], "darwin_arm64", ResolveOptions(no_index=True))
    assert resolution.ok
    assert [i.to_json() for i in resolution.installs] == [
        {"name": "MarkupSafe", "version": "3.0.4", "source": "under-test"}
    ]
    assert resolution.python == "3.11"
    assert resolution.platforms[:2] == ["macosx_11_0_arm64", "macosx_11_0_universal2"]


def test_resolve_names_every_requirement_without_a_wheel(
    offline_pip: None, links: Path, tmp_path: Path
) -> None:
    top = make_wheel(
        tmp_path,
        "top",
        "1.0",
        requires_dist=[
            "markupsafe>=3",
            "helper==1.*",
            "missing-one>=1",
            'missing-mac==2.* ; sys_platform == "darwin"',
        ],
    )
    options = ResolveOptions(find_links=(str(links),), no_index=True, python="3.11")
    mac = resolve_wheels([top], "darwin_arm64", options)
    assert not mac.ok
    assert [(u.requirement.split(";")[0].strip(), u.required_by) for u in mac.unresolvable] == [
        ("missing-one>=1", "top"),
        ("missing-mac==2.*", "top"),
    ]
    assert sorted((i.name.lower(), i.version, i.source) for i in mac.installs) == [
        ("helper", "1.2", "find-links"),
        ("markupsafe", "3.0.4", "find-links"),
        ("top", "1.0", "under-test"),
    ]
    linux = resolve_wheels([top], "linux_x86_64", options)
    assert [u.requirement for u in linux.unresolvable] == ["missing-one>=1"]


def test_resolve_evaluates_python_markers_for_the_target_python(
    offline_pip: None, links: Path, tmp_path: Path
) -> None:
    top = make_wheel(tmp_path, "top", "1.0", requires_dist=['newer>=1 ; python_version >= "3.12"'])
    options = ResolveOptions(find_links=(str(links),), no_index=True)
    assert resolve_wheels([top], "darwin_arm64", replace(options, python="3.11")).ok
    for_312 = resolve_wheels([top], "darwin_arm64", replace(options, python="3.12"))
    assert [u.requirement.split(";")[0].strip() for u in for_312.unresolvable] == ["newer>=1"]


def test_resolve_a_wheel_for_another_mac(offline_pip: None, tmp_path: Path) -> None:
    other = make_wheel(tmp_path, "other", "1.0")
    resolution = resolve_wheels([X86_64, other], "darwin_arm64", ResolveOptions(no_index=True))
    ((item),) = resolution.unresolvable
    assert (item.requirement, item.wheel) == ("markupsafe==3.0.4", X86_64.name)
    # pip refuses the whole command for it; the next round resolves the rest without it
    assert [(i.name, i.source) for i in resolution.installs] == [("other", "under-test")]
    (problem,) = resolution.problems_for([X86_64, other])[X86_64.name]
    assert problem.kind == "unresolvable"
    assert problem.detail == (
        "markupsafe==3.0.4: nothing installs on darwin_arm64 with CPython 3.11; pip: "
        f"{X86_64.name} is not a supported wheel on this platform."
    )


def test_resolve_takes_the_wheel_under_test_over_an_index_release(
    offline_pip: None, links: Path, tmp_path: Path
) -> None:
    # The same name and version in a find-links folder stands in for PyPI's release: pip must
    # resolve the wheel under test (a tfwheels build), with its own requirements.
    make_wheel(links, "tensorflow", "2.16.2", f"cp311-cp311-{MAC}")
    ours = make_wheel(
        tmp_path, "tensorflow", "2.16.2", f"cp311-cp311-{MAC}", requires_dist=["helper"]
    )
    options = ResolveOptions(find_links=(str(links),), no_index=True)
    installs = resolve_wheels([ours], "darwin_arm64", options).installs
    assert [(i.name, i.source) for i in installs] == [
        ("tensorflow", "under-test"),
        ("helper", "find-links"),
    ]


def test_resolve_conflict(offline_pip: None, links: Path, tmp_path: Path) -> None:
    make_wheel(links, "shared", "1")
    make_wheel(links, "shared", "2")
    one = make_wheel(tmp_path, "one", "1.0", requires_dist=["shared==1"])
    two = make_wheel(tmp_path, "two", "1.0", requires_dist=["shared==2"])
    options = ResolveOptions(find_links=(str(links),), no_index=True, python="3.11")
    ((item),) = resolve_wheels([one, two], "darwin_arm64", options).unresolvable
    assert item.requirement == "one==1.0 and two==1.0"
    assert "one 1.0 depends on shared==1; two 1.0 depends on shared==2" in item.reason


def test_verify_command_resolve_json(
    offline_pip: None, links: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = make_wheel(tmp_path, "top", "1.0", f"cp311-cp311-{MAC}", requires_dist=["gone>=1"])
    options = ResolveOptions(find_links=(str(links),), no_index=True)
    assert verify_command([str(top), str(ARM64)], None, True, resolve=options) == 1
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"wheels", "resolution"}
    resolution = document["resolution"]
    assert resolution["ok"] is False
    assert {(i["name"].lower(), i["source"]) for i in resolution["installs"]} == {
        ("top", "under-test"),
        ("markupsafe", "under-test"),
    }
    top_report = document["wheels"][0]
    assert [p["kind"] for p in top_report["problems"]] == ["unresolvable"]
    assert top_report["problems"][0]["detail"].startswith("gone>=1, required by top: nothing")
    assert document["wheels"][1]["ok"] is True


def test_parse_pip_failure_conflict_from_pip_26() -> None:
    output = """\
ERROR: Cannot install aa==1.0 and bb==1.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    aa 1.0 depends on cc==1
    bb 1.0 depends on cc==2

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    cc

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""
    ((item),) = parse_pip_failure(output)
    assert item.requirement == "aa==1.0 and bb==1.0"
    assert (
        item.reason == "conflicting dependencies: aa 1.0 depends on cc==1; bb 1.0 depends on cc==2"
    )


def test_parse_pip_failure_keeps_the_python_versions_pip_ignored() -> None:
    output = (
        "ERROR: Ignored the following versions that require a different python version: "
        "0.88.0 Requires-Python >=3.12\n"
        "ERROR: Could not find a version that satisfies the requirement tensorflow-federated>=0.88 "
        "(from versions: 0.86.0, 0.87.0)\n"
        "ERROR: No matching distribution found for tensorflow-federated>=0.88\n"
    )
    ((item),) = parse_pip_failure(output)
    assert (item.requirement, item.required_by) == ("tensorflow-federated>=0.88", None)
    assert item.reason.endswith(
        "; Ignored the following versions that require a different python "
        "version: 0.88.0 Requires-Python >=3.12"
    )


def test_doctests() -> None:
    import doctest

    import tfwheels.dependencies
    import tfwheels.resolve
    import tfwheels.tff_facts

    for module in (tfwheels.dependencies, tfwheels.resolve, tfwheels.tff_facts):
        results = doctest.testmod(module)
        assert results.failed == 0 and results.attempted > 0, module.__name__
