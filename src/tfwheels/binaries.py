"""Find native binaries by their magic bytes; read what platform checks need from their headers.

Mach-O files (thin, and fat/universal2) are decoded with macholib's structure types, but the walk
over the load commands is our own: ``macholib.MachO`` also reads the contents of every section,
which for TensorFlow's 575 MB ``libtensorflow_cc.2.dylib`` means the whole file. Here only the
fat header and each slice's mach header plus load commands are read, front to back, so a
compressed zip member is never decompressed further than the last slice header.

ELF files are read with pyelftools. It needs random access (section headers sit at the end of the
file), so a stream is first spooled to a temporary file (in memory while small).

With ``signatures=True`` the arm64 slices' code signatures are checked on the same forward pass
(see :mod:`tfwheels.codesign`): each arm64 slice's pages are hashed as they stream past, its
signature blob is kept when it passes, and the stream is read up to the end of the last one.

A malformed binary never raises out of :func:`inspect_binary`: what could be read is kept and the
first inconsistency is named in :attr:`BinaryInfo.malformed`.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import IO, Any, Literal, Protocol

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection, DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection
from macholib.mach_o import (
    CPU_TYPE_NAMES,
    FAT_MAGIC,
    FAT_MAGIC_64,
    LC_BUILD_VERSION,
    LC_CODE_SIGNATURE,
    LC_LAZY_LOAD_DYLIB,
    LC_LOAD_DYLIB,
    LC_LOAD_UPWARD_DYLIB,
    LC_LOAD_WEAK_DYLIB,
    LC_NAMES,
    LC_REEXPORT_DYLIB,
    LC_REGISTRY,
    LC_RPATH,
    LC_SEGMENT,
    LC_SEGMENT_64,
    LC_VERSION_MIN_MACOSX,
    MH_CIGAM,
    MH_CIGAM_64,
    MH_MAGIC,
    MH_MAGIC_64,
    PLATFORM_MACOS,
    PLATFORM_NAMES,
    build_version_command,
    dylib_command,
    fat_arch,
    fat_arch64,
    fat_header,
    get_cpu_subtype,
    linkedit_data_command,
    load_command,
    mach_header,
    mach_header_64,
    rpath_command,
    segment_command,
    segment_command_64,
    version_min_command,
)
from macholib.ptypes import Structure, sizeof

from tfwheels.codesign import (
    DEFAULT_SCHEME,
    ByteCapture,
    PageHasher,
    PageScheme,
    SignatureCheck,
    SignatureError,
    judge,
    needs_rehash,
    parse_signature,
)

BinaryFormat = Literal["mach-o", "elf"]

_ELF_MAGIC = b"\x7fELF"
_THIN_HEADERS: dict[int, tuple[str, type[Structure]]] = {
    MH_MAGIC: (">", mach_header),
    MH_CIGAM: ("<", mach_header),
    MH_MAGIC_64: (">", mach_header_64),
    MH_CIGAM_64: ("<", mach_header_64),
}
# 0xCAFEBABE also starts Java class files, where the next word is the class file version (>= 45).
# file(1)'s magic database draws the line at 20 architectures; so do we.
_MAX_FAT_ARCHS = 20
# Real load command areas are well under 1 MiB; a header claiming more is not worth reading.
_MAX_LOAD_COMMANDS = 16 * 1024 * 1024
_DYLIB_LOADS = frozenset(
    {LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LOAD_UPWARD_DYLIB, LC_LAZY_LOAD_DYLIB}
)
_MACHO_ARCHS = {
    "ARM64": "arm64",
    "x86_64": "x86_64",
    "i386": "i386",
    "ARM": "arm",
    "PowerPC": "ppc",
    "PowerPC64": "ppc64",
}
_MACHO_SUBARCHS = {"CPU_SUBTYPE_ARM64E": "arm64e", "CPU_SUBTYPE_X86_64_H": "x86_64h"}
# Names as wheel platform tags spell them (PEP 599/600), not as the ELF spec does.
_ELF_ARCHS = {
    "EM_X86_64": "x86_64",
    "EM_AARCH64": "aarch64",
    "EM_386": "i686",
    "EM_ARM": "armv7l",
    "EM_S390": "s390x",
    "EM_RISCV": "riscv64",
    "EM_LOONGARCH": "loongarch64",
}
# Mach-O file types the kernel maps as code (mach-o/loader.h): an executable, a dylib, a bundle
# (Python extension modules are MH_BUNDLE). Object files, dSYM companions, kext bundles and the
# like are never mapped by dyld, so an unsigned one is no problem.
MH_EXECUTE, MH_DYLIB, MH_BUNDLE = 0x2, 0x6, 0x8
MAPPED_FILETYPES = frozenset({MH_EXECUTE, MH_DYLIB, MH_BUNDLE})
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
# What a malformed ELF can make pyelftools raise besides its own ELFError: it asserts on some
# input (ELF class, string tables) and indexes tables by counts read from the file.
_ELF_PARSE_ERRORS = (
    ELFError,
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    AssertionError,
    EOFError,
    OverflowError,
)


class Readable(Protocol):
    """Anything with ``read(n)``: an open file, a zip member, a hashing wrapper."""

    def read(self, size: int = -1, /) -> bytes: ...


# Opens the same binary again from its first byte, for a second pass over a signature whose
# pages are hashed in another way than the first pass guessed (SHA-1, 16 KiB pages).
Reopen = Callable[[], AbstractContextManager[Readable]]
_SIGNED_ARCHS = ("arm64", "arm64e")


@dataclass(frozen=True)
class Slice:
    """One architecture of a binary: a thin Mach-O, one slice of a fat Mach-O, or an ELF file.

    ``offset`` is where a Mach-O slice starts in its file; ``signature_at`` is LC_CODE_SIGNATURE's
    (dataoff, datasize), relative to the slice; ``signature`` the verdict on it, for arm64 slices
    when signatures were checked. ``filetype`` is the mach header's (MH_EXECUTE, MH_DYLIB, ...;
    None for ELF): only the kinds the kernel maps as code must carry a signature.
    """

    arch: str
    min_os: str | None = None
    platform: str | None = None
    libraries: tuple[str, ...] = ()
    rpaths: tuple[str, ...] = ()
    offset: int = 0
    signature_at: tuple[int, int] | None = None
    signature: SignatureCheck | None = None
    filetype: int | None = None


@dataclass(frozen=True)
class BinaryInfo:
    """What the headers of one native binary in a wheel say.

    ``archs`` use the names users know ('arm64', 'x86_64', 'aarch64'); ``min_os`` maps each
    Mach-O slice's arch to its minimum macOS (LC_BUILD_VERSION minos or LC_VERSION_MIN_MACOSX);
    ``libraries`` are LC_LOAD_DYLIB and friends or DT_NEEDED; ``glibc`` is the newest GLIBC_x.y
    symbol version an ELF file needs. ``malformed`` names the first inconsistency found.
    """

    path: str
    format: BinaryFormat
    slices: tuple[Slice, ...] = ()
    glibc: str | None = None
    malformed: str | None = None

    @property
    def archs(self) -> list[str]:
        """The architectures present, one per slice."""
        return [s.arch for s in self.slices]

    @property
    def min_os(self) -> dict[str, str]:
        """Minimum OS version per arch, for slices that declare one."""
        return {s.arch: s.min_os for s in self.slices if s.min_os is not None}

    @property
    def libraries(self) -> list[str]:
        """Linked libraries of all slices, first occurrence first."""
        return _unique(lib for s in self.slices for lib in s.libraries)

    @property
    def rpaths(self) -> list[str]:
        """Run-path entries of all slices, first occurrence first."""
        return _unique(rpath for s in self.slices for rpath in s.rpaths)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for reports."""
        return {
            "file": self.path,
            "format": self.format,
            "archs": self.archs,
            "min_os": self.min_os,
            "libraries": self.libraries,
            "rpaths": self.rpaths,
            "glibc": self.glibc,
            "malformed": self.malformed,
            "code_signatures": {
                s.arch: s.signature.to_json() for s in self.slices if s.signature is not None
            },
        }


class _Malformed(Exception):
    """Internal: the binary contradicts itself; the message says where."""


def is_native(first_bytes: bytes) -> bool:
    """True when these leading bytes (the first 8 of a file) start a Mach-O or ELF binary."""
    return _native_format(first_bytes) is not None


def inspect_binary(
    name: str,
    stream_or_bytes: bytes | Readable,
    *,
    size: int | None = None,
    signatures: bool = False,
    reopen: Reopen | None = None,
) -> BinaryInfo | None:
    """Read the headers of the binary ``name`` (its path in the wheel), or return None.

    ``stream_or_bytes`` is the whole file as bytes, or a stream positioned at its first byte;
    a stream is only read forward and only as far as needed, except that ELF files are read to
    the end. ``size`` (the file's length, known from a zip directory) lets the checks catch
    load commands and slices that point past the end. Returns None when the data is not a
    native binary.

    ``signatures=True`` also checks the code signature of every arm64 Mach-O slice, reading the
    stream up to the end of the last one; ``reopen`` (needed for a stream, not for bytes) opens
    the file again from its start for the rare signature whose pages the first pass did not hash
    the right way.
    """
    if isinstance(stream_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(stream_or_bytes)
        size = len(data)
        stream: Readable = io.BytesIO(data)
        reopen = reopen or (lambda: nullcontext(io.BytesIO(data)))
    else:
        stream = stream_or_bytes
    if signatures and reopen is None:
        msg = "inspect_binary(signatures=True) on a stream needs reopen"
        raise ValueError(msg)
    head = _read_upto(stream, 8)
    binary_format = _native_format(head)
    if binary_format is None:
        return None
    if binary_format == "mach-o":
        reader = _ForwardReader(stream, head)
        checks = _SignatureChecks(reader, reopen) if signatures and reopen else None
        return _inspect_macho(name, head, reader, size, checks)
    if isinstance(stream, io.BytesIO):
        stream.seek(0)
        return _inspect_elf(name, stream, size)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        spool.write(head)
        shutil.copyfileobj(stream, spool, _CHUNK)
        spooled = spool.tell()
        spool.seek(0)
        return _inspect_elf(name, spool, spooled)


def _native_format(head: bytes) -> BinaryFormat | None:
    if head[:4] == _ELF_MAGIC:
        return "elf"
    if len(head) < 8:
        return None
    magic, count = struct.unpack(">II", head[:8])
    if magic in _THIN_HEADERS:
        return "mach-o"
    if magic in (FAT_MAGIC, FAT_MAGIC_64) and 0 < count < _MAX_FAT_ARCHS:
        return "mach-o"
    return None


def _read_upto(stream: Readable, count: int) -> bytes:
    """Read ``count`` bytes, fewer only at the end of the stream (``read`` may return less)."""
    parts: list[bytes] = []
    missing = count
    while missing > 0:
        part = stream.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _Tap(Protocol):
    """Sees every chunk the reader reads, with the position of its first byte."""

    def feed(self, position: int, data: bytes) -> None: ...


class _ForwardReader:
    """Reads a stream front to back; skipping ahead reads and discards (fine for zip members).

    ``taps`` see every byte read, skipped ones included (page hashers, signature captures).
    """

    def __init__(self, stream: Readable, head: bytes) -> None:
        self._stream = stream
        self._pending = head
        self.position = 0
        self.taps: list[_Tap] = []

    def read_upto(self, count: int) -> bytes:
        """``count`` bytes, fewer only at the end of the stream."""
        data = self._pending[:count]
        self._pending = self._pending[count:]
        if len(data) < count:
            data += _read_upto(self._stream, count - len(data))
        for tap in self.taps:
            tap.feed(self.position, data)
        self.position += len(data)
        return data

    def read_exact(self, count: int, what: str) -> bytes:
        """``count`` bytes of ``what``, or _Malformed when the file ends first."""
        start = self.position
        data = self.read_upto(count)
        if len(data) < count:
            msg = f"{what} at byte {start} is cut short by the end of the file"
            raise _Malformed(msg)
        return data

    def skip_to(self, offset: int, what: str) -> None:
        """Read and drop everything up to ``offset``, where ``what`` starts."""
        if offset < self.position:
            msg = f"{what} at byte {offset} overlaps the data before it"
            raise _Malformed(msg)
        while self.position < offset:
            step = min(offset - self.position, _CHUNK)
            if len(self.read_upto(step)) < step:
                msg = f"{what} at byte {offset} lies past the end of the file"
                raise _Malformed(msg)


@dataclass(frozen=True)
class _Pending:
    """An arm64 slice whose pages are being hashed and whose signature is being captured."""

    offset: int
    hasher: PageHasher
    capture: ByteCapture


class _SignatureChecks:
    """Checks the code signatures of the arm64 slices met on one forward pass over a Mach-O.

    Each slice's pages are hashed from its first byte, before its load commands tell whether it
    is signed, so nothing has to be read twice: the speculation is SHA-256 over 4 KiB pages (what
    ld64, lld and codesign write for arm64). A signature that hashes otherwise is checked on a
    second pass through ``reopen``.
    """

    def __init__(self, reader: _ForwardReader, reopen: Reopen) -> None:
        self._reader = reader
        self._reopen = reopen
        self._pending: list[_Pending] = []
        self._verdicts: dict[int, SignatureCheck] = {}

    def start(self, offset: int) -> PageHasher:
        """Hash pages from here, where a slice starts."""
        hasher = PageHasher(offset, DEFAULT_SCHEME)
        self._reader.taps.append(hasher)
        return hasher

    def drop(self, hasher: PageHasher) -> None:
        """Stop hashing a slice that is not checked after all."""
        self._reader.taps.remove(hasher)

    def track(self, piece: Slice, hasher: PageHasher) -> Slice:
        """Keep hashing an arm64 slice up to its signature, and catch the signature as it passes."""
        if piece.arch not in _SIGNED_ARCHS:
            self.drop(hasher)
            return piece
        if piece.signature_at is None:
            self.drop(hasher)
            if piece.filetype is not None and piece.filetype not in MAPPED_FILETYPES:
                return piece  # an object file or dSYM: never mapped, needs no signature
            return dataclasses.replace(piece, signature=SignatureCheck("unsigned"))
        dataoff, datasize = piece.signature_at
        if piece.offset + dataoff < self._reader.position:
            self.drop(hasher)
            detail = f"LC_CODE_SIGNATURE at byte {dataoff} overlaps the load commands"
            return dataclasses.replace(piece, signature=SignatureCheck("malformed", detail=detail))
        hasher.set_limit(dataoff)
        capture = ByteCapture(piece.offset + dataoff, datasize)
        self._reader.taps.append(capture)
        self._pending.append(_Pending(piece.offset, hasher, capture))
        return piece

    def finish(self, slices: list[Slice]) -> list[Slice]:
        """Read on to the end of the last signature, then judge every tracked slice."""
        if self._pending:
            end = max(pending.capture.end for pending in self._pending)
            try:
                self._reader.skip_to(end, "code signature")
            except _Malformed as exc:
                for pending in self._pending:
                    self._verdicts[pending.offset] = SignatureCheck("malformed", detail=str(exc))
            for pending in self._pending:
                if pending.offset not in self._verdicts:
                    self._verdicts[pending.offset] = self._judge(pending)
        self._reader.taps.clear()
        return [
            dataclasses.replace(piece, signature=self._verdicts[piece.offset])
            if piece.offset in self._verdicts
            else piece
            for piece in slices
        ]

    def _judge(self, pending: _Pending) -> SignatureCheck:
        digests = pending.hasher.finish()
        code_end = pending.capture.start - pending.offset
        try:
            signature = parse_signature(pending.capture.data)
        except SignatureError as exc:
            return SignatureCheck("malformed", code_end=code_end, detail=str(exc))
        scheme = needs_rehash(signature, pending.hasher.hashed_scheme)
        if scheme is not None:
            try:
                digests = _hash_pages_again(self._reopen, pending.offset, scheme)
            except _Malformed as exc:
                return SignatureCheck(
                    "malformed", signer=signature.signer, code_end=code_end, detail=str(exc)
                )
        return judge(signature, digests, code_end)


def _hash_pages_again(reopen: Reopen, offset: int, scheme: PageScheme) -> list[bytes]:
    """Hash a slice's pages as ``scheme`` says, reading the file again from its start."""
    assert scheme.code_limit is not None
    with reopen() as stream:
        reader = _ForwardReader(stream, b"")
        hasher = PageHasher(offset, scheme)
        reader.taps.append(hasher)
        reader.skip_to(offset + scheme.code_limit, "the code the signature covers")
        return hasher.finish()


def _inspect_macho(
    name: str,
    head: bytes,
    reader: _ForwardReader,
    size: int | None,
    checks: _SignatureChecks | None,
) -> BinaryInfo:
    if struct.unpack(">I", head[:4])[0] in (FAT_MAGIC, FAT_MAGIC_64):
        slices, problem = _read_fat(reader, size, checks)
    else:
        slices, problem = _read_thin_file(reader, size, checks)
    if checks is not None:
        slices = checks.finish(slices)
    return BinaryInfo(name, "mach-o", tuple(slices), malformed=problem)


def _read_thin_file(
    reader: _ForwardReader, size: int | None, checks: _SignatureChecks | None
) -> tuple[list[Slice], str | None]:
    try:
        return [_read_slice(reader, 0, size, expected_cputype=None, checks=checks)], None
    except _Malformed as exc:
        return [], str(exc)


def _read_fat(
    reader: _ForwardReader, size: int | None, checks: _SignatureChecks | None
) -> tuple[list[Slice], str | None]:
    """Read every slice of a universal binary, in file order; keep the good ones."""
    try:
        header = fat_header.from_str(reader.read_exact(sizeof(fat_header), "fat header"))
        arch_type = fat_arch64 if header.magic == FAT_MAGIC_64 else fat_arch
        entries = [
            arch_type.from_str(reader.read_exact(sizeof(arch_type), f"fat arch entry {index}"))
            for index in range(header.nfat_arch)
        ]
    except _Malformed as exc:
        return [], str(exc)
    slices: list[Slice] = []
    problems: list[str] = []
    for entry in sorted(entries, key=lambda e: int(e.offset)):
        arch = _macho_arch(int(entry.cputype), int(entry.cpusubtype))
        try:
            if size is not None and entry.offset + entry.size > size:
                msg = (
                    f"fat slice '{arch}' (offset {entry.offset}, size {entry.size}) "
                    f"runs past the end of the file ({size} bytes)"
                )
                raise _Malformed(msg)
            reader.skip_to(int(entry.offset), f"fat slice '{arch}'")
            slices.append(
                _read_slice(
                    reader,
                    int(entry.offset),
                    int(entry.size),
                    expected_cputype=int(entry.cputype),
                    checks=checks,
                )
            )
        except _Malformed as exc:
            problems.append(str(exc))
    return slices, "; ".join(problems) or None


def _read_slice(
    reader: _ForwardReader,
    offset: int,
    size: int | None,
    *,
    expected_cputype: int | None,
    checks: _SignatureChecks | None = None,
) -> Slice:
    """Read one mach header and its load commands; the reader stands at the slice's first byte.

    With ``checks``, the slice's pages are hashed from its first byte on; what happens next
    depends on its arch and load commands (:meth:`_SignatureChecks.track`).
    """
    hasher = checks.start(offset) if checks is not None else None
    try:
        piece = _read_slice_headers(reader, offset, size, expected_cputype=expected_cputype)
    except _Malformed:
        if checks is not None and hasher is not None:
            checks.drop(hasher)
        raise
    if checks is None or hasher is None:
        return piece
    return checks.track(piece, hasher)


def _read_slice_headers(
    reader: _ForwardReader, offset: int, size: int | None, *, expected_cputype: int | None
) -> Slice:
    magic_bytes = reader.read_exact(4, "Mach-O header")
    known = _THIN_HEADERS.get(struct.unpack(">I", magic_bytes)[0])
    if known is None:
        msg = f"no Mach-O header at byte {offset}"
        raise _Malformed(msg)
    endian, header_type = known
    header = header_type.from_str(
        magic_bytes + reader.read_exact(sizeof(header_type) - 4, "Mach-O header"), _endian_=endian
    )
    arch = _macho_arch(int(header.cputype), int(header.cpusubtype))
    if expected_cputype is not None and int(header.cputype) != expected_cputype:
        msg = (
            f"fat header says '{_macho_arch(expected_cputype, 0)}' at byte {offset}, "
            f"but the slice there is '{arch}'"
        )
        raise _Malformed(msg)
    commands_size = int(header.sizeofcmds)
    if size is not None and sizeof(header_type) + commands_size > size:
        msg = (
            f"'{arch}' load commands ({commands_size} bytes) run past the end of the "
            f"slice ({size} bytes)"
        )
        raise _Malformed(msg)
    if commands_size > _MAX_LOAD_COMMANDS:
        msg = f"'{arch}' load commands claim {commands_size} bytes; real ones are far smaller"
        raise _Malformed(msg)
    blob = reader.read_exact(commands_size, f"'{arch}' load commands")
    piece = _walk_load_commands(arch, blob, int(header.ncmds), endian, size)
    return dataclasses.replace(piece, offset=offset, filetype=int(header.filetype))


def _walk_load_commands(arch: str, blob: bytes, count: int, endian: str, size: int | None) -> Slice:
    """Collect what the checks need from a slice's load commands."""
    libraries: list[str] = []
    rpaths: list[str] = []
    min_os: str | None = None
    platform: str | None = None
    signature_at: tuple[int, int] | None = None
    for cmd, body, label in _load_commands(arch, blob, count, endian):
        if cmd in _DYLIB_LOADS:
            libraries.append(_lc_string(body, dylib_command, "name", endian, label))
        elif cmd == LC_RPATH:
            rpaths.append(_lc_string(body, rpath_command, "path", endian, label))
        elif cmd == LC_BUILD_VERSION:
            build = _command(body, build_version_command, endian, label)
            platform = PLATFORM_NAMES.get(int(build.platform), str(int(build.platform)))
            min_os = _macos_version(int(build.minos)) if build.platform == PLATFORM_MACOS else None
        elif cmd == LC_VERSION_MIN_MACOSX and min_os is None:
            platform = PLATFORM_NAMES[PLATFORM_MACOS]
            min_os = _macos_version(int(_command(body, version_min_command, endian, label).version))
        else:
            if cmd == LC_CODE_SIGNATURE:
                data = _command(body, linkedit_data_command, endian, label)
                signature_at = (int(data.dataoff), int(data.datasize))
            if size is not None:
                _check_file_range(cmd, body, endian, label, size)
    return Slice(arch, min_os, platform, tuple(libraries), tuple(rpaths), signature_at=signature_at)


def _load_commands(
    arch: str, blob: bytes, count: int, endian: str
) -> Iterator[tuple[int, bytes, str]]:
    """Each load command as (cmd, its bytes, a label for messages), bounds-checked."""
    start = 0
    for index in range(count):
        if start + sizeof(load_command) > len(blob):
            msg = (
                f"'{arch}' load command {index} starts past the end of the load command area "
                f"({len(blob)} bytes)"
            )
            raise _Malformed(msg)
        command = load_command.from_str(blob[start : start + sizeof(load_command)], _endian_=endian)
        cmd, cmdsize = int(command.cmd), int(command.cmdsize)
        label = f"'{arch}' load command {index} ({LC_NAMES.get(cmd, hex(cmd))})"
        if cmdsize < sizeof(load_command) or start + cmdsize > len(blob):
            msg = (
                f"{label} has size {cmdsize}, "
                f"past the end of the load command area ({len(blob)} bytes)"
            )
            raise _Malformed(msg)
        yield cmd, blob[start : start + cmdsize], label
        start += cmdsize


def _command(body: bytes, command_type: type[Structure], endian: str, label: str) -> Structure:
    """Decode the fixed part of a load command that follows its 8-byte cmd/cmdsize prefix."""
    end = sizeof(load_command) + sizeof(command_type)
    if len(body) < end:
        msg = f"{label} is {len(body)} bytes, too short for its fields"
        raise _Malformed(msg)
    return command_type.from_str(body[sizeof(load_command) : end], _endian_=endian)


def _lc_string(
    body: bytes, command_type: type[Structure], field: str, endian: str, label: str
) -> str:
    """The NUL-terminated string an ``lc_str`` offset points at, inside its load command."""
    offset = int(getattr(_command(body, command_type, endian, label), field))
    if not sizeof(load_command) <= offset < len(body):
        msg = f"{label} names a string at offset {offset}, outside its {len(body)} bytes"
        raise _Malformed(msg)
    return body[offset:].split(b"\0", 1)[0].decode("utf-8", "replace")


def _check_file_range(cmd: int, body: bytes, endian: str, label: str, size: int) -> None:
    """Segments and __LINKEDIT data must lie inside the slice."""
    if cmd == LC_SEGMENT_64:
        segment = _command(body, segment_command_64, endian, label)
        start, length = int(segment.fileoff), int(segment.filesize)
    elif cmd == LC_SEGMENT:
        segment = _command(body, segment_command, endian, label)
        start, length = int(segment.fileoff), int(segment.filesize)
    elif LC_REGISTRY.get(cmd) is linkedit_data_command:
        data = _command(body, linkedit_data_command, endian, label)
        start, length = int(data.dataoff), int(data.datasize)
    else:
        return
    if start + length > size:
        msg = f"{label} covers bytes {start}..{start + length}, past the end ({size} bytes)"
        raise _Malformed(msg)


def _macho_arch(cputype: int, cpusubtype: int) -> str:
    subtype = get_cpu_subtype(cputype, cpusubtype)
    if subtype in _MACHO_SUBARCHS:
        return _MACHO_SUBARCHS[subtype]
    name: str | None = CPU_TYPE_NAMES.get(cputype)
    if name is None:
        return f"cputype {cputype}"
    return _MACHO_ARCHS.get(name, name.lower())


def _macos_version(encoded: int) -> str:
    """Decode X.Y.Z from the nibbles xxxx.yy.zz that Mach-O version fields use."""
    major, minor, patch = encoded >> 16, (encoded >> 8) & 0xFF, encoded & 0xFF
    return f"{major}.{minor}.{patch}" if patch else f"{major}.{minor}"


def _inspect_elf(name: str, stream: IO[bytes], size: int | None) -> BinaryInfo:
    try:
        elf = ELFFile(stream)
        arch = _elf_arch(elf)
    except _ELF_PARSE_ERRORS as exc:
        return BinaryInfo(name, "elf", malformed=f"unreadable ELF header: {exc}")
    needed: list[str] = []
    rpaths: list[str] = []
    glibc: str | None = None
    try:
        if size is not None:
            _check_elf_ranges(elf, size)
        needed, rpaths = _elf_dynamic(elf)
        glibc = _elf_glibc(elf)
        problem = None
    except _Malformed as exc:
        problem = str(exc)
    except _ELF_PARSE_ERRORS as exc:
        problem = f"unreadable ELF structure: {exc}"
    return BinaryInfo(
        name,
        "elf",
        (Slice(arch, libraries=tuple(needed), rpaths=tuple(rpaths)),),
        glibc=glibc,
        malformed=problem,
    )


def _elf_arch(elf: ELFFile) -> str:
    machine = str(elf["e_machine"])
    if machine == "EM_PPC64":
        return "ppc64le" if elf.little_endian else "ppc64"
    return _ELF_ARCHS.get(machine, machine.removeprefix("EM_").lower())


def _check_elf_ranges(elf: ELFFile, size: int) -> None:
    header = elf.header
    tables = (
        ("program header table", header["e_phoff"], header["e_phnum"] * header["e_phentsize"]),
        ("section header table", header["e_shoff"], header["e_shnum"] * header["e_shentsize"]),
    )
    for what, start, length in tables:
        if start + length > size:
            msg = f"{what} covers bytes {start}..{start + length}, past the end ({size} bytes)"
            raise _Malformed(msg)
    for index, section in enumerate(elf.iter_sections()):
        if section["sh_type"] != "SHT_NOBITS" and section["sh_offset"] + section["sh_size"] > size:
            msg = (
                f"section {index} ({section.name or 'unnamed'}) covers bytes "
                f"{section['sh_offset']}..{section['sh_offset'] + section['sh_size']}, "
                f"past the end ({size} bytes)"
            )
            raise _Malformed(msg)


def _elf_dynamic(elf: ELFFile) -> tuple[list[str], list[str]]:
    """DT_NEEDED and the DT_RPATH/DT_RUNPATH entries (split on ':')."""
    dynamic: DynamicSection | DynamicSegment | None = next(
        (s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None
    )
    if dynamic is None:  # no section headers: fall back to the PT_DYNAMIC segment
        dynamic = next((s for s in elf.iter_segments() if isinstance(s, DynamicSegment)), None)
    if dynamic is None:
        return [], []
    needed: list[str] = []
    rpaths: list[str] = []
    for tag in dynamic.iter_tags():
        kind = tag.entry.d_tag
        if kind not in ("DT_NEEDED", "DT_RPATH", "DT_RUNPATH"):
            continue
        # pyelftools sets the decoded string as an attribute named after the tag (DT_NEEDED: needed)
        value: str = getattr(tag, kind.removeprefix("DT_").lower())
        if kind == "DT_NEEDED":
            needed.append(value)
        else:
            rpaths.extend(entry for entry in value.split(":") if entry)
    return needed, _unique(rpaths)


def _elf_glibc(elf: ELFFile) -> str | None:
    """The newest GLIBC_x.y version any symbol needs, from .gnu.version_r."""
    newest: tuple[int, ...] | None = None
    for section in elf.iter_sections():
        if not isinstance(section, GNUVerNeedSection):
            continue
        for _verneed, auxiliaries in section.iter_versions():
            for aux in auxiliaries:
                version = glibc_version(aux.name)
                if version is not None and (newest is None or version > newest):
                    newest = version
    return ".".join(map(str, newest)) if newest is not None else None


def glibc_version(symbol_version: str) -> tuple[int, ...] | None:
    """``'GLIBC_2.17'`` -> ``(2, 17)``; None for other version names (GLIBCXX_3.4, GLIBC_PRIVATE).

    >>> glibc_version("GLIBC_2.2.5"), glibc_version("GLIBC_PRIVATE")
    ((2, 2, 5), None)
    """
    prefix, _, number = symbol_version.partition("_")
    parts = number.split(".")
    if prefix != "GLIBC" or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)
