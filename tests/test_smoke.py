"""Smoke tests in real venvs with real pip: a good wheel imports, a broken one is caught."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from conftest import DATA
from tfwheels.smoke import import_name, runnable_here, smoke_test

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
