"""Files that are never half-written: a temporary file in the same folder, then one rename.

A crash, an exception or Ctrl-C at any point leaves either the old file or the new one, never a
mixture; the temporary file is removed when the block fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_output(dest: Path, mode: int | None = None) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``dest`` (with ``mode``, if given) when the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` in one rename."""
    with atomic_output(path, mode) as handle:
        handle.write(data)


def copy_atomic(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` in one rename, keeping ``source``'s permissions."""
    with atomic_output(dest, source.stat().st_mode & 0o7777) as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
