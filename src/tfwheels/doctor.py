"""``invoke doctor``: is this machine ready for a TensorFlow build that takes hours?

Each check says pass, warn or fail, what it saw and how to fix it. Every host fact comes through
one ``probe.Probe``, so the macOS checks run in tests on Linux from recorded answers.

Thresholds, and why:
- Disk: a TF build's Bazel output base plus the source tree and the repository cache take tens
  of GB (TF's own macOS CI keeps ~150 GB for builds with tests). Below 50 GB free we warn, below
  20 GB the build is expected to run out of space, so we fail.
- Memory: the larger TF C++ files need close to 2 GB per compiler (``hostinfo``); below 16 GB
  only a few jobs fit, so the build is slow but works: warn. The check shows the ``--jobs`` and
  ``--local_ram_resources`` a build will pass.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from rich.table import Table

from tfwheels.bazel import check_version, install_hint
from tfwheels.console import out
from tfwheels.errors import ToolMissingError
from tfwheels.hostinfo import resources
from tfwheels.layout import Layout
from tfwheels.probe import LocalProbe, Probe
from tfwheels.profiles import Profile, load_profile

Status = Literal["pass", "warn", "fail"]

GB = 1024**3
DISK_WARN_GB = 50
DISK_FAIL_GB = 20
RAM_WARN_MB = 16 * 1024
ARM64_PYTHON_FIX = "an arm64 Python, e.g. /opt/homebrew/bin/python3"
XCODE_DEVELOPER_DIR = "/Applications/Xcode.app/Contents/Developer"
_PROJECTS = {"tf": "tensorflow", "tff": "tensorflow_federated"}


@dataclass(frozen=True)
class Check:
    """One result: its name, pass/warn/fail, what was seen and (unless it passed) what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Context:
    """What the checks look at: the host probe, the optional profile and the build folder."""

    probe: Probe
    profile: Profile | None
    build_dir: Path

    @property
    def is_mac(self) -> bool:
        """True on macOS."""
        return self.probe.system() == "Darwin"

    def interpreter(self) -> str:
        """The Python the build uses: the profile's interpreter on PATH, else tfwheels' own."""
        if self.profile is not None and self.profile.configure.PYTHON_BIN_PATH:
            return self.profile.configure.PYTHON_BIN_PATH
        name = self.profile.python.interpreter if self.profile is not None else None
        if name is None:
            return self.probe.python()
        return name if "/" in name else (self.probe.which(name) or name)


# --- the checks ---------------------------------------------------------------------------------


def host_platform(probe: Probe) -> str:
    """The tfwheels platform of the hardware (an arm64 Mac even when this process is translated)."""
    machine = probe.machine().lower()
    if probe.system() == "Darwin":
        translated = probe.sysctl("sysctl.proc_translated") == "1"
        return "darwin_arm64" if machine == "arm64" or translated else f"darwin_{machine}"
    return {"amd64": "linux_x86_64", "arm64": "linux_aarch64"}.get(machine, f"linux_{machine}")


def check_platform(ctx: Context) -> Check:
    """OS and CPU, and whether they match the profile's platform."""
    host = host_platform(ctx.probe)
    detail = f"{ctx.probe.system()} {ctx.probe.machine()} ({host})"
    if host not in ("darwin_arm64", "linux_x86_64", "linux_aarch64"):
        fix = "build on an Apple Silicon Mac, or on Linux x86_64 or aarch64"
        return Check("platform", "fail", f"{detail}: tfwheels builds no wheels here", fix)
    if ctx.profile is not None and ctx.profile.platform != host:
        fix = f"pick a {host} profile (invoke profiles), or run this on a {ctx.profile.platform} host"
        return Check("platform", "fail", f"{detail}; the profile is for {ctx.profile.platform}", fix)
    return Check("platform", "pass", detail)


def _archs(probe: Probe, path: str) -> str | None:
    """The architectures of a Mach-O binary (``lipo -archs``, else ``file -b``)."""
    result = probe.run(["lipo", "-archs", path])
    if result.ok and result.first_line:
        return result.first_line
    result = probe.run(["file", "-b", path])
    if not result.ok:
        return None
    found = sorted(set(re.findall(r"\b(arm64e?|x86_64|i386)\b", result.stdout)))
    return " ".join(found) or None


def _has_arm64(archs: str) -> bool:
    """Whether ``lipo -archs`` output lists an arm64 slice (arm64, or arm64e and its kin)."""
    return any(arch.startswith("arm64") for arch in archs.split())


def check_rosetta(ctx: Context) -> Check:
    """macOS: Python must run as arm64, not translated by Rosetta 2, and have an arm64 slice."""
    python = ctx.interpreter()
    if ctx.probe.sysctl("sysctl.proc_translated") == "1":
        detail = f"this process runs under Rosetta 2 (sysctl.proc_translated=1), so {python} does too"
        return Check("rosetta", "fail", detail, f"{ARM64_PYTHON_FIX}, started from an arm64 shell")
    archs = _archs(ctx.probe, python)
    if archs is None:
        return Check("rosetta", "warn", f"could not tell the architecture of {python}",
                     f"check `file {python}` lists arm64; else use {ARM64_PYTHON_FIX}")
    if not _has_arm64(archs):
        return Check("rosetta", "fail", f"{python} is {archs} only: it would run under Rosetta 2",
                     ARM64_PYTHON_FIX)
    return Check("rosetta", "pass", f"{python} runs natively ({archs})")


def check_homebrew(ctx: Context) -> Check:
    """macOS: Homebrew for arm64 lives in /opt/homebrew; /usr/local is the Intel one."""
    result = ctx.probe.run(["brew", "--prefix"])
    if not result.ok:
        return Check("homebrew", "warn", "brew is not on PATH",
                     "install Homebrew (https://brew.sh), then: brew install bazelisk python@3.11")
    prefix = result.first_line
    if prefix == "/opt/homebrew":
        return Check("homebrew", "pass", f"Homebrew for arm64 at {prefix}")
    detail = f"Homebrew at {prefix}: the Intel (x86_64) Homebrew, whose bazelisk and Python run under Rosetta"
    return Check("homebrew", "warn", detail,
                 "install Homebrew for arm64 (it goes to /opt/homebrew) and put it first on PATH")


def _uses_release_macos(profile: Profile | None) -> bool:
    return profile is not None and any(c.startswith("release_macos") for c in profile.bazel.configs)


def check_xcode(ctx: Context) -> Check:
    """macOS: a developer dir and an SDK; full Xcode where TF's release_macos configs expect it."""
    selected = ctx.probe.run(["xcode-select", "-p"])
    if not selected.ok:
        return Check("xcode", "fail", "no developer tools selected (xcode-select -p failed)",
                     "xcode-select --install (or install Xcode from the App Store)")
    sdk = ctx.probe.run(["xcrun", "--show-sdk-path"])
    if not sdk.ok:
        detail = f"developer dir {selected.first_line}, but xcrun finds no macOS SDK"
        return Check("xcode", "fail", detail,
                     "xcode-select --install, or sudo xcode-select -s /Applications/Xcode.app")
    detail = f"developer dir {selected.first_line}, SDK {sdk.first_line}"
    if _uses_release_macos(ctx.profile) and not ctx.probe.exists(XCODE_DEVELOPER_DIR):
        # TF's .bazelrc: build:release_macos_base --action_env DEVELOPER_DIR=<that path>.
        return Check("xcode", "fail",
                     f"{detail}; the profile's release_macos config sets DEVELOPER_DIR={XCODE_DEVELOPER_DIR}, which is missing",
                     "install Xcode in /Applications (App Store), or set bazel.action_env DEVELOPER_DIR in the profile to `xcode-select -p`")
    if "CommandLineTools" in selected.first_line:
        return Check("xcode", "warn", f"{detail}: only the Command Line Tools",
                     "Bazel's Apple toolchain may need full Xcode: install it, then sudo xcode-select -s /Applications/Xcode.app")
    return Check("xcode", "pass", detail)


def _bazel_path(ctx: Context) -> str | None:
    if ctx.profile is not None:
        try:
            return str(ctx.probe.bazel(ctx.profile).path)
        except ToolMissingError:
            return None
    return ctx.probe.which("bazelisk") or ctx.probe.which("bazel")


def check_bazel(ctx: Context) -> Check:
    """Bazel (or bazelisk) present and, with a profile, the version it needs."""
    if ctx.profile is None:
        found = _bazel_path(ctx)
        if found is None:
            return Check("bazel", "warn", "neither bazelisk nor bazel is on PATH", install_hint())
        return Check("bazel", "pass", f"{found} (pass --profile to check its version)")
    try:
        tool = ctx.probe.bazel(ctx.profile)
        warnings = check_version(tool, ctx.profile, None)
    except ToolMissingError as exc:
        return Check("bazel", "fail", str(exc), install_hint(ctx.profile))
    if warnings:
        return Check("bazel", "warn", "; ".join(warnings),
                     f"install bazelisk so Bazel {ctx.profile.bazel.version} is run exactly")
    return Check("bazel", "pass", tool.describe())


def check_bazel_arch(ctx: Context) -> Check | None:
    """macOS: an x86_64 Bazel runs under Rosetta and picks darwin_x86_64 as host CPU."""
    path = _bazel_path(ctx)
    if path is None:
        return None
    real = ctx.probe.run(["realpath", path])
    binary = real.first_line if real.ok and real.first_line else path
    archs = _archs(ctx.probe, binary)
    if archs is None:
        return Check("bazel_arch", "warn", f"could not tell the architecture of {binary}",
                     f"check `file {binary}` lists arm64")
    if not _has_arm64(archs):
        detail = f"{binary} is {archs}: under Rosetta Bazel takes darwin_x86_64 as host and target CPU"
        return Check("bazel_arch", "fail", detail,
                     "install an arm64 bazelisk: /opt/homebrew/bin/brew install bazelisk")
    return Check("bazel_arch", "pass", f"{binary} ({archs})")


def check_python(ctx: Context) -> Check:
    """The build's Python runs, and is the version a non-hermetic profile needs."""
    python = ctx.interpreter()
    result = ctx.probe.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    if not result.ok:
        return Check("python", "fail", f"{python} does not run",
                     "install it, or set python.interpreter in the profile to a working Python")
    version = result.first_line
    detail = f"{python} is Python {version}"
    profile = ctx.profile
    if profile is None or profile.python.version in (None, version):
        return Check("python", "pass", detail)
    if profile.python.hermetic:
        return Check("python", "pass", f"{detail}; Bazel brings its own Python {profile.python.version} (hermetic)")
    return Check("python", "fail", f"{detail}, but the profile builds for {profile.python.version}",
                 f"install Python {profile.python.version} (macOS: brew install python@{profile.python.version})")


def check_disk(ctx: Context) -> Check:
    """Free space where build/ lives: a TF build needs tens of GB."""
    free = ctx.probe.disk_free_bytes(ctx.build_dir) / GB
    detail = f"{free:.0f} GB free for {ctx.build_dir}"
    fix = f"free space or set TFWHEELS_BUILD to a disk with at least {DISK_WARN_GB} GB free"
    if free < DISK_FAIL_GB:
        return Check("disk", "fail", f"{detail}; a TF build needs tens of GB", fix)
    if free < DISK_WARN_GB:
        return Check("disk", "warn", f"{detail}; a TF build with its caches can take more", fix)
    return Check("disk", "pass", detail)


def check_memory(ctx: Context) -> Check:
    """RAM and cores, with the --jobs and --local_ram_resources a build will use."""
    cores, ram_mb = ctx.probe.memory()
    res = resources(cores, ram_mb)
    detail = (f"{ram_mb / 1024:.0f} GB RAM, {cores} cores: builds use "
              f"--jobs={res.jobs} --local_ram_resources={res.local_ram_mb}")
    if ram_mb < RAM_WARN_MB:
        return Check("memory", "warn", f"{detail}; expect a slow build",
                     "close other programs; lower --jobs if compilers are killed (invoke build-tf --jobs N)")
    return Check("memory", "pass", detail)


def check_compilers(ctx: Context) -> Check:
    """Linux: a C/C++ compiler, and the clang a profile names."""
    found = []
    for name in ("cc", "gcc", "clang"):
        path = ctx.probe.which(name)
        if path:
            version = ctx.probe.run([path, "--version"]).first_line
            found.append(f"{name}: {version or path}")
    if not found:
        return Check("compilers", "fail", "no cc, gcc or clang on PATH",
                     "install a compiler: apt install clang (TF's Linux builds use Clang 17)")
    detail = "; ".join(found)
    clang = ctx.profile.configure.CLANG_COMPILER_PATH if ctx.profile is not None else None
    if ctx.profile is not None and ctx.profile.configure.TF_NEED_CLANG and clang and not ctx.probe.exists(clang):
        return Check("compilers", "fail", f"{detail}; the profile's CLANG_COMPILER_PATH {clang} is missing",
                     "install that clang (apt.llvm.org: llvm.sh 17) or set configure.CLANG_COMPILER_PATH")
    return Check("compilers", "pass", detail)


def check_glibc(ctx: Context) -> Check:
    """Linux: the glibc version (wheels built here need at least it at install time)."""
    result = ctx.probe.run(["getconf", "GNU_LIBC_VERSION"])
    if not result.ok:
        return Check("glibc", "warn", "no glibc found (getconf GNU_LIBC_VERSION failed); musl?",
                     "build on a glibc distribution (Debian, Ubuntu, Fedora)")
    return Check("glibc", "pass", result.first_line)


def check_git(ctx: Context) -> Check:
    """git, which `invoke fetch` needs."""
    path = ctx.probe.which("git")
    if path is None:
        fix = "xcode-select --install" if ctx.is_mac else "apt install git"
        return Check("git", "fail", "git is not on PATH", fix)
    return Check("git", "pass", ctx.probe.run([path, "--version"]).first_line or path)


_COMMON: list[Callable[[Context], Check | None]] = [check_platform, check_python, check_git]
_MAC: list[Callable[[Context], Check | None]] = [check_rosetta, check_homebrew, check_xcode]
_LINUX: list[Callable[[Context], Check | None]] = [check_compilers, check_glibc]
_BAZEL_MAC: list[Callable[[Context], Check | None]] = [check_bazel_arch]
_RESOURCES: list[Callable[[Context], Check | None]] = [check_disk, check_memory]


def run_checks(probe: Probe, profile: Profile | None, build_dir: Path) -> list[Check]:
    """Every check that applies to this host, in the order a user should fix them."""
    ctx = Context(probe, profile, build_dir)
    mac = ctx.is_mac
    order = _COMMON + (_MAC if mac else _LINUX) + [check_bazel] + (_BAZEL_MAC if mac else []) + _RESOURCES
    return [check for check in (func(ctx) for func in order) if check is not None]


# --- the command --------------------------------------------------------------------------------


def report_json(checks: list[Check]) -> dict[str, list[dict[str, str]]]:
    """The ``--json`` contract: ``{"checks": [{"name", "status", "detail", "fix"}]}``."""
    return {"checks": [asdict(check) for check in checks]}


def _print_table(checks: list[Check]) -> None:
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}
    table = Table(title="tfwheels doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        status = f"[{colour[check.status]}]{check.status}[/{colour[check.status]}]"
        table.add_row(check.name, status, check.detail, check.fix)
    out.print(table)


def doctor_command(
    root: Path,
    project: str | None,
    profile: str | None,
    as_json: bool,
    probe: Probe | None = None,
) -> int:
    """Run the checks for this host (and ``profile`` if given); 1 if any failed, else 0."""
    build = os.environ.get("TFWHEELS_BUILD")
    layout = Layout.at(root, Path(build) if build else None)
    loaded = None
    if profile:
        full = _PROJECTS.get(project or "tf", project or "tensorflow")
        # Any project's profile: doctor checks the host, so a TFF name needs no --project tff.
        loaded = load_profile(profile, full, layout.configs, layout.root, any_project=True)
    checks = run_checks(probe or LocalProbe(), loaded, layout.build)
    if as_json:
        print(json.dumps(report_json(checks), indent=2))
    else:
        _print_table(checks)
    return 1 if any(check.status == "fail" for check in checks) else 0
