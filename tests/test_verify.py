"""Wheel verification on the real MarkupSafe wheels in tests/data/wheels, and on broken copies of
them that each test makes in tmp_path (re-tagged, tampered, patched with macholib)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from macholib import mach_o
from macholib.MachO import MachO

import tfwheels.verify as verify_module
from tfwheels.codesign import rehash_in_place
from tfwheels.errors import UsageError
from tfwheels.verify import Problem, parse_platform_tag, verify_wheel, verify_wheels
from tfwheels.verify_report import verify_command

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
LINUX_SO = "markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"
DIST_INFO = "markupsafe-3.0.4.dist-info"

Members = dict[str, bytes]


# --- making wheels -------------------------------------------------------------------------------


def read_members(wheel: str) -> Members:
    with zipfile.ZipFile(WHEELS / wheel) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def record_for(members: Mapping[str, bytes], record_name: str) -> bytes:
    """A correct RECORD for ``members``, as a wheel builder writes it."""
    lines = []
    for name, data in members.items():
        if name == record_name or name.endswith("/"):
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    lines.append(f"{record_name},,")
    return ("\n".join(lines) + "\n").encode()


def write_wheel(
    path: Path,
    members: Mapping[str, bytes],
    *,
    fix_record: bool = True,
    compression: int = zipfile.ZIP_DEFLATED,
    extra: Sequence[tuple[zipfile.ZipInfo, bytes]] = (),
) -> Path:
    """Write ``members`` as a wheel; with ``fix_record`` RECORD is regenerated to match them."""
    members = dict(members)
    if fix_record:
        record_name = next(n for n in members if n.endswith(".dist-info/RECORD"))
        members[record_name] = record_for(members, record_name)
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for info, data in extra:
            archive.writestr(info, data)
    return path


def retag(members: Members, old: str, new: str) -> Members:
    """Replace the platform tag in WHEEL (RECORD is fixed when the wheel is written)."""
    wheel_file = f"{DIST_INFO}/WHEEL"
    return {**members, wheel_file: members[wheel_file].replace(old.encode(), new.encode())}


def patch_mach_o(
    data: bytes, tmp_path: Path, change: Callable[[MachO], None], *, resign: bool = True
) -> bytes:
    """Rewrite a Mach-O's load commands with macholib, as delocate-like tools do.

    With ``resign`` the ad-hoc signature's page hashes are brought up to date afterwards, as
    Apple's install_name_tool does for linker-signed files, so that only the change under test
    is reported.
    """
    path = tmp_path / "patched.so"
    path.write_bytes(data)
    binary = MachO(str(path))
    change(binary)
    with path.open("r+b") as stream:
        binary.write(stream)
        if resign:
            resign_ad_hoc(binary, stream)
    return path.read_bytes()


def resign_ad_hoc(binary: MachO, stream: io.BufferedRandom) -> None:
    for header in binary.headers:
        for load, command, _data in header.commands:
            if load.cmd == mach_o.LC_CODE_SIGNATURE:
                rehash_in_place(stream, header.offset, header.offset + command.dataoff)


def set_minos(major: int, minor: int) -> Callable[[MachO], None]:
    def change(binary: MachO) -> None:
        for load, command, _data in binary.headers[0].commands:
            if load.cmd == mach_o.LC_BUILD_VERSION:
                command.minos = (major << 16) | (minor << 8)

    return change


def rename_library(old: str, new: str) -> Callable[[MachO], None]:
    def change(binary: MachO) -> None:
        assert binary.rewriteLoadCommands(lambda name: new if name == old else None)

    return change


def add_rpath(rpath: str) -> Callable[[MachO], None]:
    """Append an LC_RPATH into the header padding, as install_name_tool -add_rpath does."""

    def change(binary: MachO) -> None:
        header = binary.headers[0]
        load = mach_o.load_command(_endian_=header.endian, cmd=mach_o.LC_RPATH, cmdsize=0)
        command = mach_o.rpath_command(_endian_=header.endian, path=0)
        header.commands.append((load, command, b""))
        header.header.ncmds += 1
        header.rewriteDataForCommand(len(header.commands) - 1, rpath.encode())
        command.path = 12  # rewriteDataForCommand sets ``name``, the dylib_command field

    return change


def patch_elf_string(data: bytes, old: str, new: str) -> bytes:
    """Overwrite a string in .dynstr in place (``new`` no longer than ``old``)."""
    dynstr = ELFFile(io.BytesIO(data)).get_section_by_name(".dynstr")
    assert dynstr is not None
    start = data.index(old.encode() + b"\0", dynstr["sh_offset"])
    return data[:start] + new.encode().ljust(len(old), b"\0") + data[start + len(old) :]


def kinds(problems: list[Problem]) -> list[tuple[str, str | None, str]]:
    return [(p.kind, p.file, p.detail) for p in problems]


# --- the real wheels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wheel", "target", "archs"),
    [
        (ARM64, "darwin_arm64", ["arm64"]),
        (X86_64, "darwin_x86_64", ["x86_64"]),
        (UNIVERSAL2, "darwin_universal2", ["x86_64", "arm64"]),
        (LINUX_X86_64, "linux_x86_64", ["x86_64"]),
        (LINUX_AARCH64, "linux_aarch64", ["aarch64"]),
    ],
)
def test_real_wheels_pass_for_the_target_their_tag_implies(
    wheel: str, target: str, archs: list[str]
) -> None:
    report = verify_wheel(WHEELS / wheel)
    assert kinds(report.problems) == []
    assert report.ok
    assert report.target == target
    assert [b["archs"] for b in report.binaries] == [archs]


def test_arm64_wheel_against_darwin_x86_64() -> None:
    report = verify_wheel(WHEELS / ARM64, "darwin_x86_64")
    assert not report.ok
    assert kinds(report.problems) == [
        (
            "tag-mismatch",
            None,
            "platform tag 'macosx_11_0_arm64' does not fit target 'darwin_x86_64'",
        ),
        ("arch-mismatch", DARWIN_SO, "have 'arm64', need 'x86_64'"),
    ]


@pytest.mark.parametrize("target", ["darwin_arm64", "darwin_x86_64"])
def test_universal2_wheel_fits_both_macs(target: str) -> None:
    report = verify_wheel(WHEELS / UNIVERSAL2, target)
    assert report.ok, kinds(report.problems)
    assert report.binaries[0]["min_os"] == {"x86_64": "10.9", "arm64": "11.0"}


def test_manylinux_wheel_reports_its_glibc_and_needed_libraries() -> None:
    report = verify_wheel(WHEELS / LINUX_X86_64)
    assert report.binaries == [
        {
            "file": LINUX_SO,
            "format": "elf",
            "archs": ["x86_64"],
            "min_os": {},
            "libraries": ["libpthread.so.0", "libc.so.6"],
            "rpaths": [],
            "glibc": "2.14",
            "malformed": None,
            "code_signatures": {},
        }
    ]


def test_manylinux_wheel_against_the_other_linux_arch() -> None:
    report = verify_wheel(WHEELS / LINUX_X86_64, "linux_aarch64")
    assert kinds(report.problems)[1:] == [
        ("arch-mismatch", LINUX_SO, "have 'x86_64', need 'aarch64'")
    ]
    assert report.problems[0].kind == "tag-mismatch"


def test_elf_wheel_against_a_mac_target_names_both_formats() -> None:
    report = verify_wheel(WHEELS / LINUX_X86_64, "darwin_x86_64")
    assert ("arch-mismatch", LINUX_SO, "have ELF 'x86_64', need Mach-O 'x86_64'") in kinds(
        report.problems
    )


def test_to_json_has_exactly_the_contract_keys() -> None:
    document = json.loads(json.dumps(verify_wheel(WHEELS / ARM64, "darwin_x86_64").to_json()))
    assert set(document) == {"wheel", "ok", "target", "binaries", "problems"}
    assert document["wheel"] == ARM64 and document["ok"] is False
    assert all(set(p) == {"kind", "file", "detail"} for p in document["problems"])


def test_header_only_pass_finds_the_same_binaries() -> None:
    full = verify_wheel(WHEELS / UNIVERSAL2)
    quick = verify_wheel(WHEELS / UNIVERSAL2, check_record=False)
    assert quick.ok
    # Signatures need every byte; the header-only pass leaves them out.
    assert [b["code_signatures"] for b in quick.binaries] == [{}]
    assert [b["code_signatures"]["arm64"]["status"] for b in full.binaries] == ["valid"]
    strip = [{k: v for k, v in b.items() if k != "code_signatures"} for b in full.binaries]
    assert [{k: v for k, v in b.items() if k != "code_signatures"} for b in quick.binaries] == strip


def test_verify_wheels_keeps_the_order() -> None:
    reports = verify_wheels([WHEELS / X86_64, WHEELS / ARM64], "darwin_arm64")
    assert [(r.wheel, r.ok) for r in reports] == [(X86_64, False), (ARM64, True)]


# --- platform problems in wheels made here -------------------------------------------------------


def test_x86_64_wheel_retagged_as_arm64(tmp_path: Path) -> None:
    members = retag(read_members(X86_64), "macosx_10_9_x86_64", "macosx_11_0_arm64")
    wheel = write_wheel(tmp_path / ARM64, members)
    report = verify_wheel(wheel)
    assert report.target == "darwin_arm64"
    assert kinds(report.problems) == [("arch-mismatch", DARWIN_SO, "have 'x86_64', need 'arm64'")]


def test_universal2_tag_on_a_thin_binary(tmp_path: Path) -> None:
    members = retag(read_members(ARM64), "macosx_11_0_arm64", "macosx_11_0_universal2")
    wheel = write_wheel(
        tmp_path / "markupsafe-3.0.4-cp311-cp311-macosx_11_0_universal2.whl", members
    )
    assert kinds(verify_wheel(wheel).problems) == [
        ("arch-mismatch", DARWIN_SO, "have 'arm64', need 'arm64' + 'x86_64'")
    ]


def test_binary_needs_newer_macos_than_the_tag(tmp_path: Path) -> None:
    members = read_members(ARM64)
    members[DARWIN_SO] = patch_mach_o(members[DARWIN_SO], tmp_path, set_minos(14, 0))
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [
        ("min-os", DARWIN_SO, "'arm64' slice needs macOS 14.0, the wheel tag promises 11.0")
    ]
    assert report.binaries[0]["min_os"] == {"arm64": "14.0"}


def test_arm64_slice_of_universal2_may_need_macos_11() -> None:
    # The real universal2 fixture: a macosx_10_9 tag, an arm64 slice that needs macOS 11.0.
    report = verify_wheel(WHEELS / UNIVERSAL2)
    assert report.ok, report.problems  # no arm64 Mac runs macOS older than 11


@pytest.mark.parametrize("tag", ["macosx_10_9_arm64", "macosx_12_3_arm64"])
def test_tag_pip_never_installs_does_not_fit_its_implied_target(tmp_path: Path, tag: str) -> None:
    # pip on an arm64 Mac accepts macosx_11_0_arm64, macosx_12_0_arm64, ... but never a minor
    # version after 11, nor an arm64 tag before 11 (packaging.tags.mac_platforms).
    members = retag(read_members(ARM64), "macosx_11_0_arm64", tag)
    report = verify_wheel(write_wheel(tmp_path / f"markupsafe-3.0.4-cp311-cp311-{tag}.whl", members))
    assert report.target == "darwin_arm64"
    assert [(p.kind, p.file) for p in report.problems] == [("tag-mismatch", None)]
    assert f"platform tag '{tag}' does not fit target 'darwin_arm64'" in report.problems[0].detail


@pytest.mark.parametrize(
    ("library", "detail"),
    [
        (
            "/opt/homebrew/lib/libomp.dylib",
            "links /opt/homebrew/lib/libomp.dylib, outside the wheel and not part of macOS",
        ),
        (
            "/usr/local/lib/libfoo.dylib",
            "links /usr/local/lib/libfoo.dylib, outside the wheel and not part of macOS",
        ),
        (
            "@rpath/libmissing.dylib",
            "links @rpath/libmissing.dylib, but no rpath (none) finds it in the wheel",
        ),
        (
            "@loader_path/libfoo.dylib",
            "links @loader_path/libfoo.dylib, but markupsafe/libfoo.dylib is not in the wheel",
        ),
        (
            "@executable_path/libpython.dylib",
            (
                "links @executable_path/libpython.dylib, which is relative to the Python "
                "executable, outside the wheel"
            ),
        ),
        (
            "bazel-out/libtf.dylib",
            (
                "links bazel-out/libtf.dylib, "
                "a relative path dyld resolves against the current directory"
            ),
        ),
    ],
)
def test_mach_o_links_outside_the_wheel(tmp_path: Path, library: str, detail: str) -> None:
    members = read_members(ARM64)
    members[DARWIN_SO] = patch_mach_o(
        members[DARWIN_SO], tmp_path, rename_library("/usr/lib/libSystem.B.dylib", library)
    )
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [("external-library", DARWIN_SO, detail)]


def test_loader_path_library_shipped_in_the_wheel_is_fine(tmp_path: Path) -> None:
    members = read_members(ARM64)
    members[DARWIN_SO] = patch_mach_o(
        members[DARWIN_SO],
        tmp_path,
        rename_library("/usr/lib/libSystem.B.dylib", "@loader_path/.dylibs/libfoo.dylib"),
    )
    members["markupsafe/.dylibs/libfoo.dylib"] = b"stand-in, not a binary"
    assert verify_wheel(write_wheel(tmp_path / ARM64, members)).ok


def test_rpath_library_shipped_in_the_wheel_is_fine(tmp_path: Path) -> None:
    members = read_members(ARM64)
    so = patch_mach_o(members[DARWIN_SO], tmp_path, add_rpath("@loader_path/../markupsafe.libs"))
    members[DARWIN_SO] = patch_mach_o(
        so, tmp_path, rename_library("/usr/lib/libSystem.B.dylib", "@rpath/libfoo.dylib")
    )
    members["markupsafe.libs/libfoo.dylib"] = b"stand-in, not a binary"
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert report.binaries[0]["rpaths"] == ["@loader_path/../markupsafe.libs"]
    assert kinds(report.problems) == []


def test_rpath_into_the_build_machine(tmp_path: Path) -> None:
    members = read_members(ARM64)
    so = patch_mach_o(members[DARWIN_SO], tmp_path, add_rpath("/opt/homebrew/lib"))
    members[DARWIN_SO] = patch_mach_o(
        so, tmp_path, rename_library("/usr/lib/libSystem.B.dylib", "@rpath/libomp.dylib")
    )
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [
        ("external-library", DARWIN_SO, "rpath /opt/homebrew/lib points outside the wheel"),
        (
            "external-library",
            DARWIN_SO,
            "links @rpath/libomp.dylib, but no rpath (/opt/homebrew/lib) finds it in the wheel",
        ),
    ]


def test_elf_needs_a_library_off_the_manylinux_list(tmp_path: Path) -> None:
    members = read_members(LINUX_X86_64)
    members[LINUX_SO] = patch_elf_string(members[LINUX_SO], "libpthread.so.0", "libcrypto.so.3")
    report = verify_wheel(write_wheel(tmp_path / LINUX_X86_64, members))
    assert kinds(report.problems) == [
        (
            "external-library",
            LINUX_SO,
            "needs libcrypto.so.3, which is neither in the wheel (or the wheels verified with it) nor on the manylinux allow-list",
        )
    ]


def needed_to_runpath(data: bytes, library: str, runpath: str) -> bytes:
    """Turn the DT_NEEDED entry naming ``library`` into a DT_RUNPATH of ``runpath`` (no longer
    than ``library``), as a build that passes -Wl,-rpath,<build dir> leaves it."""
    elf = ELFFile(io.BytesIO(data))
    dynstr, dynamic = elf.get_section_by_name(".dynstr"), elf.get_section_by_name(".dynamic")
    assert dynstr is not None and dynamic is not None and elf.elfclass == 64 and elf.little_endian
    name_at = data.index(library.encode() + b"\0", dynstr["sh_offset"]) - dynstr["sh_offset"]
    changed = bytearray(patch_elf_string(data, library, runpath))
    for entry in range(dynamic["sh_size"] // 16):
        at = dynamic["sh_offset"] + 16 * entry
        if struct.unpack_from("<qQ", changed, at) == (1, name_at):  # DT_NEEDED
            struct.pack_into("<q", changed, at, 29)  # DT_RUNPATH
            return bytes(changed)
    raise AssertionError(f"no DT_NEEDED {library}")


@pytest.mark.parametrize(
    ("runpath", "detail"),
    [
        ("/tmp/b/lib", "rpath /tmp/b/lib points outside the wheel"),
        ("/home/ci/lib", "rpath /home/ci/lib points outside the wheel"),
        ("bazel-out/k8", "rpath bazel-out/k8 is relative to the current directory, not to the library ($ORIGIN)"),
        ("$ORIGIN/../x", None),
        ("/usr/lib64", None),
    ],
)
def test_elf_runpath_into_the_build_machine(
    tmp_path: Path, runpath: str, detail: str | None
) -> None:
    members = read_members(LINUX_X86_64)
    members[LINUX_SO] = needed_to_runpath(members[LINUX_SO], "libpthread.so.0", runpath)
    report = verify_wheel(write_wheel(tmp_path / LINUX_X86_64, members))
    assert report.binaries[0]["rpaths"] == [runpath]
    assert kinds(report.problems) == ([("external-library", LINUX_SO, detail)] if detail else [])


def test_elf_libz_is_on_the_manylinux_list(tmp_path: Path) -> None:
    # auditwheel allows libz.so.1 since pypa/auditwheel#334
    members = read_members(LINUX_X86_64)
    members[LINUX_SO] = patch_elf_string(members[LINUX_SO], "libpthread.so.0", "libz.so.1")
    assert verify_wheel(write_wheel(tmp_path / LINUX_X86_64, members)).ok


def test_elf_needs_newer_glibc_than_the_manylinux_tag(tmp_path: Path) -> None:
    members = read_members(LINUX_X86_64)
    members[LINUX_SO] = patch_elf_string(members[LINUX_SO], "GLIBC_2.14", "GLIBC_2.34")
    report = verify_wheel(write_wheel(tmp_path / LINUX_X86_64, members))
    assert kinds(report.problems) == [
        ("glibc", LINUX_SO, "needs GLIBC_2.34, the manylinux tag allows up to 2.17")
    ]


def test_malformed_binary_is_reported_not_raised(tmp_path: Path) -> None:
    members = read_members(ARM64)
    members[DARWIN_SO] = members[DARWIN_SO][:2000]
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [
        (
            "malformed-binary",
            DARWIN_SO,
            (
                "'arm64' load command 0 (LC_SEGMENT_64) covers bytes 0..16384, "
                "past the end (2000 bytes)"
            ),
        )
    ]


def test_any_wheel_with_native_code(tmp_path: Path) -> None:
    members = read_members(ARM64)
    members = retag(members, "cp311-cp311-macosx_11_0_arm64", "py3-none-any")
    wheel = write_wheel(tmp_path / "markupsafe-3.0.4-py3-none-any.whl", members)
    report = verify_wheel(wheel)
    assert report.target is None
    assert kinds(report.problems) == [
        ("tag-mismatch", DARWIN_SO, f"tagged 'any' but ships native code ({DARWIN_SO})")
    ]


def test_pure_any_wheel_has_no_arch_requirement(tmp_path: Path) -> None:
    members = {name: data for name, data in read_members(ARM64).items() if not name.endswith(".so")}
    members = retag(members, "cp311-cp311-macosx_11_0_arm64", "py3-none-any")
    wheel = write_wheel(tmp_path / "markupsafe-3.0.4-py3-none-any.whl", members)
    assert verify_wheel(wheel).ok
    assert verify_wheel(wheel, "linux_aarch64").ok


def test_unsupported_platform_tag(tmp_path: Path) -> None:
    members = retag(read_members(X86_64), "macosx_10_9_x86_64", "win_amd64")
    wheel = write_wheel(tmp_path / "markupsafe-3.0.4-cp311-cp311-win_amd64.whl", members)
    report = verify_wheel(wheel)
    assert report.target is None
    assert kinds(report.problems) == [
        (
            "tag-mismatch",
            None,
            (
                "platform tag 'win_amd64' is not one tfwheels checks "
                "(darwin_arm64, darwin_x86_64, darwin_universal2, linux_x86_64, linux_aarch64)"
            ),
        )
    ]


# --- RECORD --------------------------------------------------------------------------------------


def test_tampered_record_hash(tmp_path: Path) -> None:
    members = read_members(ARM64)
    record_name = f"{DIST_INFO}/RECORD"
    members[record_name] = record_for(members, record_name).replace(
        b"markupsafe/_native.py,sha256=hSLs", b"markupsafe/_native.py,sha256=XSLs"
    )
    report = verify_wheel(write_wheel(tmp_path / ARM64, members, fix_record=False))
    assert kinds(report.problems) == [
        (
            "record-mismatch",
            "markupsafe/_native.py",
            (
                "sha256 is hSLs8Jmz5aqayuengJJ3kdT5PwNpBWpKrmQSdipndC8, "
                "RECORD says XSLs8Jmz5aqayuengJJ3kdT5PwNpBWpKrmQSdipndC8"
            ),
        )
    ]


def test_file_changed_after_record_was_written(tmp_path: Path) -> None:
    members = read_members(ARM64)
    members["markupsafe/_native.py"] += b"# injected\n"
    report = verify_wheel(write_wheel(tmp_path / ARM64, members, fix_record=False))
    assert [(p.kind, p.file) for p in report.problems] == [
        ("record-mismatch", "markupsafe/_native.py"),
        ("record-mismatch", "markupsafe/_native.py"),
    ]
    assert report.problems[1].detail == "size is 221, RECORD says 210"


def test_record_and_archive_disagree_on_the_file_list(tmp_path: Path) -> None:
    members = read_members(ARM64)
    record_name = f"{DIST_INFO}/RECORD"
    record = record_for(members, record_name)
    del members["markupsafe/py.typed"]  # listed, absent
    members["markupsafe/extra.py"] = b"x = 1\n"  # present, unlisted
    members[record_name] = record
    report = verify_wheel(write_wheel(tmp_path / ARM64, members, fix_record=False))
    assert kinds(report.problems) == [
        ("record-mismatch", "markupsafe/extra.py", "not listed in RECORD"),
        ("record-mismatch", "markupsafe/py.typed", "listed in RECORD but not in the wheel"),
    ]


def test_record_missing(tmp_path: Path) -> None:
    members = read_members(ARM64)
    del members[f"{DIST_INFO}/RECORD"]
    report = verify_wheel(write_wheel(tmp_path / ARM64, members, fix_record=False))
    assert kinds(report.problems) == [
        ("record-mismatch", f"{DIST_INFO}/RECORD", "RECORD is missing")
    ]


def test_record_with_a_weak_hash(tmp_path: Path) -> None:
    members = read_members(ARM64)
    record_name = f"{DIST_INFO}/RECORD"
    record = record_for(members, record_name).decode()
    md5 = base64.urlsafe_b64encode(hashlib.md5(members["markupsafe/py.typed"]).digest()).rstrip(
        b"="
    )
    record = record.replace(
        "markupsafe/py.typed,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0",
        f"markupsafe/py.typed,md5={md5.decode()},0",
    )
    members[record_name] = record.encode()
    report = verify_wheel(write_wheel(tmp_path / ARM64, members, fix_record=False))
    assert kinds(report.problems) == [
        (
            "record-mismatch",
            "markupsafe/py.typed",
            f"hash 'md5={md5.decode()}' in RECORD is not sha256 or stronger",
        )
    ]


def test_header_only_pass_skips_record(tmp_path: Path) -> None:
    members = read_members(ARM64)
    members["markupsafe/_native.py"] += b"# injected\n"
    wheel = write_wheel(tmp_path / ARM64, members, fix_record=False)
    assert verify_wheel(wheel, check_record=False).ok
    assert not verify_wheel(wheel).ok


# --- zip integrity and unsafe paths --------------------------------------------------------------


def test_bad_crc(tmp_path: Path) -> None:
    members = read_members(ARM64)
    wheel = write_wheel(tmp_path / ARM64, members, compression=zipfile.ZIP_STORED)
    data = bytearray(wheel.read_bytes())
    position = data.index(members["markupsafe/_native.py"])
    data[position] ^= 0x20  # still valid text, wrong CRC
    wheel.write_bytes(bytes(data))
    report = verify_wheel(wheel)
    assert kinds(report.problems) == [
        (
            "zip-integrity",
            "markupsafe/_native.py",
            "unreadable: Bad CRC-32 for file 'markupsafe/_native.py'",
        )
    ]


def test_duplicate_names(tmp_path: Path) -> None:
    members = read_members(ARM64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # what we are testing
        wheel = write_wheel(
            tmp_path / ARM64,
            members,
            extra=[(zipfile.ZipInfo("markupsafe/_native.py"), b"import os\n")],
        )
    report = verify_wheel(wheel)
    assert ("zip-integrity", "markupsafe/_native.py", "appears 2 times in the archive") in kinds(
        report.problems
    )


def test_zip_bomb_member_is_not_read(tmp_path: Path) -> None:
    members = read_members(ARM64)
    members["markupsafe/zeros.bin"] = bytes(8 * 1024 * 1024)
    wheel = write_wheel(tmp_path / ARM64, members)
    with zipfile.ZipFile(wheel) as archive:
        compressed = archive.getinfo("markupsafe/zeros.bin").compress_size
    report = verify_wheel(wheel)
    ratio = round(8 * 1024 * 1024 / compressed)
    assert kinds(report.problems) == [
        (
            "zip-integrity",
            "markupsafe/zeros.bin",
            f"inflates {ratio}x (8388608 bytes from {compressed}), over the 200x limit; not read",
        )
    ]


def test_total_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "MAX_UNCOMPRESSED_BYTES", 64 * 1024)
    report = verify_wheel(WHEELS / ARM64)
    assert kinds(report.problems) == [
        ("zip-integrity", None, "inflates to 72.2 KiB, over the 64.0 KiB limit; contents not read")
    ]
    assert report.binaries == []


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("../evil.py", "'..' component leaves the install directory"),
        ("markupsafe/../../evil.py", "'..' component leaves the install directory"),
        ("/etc/evil.py", "absolute path"),
        ("C:/evil.py", "absolute path"),
        ("markupsafe\\evil.py", "backslash in name"),
    ],
)
def test_unsafe_paths(tmp_path: Path, name: str, detail: str) -> None:
    members = {**read_members(ARM64), name: b"print('pwned')\n"}
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [("unsafe-path", name, detail)]


def test_symlink_entry(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("markupsafe/link.py")
    link.create_system = 3  # Unix, so the mode bits count
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    members = read_members(ARM64)
    record_name = f"{DIST_INFO}/RECORD"
    members[record_name] = record_for(
        {**members, "markupsafe/link.py": b"/etc/passwd"}, record_name
    )
    wheel = write_wheel(tmp_path / ARM64, members, fix_record=False, extra=[(link, b"/etc/passwd")])
    report = verify_wheel(wheel)
    assert kinds(report.problems) == [("unsafe-path", "markupsafe/link.py", "symbolic link entry")]


def test_truncated_wheel_is_a_zip_integrity_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It starts like a zip (PK\x03\x04) but its central directory was cut off: a damaged wheel,
    # reported like other damage (exit 1, JSON), not a usage error.
    wheel = tmp_path / ARM64
    data = (WHEELS / ARM64).read_bytes()
    wheel.write_bytes(data[: len(data) // 2])
    report = verify_wheel(wheel)
    assert report.target == "darwin_arm64"
    [problem] = report.problems
    assert (problem.kind, problem.file) == ("zip-integrity", None)
    assert problem.detail.startswith("the archive is truncated or damaged")
    assert verify_command([str(wheel)], None, True) == 1
    document = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in document["wheels"][0]["problems"]] == ["zip-integrity"]


def test_not_a_zip_is_a_usage_error(tmp_path: Path) -> None:
    wheel = tmp_path / ARM64
    wheel.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(UsageError) as caught:
        verify_wheel(wheel)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


def test_bad_file_name_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "markupsafe.zip"
    path.write_bytes((WHEELS / ARM64).read_bytes())
    with pytest.raises(UsageError, match=r"^markupsafe.zip: not a wheel file name \(Invalid wheel"):
        verify_wheel(path)


def test_unknown_target_suggests_the_close_one() -> None:
    with pytest.raises(UsageError, match=r"Perhaps you meant 'darwin_arm64'\?$"):
        verify_wheel(WHEELS / ARM64, "darwin-arm64")


# --- metadata ------------------------------------------------------------------------------------


def test_metadata_name_and_version_disagree_with_the_file_name(tmp_path: Path) -> None:
    members = read_members(ARM64)
    metadata = f"{DIST_INFO}/METADATA"
    members[metadata] = members[metadata].replace(b"Name: MarkupSafe", b"Name: MarkupUnsafe")
    members[metadata] = members[metadata].replace(b"Version: 3.0.4", b"Version: 3.0.5")
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [
        ("metadata", metadata, "Name 'MarkupUnsafe' does not match the file name's 'markupsafe'"),
        ("metadata", metadata, "Version '3.0.5' does not match the file name's '3.0.4'"),
    ]


def test_wheel_tag_lines_disagree_with_the_file_name(tmp_path: Path) -> None:
    wheel = write_wheel(
        tmp_path / "markupsafe-3.0.4-cp311-cp311-macosx_12_0_arm64.whl", read_members(ARM64)
    )
    report = verify_wheel(wheel)
    assert kinds(report.problems) == [
        (
            "metadata",
            f"{DIST_INFO}/WHEEL",
            (
                "Tag lines cp311-cp311-macosx_11_0_arm64 do not match the file name's "
                "cp311-cp311-macosx_12_0_arm64"
            ),
        )
    ]


def test_wheel_file_missing(tmp_path: Path) -> None:
    members = read_members(ARM64)
    del members[f"{DIST_INFO}/WHEEL"]
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [("metadata", f"{DIST_INFO}/WHEEL", "missing")]


def test_purelib_wheel_with_native_code(tmp_path: Path) -> None:
    members = read_members(ARM64)
    wheel_file = f"{DIST_INFO}/WHEEL"
    members[wheel_file] = members[wheel_file].replace(
        b"Root-Is-Purelib: false", b"Root-Is-Purelib: true"
    )
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [
        (
            "metadata",
            wheel_file,
            f"Root-Is-Purelib is true, but the wheel ships native code ({DARWIN_SO})",
        )
    ]


def test_dist_info_for_another_project(tmp_path: Path) -> None:
    members = {
        name.replace(DIST_INFO, "other-3.0.4.dist-info"): data
        for name, data in read_members(ARM64).items()
    }
    report = verify_wheel(write_wheel(tmp_path / ARM64, members))
    assert kinds(report.problems) == [
        ("metadata", "other-3.0.4.dist-info", "does not match the file name (markupsafe 3.0.4)")
    ]


# --- tags ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "os", "archs", "version"),
    [
        ("macosx_11_0_arm64", "macos", ("arm64",), (11, 0)),
        ("macosx_10_9_universal2", "macos", ("arm64", "x86_64"), (10, 9)),
        ("manylinux_2_28_aarch64", "linux", ("aarch64",), (2, 28)),
        ("manylinux1_x86_64", "linux", ("x86_64",), (2, 5)),
        ("manylinux2010_x86_64", "linux", ("x86_64",), (2, 12)),
        ("manylinux2014_aarch64", "linux", ("aarch64",), (2, 17)),
        ("linux_x86_64", "linux", ("x86_64",), None),
        ("any", "any", (), None),
        ("musllinux_1_2_x86_64", "other", (), None),
    ],
)
def test_parse_platform_tag(
    tag: str, os: str, archs: tuple[str, ...], version: tuple[int, int] | None
) -> None:
    parsed = parse_platform_tag(tag)
    assert (parsed.os, parsed.archs, parsed.version) == (os, archs, version)


# --- the command ---------------------------------------------------------------------------------


def test_verify_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = verify_command([str(WHEELS / ARM64), str(WHEELS / X86_64)], "darwin_arm64", as_json=True)
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(w["wheel"], w["ok"]) for w in document["wheels"]] == [(ARM64, True), (X86_64, False)]
    assert document["wheels"][1]["problems"][1] == {
        "kind": "arch-mismatch",
        "file": DARWIN_SO,
        "detail": "have 'x86_64', need 'arm64'",
    }


def test_verify_command_directory_all_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ARM64).write_bytes((WHEELS / ARM64).read_bytes())
    (tmp_path / UNIVERSAL2).write_bytes((WHEELS / UNIVERSAL2).read_bytes())
    (tmp_path / "notes.txt").write_text("not a wheel, not picked up\n")
    assert verify_command([str(tmp_path)], "darwin_arm64", as_json=False) == 0
    table = capsys.readouterr().out
    assert ARM64[:20] in table and "OK" in table


def test_verify_command_table_lists_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_command([str(WHEELS / X86_64)], "darwin_arm64", as_json=False) == 1
    table = capsys.readouterr().out
    assert "arch-mismatch" in table and "tag-mismatch" in table and "2 problems" in table


def test_verify_command_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no \\*.whl files"):
        verify_command([str(tmp_path)], None, as_json=True)


def test_verify_command_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        verify_command([str(tmp_path / ARM64)], None, as_json=True)


def test_resolve_a_set_that_mixes_platforms_once_per_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The linux wheel beside the mac one is resolved for linux, not "unresolvable on darwin_arm64".
    import os

    from tfwheels.resolve import ResolveOptions

    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    paths = [str(WHEELS / ARM64), str(WHEELS / LINUX_X86_64)]
    assert verify_command(paths, None, True, resolve=ResolveOptions(no_index=True)) == 0
    document = json.loads(capsys.readouterr().out)
    resolution = document["resolution"]
    assert resolution["ok"] is True
    assert [(r["target"], [i["source"] for i in r["installs"]]) for r in resolution["targets"]] == [
        ("darwin_arm64", ["under-test"]),
        ("linux_x86_64", ["under-test"]),
    ]
    assert all(w["ok"] for w in document["wheels"])
