"""Code signatures of arm64 Mach-O files: parsed from the real MarkupSafe binaries, checked page by
page as they stream, and repaired into new wheels.

The binaries are the real ones in tests/data/wheels (linker-signed, ad hoc, SHA-256, 4 KiB
pages), changed in tmp_path: a byte flipped, the signature rewritten by a small signer below (SHA-1,
16 KiB pages, a certificate blob) or removed. macOS itself (its kernel, codesign) is not here;
the one test that needs codesign runs a stand-in script and says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import invoke
from wheelfactory import digest

import tfwheels.repair as repair_module
from tfwheels.binaries import inspect_binary
from tfwheels.codesign import (
    DEFAULT_SCHEME,
    PageHasher,
    PageScheme,
    SignatureError,
    parse_signature,
    rehash_in_place,
)
from tfwheels.errors import UsageError
from tfwheels.repair import codesign_available, repair_wheel
from tfwheels.verify import verify_wheel
from tfwheels.verify_report import verify_command

WHEELS = Path(__file__).resolve().parent / "data" / "wheels"
ARM64 = "markupsafe-3.0.4-cp311-cp311-macosx_11_0_arm64.whl"
X86_64 = "markupsafe-3.0.4-cp311-cp311-macosx_10_9_x86_64.whl"
UNIVERSAL2 = "MarkupSafe-3.0.2-cp311-cp311-macosx_10_9_universal2.whl"
SO = "markupsafe/_speedups.cpython-311-darwin.so"
DIST_INFO = "markupsafe-3.0.4.dist-info"
# Read off the fixture with macholib (see test_signature_location_agrees_with_macholib).
CODE_END = 50176  # LC_CODE_SIGNATURE dataoff of the arm64 .so: its code limit
SIGNATURE_SIZE = 560
PAGES = 13
LC_CODE_SIGNATURE = 0x1D


def fixture_so(wheel: str = ARM64) -> bytes:
    with zipfile.ZipFile(WHEELS / wheel) as archive:
        return archive.read(SO)


def rewrap(wheel: str, folder: Path, so: bytes, *, record: bool = True) -> Path:
    """The fixture wheel with its .so replaced; RECORD vouches for the new bytes unless told not."""
    path = folder / wheel
    old = fixture_so(wheel)
    with zipfile.ZipFile(WHEELS / wheel) as source, zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == SO:
                data = so
            elif info.filename.endswith("/RECORD") and record:
                data = data.replace(
                    f"{SO},sha256={digest(old)},{len(old)}".encode(),
                    f"{SO},sha256={digest(so)},{len(so)}".encode(),
                )
            out.writestr(zipfile.ZipInfo(info.filename, info.date_time), data)
    return path


def flip(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0xFF
    return bytes(changed)


def sign(
    code: bytes,
    *,
    hash_type: int = 2,
    page_shift: int = 12,
    flags: int = 0x20002,
    cms: bytes | None = None,
    code_limit: int | None = None,
) -> bytes:
    """A minimal embedded signature over ``code``, written the way cs_blobs.h lays it out."""
    algorithm, size = {1: ("sha1", 20), 2: ("sha256", 32)}[hash_type]
    limit = len(code) if code_limit is None else code_limit
    page = 1 << page_shift
    hashes = b"".join(
        hashlib.new(algorithm, code[start : min(start + page, limit)]).digest()[:size]
        for start in range(0, limit, page)
    )
    identifier = b"test\0"
    ident_offset = 48  # version 0x20100: 44 fixed bytes and scatterOffset
    hash_offset = ident_offset + len(identifier)
    header = struct.pack(
        ">IIIIIIIIIBBBBII", 0xFADE0C02, hash_offset + len(hashes), 0x20100, flags, hash_offset,
        ident_offset, 0, len(hashes) // size, limit, size, hash_type, 0, page_shift, 0, 0,
    )  # fmt: skip
    blobs = [(0, header + identifier + hashes)]
    if cms is not None:
        blobs.append((0x10000, struct.pack(">II", 0xFADE0B01, 8 + len(cms)) + cms))
    offset = 12 + 8 * len(blobs)
    index, body = b"", b""
    for slot, blob in blobs:
        index += struct.pack(">II", slot, offset + len(body))
        body += blob
    return struct.pack(">III", 0xFADE0CC0, offset + len(body), len(blobs)) + index + body


def resign(data: bytes, **options: object) -> bytes:
    """The thin arm64 .so with its signature replaced by ``sign(...)``, in the same space."""
    signature = sign(data[:CODE_END], **options)  # type: ignore[arg-type]
    assert len(signature) <= SIGNATURE_SIZE
    end = CODE_END + SIGNATURE_SIZE
    return data[:CODE_END] + signature.ljust(SIGNATURE_SIZE, b"\0") + data[end:]


def drop_code_signature(data: bytes) -> bytes:
    """Remove LC_CODE_SIGNATURE from a thin little-endian Mach-O, as a careless tool might."""
    ncmds, sizeofcmds = struct.unpack_from("<II", data, 16)
    position, commands = 32, []
    for _ in range(ncmds):
        cmd, cmdsize = struct.unpack_from("<II", data, position)
        if cmd != LC_CODE_SIGNATURE:
            commands.append(data[position : position + cmdsize])
        position += cmdsize
    area = b"".join(commands)
    header = data[:16] + struct.pack("<II", len(commands), len(area)) + data[24:32]
    return header + area.ljust(sizeofcmds, b"\0") + data[32 + sizeofcmds :]


def signature_problems(wheel: Path) -> list[tuple[str | None, str]]:
    return [(p.file, p.detail) for p in verify_wheel(wheel).problems if p.kind == "code-signature"]


# --- parsing real signatures ---------------------------------------------------------------------


def test_signature_location_agrees_with_macholib(tmp_path: Path) -> None:
    from macholib.MachO import MachO

    path = tmp_path / "speedups.so"
    path.write_bytes(fixture_so())
    commands = [c for load, c, _ in MachO(str(path)).headers[0].commands if load.cmd == 0x1D]
    assert [(c.dataoff, c.datasize) for c in commands] == [(CODE_END, SIGNATURE_SIZE)]
    info = inspect_binary(SO, fixture_so())
    assert info is not None and info.slices[0].signature_at == (CODE_END, SIGNATURE_SIZE)


def test_parse_the_linker_signature_of_the_arm64_fixture() -> None:
    data = fixture_so()
    signature = parse_signature(data[CODE_END : CODE_END + SIGNATURE_SIZE])
    (cd,) = signature.directories
    assert (cd.version, cd.flags, cd.hash_type, cd.page_size) == (0x20400, 0x20002, 2, 4096)
    assert (cd.code_limit, cd.n_code_slots, cd.identifier) == (
        CODE_END,
        PAGES,
        "_speedups.cpython-311-darwin.so",
    )
    assert signature.adhoc and signature.cms_size == 0
    assert signature.signer == "ad-hoc, linker-signed"
    assert cd.expected(0) == hashlib.sha256(data[:4096]).digest()
    assert cd.expected(PAGES - 1) == hashlib.sha256(data[12 * 4096 : CODE_END]).digest()


def test_the_test_signer_writes_what_the_linker_wrote() -> None:
    data = fixture_so()
    ours = parse_signature(sign(data[:CODE_END])).best
    linker = parse_signature(data[CODE_END : CODE_END + SIGNATURE_SIZE]).best
    assert ours.hashes == linker.hashes and ours.scheme == linker.scheme


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\xfa\xde", "too short for a SuperBlob header"),
        (struct.pack(">III", 0xFADE0C02, 12, 0), "not 0xfade0cc0"),
        (struct.pack(">III", 0xFADE0CC0, 12, 0), "holds no CodeDirectory"),
        (struct.pack(">IIIII", 0xFADE0CC0, 20, 1, 0, 400), "past the end of the 20-byte signature"),
        (struct.pack(">III", 0xFADE0CC0, 9000, 1), "claims 9000 bytes"),
    ],
)
def test_malformed_signatures_raise_one_error(blob: bytes, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        parse_signature(blob)


def test_page_hasher_gives_the_same_hashes_for_any_chunking() -> None:
    data = fixture_so()
    whole = PageHasher(0, PageScheme("sha256", 4096, CODE_END))
    whole.feed(0, data)
    for chunk in (1, 7, 4095, 4097, 65536):
        hasher = PageHasher(0, DEFAULT_SCHEME)
        hasher.set_limit(CODE_END)
        for start in range(0, len(data), chunk):
            hasher.feed(start, data[start : start + chunk])
        assert hasher.finish() == whole.finish()
    assert len(whole.digests) == PAGES


# --- verify-wheel --------------------------------------------------------------------------------


@pytest.mark.parametrize("wheel", [ARM64, UNIVERSAL2])
def test_real_arm64_signatures_are_valid(wheel: str) -> None:
    report = verify_wheel(WHEELS / wheel)
    assert report.ok, report.problems
    signatures = report.binaries[0]["code_signatures"]
    assert list(signatures) == ["arm64"]  # the x86_64 slice of universal2 is unsigned, and fine
    assert signatures["arm64"] == {
        "status": "valid",
        "signer": "ad-hoc, linker-signed",
        "flags": "0x20002",
        "hash": "sha256",
        "pages": PAGES,
        "bad_pages": [],
    }


def test_unsigned_x86_64_is_fine() -> None:
    report = verify_wheel(WHEELS / X86_64)
    assert report.ok and report.binaries[0]["code_signatures"] == {}


@pytest.mark.parametrize(
    ("position", "page"),
    [(20000, 4), (0x20, 0), (CODE_END - 1, PAGES - 1)],
    ids=["middle", "load-commands", "last-short-page"],
)
def test_one_flipped_byte_makes_exactly_one_page_differ(
    tmp_path: Path, position: int, page: int
) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), position))
    report = verify_wheel(wheel)
    assert [(p.kind, p.file) for p in report.problems] == [("code-signature", SO)]
    detail = report.problems[0].detail
    assert f"1 of {PAGES} pages differs from the signature's sha256 hashes: page {page} " in detail
    assert "zsh: killed python3" in detail and "SIGKILL (Code Signature Invalid)" in detail
    assert "codesign --force --sign - _speedups.cpython-311-darwin.so" in detail
    assert report.binaries[0]["code_signatures"]["arm64"]["bad_pages"] == [page]


def test_a_changed_hash_in_the_signature_is_caught_too(tmp_path: Path) -> None:
    data = fixture_so()
    cd = parse_signature(data[CODE_END : CODE_END + SIGNATURE_SIZE]).best
    wheel = rewrap(ARM64, tmp_path, flip(data, CODE_END + cd.slot_offset(7)))
    ((_, detail),) = signature_problems(wheel)
    assert (
        "1 of 13 pages differs from the signature's sha256 hashes: page 7 (bytes 28672.." in detail
    )


def test_padding_after_the_signature_is_not_covered(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), CODE_END + SIGNATURE_SIZE - 1))
    assert signature_problems(wheel) == []


def test_universal2_arm64_slice_is_checked_at_its_offset(tmp_path: Path) -> None:
    data = fixture_so(UNIVERSAL2)
    arm64_offset = 16384  # the fat header's offset of the arm64 slice; x86_64 is at 4096
    (tmp_path / "arm64").mkdir()
    wheel = rewrap(UNIVERSAL2, tmp_path / "arm64", flip(data, arm64_offset + 5000))
    ((_, detail),) = signature_problems(wheel)
    assert detail.startswith("'arm64' slice changed after it was signed")
    assert "page 1 (bytes 4096..8191)" in detail
    (tmp_path / "x86_64").mkdir()
    x86_64_changed = rewrap(UNIVERSAL2, tmp_path / "x86_64", flip(data, 4096 + 5000))
    assert verify_wheel(x86_64_changed).ok  # unsigned x86_64 code may change


def test_darwin_x86_64_target_ignores_the_arm64_slice(tmp_path: Path) -> None:
    wheel = rewrap(UNIVERSAL2, tmp_path, flip(fixture_so(UNIVERSAL2), 16384 + 5000))
    problems = verify_wheel(wheel, "darwin_x86_64").problems
    assert [p.kind for p in problems] == []


def test_arm64_without_a_signature(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, drop_code_signature(fixture_so()))
    ((file, detail),) = signature_problems(wheel)
    assert file == SO
    assert detail.startswith("'arm64' slice has no code signature (no LC_CODE_SIGNATURE)")
    assert "zsh: killed python3" in detail


def test_unreadable_signature(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), CODE_END))  # the SuperBlob magic
    ((_, detail),) = signature_problems(wheel)
    assert "code signature is unreadable (signature starts with magic 0x05de0cc0" in detail


@pytest.mark.parametrize(
    ("options", "hash_name"),
    [({"hash_type": 1}, "sha1"), ({"page_shift": 14}, "sha256")],
    ids=["old-sha1-signature", "16k-pages"],
)
def test_other_hash_schemes_are_checked_on_a_second_pass(
    tmp_path: Path, options: dict[str, int], hash_name: str
) -> None:
    signed = resign(fixture_so(), **options)
    good = verify_wheel(rewrap(ARM64, tmp_path, signed))
    assert good.ok, good.problems
    assert good.binaries[0]["code_signatures"]["arm64"]["hash"] == hash_name
    (tmp_path / "bad").mkdir()
    ((_, detail),) = signature_problems(rewrap(ARM64, tmp_path / "bad", flip(signed, 20000)))
    assert f"differs from the signature's {hash_name} hashes" in detail


def test_a_signature_over_other_bytes_than_the_code(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, resign(fixture_so(), code_limit=CODE_END - 100))
    ((_, detail),) = signature_problems(wheel)
    assert f"the signature covers {CODE_END - 100} bytes, but the code now ends at byte" in detail


def test_certificate_signature_points_at_its_owner(tmp_path: Path) -> None:
    signed = resign(fixture_so(), flags=0, cms=b"\x30\x80fake-cms")
    wheel = rewrap(ARM64, tmp_path, flip(signed, 20000))
    ((_, detail),) = signature_problems(wheel)
    assert "(certificate (CMS))" in detail and "original identity" in detail


def test_header_only_pass_does_not_check_signatures(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    assert verify_wheel(wheel, check_record=False).ok


# --- repairing -----------------------------------------------------------------------------------


def test_rehash_in_place_restores_the_linker_signature(tmp_path: Path) -> None:
    original = fixture_so()
    changed = io.BytesIO(flip(original, 20000))
    assert rehash_in_place(changed, 0, CODE_END) == 1
    fixed = parse_signature(changed.getvalue()[CODE_END : CODE_END + SIGNATURE_SIZE]).best
    assert fixed.expected(4) == hashlib.sha256(changed.getvalue()[16384:20480]).digest()
    assert changed.getvalue()[:CODE_END] == flip(original, 20000)[:CODE_END]


def test_rehash_refuses_a_certificate_signature() -> None:
    signed = io.BytesIO(flip(resign(fixture_so(), flags=0, cms=b"x"), 20000))
    before = signed.getvalue()
    with pytest.raises(SignatureError, match="signed with a certificate"):
        rehash_in_place(signed, 0, CODE_END)
    assert signed.getvalue() == before


def test_fix_signatures_writes_a_repaired_copy(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    before = wheel.read_bytes()
    repair = repair_wheel(wheel, tmp_path / "fixed", use_codesign=False)
    assert wheel.read_bytes() == before  # the original is never touched
    assert repair.output == tmp_path / "fixed" / ARM64
    assert [(f.file, f.arch, f.action) for f in repair.fixes] == [(SO, "arm64", "rehashed")]
    report = verify_wheel(repair.output)
    assert report.ok, report.problems  # RECORD names the new hash and size
    with zipfile.ZipFile(repair.output) as archive:
        record = archive.read(f"{DIST_INFO}/RECORD").decode()
        so = archive.read(SO)
        assert archive.namelist() == zipfile.ZipFile(wheel).namelist()
    assert f"{SO},sha256={digest(so)},{len(so)}" in record
    assert list((tmp_path / "fixed").iterdir()) == [repair.output]  # no temporary file left


def test_fix_signatures_leaves_what_it_must_not_touch(tmp_path: Path) -> None:
    cases = {
        "unsigned": drop_code_signature(fixture_so()),
        "certificate": flip(resign(fixture_so(), flags=0, cms=b"x"), 20000),
        "limit": resign(fixture_so(), code_limit=CODE_END - 100),
    }
    reasons = {}
    for case, so in cases.items():
        (tmp_path / case).mkdir()
        repair = repair_wheel(rewrap(ARM64, tmp_path / case, so), tmp_path / case / "out")
        assert repair.output is None and not (tmp_path / case / "out").exists()
        ((reasons[case], action),) = [(f.detail, f.action) for f in repair.fixes]
        assert action == "refused"
    assert reasons["unsigned"].startswith("no signature slot (LC_CODE_SIGNATURE)")
    assert reasons["certificate"].startswith("signed with a certificate (Developer ID)")
    assert "rehashing in place cannot grow it" in reasons["limit"]


def test_fix_signatures_refuses_a_file_record_does_not_vouch_for(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000), record=False)
    repair = repair_wheel(wheel, tmp_path / "fixed", use_codesign=False)
    assert repair.output is None
    assert "RECORD does not vouch for this file" in repair.fixes[0].detail


def test_fix_signatures_never_leaves_a_partial_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))

    def broken(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repair_module, "_stream_member", broken)
    with pytest.raises(OSError, match="No space left"):
        repair_wheel(wheel, tmp_path / "fixed", use_codesign=False)
    assert list((tmp_path / "fixed").iterdir()) == []


def test_fix_signatures_will_not_overwrite_the_wheel(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    with pytest.raises(UsageError, match="would overwrite the wheel itself"):
        repair_wheel(wheel, tmp_path, use_codesign=False)


def test_codesign_is_used_on_a_mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS's codesign cannot run here: a stand-in on PATH records its arguments and re-signs
    # the file the way codesign --force --sign - would leave an ad-hoc signature.
    tools = tmp_path / "bin"
    tools.mkdir()
    log = tmp_path / "codesign.log"
    script = tools / "codesign"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from tfwheels.codesign import rehash_in_place\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:-1]) + '\\n')\n"
        f"with open(sys.argv[-1], 'r+b') as f: rehash_in_place(f, 0, {CODE_END})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert codesign_available()
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    repair = repair_wheel(wheel, tmp_path / "fixed")
    assert log.read_text() == "--force --sign -\n"
    assert [f.action for f in repair.fixes] == ["codesigned"]
    assert repair.output is not None and verify_wheel(repair.output).ok


def test_codesign_is_not_used_off_a_mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "codesign").write_text("#!/bin/sh\n")
    (tmp_path / "codesign").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sys, "platform", "linux")
    assert not codesign_available()


def test_verify_command_fix_signatures_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    assert verify_command([str(wheel)], None, True, fix_signatures=True) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["repairs"] == [
        {
            "wheel": ARM64,
            "output": str(tmp_path / "fixed" / ARM64),
            "fixes": [
                {
                    "file": SO,
                    "arch": "arm64",
                    "action": "rehashed",
                    "detail": "recomputed 1 page hash in place",
                }
            ],
            "refused": None,
        }
    ]
    assert [(w["wheel"], w["ok"]) for w in document["wheels"]] == [(ARM64, True)]


def test_invoke_verify_wheel_reports_and_fixes(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    broken = invoke("verify-wheel", str(wheel), "--json")
    assert broken.returncode == 1, broken.stderr
    kinds = [p["kind"] for p in json.loads(broken.stdout)["wheels"][0]["problems"]]
    assert kinds == ["code-signature"]
    fixed = invoke("verify-wheel", str(wheel), "--fix-signatures", "--output", str(tmp_path / "o"))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "rehashed" in fixed.stdout and (tmp_path / "o" / ARM64).is_file()


def test_doctests() -> None:
    import doctest

    import tfwheels.binaries
    import tfwheels.codesign

    for module in (tfwheels.codesign, tfwheels.binaries):
        results = doctest.testmod(module)
        assert results.failed == 0 and results.attempted > 0, module.__name__


# --- damaged wheels, permissions, the wheel's own RECORD, fat files under codesign -----------------


def corrupt_member(wheel: Path, member: str, at: int = 2) -> None:
    """Flip a byte inside a stored member's data: the zip stays readable, its CRC no longer holds."""
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED
    data = bytearray(wheel.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra_length + at] ^= 0xFF
    wheel.write_bytes(bytes(data))


def replace_member(wheel: Path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(wheel, "w") as archive:
        for info, old in members:
            archive.writestr(info, data if info.filename == member else old)


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        ("record-not-utf8", f"{DIST_INFO}/RECORD is not UTF-8"),
        ("record-crc", f"{DIST_INFO}/RECORD is unreadable (Bad CRC-32"),
        ("other-crc", "markupsafe/__init__.py is unreadable (Bad CRC-32"),
        ("binary-crc", f"{SO} is unreadable (Bad CRC-32"),
    ],
)
def test_fix_signatures_refuses_a_damaged_wheel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, where: str
) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    if damage == "record-not-utf8":
        with zipfile.ZipFile(wheel) as archive:
            record = archive.read(f"{DIST_INFO}/RECORD")
        replace_member(wheel, f"{DIST_INFO}/RECORD", record + b"caf\xe9.py,,\n")
    else:
        member = {"record-crc": f"{DIST_INFO}/RECORD", "other-crc": "markupsafe/__init__.py"}
        corrupt_member(wheel, member.get(damage, SO), 30000 if damage == "binary-crc" else 2)
    repair = repair_wheel(wheel, tmp_path / "fixed", use_codesign=False)
    assert repair.output is None and repair.fixes == []
    assert repair.refused is not None and "\n" not in repair.refused
    assert repair.refused.startswith(f"not repaired: the wheel is damaged: {where}"), repair.refused
    assert not (tmp_path / "fixed").exists()  # no partial output, not even the folder
    # verify-wheel --fix-signatures: a report (exit 1), not a traceback.
    assert verify_command([str(wheel)], None, True, fix_signatures=True) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["repairs"][0]["refused"] == repair.refused
    assert document["wheels"][0]["ok"] is False


def test_a_repaired_wheel_keeps_the_mode_of_the_original(tmp_path: Path) -> None:
    wheel = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    for mode in (0o644, 0o640):
        wheel.chmod(mode)
        repair = repair_wheel(wheel, tmp_path / f"fixed-{mode:o}", use_codesign=False)
        assert repair.output is not None
        assert stat.S_IMODE(repair.output.stat().st_mode) == mode  # not mkstemp's 0600


def test_fix_signatures_updates_the_wheels_own_record(tmp_path: Path) -> None:
    # A vendored package's dist-info comes first in the archive; the wheel's RECORD is the
    # top-level markupsafe-3.0.4.dist-info/RECORD, and only that one vouches and is updated.
    stale = rewrap(ARM64, tmp_path, flip(fixture_so(), 20000))
    vendored = "markupsafe/_vendor/other-1.0.dist-info/RECORD"
    vendored_data = b"other/__init__.py,,\n"
    wheel = tmp_path / "vendored" / ARM64
    wheel.parent.mkdir()
    with zipfile.ZipFile(stale) as source, zipfile.ZipFile(wheel, "w") as out:
        out.writestr(vendored, vendored_data)
        for info in source.infolist():
            data = source.read(info)
            if info.filename == f"{DIST_INFO}/RECORD":
                data += f"{vendored},sha256={digest(vendored_data)},{len(vendored_data)}\n".encode()
            out.writestr(info, data)
    assert verify_wheel(wheel).problems[0].kind == "code-signature"
    repair = repair_wheel(wheel, tmp_path / "fixed", use_codesign=False)
    assert [f.action for f in repair.fixes] == ["rehashed"], repair.fixes
    assert repair.output is not None
    assert verify_wheel(repair.output).ok, verify_wheel(repair.output).problems
    with zipfile.ZipFile(repair.output) as archive:
        assert archive.read(vendored) == vendored_data


def fat(*slices: tuple[int, bytes]) -> bytes:
    """A universal Mach-O of (cpusubtype, thin arm64 file) slices, 16 KiB aligned."""
    offset, header, body = 16384, struct.pack(">II", 0xCAFEBABE, len(slices)), b""
    for subtype, thin in slices:
        header += struct.pack(">IIIII", 0x0100000C, subtype, offset + len(body), len(thin), 14)
        body += thin.ljust((len(thin) + 16383) // 16384 * 16384, b"\0")
    return header.ljust(offset, b"\0") + body


def test_codesign_is_not_run_over_a_certificate_signed_slice(tmp_path: Path) -> None:
    # codesign --force --sign - re-signs every slice of a universal file: the stale ad-hoc arm64
    # slice would be fixed, and the valid certificate signature of the arm64e slice destroyed.
    certified = resign(fixture_so(), flags=0, cms=b"x")
    wheel = rewrap(ARM64, tmp_path, fat((0, flip(fixture_so(), 20000)), (2, certified)))
    slices = [s for b in repair_module.scan_signatures(wheel) for s in b.slices]
    assert [(s.signature.ok, s.signature.signer) for s in slices if s.signature] == [
        (False, "ad-hoc, linker-signed"), (True, "certificate (CMS)")
    ]
    repair = repair_wheel(wheel, tmp_path / "fixed", use_codesign=True)
    assert repair.output is None and not (tmp_path / "fixed").exists()
    [fix] = repair.fixes
    assert fix.action == "refused" and "re-signs every slice" in fix.detail
    # Without codesign only the stale slice is rehashed; the other is left byte for byte.
    rehashed = repair_wheel(wheel, tmp_path / "rehashed", use_codesign=False)
    assert [f.action for f in rehashed.fixes] == ["rehashed"]


@pytest.mark.parametrize(
    ("filetype", "needs_signature"),
    [(0x1, False), (0xA, False), (0x2, True), (0x6, True), (0x8, True)],  # OBJECT, DSYM, ...
)
def test_only_code_the_kernel_maps_needs_a_signature(
    tmp_path: Path, filetype: int, needs_signature: bool
) -> None:
    so = bytearray(drop_code_signature(fixture_so()))
    struct.pack_into("<I", so, 12, filetype)  # mach_header_64.filetype
    problems = signature_problems(rewrap(ARM64, tmp_path, bytes(so)))
    assert bool(problems) is needs_signature, problems
