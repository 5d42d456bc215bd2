"""Hostile wheels: verify-wheel never crashes, hangs or says ok on damaged input.

A seeded, reproducible byte mutator damages the real fixture wheels two ways: raw bytes anywhere
in the file (it must never raise anything but a one-line UsageError, never take over 2 s), and the
content of a binary, RECORD or METADATA rewritten inside a valid zip (it must never be ok).
"""

from __future__ import annotations

import random
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from conftest import DATA
from faultkit import bounded, count
from tfwheels.errors import UsageError
from tfwheels.verify import verify_wheel

WHEELS = sorted((DATA / "wheels").glob("*.whl"))
RAW_MUTATIONS = 300
CONTENT_MUTATIONS = 240
SEED = 20261125


def _verify(path: Path) -> tuple[bool, list[str]] | None:
    """(ok, kinds), or None for a clean UsageError (not a wheel at all)."""
    try:
        report = verify_wheel(path)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return None
    return report.ok, sorted({p.kind for p in report.problems})


def _guarded_ranges(source: Path) -> list[tuple[int, int, str]]:
    """Byte ranges (start, end, name) of the stored data of each binary, RECORD and METADATA."""
    raw = source.read_bytes()
    ranges = []
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            if not info.filename.endswith((".so", ".dylib", ".dist-info/RECORD", ".dist-info/METADATA")):
                continue
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
            start = info.header_offset + 30 + name_len + extra_len
            ranges.append((start, start + info.compress_size, info.filename))
    return ranges


def test_raw_byte_mutations_never_crash_or_hang(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    guarded = {source: _guarded_ranges(source) for source in WHEELS}
    hits = 0
    for i in range(RAW_MUTATIONS):
        source = rng.choice(WHEELS)
        original = source.read_bytes()
        data = bytearray(original)
        changed: list[int] = []
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
            if data[pos] != original[pos]:
                changed.append(pos)
        truncated = rng.random() < 0.2
        if truncated:
            data = data[: rng.randrange(len(data))]  # truncation
        target = tmp_path / source.name
        target.write_bytes(bytes(data))
        with bounded(2.0):
            result = _verify(target)  # never a traceback: anything but a one-line UsageError fails here
        inside = [name for pos in changed if pos < len(data) for start, end, name in guarded[source] if start <= pos < end]
        if inside or truncated:
            hits += 1
            # A change the zip format itself ignores (e.g. a timestamp) may verify; a changed byte
            # inside a binary, RECORD or METADATA, or a cut-off archive, must not.
            assert result is None or not result[0], f"mutation {i}: {inside or 'truncated'} changed, verified ok"
    assert hits > RAW_MUTATIONS // 10  # the guarded members are hit often enough to mean something
    count("wheel mutations", RAW_MUTATIONS)


def _rewrite(source: Path, target: Path, member: str, mutate: "callable[[bytes], bytes]") -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == member:
                data = mutate(data)
            new.writestr(info, data)


@pytest.mark.parametrize("kind", ["binary", "RECORD", "METADATA"])
def test_changed_content_is_never_ok(tmp_path: Path, kind: str) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    for i in range(CONTENT_MUTATIONS // 3):
        source = rng.choice(WHEELS)
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
        if kind == "binary":
            member = next(n for n in names if n.endswith(".so"))
        else:
            member = next(n for n in names if n.endswith(f".dist-info/{kind}"))

        def mutate(data: bytes) -> bytes:
            changed = bytearray(data)
            pos = rng.randrange(len(changed))
            changed[pos] = (changed[pos] + rng.randrange(1, 256)) % 256
            return bytes(changed)

        target = tmp_path / source.name
        _rewrite(source, target, member, mutate)
        with bounded(2.0):
            result = _verify(target)
        assert result is not None
        ok, kinds = result
        assert not ok, f"{member} changed in {source.name} but verified ok"
    count("wheel mutations", CONTENT_MUTATIONS // 3)


def test_zip_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb-1.0-py3-none-any.whl"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/__init__.py", "")
        archive.writestr("bomb/zeros.bin", b"\0" * (300 * 1024 * 1024))
        archive.writestr("bomb-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: bomb\nVersion: 1.0\n")
        archive.writestr("bomb-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("bomb-1.0.dist-info/RECORD", "")
    assert bomb.stat().st_size < 2 * 1024 * 1024
    with bounded(2.0):
        ok, kinds = _verify(bomb)  # type: ignore[misc]
    assert not ok and "zip-integrity" in kinds
    count("wheel mutations")


def test_symlink_and_duplicate_entries(tmp_path: Path) -> None:
    source = next(w for w in WHEELS if "macosx_11_0_arm64" in w.name)
    target = tmp_path / source.name
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, old.read(info))
        link = zipfile.ZipInfo("markupsafe/evil")
        link.external_attr = (0o120777 << 16)
        new.writestr(link, "/etc/passwd")
    ok, kinds = _verify(target)  # type: ignore[misc]
    assert not ok and "unsafe-path" in kinds
    duplicate = tmp_path / "dup" / source.name
    duplicate.parent.mkdir()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(duplicate, "w") as new, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is told to write
        for info in old.infolist():
            new.writestr(info, old.read(info))
        metadata = next(i for i in old.infolist() if i.filename.endswith(".dist-info/METADATA"))
        new.writestr(metadata.filename, old.read(metadata) + b"Requires-Dist: evil\n")
    with zipfile.ZipFile(duplicate) as archive:
        assert archive.namelist().count(metadata.filename) == 2
    ok, kinds = _verify(duplicate)  # type: ignore[misc]
    assert not ok and "zip-integrity" in kinds, kinds
    count("wheel mutations", 2)


def _central_directory(data: bytes) -> tuple[int, int, list[bytes]]:
    """(offset of the end record, offset of the central directory, its records)."""
    eocd = data.rindex(b"PK\x05\x06")
    size, offset = struct.unpack("<II", data[eocd + 12 : eocd + 20])
    records, pos = [], offset
    while pos < offset + size:
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[pos + 28 : pos + 34])
        end = pos + 46 + name_len + extra_len + comment_len
        records.append(data[pos:end])
        pos = end
    return eocd, offset, records


def _with_directory(data: bytes, records: list[bytes]) -> bytes:
    eocd, offset, _ = _central_directory(data)
    directory = b"".join(records)
    end = bytearray(data[eocd:])
    end[8:20] = struct.pack("<HHII", len(records), len(records), len(directory), offset)
    return data[:offset] + directory + bytes(end)


def test_overlapping_entries_are_never_ok(tmp_path: Path) -> None:
    """Two central-directory entries pointing at the same local header: under two names (the
    .py entry made to point at the binary's data), and the binary's entry listed twice."""
    source = next(w for w in WHEELS if "macosx_11_0_arm64" in w.name)
    data = source.read_bytes()
    _, _, records = _central_directory(data)
    names = [r[46 : 46 + struct.unpack("<H", r[28:30])[0]] for r in records]
    so = next(i for i, n in enumerate(names) if n.endswith(b".so"))
    py = next(i for i, n in enumerate(names) if n.endswith(b".py"))
    redirected = bytearray(records[py])
    redirected[42:46] = records[so][42:46]  # relative offset of the local header
    two_names = [*records[:py], bytes(redirected), *records[py + 1 :]]
    listed_twice = [*records, records[so]]
    for i, variant in enumerate((two_names, listed_twice)):
        target = tmp_path / str(i) / source.name
        target.parent.mkdir()
        target.write_bytes(_with_directory(data, variant))
        with bounded(2.0):
            result = _verify(target)
        assert result is None or (not result[0] and "zip-integrity" in result[1]), result
        count("wheel mutations")


def _macho_with_bad_load_command(size_of_cmds: int) -> bytes:
    # A thin arm64 Mach-O header whose load commands claim to run past the end of the file.
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, 0x0100000C, 0, 6, 1, size_of_cmds, 0, 0)
    command = struct.pack("<II", 0x32, 0xFFFF)  # LC_BUILD_VERSION with an absurd size
    return header + command


def test_malformed_binaries_are_reported_not_raised(tmp_path: Path) -> None:
    source = next(w for w in WHEELS if "macosx_11_0_arm64" in w.name)
    target = tmp_path / source.name
    with zipfile.ZipFile(source) as archive:
        so = next(n for n in archive.namelist() if n.endswith(".so"))
    _rewrite(source, target, so, lambda _: _macho_with_bad_load_command(0xFFFFFF))
    ok, kinds = _verify(target)  # type: ignore[misc]
    assert not ok and "malformed-binary" in kinds
    elf_source = next(w for w in WHEELS if "manylinux2014_x86_64" in w.name)
    elf_target = tmp_path / elf_source.name
    with zipfile.ZipFile(elf_source) as archive:
        elf_so = next(n for n in archive.namelist() if n.endswith(".so"))

    def break_elf(data: bytes) -> bytes:
        changed = bytearray(data[:64])
        changed[0x20:0x28] = struct.pack("<Q", 0x7FFFFFFFFFFF)  # e_phoff far past the end
        return bytes(changed)

    _rewrite(elf_source, elf_target, elf_so, break_elf)
    ok, kinds = _verify(elf_target)  # type: ignore[misc]
    assert not ok and "malformed-binary" in kinds
    count("wheel mutations", 2)
