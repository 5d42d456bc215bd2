"""Files that are never half-written: a temporary file in the same folder, then one rename.

A crash, an exception or Ctrl-C at any point leaves either the old file or the new one, never a
mixture; the temporary file is removed when the block fails.

The result has the mode a plain ``open(path, "w")`` would give it (0644 under the usual umask 022),
not mkstemp's private 0600, unless the caller asks for another (a copy keeps its source's).
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


DEFAULT_MODE = 0o644


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to ask is not atomic)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(dest: Path, mode: int | None = None) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``dest`` when the block succeeds, with ``mode`` if given, else
    0644 masked by the umask (what ``open`` would create)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    final_mode = DEFAULT_MODE & ~current_umask() if mode is None else mode
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, final_mode)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` in one rename."""
    with atomic_output(path, mode) as handle:
        handle.write(data)


def same_bytes(source: Path, dest: Path) -> bool:
    """True when ``dest`` is a file holding ``source``'s bytes (compared in chunks)."""
    return dest.is_file() and filecmp.cmp(source, dest, shallow=False)


def copy_plain(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` in one rename, never whole in memory; the copy gets the
    default mode, not the source's (Bazel's outputs are read-only)."""
    with atomic_output(dest) as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def copy_atomic(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` in one rename, keeping ``source``'s permissions."""
    with atomic_output(dest, source.stat().st_mode & 0o7777) as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
