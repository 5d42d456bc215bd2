"""Small wheels made in tmp_path: valid zip, WHEEL, METADATA and a RECORD pip accepts."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path


def digest(data: bytes) -> str:
    """RECORD's urlsafe-base64 sha256, without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``folder`` and return its path."""
    dist_name = name.replace("-", "_")
    info = f"{dist_name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires_dist)
    if requires_python is not None:
        metadata += f"Requires-Python: {requires_python}\n"
    purelib = "true" if tag.endswith("-any") else "false"
    members = {
        **(files or {f"{dist_name}/__init__.py": b""}),
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
        ).encode(),
    }
    rows = [f"{member},sha256={digest(data)},{len(data)}" for member, data in members.items()]
    path = folder / f"{dist_name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
        archive.writestr(f"{info}/RECORD", "\n".join([*rows, f"{info}/RECORD,,"]) + "\n")
    return path
