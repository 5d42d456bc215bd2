"""Smoke-test wheels the way a user meets them: a fresh venv, pip install, import from elsewhere.

Runs only where the host can run the wheel (its tags are among this interpreter's supported
tags); otherwise the result says why it was skipped. Installs offline from the wheel's folder
(``--no-index --find-links``), so a wheel that needs something not built here fails loudly
instead of quietly pulling a different build from an index. As cibuildwheel does, the import runs
from a temporary directory, so the source tree cannot shadow the installed package.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename

from tfwheels.render import expand
from tfwheels.run import run


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test found: ``passed``, ``failed`` or ``skipped``, and why."""

    status: str
    detail: str
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The result for the manifest and the report."""
        return {"status": self.status, "detail": self.detail, "seconds": round(self.seconds, 3)}


def runnable_here(wheel: Path) -> str | None:
    """None when this interpreter can install ``wheel``; else the reason it cannot."""
    _, _, _, tags = parse_wheel_filename(wheel.name)
    supported = set(sys_tags())
    if tags & supported:
        return None
    return f"{wheel.name} is not for this host ({next(iter(sys_tags()))}); it is tested on its target"


def import_name(wheel: Path) -> str:
    """The package to import: the wheel's top_level.txt, else its normalised name."""
    import zipfile

    name, _, _, _ = parse_wheel_filename(wheel.name)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith(".dist-info/top_level.txt"):
                first = archive.read(member).decode("utf-8", "replace").split()
                if first:
                    return first[0]
    return str(name).replace("-", "_")


def smoke_test(
    wheel: Path,
    find_links: Path,
    python: str,
    test_command: Sequence[str] = (),
) -> SmokeResult:
    """Install ``wheel`` into a fresh venv made by ``python`` and import it from a temp dir."""
    reason = runnable_here(wheel)
    if reason:
        return SmokeResult("skipped", reason)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfwheels-smoke-") as tmp:
        venv = Path(tmp) / "venv"
        made = run([python, "-m", "venv", str(venv)], check=False, echo=False)
        if not made.ok:
            return SmokeResult("failed", f"could not create a venv: {made.stderr.strip()[-300:]}")
        venv_python = str(venv / "bin" / "python")
        install = run(
            [venv_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-index", "--find-links", str(find_links), str(wheel)],
            check=False,
            echo=False,
        )
        if not install.ok:
            detail = (install.stderr or install.stdout).strip().splitlines()
            return SmokeResult("failed", f"pip install failed: {detail[-1] if detail else install.exit_code}",
                               time.monotonic() - start)
        package = import_name(wheel)
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        imported = run([venv_python, "-c", f"import {package}"], cwd=cwd, check=False, echo=False)
        if not imported.ok:
            last = imported.stderr.strip().splitlines()
            return SmokeResult("failed", f"import {package} failed: {last[-1] if last else imported.exit_code}",
                               time.monotonic() - start)
        if test_command:
            argv = [expand(part, {"python": venv_python}) for part in test_command]
            tested = run(argv, cwd=cwd, check=False, echo=False)
            if not tested.ok:
                last = (tested.stderr or tested.stdout).strip().splitlines()
                return SmokeResult("failed", f"test command failed: {last[-1] if last else tested.exit_code}",
                                   time.monotonic() - start)
            return SmokeResult("passed", f"import {package} and the test command passed", time.monotonic() - start)
        return SmokeResult("passed", f"installed in a fresh venv; import {package} works", time.monotonic() - start)
