"""The fast first-bytes reader that header-only verification uses, held against zipfile itself."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import invoke
from tfwheels.zipheads import member_heads

WHEELS = Path(__file__).resolve().parent / "data" / "wheels"


def _zipfile_heads(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {
            info.filename: archive.open(info).read(min(8, info.file_size))
            for info in archive.infolist()
        }


@pytest.mark.parametrize("wheel", sorted(p.name for p in WHEELS.glob("*.whl")))
def test_heads_of_every_member_of_the_real_wheels_match_zipfile(wheel: str) -> None:
    path = WHEELS / wheel
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    heads = member_heads(path, infos)
    expected = _zipfile_heads(path)
    assert {info.filename: heads[id(info)] for info in infos} == expected


def test_stored_bzip2_and_damaged_members(tmp_path: Path) -> None:
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("stored.bin", b"\x7fELF" + b"\0" * 100, compress_type=zipfile.ZIP_STORED)
        archive.writestr("deflated.txt", b"hello world " * 1000, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("bzip2.bin", b"\xcf\xfa\xed\xfe" + b"x" * 100, compress_type=zipfile.ZIP_BZIP2)
        archive.writestr("short", b"abc", compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("broken", b"\0" * 5000, compress_type=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    data = bytearray(path.read_bytes())
    broken = infos["broken"]
    start = broken.header_offset + 30 + len(broken.filename)
    data[start : start + 4] = b"\xff\xff\xff\xff"  # not a deflate stream any more
    path.write_bytes(bytes(data))
    found = member_heads(path, infos.values())
    heads = {name: found[id(info)] for name, info in infos.items()}
    assert heads["stored.bin"] == b"\x7fELF\0\0\0\0"
    assert heads["deflated.txt"] == b"hello wo"
    assert heads["short"] == b"abc"
    assert heads["bzip2.bin"] is None  # another method: the caller reads it through zipfile
    assert heads["broken"] is None


def test_quick_verify_finds_the_same_binaries_as_the_full_one() -> None:
    wheel = WHEELS / "MarkupSafe-3.0.2-cp311-cp311-macosx_10_9_universal2.whl"
    quick = invoke("verify-wheel", str(wheel), "--quick", "--json")
    full = invoke("verify-wheel", str(wheel), "--json")
    assert quick.returncode == 0 and full.returncode == 0, quick.stderr + full.stderr
    quick_wheel, full_wheel = json.loads(quick.stdout)["wheels"][0], json.loads(full.stdout)["wheels"][0]
    assert [b["file"] for b in quick_wheel["binaries"]] == [b["file"] for b in full_wheel["binaries"]]
    assert [b["archs"] for b in quick_wheel["binaries"]] == [["x86_64", "arm64"]]


def test_quick_does_not_go_with_fix_signatures() -> None:
    wheel = WHEELS / "markupsafe-3.0.4-cp311-cp311-macosx_11_0_arm64.whl"
    result = invoke("verify-wheel", str(wheel), "--quick", "--fix-signatures")
    assert result.returncode == 2
    assert "--quick skips code signatures" in result.stderr and "Traceback" not in result.stderr
