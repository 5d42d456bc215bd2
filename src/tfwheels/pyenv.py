"""Facts about the Python interpreter a build is for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfwheels.errors import ToolMissingError
from tfwheels.probecache import cached
from tfwheels.run import run, which

_PROBE = (
    "import json, site, sys, sysconfig;"
    "paths = [p for p in site.getsitepackages() if p.endswith('-packages')] or [sysconfig.get_paths()['purelib']];"
    "print(json.dumps({'executable': sys.executable, 'major': sys.version_info[0],"
    " 'minor': sys.version_info[1], 'site': paths[0]}))"
)


@dataclass(frozen=True)
class PythonFacts:
    """An interpreter's path, version and site-packages."""

    executable: str
    major: int
    minor: int
    site_packages: str

    @property
    def version(self) -> str:
        """``3.11``."""
        return f"{self.major}.{self.minor}"

    @property
    def tag(self) -> str:
        """The CPython wheel tag, ``cp311``."""
        return f"cp{self.major}{self.minor}"


def probe_python(interpreter: str) -> PythonFacts:
    """Ask ``interpreter`` (a name on PATH or a path) about itself."""
    found = which(interpreter) if "/" not in interpreter else None
    program = str(found) if found else interpreter
    # A venv's answers depend on its pyvenv.cfg as well as on the interpreter it links to.
    venv_cfg = Path(program).parent.parent / "pyvenv.cfg"
    depends = [Path(program), *([venv_cfg] if venv_cfg.is_file() else [])]
    data = cached(f"python:{program}", depends, lambda: _ask(interpreter, program))
    return PythonFacts(data["executable"], data["major"], data["minor"], data["site"])


def _ask(interpreter: str, program: str) -> dict[str, Any]:
    result = run([program, "-c", _PROBE], check=False, echo=False)
    if not result.ok:
        msg = f"python interpreter {interpreter!r} did not run (exit {result.exit_code}); set python.interpreter in the profile to a working Python"
        raise ToolMissingError(msg)
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data
