"""Native binary detection and header parsing, on the real extension modules of the MarkupSafe
wheels in tests/data/wheels, and on damaged copies of them."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfwheels.binaries import BinaryInfo, glibc_version, inspect_binary, is_native

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

WHEELS = Path(__file__).resolve().parent / "data" / "wheels"
ARM64 = "markupsafe-3.0.4-cp311-cp311-macosx_11_0_arm64.whl"
X86_64 = "markupsafe-3.0.4-cp311-cp311-macosx_10_9_x86_64.whl"
UNIVERSAL2 = "MarkupSafe-3.0.2-cp311-cp311-macosx_10_9_universal2.whl"
LINUX_X86_64 = (
    "markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64."
    "manylinux_2_28_x86_64.whl"
)
LINUX_AARCH64 = (
    "markupsafe-3.0.4-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64."
    "manylinux_2_28_aarch64.whl"
)
DARWIN_SO = "markupsafe/_speedups.cpython-311-darwin.so"


def member(wheel: str, suffix: str = ".so") -> tuple[str, bytes]:
    """The (name, bytes) of the one member of a fixture wheel whose name ends with ``suffix``."""
    with zipfile.ZipFile(WHEELS / wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(suffix))
        return name, archive.read(name)


class ForwardOnly(io.RawIOBase):
    """A stream that cannot seek and counts what was read, like a zip member but stricter."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._data[self.consumed : self.consumed + len(view)]
        view[: len(chunk)] = chunk
        self.consumed += len(chunk)
        return len(chunk)


# --- detection by magic bytes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_bytes", "native"),
    [
        (b"\x7fELF\x02\x01\x01\x00", True),
        (b"\xcf\xfa\xed\xfe\x0c\x00\x00\x01", True),  # 64-bit little-endian Mach-O (arm64)
        (b"\xce\xfa\xed\xfe\x07\x00\x00\x00", True),  # 32-bit little-endian Mach-O (i386)
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x02", True),  # fat binary with two slices
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x34", False),  # Java class file, version 52 (Java 8)
        (b"#!/usr/bin/env python\n", False),
        (b"\x7fEL", False),
        (b"", False),
    ],
)
def test_is_native_reads_magic_bytes(first_bytes: bytes, native: bool) -> None:
    assert is_native(first_bytes) is native


def test_detection_ignores_the_file_name() -> None:
    _, data = member(ARM64)
    assert inspect_binary("looks/like/data.bin", data) is not None
    assert inspect_binary("looks/like/a/library.so", b"print('not a binary')\n") is None


# --- real binaries -------------------------------------------------------------------------------


def test_thin_arm64_mach_o() -> None:
    name, data = member(ARM64)
    info = inspect_binary(name, data)
    assert info is not None
    assert (info.path, info.format, info.malformed) == (DARWIN_SO, "mach-o", None)
    assert info.archs == ["arm64"]
    assert info.min_os == {"arm64": "11.0"}  # LC_BUILD_VERSION minos
    assert info.libraries == ["/usr/lib/libSystem.B.dylib"]
    assert info.rpaths == []
    assert info.slices[0].platform == "macOS"


def test_thin_x86_64_mach_o_uses_version_min_macosx() -> None:
    info = inspect_binary(*member(X86_64))
    assert info is not None
    assert info.archs == ["x86_64"]
    assert info.min_os == {"x86_64": "10.9"}  # LC_VERSION_MIN_MACOSX, no LC_BUILD_VERSION


def test_universal2_has_both_slices_with_their_own_minimum_macos() -> None:
    info = inspect_binary(*member(UNIVERSAL2))
    assert info is not None
    assert info.format == "mach-o"
    assert info.archs == ["x86_64", "arm64"]
    assert info.min_os == {"x86_64": "10.9", "arm64": "11.0"}
    assert info.malformed is None


def test_universal2_is_read_forward_and_only_up_to_the_last_slice_header() -> None:
    name, data = member(UNIVERSAL2)
    stream = ForwardOnly(data)
    info = inspect_binary(name, stream, size=len(data))
    assert info is not None and info.archs == ["x86_64", "arm64"]
    arm64_offset = 16384  # from the fat header (lipo -detailed_info shows the same)
    assert arm64_offset < stream.consumed < arm64_offset + 4096 < len(data)


@pytest.mark.parametrize(
    ("wheel", "arch", "glibc"),
    [(LINUX_X86_64, "x86_64", "2.14"), (LINUX_AARCH64, "aarch64", "2.17")],
)
def test_elf_arch_needed_libraries_and_glibc(wheel: str, arch: str, glibc: str) -> None:
    name, data = member(wheel)
    info = inspect_binary(name, data)
    assert info is not None
    assert (info.format, info.archs, info.glibc) == ("elf", [arch], glibc)
    assert info.libraries == ["libpthread.so.0", "libc.so.6"]
    assert info.min_os == {}


def test_elf_from_a_stream_is_spooled_and_gives_the_same_answer() -> None:
    name, data = member(LINUX_X86_64)
    assert inspect_binary(name, ForwardOnly(data), size=len(data)) == inspect_binary(name, data)


def test_to_json_uses_user_terms() -> None:
    info = inspect_binary(*member(UNIVERSAL2), signatures=True)
    assert info is not None
    assert info.to_json() == {
        "file": DARWIN_SO,
        "format": "mach-o",
        "archs": ["x86_64", "arm64"],
        "min_os": {"x86_64": "10.9", "arm64": "11.0"},
        "libraries": ["/usr/lib/libSystem.B.dylib"],
        "rpaths": [],
        "glibc": None,
        "malformed": None,
        "code_signatures": {
            "arm64": {
                "status": "valid",
                "signer": "ad-hoc, linker-signed",
                "flags": "0x20002",
                "hash": "sha256",
                "pages": 13,
                "bad_pages": [],
            }
        },
    }


def test_glibc_version() -> None:
    assert glibc_version("GLIBC_2.2.5") == (2, 2, 5)
    assert glibc_version("GLIBC_2.17") == (2, 17)
    assert glibc_version("GLIBC_PRIVATE") is None
    assert glibc_version("GLIBCXX_3.4.19") is None


# --- malformed binaries never raise --------------------------------------------------------------


def test_truncated_mach_o_load_commands() -> None:
    name, data = member(ARM64)
    info = inspect_binary(name, data[:100])
    assert info is not None
    assert info.slices == ()
    assert (
        info.malformed
        == "'arm64' load commands (1416 bytes) run past the end of the slice (100 bytes)"
    )


def test_truncated_mach_o_stream_without_size() -> None:
    name, data = member(ARM64)
    info = inspect_binary(name, ForwardOnly(data[:100]))
    assert info is not None
    assert info.malformed == "'arm64' load commands at byte 32 is cut short by the end of the file"


def test_segment_past_the_end_of_the_file() -> None:
    name, data = member(ARM64)
    info = inspect_binary(name, data[:2000])
    assert info is not None
    assert info.malformed == (
        "'arm64' load command 0 (LC_SEGMENT_64) covers bytes 0..16384, past the end (2000 bytes)"
    )


def test_load_command_size_past_the_load_command_area() -> None:
    name, original = member(ARM64)
    data = bytearray(original)
    struct.pack_into("<I", data, 32 + 4, 0x7FFF0000)  # cmdsize of the first load command
    info = inspect_binary(name, bytes(data))
    assert info is not None
    assert info.malformed == (
        "'arm64' load command 0 (LC_SEGMENT_64) has size 2147418112, "
        "past the end of the load command area (1416 bytes)"
    )


def test_fat_slice_offset_past_the_end_keeps_the_good_slice() -> None:
    name, original = member(UNIVERSAL2)
    data = bytearray(original)
    # fat_arch entries follow the 8-byte fat header; each is 20 big-endian bytes, offset at +8.
    struct.pack_into(">I", data, 8 + 20 + 8, len(data) + 4096)
    info = inspect_binary(name, bytes(data))
    assert info is not None
    assert info.archs == ["x86_64"]
    assert info.malformed == (
        f"fat slice 'arm64' (offset {len(data) + 4096}, size 50672) runs past the end of the file "
        f"({len(data)} bytes)"
    )


def test_truncated_elf_section_headers() -> None:
    name, data = member(LINUX_X86_64)
    info = inspect_binary(name, data[:8192])
    assert info is not None
    assert info.format == "elf"
    assert info.archs == ["x86_64"]
    assert info.malformed is not None
    assert info.malformed.startswith("section header table covers bytes ")


def test_elf_header_alone_is_malformed_not_an_exception() -> None:
    info = inspect_binary("x.so", b"\x7fELF\x02\x01\x01")
    assert info is not None
    assert info.format == "elf"
    assert info.malformed is not None and info.malformed.startswith("unreadable ELF header")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wheel=st.sampled_from([ARM64, UNIVERSAL2, LINUX_X86_64, LINUX_AARCH64]),
    cut=st.integers(min_value=8, max_value=70_000),
    flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=8),
)
def test_damaged_binaries_never_raise(wheel: str, cut: int, flips: list[tuple[int, int]]) -> None:
    name, original = member(wheel)
    data = bytearray(original[:cut])
    for position, mask in flips:  # damage the headers, where the parsers look
        if position < len(data):
            data[position] ^= mask
    for source in (bytes(data), ForwardOnly(bytes(data))):
        info = inspect_binary(name, source)
        assert info is None or isinstance(info, BinaryInfo)
