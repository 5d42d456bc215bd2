"""Start a rebuild's Bazel at once, before the profile is loaded and the plan made.

A no-op rebuild is Bazel finding nothing to do (0.3 s on the example) and tfwheels loading,
validating and planning the profile, which costs about as long again. So after each successful
build the Bazel command it ran is recorded in ``build/early/<key>.json`` (key: the command line
that asked for it), with a fingerprint of the files a plan is made from. The next build with
that command line, if those files are unchanged, starts the recorded command straight away and
plans while it runs.

Nothing rests on the record being right. The early Bazel is *adopted* (its held output shown and
logged as if it had just started) only when the finished plan runs exactly that command, in that
tree, with that environment, and neither configure nor patch has anything to write into the tree.
Otherwise it is stopped with one SIGINT, as at Ctrl-C, before the tree changes, and the plan's
own command runs as usual: a stale record costs a cancelled no-op, never a different build.

The record also keeps the plan itself (``Plan.snapshot``), with the host files planning read
(the tree's .bazelversion, the Bazel and Python binaries, the folders on PATH, dist/ for a build
that consumes wheels, Jinja2) added to the fingerprint and a digest of the environment beside
it. While all of those are unchanged, a fresh plan would be the same plan, so ``saved_plan``
gives it back and the build skips loading the profile (pydantic, YAML) altogether; a test
audits that every file planning opens is in the fingerprint. The digest leaves out variables
that differ between two shells of one user and that no planning reads (``SHLVL``, ``OLDPWD``,
SSH session addresses, terminal ids): they would only cost the head start.

No record is kept for a build with a remote cache or executor (their settings reach Bazel
through a private rc file made anew for each command, credentials included) or with anything
secret-looking in its command or environment: a record is a plain file, and secrets are never
written to disk. ``--force`` and ``--dry-run`` never start early; with ``--fix`` only the first
build may.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfwheels import __version__
from tfwheels.atomic import write_atomic
from tfwheels.layout import STATE_DIR, STATE_FILE, Layout
from tfwheels.probecache import fingerprint
from tfwheels.redact import scrub
from tfwheels.run import Started, start

if TYPE_CHECKING:
    from tfwheels.plan import Plan
    from tfwheels.remote_options import RemoteOptions

_FOLDER = "early"
_PACKAGE = Path(__file__).resolve().parent
# Per shell or session, and read by no planning: left out of the environment digest.
_SESSION_VARIABLES = frozenset({
    "_", "OLDPWD", "PWD", "SHLVL", "COLUMNS", "LINES", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY",
    "TERM_SESSION_ID", "ITERM_SESSION_ID", "SECURITYSESSIONID", "WINDOWID", "TMUX_PANE",
    "XDG_SESSION_ID",
})
_CREDENTIAL_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|ACCESS_KEY|AUTH", re.IGNORECASE)


def key(
    project: str,
    profile: str,
    source: str | None,
    jobs: int | None,
    ram: int | None,
    remote: RemoteOptions,
) -> str:
    """The record's name: a digest of the build command line (and where it was given, since a
    profile may be a relative path)."""
    line = [__version__, os.getcwd(), project, profile, source, jobs, ram, asdict(remote)]
    return hashlib.sha256(json.dumps(line, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _inputs(plan: Plan, profile_chain: Iterable[Path]) -> list[Path]:
    """What a plan is made from and what configure and patch write: the profiles (and the files
    the profile extends, wherever they are), templates and patches, tfwheels itself, and the
    tree's rendered files and patch state."""
    layout = plan.layout
    files: list[Path] = []
    folders: list[Path] = []  # their entries: a file added or removed changes them
    for root in (layout.configs, layout.templates, layout.patches):
        if root.is_dir():
            folders.append(root)
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    files.append(path)
                elif path.is_dir():
                    folders.append(path)
    files += [p for p in profile_chain if p not in files]
    files += sorted(_PACKAGE.glob("*.py"))
    rendered = [plan.tree / dest for dest in sorted(plan.rendered)]
    return [*files, *folders, *rendered, plan.tree / STATE_DIR / STATE_FILE, *_host_inputs(plan)]


def _host_inputs(plan: Plan) -> list[Path]:
    """The host's files a plan is made from: the workspace's .bazelversion and hermetic Python
    lock, the Bazel and Python binaries, the folders PATH searches (a bazelisk installed there
    is preferred), dpkg's database (Debian's Bazel version), Jinja2, and for a build that
    consumes wheels, dist/ and those wheels."""
    import importlib.util

    python_version = plan.host.python_tag.removeprefix("cp")
    lock = f"requirements_lock_{python_version[:1]}_{python_version[1:]}.txt"
    files = [plan.tree / ".bazelversion", plan.tree / lock, plan.bazel.path, Path(plan.host.python_bin)]
    files += [Path(folder) for folder in os.environ.get("PATH", "").split(os.pathsep) if folder]
    files.append(Path("/var/lib/dpkg/status"))
    jinja = importlib.util.find_spec("jinja2")
    if jinja is not None and jinja.origin:
        files.append(Path(jinja.origin))
    if plan.profile.requires.wheels:
        files += [plan.layout.dist, *plan.required_wheels]
    return files


def environment_digest(env: Mapping[str, str] | None = None) -> str:
    """A digest of the environment (default: this process's) without per-session variables,
    and without credential-like ones: not even a digest of a secret goes to disk, and planning
    reads credentials only for a remote cache, whose builds keep no record."""
    env = os.environ if env is None else env
    kept = sorted(
        (k, v) for k, v in env.items() if k not in _SESSION_VARIABLES and not _CREDENTIAL_NAME.search(k)
    )
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()


@dataclass(frozen=True)
class Record:
    """A recorded Bazel command: what to run, where, with which environment changes."""

    argv: tuple[str, ...]
    tree: Path
    bep: Path
    env_set: dict[str, str] = field(default_factory=dict)
    env_unset: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()
    fingerprint: str = ""
    profile_chain: tuple[Path, ...] = ()
    plan: dict[str, Any] | None = None
    environment_digest: str = ""

    def environment(self) -> dict[str, str]:
        """The environment the recorded command ran in, on top of this process's."""
        env = {k: v for k, v in os.environ.items() if k not in self.env_unset}
        env.update(self.env_set)
        return env

    def saved_plan(self) -> Plan | None:
        """The plan this command line made last time, if this environment is that one's."""
        if self.plan is None or self.environment_digest != environment_digest():
            return None
        from tfwheels.plan import Plan

        try:
            plan = Plan.from_snapshot(self.plan)
        except ValueError:
            return None
        # The tree is the one locked for this build, and the command the one started early.
        if plan.tree != self.tree or tuple(plan.build_argv) != self.argv:
            return None
        return plan


def _path(layout: Layout, name: str) -> Path:
    return layout.build / _FOLDER / f"{name}.json"


def lookup(layout: Layout, name: str) -> Record | None:
    """The record of this command line if everything it was made from is unchanged, else None."""
    try:
        data = json.loads(_path(layout, name).read_text("utf-8"))
        record = Record(
            argv=tuple(data["argv"]),
            tree=Path(data["tree"]),
            bep=Path(data["bep"]),
            env_set=dict(data["env_set"]),
            env_unset=tuple(data["env_unset"]),
            inputs=tuple(Path(p) for p in data["inputs"]),
            fingerprint=str(data["fingerprint"]),
            profile_chain=tuple(Path(p) for p in data.get("profile_chain", ())),
            plan=data.get("plan"),
            environment_digest=str(data.get("environment_digest", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not record.argv or not record.tree.is_dir() or not Path(record.argv[0]).is_file():
        return None
    if fingerprint(record.inputs, missing_ok=True) != record.fingerprint:
        return None
    return record


def remember(name: str, plan: Plan, profile_chain: Iterable[Path]) -> bool:
    """Record the plan's Bazel command under ``name`` for the next build; False (and any old
    record removed) when it must not be kept: remote credentials, or something secret-looking.
    ``profile_chain``: the profile's file and each it extends."""
    path = _path(plan.layout, name)
    argv = tuple(plan.build_argv)
    env = plan.environment()
    env_set = {k: v for k, v in env.items() if os.environ.get(k) != v}
    kept = (
        plan.remote.rc_path is None
        and not plan.remote.secret_env
        and all(scrub(a) == a for a in argv)
        and all(scrub(v) == v for v in env_set.values())
    )
    snapshot = plan.snapshot() if kept else {}
    text = json.dumps(snapshot)
    kept = kept and scrub(text) == text
    digest = None
    profile_chain = list(profile_chain)
    if kept:
        inputs = _inputs(plan, profile_chain)
        digest = fingerprint(inputs, missing_ok=True)
    if digest is None:
        path.unlink(missing_ok=True)
        return False
    data: dict[str, Any] = {
        "argv": list(argv),
        "tree": str(plan.tree),
        "bep": str(plan.bep_path),
        "env_set": dict(sorted(env_set.items())),
        "env_unset": sorted(k for k in os.environ if k not in env),
        "inputs": [str(p) for p in inputs],
        "fingerprint": digest,
        "profile_chain": [str(p) for p in profile_chain],
        "environment_digest": environment_digest(),
        "plan": snapshot,
    }
    try:
        write_atomic(path, json.dumps(data, indent=1).encode() + b"\n", 0o600)
    except OSError:
        return False  # a read-only build folder still builds, only without the head start
    return True


class EarlyBazel:
    """The recorded command, running; ``adopt`` it when the plan agrees, else ``cancel``."""

    def __init__(self, record: Record, started: Started) -> None:
        self.record = record
        self.started = started
        self.adopted = False
        self.cancelled = False

    def matches(self, plan: Plan) -> bool:
        """True when ``plan`` runs this very command, in this tree, in this environment."""
        return (
            not self.cancelled
            and not self.adopted
            and tuple(plan.build_argv) == self.started.argv
            and plan.tree == self.record.tree
            and plan.bep_path == self.record.bep
            and plan.environment() == self.started.env
        )

    def adopt(self) -> Started:
        """Take the running command as the plan's own build."""
        self.adopted = True
        return self.started

    def cancel(self) -> None:
        """Stop it (one SIGINT, as at Ctrl-C) and wait until it has stopped, unless it has been
        adopted and has finished; idempotent."""
        if not self.started.done:
            self.cancelled = True
            self.started.cancel()


@contextmanager
def started(record: Record) -> Iterator[EarlyBazel]:
    """Start the recorded command; whatever happens, it is stopped on the way out unless adopted."""
    # The progress reader takes whatever is in the BEP file as this build's, as in the pipeline.
    record.bep.unlink(missing_ok=True)
    early = EarlyBazel(record, start(record.argv, cwd=record.tree, env=record.environment()))
    try:
        yield early
    finally:
        early.cancel()
