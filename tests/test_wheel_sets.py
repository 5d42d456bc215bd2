"""Wheels verified together: a library one wheel loads from the other, through an rpath, is fine."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tfwheels.verify import verify_wheel, verify_wheels

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


def make_wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    """A minimal valid linux_x86_64-style wheel for this host with a RECORD pip accepts."""
    import base64
    import hashlib
    import platform

    tag = f"linux_{platform.machine()}"
    path = folder / f"{name}-1.0-cp311-cp311-{tag}.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: cp311-cp311-{tag}\n".encode(),
    }
    record = []
    for member, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def test_library_from_a_companion_wheel(tmp_path: Path) -> None:
    (tmp_path / "base.c").write_text("int base(void) { return 1; }\n")
    (tmp_path / "top.c").write_text("int base(void); int top(void) { return base() + 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libbase.so", "-o", tmp_path / "libbase.so", tmp_path / "base.c"], check=True)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", tmp_path / "libtop.so", tmp_path / "top.c",
         f"-L{tmp_path}", "-lbase", "-Wl,-rpath,$ORIGIN/../basepkg"],
        check=True,
    )
    base = make_wheel(tmp_path, "basepkg", {"basepkg/libbase.so": (tmp_path / "libbase.so").read_bytes()})
    top = make_wheel(tmp_path, "toppkg", {"toppkg/libtop.so": (tmp_path / "libtop.so").read_bytes()})

    alone = verify_wheel(top)
    assert [(p.kind, p.file) for p in alone.problems] == [("external-library", "toppkg/libtop.so")]
    assert "libbase.so" in alone.problems[0].detail

    together = verify_wheels([base, top])
    assert [r.ok for r in together] == [True, True], [r.to_json() for r in together]
