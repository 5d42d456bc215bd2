"""Smoke tests in real venvs with real pip: a good wheel imports, a broken one is caught."""

from __future__ import annotations

import json
import os
import stat
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA
from wheelfactory import make_wheel

from tfwheels.smoke import import_name, own_wheel_constraints, runnable_here, smoke_test

WHEELS = DATA / "wheels"
LINUX_X86 = WHEELS / "markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"
MAC_ARM = WHEELS / "markupsafe-3.0.4-cp311-cp311-macosx_11_0_arm64.whl"


def test_wheel_for_another_platform_is_skipped_with_reason() -> None:
    assert runnable_here(MAC_ARM) is not None
    result = smoke_test(MAC_ARM, WHEELS, sys.executable)
    assert result.status == "skipped" and "not for this host" in result.detail


def test_real_wheel_installs_and_imports(tmp_path: Path) -> None:
    if runnable_here(LINUX_X86) is not None:
        import pytest

        pytest.skip("the fixture is for cp311 manylinux x86_64")
    assert import_name(LINUX_X86) == "markupsafe"
    command = ["%python%", "-c", "import markupsafe; assert markupsafe.escape('<') == '&lt;'"]
    result = smoke_test(LINUX_X86, WHEELS, sys.executable, command)
    assert result.status == "passed", result.detail
    failing = ["%python%", "-c", "import markupsafe; assert markupsafe.escape('<') == '<'"]
    assert smoke_test(LINUX_X86, WHEELS, sys.executable, failing).status == "failed"


def test_without_a_pip_that_targets_other_pythons_the_venv_gets_its_own(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The fast path (a pip-less venv, filled by this Python's pip --python) needs pip >= 22.3;
    # an older pip falls back to a venv with pip seeded into it, and the outcome is the same.
    if runnable_here(LINUX_X86) is not None:
        import pytest

        pytest.skip("the fixture is for cp311 manylinux x86_64")
    import tfwheels.smoke as smoke

    assert smoke._pip_can_target(sys.executable)
    monkeypatch.setattr(smoke, "_pip_can_target", lambda python: False)
    command = ["%python%", "-m", "pip", "--version"]  # the venv has a pip of its own
    result = smoke_test(LINUX_X86, WHEELS, sys.executable, command)
    assert result.status == "passed", result.detail


def test_wheel_whose_import_fails_is_caught(tmp_path: Path) -> None:
    # A pure wheel whose package raises on import: installs fine, fails the smoke test.
    wheel = tmp_path / "brokenpkg-1.0-py3-none-any.whl"
    info = "brokenpkg-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("brokenpkg/__init__.py", "raise ImportError('libfoo.so: cannot open shared object file')\n")
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    result = smoke_test(wheel, tmp_path, sys.executable)
    assert result.status == "failed"
    assert "import brokenpkg failed: ImportError: libfoo.so: cannot open shared object file" in result.detail


def test_collect_rejects_a_wheel_that_does_not_import(tmp_path: Path) -> None:
    from conftest import ROOT
    from tfwheels.profiles import load_profile
    from tfwheels.wheels import collect

    profile = load_profile("example", "tensorflow", ROOT / "configs", ROOT)
    wheel = tmp_path / "wheelhouse" / "tensorflow-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    info = "tensorflow-0.1.0.dist-info"
    files = {
        "tensorflow/__init__.py": b"raise ImportError('libtensorflow_framework.so.2: cannot open shared object file')\n",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: tensorflow\nVersion: 0.1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    import base64
    import hashlib

    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    dist, rejected = tmp_path / "dist", tmp_path / "build" / "rejected"
    result = collect(
        [wheel], profile, dist, rejected, {}, smoke=lambda w: smoke_test(w, dist, sys.executable)
    )
    assert [r.wheel for r in result.rejected] == [wheel.name]
    [problem] = result.rejected[0].problems
    assert problem.kind == "smoke-test" and "import tensorflow failed: ImportError" in problem.detail
    assert not list(dist.glob("*.whl")) and (rejected / f"{wheel.name}.report.json").is_file()


# --- the profile's Python, third-party requirements, offline hosts ---------------------------------


def test_runnable_here_asks_the_profiles_python(tmp_path: Path) -> None:
    # A stand-in interpreter that installs only cp399 manylinux wheels: the answer is its own,
    # not that of the Python tfwheels runs on.
    fake = tmp_path / "python3.99"
    fake.write_text("#!/bin/sh\necho cp399-cp399-manylinux_2_17_x86_64\necho py3-none-any\n")
    fake.chmod(0o755)
    wheel = tmp_path / "pkg-1.0-cp399-cp399-manylinux_2_17_x86_64.whl"
    assert runnable_here(wheel) is not None  # not for tfwheels' own interpreter
    assert runnable_here(wheel, str(fake)) is None
    reason = runnable_here(MAC_ARM, str(fake))
    assert reason is not None and "cp399-cp399-manylinux_2_17_x86_64" in reason
    broken = tmp_path / "python-broken"
    broken.write_text("#!/bin/sh\necho 'No module named pip' >&2\nexit 1\n")
    broken.chmod(0o755)
    reason = runnable_here(wheel, str(broken))
    assert reason is not None and reason.startswith(f"cannot ask {broken} which wheels")


@pytest.fixture
def no_index_reachable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """pip configured with an index nobody listens on (localhost port 9): offline-safe."""
    for name in ("PIP_NO_INDEX", "TFWHEELS_OFFLINE", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    yield


def test_missing_requirement_offline_is_skipped_with_reason(
    tmp_path: Path, no_index_reachable: None
) -> None:
    wheel = make_wheel(tmp_path, "needsdep", "1.0", requires_dist=["some-missing-dep"])
    result = smoke_test(wheel, tmp_path, sys.executable, offline=True)
    assert result.status == "skipped", result.detail
    assert "some-missing-dep is not in" in result.detail and "offline" in result.detail


def test_unreachable_index_is_skipped_not_failed(tmp_path: Path, no_index_reachable: None) -> None:
    wheel = make_wheel(tmp_path, "needsdep", "1.0", requires_dist=["some-missing-dep"])
    result = smoke_test(wheel, tmp_path, sys.executable)
    assert result.status == "skipped", result.detail
    assert "the package index could not be reached to install some-missing-dep" in result.detail


def test_the_sets_own_wheels_come_from_the_folder(tmp_path: Path, no_index_reachable: None) -> None:
    # dist/ holds the dependency: it is pinned there, so the unreachable index is not needed.
    dist = tmp_path / "dist"
    dist.mkdir()
    dep = make_wheel(dist, "depkg", "1.0", files={"depkg/__init__.py": b"VALUE = 1\n"})
    make_wheel(dist, "depkg", "2.0", files={"depkg/__init__.py": b"VALUE = 2\n"})
    wheel = make_wheel(
        dist, "toppkg", "1.0", requires_dist=["depkg<2"],
        files={"toppkg/__init__.py": b"import depkg\nassert depkg.VALUE == 1\n"},
    )
    tags = ("py3-none-any",)
    assert own_wheel_constraints(wheel, dist, tags) == [f"depkg @ {dep.resolve().as_uri()}"]
    result = smoke_test(wheel, dist, sys.executable)
    assert result.status == "passed", result.detail


def test_collect_accepts_a_wheel_whose_smoke_test_was_skipped(
    tmp_path: Path, no_index_reachable: None
) -> None:
    from conftest import ROOT
    from tfwheels.profiles import load_profile
    from tfwheels.wheels import collect

    profile = load_profile("example", "tensorflow", ROOT / "configs", ROOT)
    (tmp_path / "wheelhouse").mkdir()
    wheel = make_wheel(tmp_path / "wheelhouse", "tensorflow", "0.1.0", requires_dist=["some-missing-dep"])
    dist, rejected = tmp_path / "dist", tmp_path / "build" / "rejected"
    result = collect(
        [wheel], profile, dist, rejected, {},
        smoke=lambda w: smoke_test(w, dist, sys.executable, offline=True),
    )
    assert not result.rejected and (dist / wheel.name).is_file()
    [entry] = json.loads((dist / "manifest.json").read_text())["wheels"]
    assert entry["verified"] is True and entry["smoke"]["status"] == "skipped"
    assert "some-missing-dep" in entry["smoke"]["detail"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_collect_outputs_are_readable_as_the_umask_allows(
    tmp_path: Path, umask: int, mode: int
) -> None:
    from conftest import ROOT
    from tfwheels.profiles import load_profile
    from tfwheels.wheels import collect

    profile = load_profile("example", "tensorflow", ROOT / "configs", ROOT)
    (tmp_path / "wheelhouse").mkdir()
    good = make_wheel(tmp_path / "wheelhouse", "tensorflow", "0.1.0")
    good.chmod(0o644)
    bad = make_wheel(tmp_path / "wheelhouse", "not-tensorflow", "0.2.0")  # the wrong name
    dist, rejected = tmp_path / "dist", tmp_path / "build" / "rejected"
    old = os.umask(umask)
    try:
        result = collect([good, bad], profile, dist, rejected, {})
    finally:
        os.umask(old)
    assert [r.wheel for r in result.rejected] == [bad.name]
    assert stat.S_IMODE((dist / "manifest.json").stat().st_mode) == mode  # not mkstemp's 0600
    assert stat.S_IMODE((rejected / f"{bad.name}.report.json").stat().st_mode) == mode
    assert stat.S_IMODE((dist / good.name).stat().st_mode) == 0o644  # a copy keeps its mode


def test_collect_rejects_an_unreadable_wheel_and_goes_on(tmp_path: Path) -> None:
    from conftest import ROOT
    from tfwheels.profiles import load_profile
    from tfwheels.wheels import collect

    profile = load_profile("example", "tensorflow", ROOT / "configs", ROOT)
    house = tmp_path / "wheelhouse"
    house.mkdir()
    good = make_wheel(house, "tensorflow", "0.3.0")
    not_zip = house / "tensorflow-0.1.0-py3-none-any.whl"
    not_zip.write_text("<html>404 Not Found</html>\n")
    truncated = house / "tensorflow-0.2.0-py3-none-any.whl"
    truncated.write_bytes(make_wheel(tmp_path, "tensorflow", "0.2.0").read_bytes()[:200])
    dist, rejected = tmp_path / "dist", tmp_path / "build" / "rejected"
    result = collect([good, not_zip, truncated], profile, dist, rejected, {})
    assert sorted(r.wheel for r in result.rejected) == sorted([not_zip.name, truncated.name])
    for report in result.rejected:
        assert [p.kind for p in report.problems] == ["zip-integrity"]
        assert (rejected / f"{report.wheel}.report.json").is_file()
    assert [e["wheel"] for e in result.accepted] == [good.name]
    assert [p.name for p in dist.glob("*.whl")] == [good.name]
