"""Write one wheel from files given as DEST=SRC, as the `wheel` rule's action (see wheel.bzl).

The same package as build_pip_package's setup.py makes (the native library and headers as
package data, Root-Is-Purelib false, tagged cpXY-cpXY-<platform>), but with the zip written
directly: deterministic (sorted members, fixed timestamps), so the action is cacheable.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import sys
import zipfile

_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _member(archive: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="directory to write the wheel into")
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--platform-tag", required=True)
    parser.add_argument("--python-tag", default=f"cp{sys.version_info[0]}{sys.version_info[1]}")
    parser.add_argument("--file", action="append", default=[], metavar="DEST=SRC")
    options = parser.parse_args(argv)

    distribution = re.sub(r"[-_.]+", "_", options.name).lower()
    tag = f"{options.python_tag}-{options.python_tag}-{options.platform_tag}"
    dist_info = f"{distribution}-{options.version}.dist-info"
    files: dict[str, tuple[bytes, int]] = {}
    for spec in options.file:
        dest, _, src = spec.partition("=")
        with open(src, "rb") as handle:
            native = re.search(r"\.(so(\.\d+)*|dylib)$", dest) is not None
            files[dest] = (handle.read(), 0o755 if native else 0o644)
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {options.name}\n"
        f"Version: {options.version}\n"
        "Summary: Miniature TensorFlow built from source by the tfwheels example workspace\n"
        "Requires-Python: >=3.9\n"
    )
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: tf-mini build_wheel.py\n"
        "Root-Is-Purelib: false\n"
        f"Tag: {tag}\n"
    )
    files[f"{dist_info}/METADATA"] = (metadata.encode(), 0o644)
    files[f"{dist_info}/WHEEL"] = (wheel.encode(), 0o644)

    os.makedirs(options.output, exist_ok=True)
    path = os.path.join(options.output, f"{distribution}-{options.version}-{tag}.whl")
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        # Packages first, dist-info last (RECORD at the very end), as wheel builders order them.
        for name in sorted(files, key=lambda n: (n.startswith(dist_info), n)):
            data, mode = files[name]
            _member(archive, name, data, mode)
            record.append(f"{name},{_record_hash(data)},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        _member(archive, f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode(), 0o644)
    print(f"Output wheel file is in: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
