"""Repair stale code signatures in a wheel, where that is safe, into a new wheel file.

A tool that edits an arm64 binary after the linker signed it (install_name_tool, strip, a patch)
leaves page hashes that no longer match, and macOS kills Python when it loads the file. When the
signature is ad hoc (no certificate: nobody's identity is at stake) and the code still ends
where the signature says, recomputing the page hashes in place gives exactly the signature the
linker would have written. On a Mac with ``codesign``, ``codesign --force --sign -`` does it
instead. Anything else (no signature at all, a Developer ID signature, a signature that covers
other bytes than the code) is reported and left alone. ``codesign`` re-signs every slice of a
universal file, so it is not used on one where any slice carries a certificate signature.

The original wheel is never touched: the repaired copy is written under a temporary name in the
output folder and renamed (with the original's permissions), with the wheel's own RECORD (the
top-level ``<name>-<version>.dist-info/RECORD``) updated for the members that changed. A damaged
wheel (a bad CRC, a RECORD that is not UTF-8, a cut-off archive) is not repaired at all: the
repair says why in one line and leaves no output; verify-wheel reports the damage itself.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from tfwheels.atomic import atomic_output
from tfwheels.binaries import BinaryInfo, Slice, inspect_binary, is_native
from tfwheels.codesign import SignatureError, parse_signature, rehash_in_place
from tfwheels.dependencies import dist_info_member
from tfwheels.errors import UsageError
from tfwheels.run import run, which

_CHUNK = 1024 * 1024
_PEEK = 8
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


class _Damaged(Exception):
    """Internal: the wheel cannot be read whole; the message says where, in one line."""

Action = Literal["rehashed", "codesigned", "refused"]


@dataclass(frozen=True)
class SignatureFix:
    """What was done about one arm64 slice whose signature did not match."""

    file: str
    arch: str
    action: Action
    detail: str

    def to_json(self) -> dict[str, str]:
        """A plain dict for reports."""
        return {"file": self.file, "arch": self.arch, "action": self.action, "detail": self.detail}


@dataclass
class Repair:
    """The outcome for one wheel: ``output`` is the repaired copy, None when nothing changed;
    ``refused`` why the whole wheel was left alone (it is damaged), None otherwise."""

    wheel: Path
    output: Path | None = None
    fixes: list[SignatureFix] = field(default_factory=list)
    refused: str | None = None

    def to_json(self) -> dict[str, object]:
        """A plain dict for reports."""
        return {
            "wheel": self.wheel.name,
            "output": str(self.output) if self.output else None,
            "fixes": [fix.to_json() for fix in self.fixes],
            "refused": self.refused,
        }


def codesign_available() -> bool:
    """True on a Mac with Apple's codesign on PATH."""
    return sys.platform == "darwin" and which("codesign") is not None


def default_output_dir(wheel: Path) -> Path:
    """``<folder of the wheel>/fixed``: where repaired wheels go unless told otherwise."""
    return wheel.parent / "fixed"


def repair_wheel(wheel: Path, output_dir: Path, *, use_codesign: bool | None = None) -> Repair:
    """Repair the stale ad-hoc signatures of ``wheel`` into ``output_dir/<same name>``.

    ``use_codesign`` defaults to :func:`codesign_available`. Raises UsageError when the output
    would replace the wheel itself. A wheel that cannot be read whole is refused (``refused``
    says why) and nothing is written.
    """
    if use_codesign is None:
        use_codesign = codesign_available()
    output = output_dir / wheel.name
    if output.resolve() == wheel.resolve():
        msg = f"{output}: repairing would overwrite the wheel itself; choose another --output"
        raise UsageError(msg)
    repair = Repair(wheel)
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        return Repair(wheel, refused=f"not repaired: the file is no readable zip archive ({exc})")
    made_dir = not output_dir.exists()
    try:
        with archive, tempfile.TemporaryDirectory(prefix="tfwheels-repair-") as scratch:
            record_name = wheel_record_name(archive, wheel.name)
            record = _record_hashes(archive, record_name)
            replaced: dict[str, Path] = {}
            for info in archive.infolist():
                try:
                    binary = _check_member(archive, info)
                    if binary is None or not _stale_slices(binary):
                        continue
                    fixed, fixes = _repair_member(
                        archive, info, binary, Path(scratch), use_codesign,
                        record.get(info.filename),
                    )
                except _READ_ERRORS as exc:
                    raise _Damaged(f"{info.filename} is unreadable ({exc})") from exc
                repair.fixes += fixes
                if fixed is not None:
                    replaced[info.filename] = fixed
            if replaced:
                output_dir.mkdir(parents=True, exist_ok=True)
                _write_wheel(archive, replaced, output, record_name, wheel.stat().st_mode & 0o777)
                repair.output = output
    except _Damaged as exc:
        if made_dir and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
        return Repair(wheel, refused=f"not repaired: the wheel is damaged: {exc}")
    return repair


def scan_signatures(wheel: Path) -> Iterator[BinaryInfo]:
    """Every Mach-O of ``wheel`` with its arm64 signatures checked, one member at a time,
    streaming (nothing else of the wheel is read: no RECORD, no CRC of other members)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            binary = _check_member(archive, info)
            if binary is not None:
                yield binary


def wheel_record_name(archive: zipfile.ZipFile, filename: str) -> str | None:
    """The wheel's own RECORD (see dependencies.dist_info_member), for the name in ``filename``."""
    try:
        name = parse_wheel_filename(filename)[0]
    except InvalidWheelFilename:
        name = None
    return dist_info_member(archive, name, "RECORD")


def _record_hashes(archive: zipfile.ZipFile, name: str | None) -> dict[str, str]:
    """RECORD's ``algorithm=digest`` by path (empty when there is no RECORD); _Damaged when it
    cannot be read or is not UTF-8 (then nothing it says can be trusted)."""
    if name is None:
        return {}
    try:
        text = archive.read(name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Damaged(f"{name} is not UTF-8 ({exc})") from exc
    except _READ_ERRORS as exc:
        raise _Damaged(f"{name} is unreadable ({exc})") from exc
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise _Damaged(f"{name} is not valid CSV ({exc})") from exc
    return {row[0]: row[1] for row in rows if len(row) == 3 and row[1]}


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryInfo | None:
    """The member's binary info with signatures checked, streaming; None for non-Mach-O."""
    if info.is_dir() or info.file_size < _PEEK:
        return None
    with archive.open(info) as stream:
        if not is_native(stream.read(_PEEK)):
            return None
    with archive.open(info) as stream:
        binary = inspect_binary(
            info.filename,
            stream,
            size=info.file_size,
            signatures=True,
            reopen=lambda: archive.open(info),
        )
    return binary if binary is not None and binary.format == "mach-o" else None


def _stale_slices(binary: BinaryInfo) -> list[str]:
    return [s.arch for s in binary.slices if s.signature is not None and not s.signature.ok]


def _repair_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    binary: BinaryInfo,
    scratch: Path,
    use_codesign: bool,
    recorded: str | None,
) -> tuple[Path | None, list[SignatureFix]]:
    """Fix what can be fixed in one member; returns the fixed copy (None: unchanged) and why.

    A member whose bytes RECORD does not vouch for (``recorded``: its ``algorithm=digest``)
    changed after the wheel was built; re-signing it would bless that change, so it is refused.
    """
    fixes: list[SignatureFix] = []
    fixable: list[Slice] = []
    for piece in binary.slices:
        check = piece.signature
        if check is None or check.ok:
            continue
        reason = _refusal(
            check.status, check.signer, check.code_limit, check.code_end, use_codesign
        )
        if reason is None:
            fixable.append(piece)
        else:
            fixes.append(SignatureFix(info.filename, piece.arch, "refused", reason))
    if not fixable:
        return None, fixes
    fd, name = tempfile.mkstemp(suffix=f"-{Path(info.filename).name}", dir=scratch)
    copy = Path(name)
    with archive.open(info) as source, os.fdopen(fd, "wb") as spool:
        shutil.copyfileobj(source, spool, _CHUNK)
    if not _vouched(copy, recorded):
        detail = (
            "RECORD does not vouch for this file (it changed after the wheel was built, or is "
            "not listed); rebuild the wheel instead of re-signing the change"
        )
        return None, [
            *fixes,
            *(SignatureFix(info.filename, p.arch, "refused", detail) for p in fixable),
        ]
    if use_codesign:
        certified = _certified_slices(copy, binary)
        if certified:
            detail = (
                f"codesign --force --sign - re-signs every slice, and the {certified} "
                f"{'slice carries' if ',' not in certified else 'slices carry'} a certificate "
                "signature (or one that cannot be read) it would replace; re-sign with the "
                "original identity"
            )
            return None, [
                *fixes,
                *(SignatureFix(info.filename, p.arch, "refused", detail) for p in fixable),
            ]
        run(["codesign", "--force", "--sign", "-", str(copy)])
        fixes += [
            SignatureFix(info.filename, p.arch, "codesigned", "codesign --force --sign -")
            for p in fixable
        ]
    else:
        fixes += _rehash(copy, info.filename, fixable)
    if any(fix.action != "refused" for fix in fixes):
        still = _stale_after(copy, info.filename)
        if still:
            detail = f"still does not match after the repair ({', '.join(still)}); left as it was"
            return None, [
                *(f for f in fixes if f.action == "refused"),
                *(SignatureFix(info.filename, arch, "refused", detail) for arch in still),
            ]
        return copy, fixes
    return None, fixes


def _certified_slices(copy: Path, binary: BinaryInfo) -> str:
    """The slices (``'x86_64'``, ...) whose signature is not provably ad hoc, as one string."""
    named: list[str] = []
    with copy.open("rb") as stream:
        for piece in binary.slices:
            if piece.signature is not None:
                adhoc = piece.signature.status == "unsigned" or (
                    piece.signature.signer or ""
                ).startswith("ad-hoc")
            elif piece.signature_at is None:
                adhoc = True  # unsigned: nothing to lose
            else:
                dataoff, datasize = piece.signature_at
                stream.seek(piece.offset + dataoff)
                try:
                    adhoc = parse_signature(stream.read(datasize)).adhoc
                except SignatureError:
                    adhoc = False
            if not adhoc:
                named.append(f"'{piece.arch}'")
    return ", ".join(named)


def _vouched(copy: Path, recorded: str | None) -> bool:
    """True when RECORD's ``algorithm=digest`` matches the file."""
    algorithm, _, digest = (recorded or "").partition("=")
    if algorithm not in hashlib.algorithms_guaranteed or not digest:
        return False
    return _file_digest(copy, algorithm) == digest


def _refusal(
    status: str, signer: str | None, code_limit: int | None, code_end: int | None, codesign: bool
) -> str | None:
    """Why a slice's signature is not repaired, or None when it is."""
    if status == "unsigned":
        return (
            "no signature slot (LC_CODE_SIGNATURE) to fill; relink (ld64 and lld sign arm64 "
            "output) or sign it on macOS: codesign --force --sign - FILE"
        )
    if status == "malformed":
        return "the signature is unreadable; re-sign it on macOS: codesign --force --sign - FILE"
    if not (signer or "").startswith("ad-hoc"):
        return (
            "signed with a certificate (Developer ID), which only its owner can renew; re-sign "
            "with that identity"
        )
    if not codesign and code_limit != code_end:
        return (
            f"the signature covers {code_limit} bytes but the code now ends at byte {code_end}; "
            "rehashing in place cannot grow it: re-sign on macOS with codesign --force --sign -"
        )
    return None


def _rehash(copy: Path, name: str, slices: list[Slice]) -> list[SignatureFix]:
    fixes: list[SignatureFix] = []
    with copy.open("r+b") as stream:
        for piece in slices:
            assert piece.signature_at is not None
            try:
                changed = rehash_in_place(
                    stream, piece.offset, piece.offset + piece.signature_at[0]
                )
            except SignatureError as exc:
                fixes.append(SignatureFix(name, piece.arch, "refused", str(exc)))
                continue
            detail = f"recomputed {changed} page hash{'es' if changed != 1 else ''} in place"
            fixes.append(SignatureFix(name, piece.arch, "rehashed", detail))
    return fixes


def _stale_after(copy: Path, name: str) -> list[str]:
    with copy.open("rb") as stream:
        binary = inspect_binary(
            name,
            stream,
            size=copy.stat().st_size,
            signatures=True,
            reopen=lambda: copy.open("rb"),
        )
    return _stale_slices(binary) if binary is not None else []


# --- writing the repaired wheel ----------------------------------------------------------------


def _write_wheel(
    archive: zipfile.ZipFile,
    replaced: dict[str, Path],
    output: Path,
    record_name: str | None,
    mode: int,
) -> None:
    """Copy the wheel member by member, with the replaced members and a RECORD that lists them;
    _Damaged (and no output) when a member cannot be read."""
    info: zipfile.ZipInfo | None = None
    try:
        with atomic_output(output, mode) as handle, zipfile.ZipFile(handle, "w") as out:
            for info in archive.infolist():
                copy = _copy_info(info)
                if info.filename == record_name:
                    data = _updated_record(archive.read(info).decode("utf-8"), replaced).encode()
                    copy.file_size = len(data)
                    out.writestr(copy, data)
                elif info.filename in replaced:
                    with replaced[info.filename].open("rb") as source:
                        _stream_member(out, copy, source, replaced[info.filename].stat().st_size)
                else:
                    with archive.open(info) as source:
                        _stream_member(out, copy, source, info.file_size)
    except (*_READ_ERRORS, UnicodeDecodeError) as exc:
        where = info.filename if info is not None else output.name
        raise _Damaged(f"{where} is unreadable ({exc})") from exc


def _copy_info(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    copy = zipfile.ZipInfo(info.filename, info.date_time)
    copy.compress_type = info.compress_type
    copy.external_attr = info.external_attr
    copy.create_system = info.create_system
    copy.comment = info.comment
    return copy


def _stream_member(
    out: zipfile.ZipFile, info: zipfile.ZipInfo, source: IO[bytes], size: int
) -> None:
    info.file_size = size  # lets zipfile choose ZIP64 up front for members over 2 GiB
    with out.open(info, "w") as target:
        shutil.copyfileobj(source, target, _CHUNK)


def _updated_record(text: str, replaced: dict[str, Path]) -> str:
    """RECORD with new hashes and sizes for the replaced members, every other row as it was."""
    rows = list(csv.reader(io.StringIO(text)))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        if len(row) == 3 and row[0] in replaced:
            algorithm = row[1].partition("=")[0] or "sha256"
            path = replaced[row[0]]
            row = [row[0], f"{algorithm}={_file_digest(path, algorithm)}", str(path.stat().st_size)]
        writer.writerow(row)
    return buffer.getvalue()


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


__all__ = [
    "Repair",
    "SignatureFix",
    "codesign_available",
    "default_output_dir",
    "repair_wheel",
    "scan_signatures",
    "wheel_record_name",
]
