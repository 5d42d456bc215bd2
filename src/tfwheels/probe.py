"""Every question ``invoke doctor`` asks the host, behind one small interface.

``LocalProbe`` asks this machine (commands go through ``tfwheels.run.run``). ``RecordedProbe``
answers from recorded data, so the macOS checks (Rosetta, Xcode, Homebrew, Bazel's arch) can be
tested on Linux with the answers a Mac gives. Nothing here decides pass or fail: that is
``doctor.py``'s job.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tfwheels.bazel import BazelTool, find_bazel
from tfwheels.errors import ToolMissingError
from tfwheels.profiles import Profile
from tfwheels.run import run, which

NOT_FOUND = 127


@dataclass(frozen=True)
class Output:
    """What a command printed and how it exited (127 when the program is not there)."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0

    @property
    def first_line(self) -> str:
        """The first non-empty line of stdout (else stderr), stripped."""
        for line in (self.stdout or self.stderr).splitlines():
            if line.strip():
                return line.strip()
        return ""


class Probe:
    """The questions doctor asks. Subclasses answer ``run`` and the few non-command facts."""

    def system(self) -> str:
        """``platform.system()``: ``Darwin`` or ``Linux``."""
        raise NotImplementedError

    def machine(self) -> str:
        """``platform.machine()`` of this process: ``arm64``, ``x86_64``, ``aarch64``."""
        raise NotImplementedError

    def run(self, argv: Sequence[str]) -> Output:
        """Run a command and return its output; a missing program gives exit 127."""
        raise NotImplementedError

    def which(self, program: str) -> str | None:
        """The path of ``program`` on PATH, or None."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        """Whether a file or folder exists."""
        raise NotImplementedError

    def python(self) -> str:
        """The interpreter tfwheels itself runs in."""
        raise NotImplementedError

    def disk_free_bytes(self, path: Path) -> int:
        """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
        raise NotImplementedError

    def memory(self) -> tuple[int, int]:
        """Physical cores and total RAM in MB."""
        raise NotImplementedError

    def bazel(self, profile: Profile) -> BazelTool:
        """The Bazel a build of ``profile`` would use (``bazel.find_bazel``); ToolMissingError if none."""
        raise NotImplementedError

    def sysctl(self, name: str) -> str | None:
        """``sysctl -n NAME`` (macOS), or None when the key does not exist."""
        result = self.run(["sysctl", "-n", name])
        return result.stdout.strip() if result.ok else None


class LocalProbe(Probe):
    """Answers about this machine."""

    def system(self) -> str:
        """``platform.system()``."""
        return platform.system()

    def machine(self) -> str:
        """``platform.machine()``."""
        return platform.machine()

    def run(self, argv: Sequence[str]) -> Output:
        """Run ``argv`` quietly through tfwheels' one runner."""
        if which(argv[0]) is None and "/" not in argv[0]:
            return Output(NOT_FOUND, stderr=f"{argv[0]}: command not found")
        try:
            result = run(list(argv), check=False, echo=False)
        except ToolMissingError as exc:
            return Output(NOT_FOUND, stderr=str(exc))
        return Output(result.exit_code, result.stdout, result.stderr)

    def which(self, program: str) -> str | None:
        """``shutil.which``."""
        found = which(program)
        return str(found) if found else None

    def exists(self, path: str) -> bool:
        """``Path.exists``."""
        return Path(path).exists()

    def python(self) -> str:
        """``sys.executable``."""
        return sys.executable

    def disk_free_bytes(self, path: Path) -> int:
        """``shutil.disk_usage`` of the nearest existing folder."""
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free

    def memory(self) -> tuple[int, int]:
        """Physical cores and total RAM from psutil."""
        cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
        return cores, psutil.virtual_memory().total // (1024 * 1024)

    def bazel(self, profile: Profile) -> BazelTool:
        """``bazel.find_bazel``."""
        return find_bazel(profile)


class RecordedProbe(Probe):
    """Answers recorded from a real host (a JSON file), for tests of another platform's checks.

    Keys: ``system``, ``machine``, ``python``, ``which`` {program: path}, ``commands``
    {"argv joined by spaces": {"exit", "stdout", "stderr"}}, ``exists`` [paths],
    ``disk_free_gb``, ``cores``, ``ram_mb``, and ``bazel`` (a BazelTool's fields, or
    ``{"missing": "message"}``). A command that was not recorded answers exit 127.
    """

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)

    @classmethod
    def from_file(cls, path: Path) -> RecordedProbe:
        """Read recorded answers from a JSON file."""
        return cls(json.loads(path.read_text("utf-8")))

    def system(self) -> str:
        """The recorded ``platform.system()``."""
        return str(self.answers["system"])

    def machine(self) -> str:
        """The recorded ``platform.machine()``."""
        return str(self.answers["machine"])

    def run(self, argv: Sequence[str]) -> Output:
        """The recorded output of ``argv``, or exit 127."""
        found = self.answers.get("commands", {}).get(" ".join(argv))
        if found is None:
            return Output(NOT_FOUND, stderr=f"{argv[0]}: not recorded")
        return Output(int(found.get("exit", 0)), found.get("stdout", ""), found.get("stderr", ""))

    def which(self, program: str) -> str | None:
        """The recorded path of ``program``."""
        found = self.answers.get("which", {}).get(program)
        return str(found) if found else None

    def exists(self, path: str) -> bool:
        """Whether ``path`` was recorded as existing."""
        return path in self.answers.get("exists", [])

    def python(self) -> str:
        """The recorded interpreter."""
        return str(self.answers["python"])

    def disk_free_bytes(self, path: Path) -> int:
        """The recorded free space."""
        return int(float(self.answers["disk_free_gb"]) * 1024**3)

    def memory(self) -> tuple[int, int]:
        """The recorded cores and RAM."""
        return int(self.answers["cores"]), int(self.answers["ram_mb"])

    def bazel(self, profile: Profile) -> BazelTool:
        """The recorded Bazel, with bazelisk running the profile's version as the real one does."""
        data = self.answers.get("bazel") or {"missing": "no bazel recorded"}
        if "missing" in data:
            raise ToolMissingError(str(data["missing"]))
        version = profile.bazel.version if data["kind"] == "bazelisk" else data.get("version")
        return BazelTool(
            Path(data["path"]), data["kind"], version, data.get("reported", ""),
            bool(data.get("unversioned", False)),
        )
