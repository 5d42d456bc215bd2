"""Embedded code signatures of Mach-O files: read them, check their page hashes, rehash ad-hoc ones.

An Apple Silicon Mac maps no arm64 code whose signature does not match it. The kernel hashes
each page of a signed file as it is paged in and compares it with the signature's CodeDirectory;
a page that differs, or arm64 code with no signature at all, gets the process killed on the spot:
``zsh: killed python3`` in the terminal, ``SIGKILL (Code Signature Invalid)`` in the crash
report, and no Python traceback. It happens when a tool edits a binary after the linker signed
it (install_name_tool, strip, a patcher) and does not re-sign it.

macholib does not read signatures, so the blobs are decoded here with :mod:`struct`. The layout
is Apple's ``cs_blobs.h`` (xnu ``osfmk/kern/cs_blobs.h``); every field is big-endian, whatever the
endianness of the Mach-O around it::

    SuperBlob      magic 0xfade0cc0, length, count, then count x BlobIndex (type, offset)
    CodeDirectory  magic 0xfade0c02, length, version, flags, hashOffset, identOffset,
                   nSpecialSlots, nCodeSlots, codeLimit, hashSize, hashType, platform,
                   pageSize (log2), spare2, [scatterOffset], [teamOffset], [spare3, codeLimit64]

Code slot ``i`` holds the hash of bytes ``[i * pageSize, min((i + 1) * pageSize, codeLimit))`` of
the slice. A signature may carry several CodeDirectories (SHA-1 and SHA-256); the kernel checks
pages against the strongest one only (xnu ``hashPriorities``), and so does :func:`judge`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_BLOBWRAPPER = 0xFADE0B01
CSSLOT_CODEDIRECTORY = 0
CSSLOT_ALTERNATE_CODEDIRECTORIES = range(0x1000, 0x1005)
CSSLOT_SIGNATURESLOT = 0x10000
CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000

# hashType -> (hashlib name, bytes kept). Type 3 is SHA-256 cut to 20 bytes.
HASH_TYPES: dict[int, tuple[str, int]] = {
    1: ("sha1", 20),
    2: ("sha256", 32),
    3: ("sha256", 20),
    4: ("sha384", 48),
}
HASH_NAMES = {1: "sha1", 2: "sha256", 3: "sha256 (truncated)", 4: "sha384"}
# xnu's hashPriorities, weakest first: the kernel validates pages with the last one present.
_KERNEL_PREFERENCE = (1, 3, 2, 4)

_SUPERBLOB = struct.Struct(">III")
_BLOB_INDEX = struct.Struct(">II")
_BLOB_HEADER = struct.Struct(">II")
_CODE_DIRECTORY = struct.Struct(">IIIIIIIIIBBBBI")
_SCATTER_OFFSET = struct.Struct(">I")  # version >= 0x20100
_CODE_LIMIT_64 = struct.Struct(">IQ")  # version >= 0x20300: spare3, codeLimit64
_SUPPORTS_SCATTER = 0x20100
_SUPPORTS_CODE_LIMIT_64 = 0x20300
_CODE_LIMIT_64_AT = 52  # after the 44 fixed bytes, scatterOffset and teamOffset
_MAX_INDEX_ENTRIES = 64
_MAX_PAGE_SHIFT = 24  # macOS writes 12 (4 KiB) or 14 (16 KiB); 0 means one page for all the code

KILLED = (
    "macOS kills Python as soon as it loads this file "
    "('zsh: killed python3', crash report 'SIGKILL (Code Signature Invalid)')"
)


class SignatureError(ValueError):
    """A code signature blob contradicts itself; the message says where."""


@dataclass(frozen=True)
class PageScheme:
    """How pages are hashed: the algorithm, the page size and how many bytes are covered."""

    algorithm: str = "sha256"
    page_size: int = 4096
    code_limit: int | None = None


# The scheme ld64 and codesign use for arm64 (and every signature in TF 2.16.2's wheel): pages
# are hashed this way while a binary streams past, before its signature has been read.
DEFAULT_SCHEME = PageScheme()


@dataclass(frozen=True)
class CodeDirectory:
    """One CodeDirectory: what it hashes and the hashes themselves (``hashes`` concatenated)."""

    offset: int
    version: int
    flags: int
    hash_type: int
    hash_size: int
    page_shift: int
    code_limit: int
    n_code_slots: int
    hash_offset: int
    identifier: str
    hashes: bytes

    @property
    def algorithm(self) -> str:
        """The hashlib name of the page hash."""
        return HASH_TYPES[self.hash_type][0]

    @property
    def page_size(self) -> int:
        """Bytes per page; a page shift of 0 means one page covering all the code."""
        return 1 << self.page_shift if self.page_shift else max(self.code_limit, 1)

    @property
    def scheme(self) -> PageScheme:
        """How this directory's pages are hashed."""
        return PageScheme(self.algorithm, self.page_size, self.code_limit)

    @property
    def adhoc(self) -> bool:
        """True for an ad-hoc signature (no certificate: CS_ADHOC)."""
        return bool(self.flags & CS_ADHOC)

    @property
    def linker_signed(self) -> bool:
        """True when ld signed it (CS_LINKER_SIGNED), as ld64 and lld do for arm64 output."""
        return bool(self.flags & CS_LINKER_SIGNED)

    def expected(self, page: int) -> bytes:
        """The hash the directory holds for code page ``page``."""
        start = page * self.hash_size
        return self.hashes[start : start + self.hash_size]

    def slot_offset(self, page: int) -> int:
        """Where the hash of ``page`` sits, counted from the start of the signature blob."""
        return self.offset + self.hash_offset + page * self.hash_size


@dataclass(frozen=True)
class EmbeddedSignature:
    """An embedded signature: its CodeDirectories and the size of its CMS blob (0 for ad hoc)."""

    directories: tuple[CodeDirectory, ...]
    cms_size: int = 0

    @property
    def best(self) -> CodeDirectory:
        """The CodeDirectory the kernel checks pages against: the strongest hash present."""
        return max(self.directories, key=lambda cd: _KERNEL_PREFERENCE.index(cd.hash_type))

    @property
    def adhoc(self) -> bool:
        """True when no certificate signed it: every directory ad hoc and no CMS data."""
        return self.cms_size == 0 and all(cd.adhoc for cd in self.directories)

    @property
    def signer(self) -> str:
        """Who signed it: 'ad-hoc, linker-signed', 'ad-hoc' or 'certificate (CMS)'."""
        if not self.adhoc:
            return "certificate (CMS)"
        return "ad-hoc, linker-signed" if self.best.linker_signed else "ad-hoc"


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one arm64 slice's signature.

    ``status`` is 'valid', 'unsigned' (no LC_CODE_SIGNATURE), 'mismatch' (pages differ, or the
    signature covers other bytes than the code) or 'malformed'. ``code_end`` is where the code
    ends now (LC_CODE_SIGNATURE's dataoff); ``code_limit`` what the signature covers.
    """

    status: Literal["valid", "unsigned", "mismatch", "malformed"]
    signer: str | None = None
    flags: int | None = None
    hash_name: str | None = None
    page_size: int | None = None
    pages: int = 0
    bad_pages: tuple[int, ...] = ()
    code_limit: int | None = None
    code_end: int | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """True for a signature whose pages all match."""
        return self.status == "valid"

    def to_json(self) -> dict[str, object]:
        """A plain dict for reports."""
        return {
            "status": self.status,
            "signer": self.signer,
            "flags": f"0x{self.flags:x}" if self.flags is not None else None,
            "hash": self.hash_name,
            "pages": self.pages,
            "bad_pages": list(self.bad_pages),
        }


# --- parsing -----------------------------------------------------------------------------------


def parse_signature(blob: bytes) -> EmbeddedSignature:
    """Decode an embedded signature (the bytes LC_CODE_SIGNATURE points at).

    Raises SignatureError when the blob is not one or contradicts itself. A real one, from the
    arm64 ``_speedups`` of MarkupSafe 3.0.4, is tested in tests/test_codesign.py; a minimal one:

    >>> cd = struct.pack(">IIIIIIIIIBBBBI", CSMAGIC_CODEDIRECTORY, 44 + 2 + 32, 0x20001, 0x20002,
    ...                  46, 44, 0, 1, 100, 32, 2, 0, 12, 0) + b"x\\0" + bytes(32)
    >>> blob = struct.pack(">IIIII", CSMAGIC_EMBEDDED_SIGNATURE, 20 + len(cd), 1, 0, 20) + cd
    >>> signature = parse_signature(blob)
    >>> signature.signer, signature.best.identifier, signature.best.scheme
    ('ad-hoc, linker-signed', 'x', PageScheme(algorithm='sha256', page_size=4096, code_limit=100))
    """
    if len(blob) < _SUPERBLOB.size:
        msg = f"signature is {len(blob)} bytes, too short for a SuperBlob header"
        raise SignatureError(msg)
    magic, length, count = _SUPERBLOB.unpack_from(blob)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        msg = f"signature starts with magic 0x{magic:08x}, not 0x{CSMAGIC_EMBEDDED_SIGNATURE:08x}"
        raise SignatureError(msg)
    if length > len(blob) or count > _MAX_INDEX_ENTRIES:
        msg = f"SuperBlob claims {length} bytes and {count} blobs in {len(blob)} bytes"
        raise SignatureError(msg)
    blob = blob[:length]
    if _SUPERBLOB.size + count * _BLOB_INDEX.size > length:
        msg = f"SuperBlob index of {count} entries runs past its {length} bytes"
        raise SignatureError(msg)
    directories: list[CodeDirectory] = []
    cms_size = 0
    for index in range(count):
        slot, offset = _BLOB_INDEX.unpack_from(blob, _SUPERBLOB.size + index * _BLOB_INDEX.size)
        if slot == CSSLOT_CODEDIRECTORY or slot in CSSLOT_ALTERNATE_CODEDIRECTORIES:
            directories.append(_parse_code_directory(blob, offset))
        elif slot == CSSLOT_SIGNATURESLOT:
            cms_size = _blob_payload_size(blob, offset, CSMAGIC_BLOBWRAPPER)
    if not directories:
        msg = "signature holds no CodeDirectory"
        raise SignatureError(msg)
    return EmbeddedSignature(tuple(directories), cms_size)


def _blob_bounds(blob: bytes, offset: int, magic: int) -> int:
    """The length of the blob at ``offset``, checked against its magic and the SuperBlob."""
    if offset + _BLOB_HEADER.size > len(blob):
        msg = f"blob at offset {offset} lies past the end of the {len(blob)}-byte signature"
        raise SignatureError(msg)
    found, length = _BLOB_HEADER.unpack_from(blob, offset)
    if found != magic:
        msg = f"blob at offset {offset} has magic 0x{found:08x}, expected 0x{magic:08x}"
        raise SignatureError(msg)
    if length < _BLOB_HEADER.size or offset + length > len(blob):
        msg = f"blob at offset {offset} claims {length} bytes, past the end of the signature"
        raise SignatureError(msg)
    return int(length)


def _blob_payload_size(blob: bytes, offset: int, magic: int) -> int:
    return _blob_bounds(blob, offset, magic) - _BLOB_HEADER.size


def _parse_code_directory(blob: bytes, offset: int) -> CodeDirectory:
    length = _blob_bounds(blob, offset, CSMAGIC_CODEDIRECTORY)
    if length < _CODE_DIRECTORY.size:
        msg = f"CodeDirectory at offset {offset} is {length} bytes, too short"
        raise SignatureError(msg)
    data = blob[offset : offset + length]
    (_magic, _length, version, flags, hash_offset, ident_offset, _special, n_code_slots,
     code_limit, hash_size, hash_type, _platform, page_shift, _spare) = _CODE_DIRECTORY.unpack_from(data)  # fmt: skip
    if version >= _SUPPORTS_SCATTER and length >= _CODE_DIRECTORY.size + _SCATTER_OFFSET.size:
        (scatter,) = _SCATTER_OFFSET.unpack_from(data, _CODE_DIRECTORY.size)
        if scatter:
            msg = "CodeDirectory uses a scatter vector, which Mach-O files never do"
            raise SignatureError(msg)
    if version >= _SUPPORTS_CODE_LIMIT_64 and length >= _CODE_LIMIT_64_AT + _CODE_LIMIT_64.size:
        _spare3, code_limit_64 = _CODE_LIMIT_64.unpack_from(data, _CODE_LIMIT_64_AT)
        code_limit = code_limit_64 or code_limit
    if page_shift > _MAX_PAGE_SHIFT:
        msg = f"CodeDirectory page size 2^{page_shift} is not one macOS uses (4 KiB, 16 KiB)"
        raise SignatureError(msg)
    if HASH_TYPES.get(hash_type, (None, None))[1] != hash_size:
        msg = f"CodeDirectory hash type {hash_type} with {hash_size}-byte hashes is not one macOS knows"
        raise SignatureError(msg)
    end = hash_offset + n_code_slots * hash_size
    if end > length:
        msg = f"CodeDirectory's {n_code_slots} code hashes run past its {length} bytes"
        raise SignatureError(msg)
    identifier = data[ident_offset:].split(b"\0", 1)[0].decode("utf-8", "replace")
    return CodeDirectory(
        offset=offset,
        version=version,
        flags=flags,
        hash_type=hash_type,
        hash_size=hash_size,
        page_shift=page_shift,
        code_limit=code_limit,
        n_code_slots=n_code_slots,
        hash_offset=hash_offset,
        identifier=identifier,
        hashes=data[hash_offset:end],
    )


# --- hashing pages as they stream past ---------------------------------------------------------


class PageHasher:
    """Hashes bytes ``[start, start + code_limit)`` of a stream page by page as they pass.

    ``feed`` gets every chunk of the stream with its position; only the part in range is hashed.
    Whole pages inside a chunk are hashed straight from it; a page split across chunks goes
    into a running hash, so memory stays flat whatever the page size. ``code_limit`` may be set
    after hashing has begun (it is known once the load commands have been read), as long as it
    lies ahead.
    """

    def __init__(self, start: int, scheme: PageScheme = DEFAULT_SCHEME) -> None:
        self.start = start
        self.scheme = scheme
        self.digests: list[bytes] = []
        self._new: Callable[..., Any] = getattr(hashlib, scheme.algorithm)
        self._running = self._new()
        self._filled = 0  # bytes of the current page in the running hash
        self._next = start
        self._end: int | None = None
        if scheme.code_limit is not None:
            self.set_limit(scheme.code_limit)

    def set_limit(self, code_limit: int) -> None:
        """Stop hashing at ``start + code_limit``."""
        self._end = self.start + code_limit

    def feed(self, position: int, data: bytes | memoryview) -> None:
        """Take the chunk of the stream that starts at byte ``position``."""
        low = max(position, self._next)
        high = position + len(data) if self._end is None else min(position + len(data), self._end)
        if low >= high:
            return
        view = memoryview(data)[low - position : high - position]
        page = self.scheme.page_size
        if self._filled:
            taken = view[: page - self._filled]
            self._add_partial(taken)
            view = view[len(taken) :]
        whole = len(view) - len(view) % page
        new = self._new
        self.digests += [new(view[at : at + page]).digest() for at in range(0, whole, page)]
        if whole < len(view):
            self._add_partial(view[whole:])
        self._next = high

    def finish(self) -> list[bytes]:
        """The page hashes, the last (short) page included; call once the limit has passed."""
        if self._filled and self._next == self._end:
            self.digests.append(self._running.digest())
            self._running, self._filled = self._new(), 0
        return self.digests

    @property
    def hashed_scheme(self) -> PageScheme:
        """The scheme the digests were made with, code limit included."""
        limit = None if self._end is None else self._end - self.start
        return PageScheme(self.scheme.algorithm, self.scheme.page_size, limit)

    def _add_partial(self, data: memoryview) -> None:
        self._running.update(data)
        self._filled += len(data)
        if self._filled == self.scheme.page_size:
            self.digests.append(self._running.digest())
            self._running, self._filled = self._new(), 0


class ByteCapture:
    """Keeps bytes ``[start, start + length)`` of a stream as they pass (a signature blob)."""

    def __init__(self, start: int, length: int) -> None:
        self.start = start
        self.end = start + length
        self._data = bytearray()

    def feed(self, position: int, data: bytes | memoryview) -> None:
        """Take the chunk of the stream that starts at byte ``position``."""
        low = max(position, self.start + len(self._data))
        high = min(position + len(data), self.end)
        if low < high:
            self._data += memoryview(data)[low - position : high - position]

    @property
    def data(self) -> bytes:
        """What has been captured so far."""
        return bytes(self._data)


# --- judging -----------------------------------------------------------------------------------


def needs_rehash(signature: EmbeddedSignature, hashed: PageScheme) -> PageScheme | None:
    """The scheme pages must be hashed with again, or None when ``hashed`` serves the kernel's CD.

    SHA-256 digests serve a truncated-SHA-256 directory too.
    """
    wanted = signature.best.scheme
    same = (
        wanted.algorithm == hashed.algorithm
        and wanted.page_size == hashed.page_size
        and wanted.code_limit == hashed.code_limit
    )
    return None if same else wanted


def judge(signature: EmbeddedSignature, digests: list[bytes], code_end: int) -> SignatureCheck:
    """Compare the page hashes of the code (``digests``, hashed with the best CD's scheme)."""
    cd = signature.best
    bad = tuple(
        page
        for page in range(min(cd.n_code_slots, len(digests)))
        if digests[page][: cd.hash_size] != cd.expected(page)
    )
    reasons: list[str] = []
    if cd.code_limit != code_end:
        reasons.append(
            f"the signature covers {cd.code_limit} bytes, but the code now ends at byte {code_end}"
        )
    if cd.n_code_slots != len(digests):
        reasons.append(
            f"the signature has {cd.n_code_slots} page hashes for {len(digests)} pages of code"
        )
    return SignatureCheck(
        "mismatch" if bad or reasons else "valid",
        signer=signature.signer,
        flags=cd.flags,
        hash_name=HASH_NAMES[cd.hash_type],
        page_size=cd.page_size,
        pages=cd.n_code_slots,
        bad_pages=bad,
        code_limit=cd.code_limit,
        code_end=code_end,
        detail="; ".join(reasons) or None,
    )


def describe_pages(pages: tuple[int, ...], page_size: int, shown: int = 5) -> str:
    """``'page 3 (bytes 12288..16383)'`` or ``'pages 0, 3, 9 and 12 more'``.

    >>> describe_pages((3,), 4096)
    'page 3 (bytes 12288..16383)'
    >>> describe_pages(tuple(range(8)), 4096)
    'pages 0, 1, 2, 3, 4 and 3 more'
    """
    if len(pages) == 1:
        start = pages[0] * page_size
        return f"page {pages[0]} (bytes {start}..{start + page_size - 1})"
    listed = ", ".join(str(page) for page in pages[:shown])
    more = f" and {len(pages) - shown} more" if len(pages) > shown else ""
    return f"pages {listed}{more}"


# --- repairing ---------------------------------------------------------------------------------


def rehash_refusal(signature: EmbeddedSignature, code_end: int) -> str | None:
    """Why recomputing this signature's page hashes in place would be wrong, or None if safe.

    Only an ad-hoc signature may be rehashed: a certificate signature also signs the
    CodeDirectory, and changing a hash breaks it. The code must end where the signature says,
    or the page count (and the signature's size) would change.
    """
    if not signature.adhoc:
        return (
            "signed with a certificate (CMS blob, not ad hoc); re-sign it with the original "
            "identity (codesign --force --sign 'Developer ID Application: ...')"
        )
    for cd in signature.directories:
        if cd.code_limit != code_end:
            return (
                f"the signature covers {cd.code_limit} bytes but the code now ends at byte "
                f"{code_end}; re-sign on macOS (codesign --force --sign - FILE)"
            )
    return None


def rehash_in_place(file: BinaryIO, slice_offset: int, signature_offset: int) -> int:
    """Rewrite the code hashes of every CodeDirectory of the ad-hoc signature in ``file``.

    ``slice_offset`` is where the slice starts in the file, ``signature_offset`` where its
    signature starts (slice offset + LC_CODE_SIGNATURE dataoff). Pages are read one at a time.
    Raises SignatureError, changing nothing, when :func:`rehash_refusal` objects. Returns how
    many hashes changed.
    """
    file.seek(signature_offset)
    head = file.read(_SUPERBLOB.size)
    if len(head) < _SUPERBLOB.size:
        msg = f"no signature at byte {signature_offset}: the file ends first"
        raise SignatureError(msg)
    _magic, length, _count = _SUPERBLOB.unpack(head)
    file.seek(signature_offset)
    signature = parse_signature(file.read(length))
    refusal = rehash_refusal(signature, signature_offset - slice_offset)
    if refusal is not None:
        raise SignatureError(refusal)
    changed = 0
    for cd in signature.directories:
        for page in range(cd.n_code_slots):
            file.seek(slice_offset + page * cd.page_size)
            size = min(cd.page_size, cd.code_limit - page * cd.page_size)
            digest = hashlib.new(cd.algorithm, file.read(size)).digest()[: cd.hash_size]
            if digest != cd.expected(page):
                file.seek(signature_offset + cd.slot_offset(page))
                file.write(digest)
                changed += 1
    return changed


__all__ = [
    "DEFAULT_SCHEME",
    "KILLED",
    "ByteCapture",
    "CodeDirectory",
    "EmbeddedSignature",
    "PageHasher",
    "PageScheme",
    "SignatureCheck",
    "SignatureError",
    "describe_pages",
    "judge",
    "needs_rehash",
    "parse_signature",
    "rehash_in_place",
    "rehash_refusal",
]
