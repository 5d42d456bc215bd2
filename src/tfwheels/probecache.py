"""Answers of tools about themselves, kept until the tool's files change.

Every build asks its Python where its site-packages are, Bazel for its version and dpkg for the
Debian package's version: a tenth of a second of subprocesses that a no-op rebuild (0.3 s of
Bazel) should not pay each time. An answer is kept in ``probes.json`` in tfwheels' per-user cache folder under the probe's
name and a fingerprint of the files it depends on (path, size, mtime, inode); a changed, moved
or reinstalled tool changes the fingerprint, so a stale answer is never used. The file is a
cache: unreadable or damaged, it is ignored and written anew; TFWHEELS_NO_PROBE_CACHE=1 turns it off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tfwheels.atomic import file_sha256, write_atomic
from tfwheels.layout import user_cache_dir

_FILE = "probes.json"
_MOST_ENTRIES = 64  # a cache, not a history: a few tools on a few paths


def fingerprint(paths: Iterable[Path], *, missing_ok: bool = False) -> str | None:
    """A key that changes when any of ``paths`` (followed through links) changes; None when one
    cannot be read, which means: do not cache. With ``missing_ok`` a missing path is part of
    the key (its appearing changes it) instead."""
    parts = []
    for path in paths:
        try:
            info = os.stat(path)  # through links: a link pointed elsewhere gives another inode
        except FileNotFoundError:
            if not missing_ok:
                return None
            parts.append(f"{path}:missing")
            continue
        except OSError:
            return None
        parts.append(f"{path}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}")
    return "|".join(parts)


def cached(
    name: str, depends_on: Iterable[Path], compute: Callable[[], Any], *, inputs: str = "", file: str = _FILE
) -> Any:
    """``compute()``'s JSON-able answer, reused while the files in ``depends_on`` are unchanged
    and ``inputs`` (a digest of whatever else the answer depends on) is the same.

    ``None`` answers are not kept (a probe that failed is asked again next time). ``file`` names
    the cache file in the per-user cache folder, so unrelated answers do not evict each other.
    """
    key = fingerprint(depends_on)
    if key is None or os.environ.get("TFWHEELS_NO_PROBE_CACHE"):
        return compute()
    key = f"{key}|{inputs}" if inputs else key
    path = user_cache_dir() / file
    entries = _load(path)
    entry = entries.get(name)
    if isinstance(entry, dict) and entry.get("key") == key and "value" in entry:
        return entry["value"]
    value = compute()
    if value is not None:
        entries[name] = {"key": key, "value": value}
        for stale in list(entries)[: max(0, len(entries) - _MOST_ENTRIES)]:
            del entries[stale]
        try:
            write_atomic(path, json.dumps(entries, indent=1, sort_keys=True).encode(), 0o644)
        except OSError:
            pass  # a read-only home still builds; it only asks again next time
    return value


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_digest(path: Path) -> str:
    """The sha256 of ``path``, kept (in ``digests.json``) while its size, mtime and inode stay
    the same, as Bazel keeps its own digests: a no-op rebuild of TensorFlow does not read its
    300 MB wheel again to find it unchanged."""
    digest = cached(f"sha256 {os.path.abspath(path)}", [path], lambda: file_sha256(path), file="digests.json")
    return str(digest)
