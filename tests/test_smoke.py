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
