"""Hand the remote settings and their credentials to one Bazel command, and clean up after it.

``session(plan)`` wraps a Bazel command:

- before: reads each credential from the environment variable the profile names (a missing one
  is a usage error), registers it with ``tfwheels.redact`` so it is scrubbed from every line
  printed or logged, checks that the remote cache answers and accepts the credential (an HTTP
  ``HEAD`` of the empty blob, or a TCP connect for gRPC), and writes the private rc file: mode
  0600 in a fresh 0700 folder, in memory-backed storage where the system has it;
- after, even on failure or interrupt: removes the rc file and its folder; after the build, also
  rewrites the Build Event Protocol file redacted, masks the secrets in the Bazel server's own
  logs, explains remote cache trouble Bazel only warned about, and warns when the disk cache has
  grown past ``remote.disk_cache.max_gb``.

A remote cache that cannot be reached or refuses the credential stops the build before Bazel
starts (exit 34, Bazel's REMOTE_ERROR), unless ``remote.local_fallback`` lets it build locally.
A gRPC cache is only reached by TCP here, so one that refuses the credential is found by Bazel
itself; ``local_retry_warranted`` tells from its exit code and log when to build again locally
(``use_local_only`` rewrites the rc for that). A build killed with SIGKILL leaves its rc folder
(``tfwheels-<pid>-<hex>``) behind; the next build removes it (``sweep_stale``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tfwheels.console import err
from tfwheels.errors import TfwheelsError
from tfwheels.redact import mask_in_place, redactor, scrub_file
from tfwheels.remote_plan import STALE_NAME, RemotePlan, check_secrets, rc_folders, redacted
from tfwheels.run import run

if TYPE_CHECKING:
    from tfwheels.plan import Plan

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
PROBE_TIMEOUT_S = 10.0
SIZE_CHECK_EVERY_S = 3600.0
SIZE_STAMP = "tfwheels-size.json"
_GB = 1024**3

# Rc files already written in local-only mode: the packaging step of the same build follows suit.
_local_only: set[Path] = set()

_TROUBLE = (
    (re.compile(r"Failed to query remote execution capabilities: (.+)"), "Bazel could not use {url}: {0}"),
    (re.compile(r"\b(UNAUTHENTICATED|PERMISSION_DENIED)\b"), "{url} refused the credential ({0}); {fix}"),
    (re.compile(r"^(40[13] [A-Za-z ]+)$"), "{url} refused the credential (HTTP {0}); {fix}"),
    (
        re.compile(r"^WARNING: (Reading from|Writing to) Remote Cache:"),
        "{0} the remote cache {url} failed for some actions; Bazel built them locally",
    ),
)


REMOTE_ERROR_EXIT = 34  # Bazel's exit code when the remote cache or executor failed it
_REFUSED = re.compile(r"\b(UNAUTHENTICATED|PERMISSION_DENIED)\b")
_REMOTE_CONTEXT = re.compile(r"remote|cache|capabilities|grpc", re.IGNORECASE)


class RemoteError(TfwheelsError):
    """The remote cache or executor cannot be used; exit 34 like Bazel's REMOTE_ERROR."""

    exit_code = 34


# --- the private rc file -----------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Create ``path``'s folder (0700, must not exist yet) and write ``text`` to it with mode 0600."""
    os.mkdir(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def remove_private(path: Path) -> None:
    """Remove the rc file and the folder made for it."""
    path.unlink(missing_ok=True)
    shutil.rmtree(path.parent, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def sweep_stale(folders: list[Path] | None = None) -> list[Path]:
    """Remove credential folders (``tfwheels-<pid>-<hex>``) of this user whose process is dead.

    A build killed with SIGKILL, or by the OOM killer, never reaches its clean-up, so its rc
    file would stay in memory-backed storage with the credential in it; the next build sweeps
    it. Folders of live processes, of other users, or of any other name are left alone.
    Returns the folders removed.
    """
    removed: list[Path] = []
    for folder in rc_folders() if folders is None else folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = STALE_NAME.fullmatch(entry.name)
            if not match:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if not entry.is_dir(follow_symlinks=False) or info.st_uid != os.getuid():
                    continue
            except OSError:
                continue
            if _pid_alive(int(match.group(1))):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


# --- is the remote usable? ---------------------------------------------------------------------


def _fix(remote: RemotePlan) -> str:
    names = [f"${name}" for name in remote.secret_env]
    if names:
        return f"check the credential in {', '.join(names)}"
    return "check the remote settings (and the credential helper, if any)"


def probe_http(url: str, headers: Mapping[str, str], timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if the HTTP cache at ``url`` answers and accepts ``headers``, else what is wrong.

    Asks ``HEAD <url>/cas/<sha256 of nothing>``, which a cache answers 200 or 404. Proxies from
    the environment are not used, as Bazel does not use them for its cache either.
    """
    # Imported here: only builds with a remote HTTP cache pay for them (no-op rebuilds count ms).
    import ssl
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url.rstrip('/')}/cas/{EMPTY_SHA256}", method="HEAD", headers=dict(headers))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code in (401, 403):
            return f"refused the credential (HTTP {exc.code} {exc.reason})"
        return f"answered HTTP {exc.code} {exc.reason}"
    except (ssl.SSLError, ssl.CertificateError):
        return None  # Bazel may trust a CA we do not (--tls_certificate); let it decide.
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return None
        return f"cannot be reached ({reason})"


def probe_tcp(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if something listens at a gRPC URL's host and port, else what is wrong."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "grpcs" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot be reached ({exc.strerror or exc})"


def _problem(remote: RemotePlan, values: Mapping[str, str]) -> tuple[str, str] | None:
    headers = {
        line.option.removeprefix("--remote_header=").rstrip("="): values[line.env]
        for line in remote.rc_lines
        if line.env
    }
    for url in dict.fromkeys(u for u in (remote.settings.cache, remote.settings.executor) if u):
        if url.startswith("http"):
            problem = probe_http(url, headers)
        else:
            problem = probe_tcp(url)
        if problem:
            return url, problem
    return None


def preflight(remote: RemotePlan, values: Mapping[str, str]) -> bool:
    """True to use the remote; False to build locally (allowed fallback); else RemoteError."""
    found = _problem(remote, values)
    if found is None:
        return True
    url, problem = found
    fix = _fix(remote) if "credential" in problem else "check the URL and that the server is up"
    if remote.settings.local_fallback:
        err.print(
            f"[yellow]warning:[/yellow] remote {url} {problem}; building locally "
            "(remote.local_fallback is on)",
            highlight=False,
        )
        return False
    msg = (
        f"remote {url} {problem}; {fix}, or set remote.local_fallback: true "
        "(--remote-fallback) to build locally when it fails"
    )
    raise RemoteError(msg)


def local_retry_warranted(remote: RemotePlan, exit_code: int, log_text: str | Iterable[str]) -> bool:
    """True when a failed Bazel build should be run once more without the remote cache.

    The preflight reaches a gRPC cache only by TCP (a REAPI call needs grpcio), so a gRPC cache
    that refuses the credential is seen first by Bazel, which stops with exit 34 (REMOTE_ERROR)
    and, in Bazel 4.2.3, ``ERROR: Failed to query remote execution capabilities:
    UNAUTHENTICATED: ...``. With ``remote.local_fallback`` on, that build is retried locally;
    a build that failed for any other reason (a compile error, an interrupt) is not.
    ``log_text`` is the text Bazel printed, or its lines (``log_lines_since``).
    """
    if exit_code == 0 or not remote.settings.local_fallback or not remote.remote_url:
        return False
    if exit_code == REMOTE_ERROR_EXIT:
        return True
    lines = log_text.splitlines() if isinstance(log_text, str) else log_text
    return any(_REFUSED.search(line) and _REMOTE_CONTEXT.search(line) for line in lines)


def use_local_only(remote: RemotePlan) -> None:
    """Rewrite the private rc file (inside ``session``) without the remote settings, for the
    local retry; the packaging step of the same build then stays local too."""
    rc = remote.rc_path
    if rc is None:
        return
    _local_only.add(rc)
    fd = os.open(rc, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(remote.rc_text(None, local_only=True))


def log_lines_since(log: Path, start: int = 0) -> Iterator[str]:
    """The lines of ``log`` from byte ``start`` (what the last Bazel command wrote), one at a
    time and each cut at 64 KiB, so a TensorFlow-sized log is never held in memory."""
    try:
        with log.open("rb") as handle:
            handle.seek(start)
            while chunk := handle.readline(65536):
                yield chunk.decode("utf-8", "replace").rstrip("\r\n")
    except OSError:
        return


# --- after Bazel -------------------------------------------------------------------------------


def _output_base(plan: Plan) -> Path | None:
    startup = [s for s in plan.startup if s not in plan.remote.startup]
    result = run(
        [str(plan.bazel.path), *startup, "info", "output_base"],
        cwd=plan.tree,
        env=plan.environment(),
        check=False,
        echo=False,
        cleanup=True,  # the secrets must be masked even when the build was interrupted
    )
    line = result.stdout.strip().splitlines()[-1:] if result.ok else []
    return Path(line[0]) if line and Path(line[0]).is_dir() else None


def scrub_bazel_files(plan: Plan) -> None:
    """Redact the BEP file, and mask the secrets in the server's logs in the output base."""
    scrub_file(plan.bep_path)
    base = _output_base(plan)
    if base is None:
        return
    for path in [base / "command.log", *sorted(base.glob("java.log*"))]:
        mask_in_place(path)


def explain_trouble(log: Path, start: int, remote: RemotePlan) -> list[str]:
    """What went wrong with the remote in the part of ``log`` from byte ``start``, once each."""
    if not log.is_file() or not remote.remote_url:
        return []
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode("utf-8", "replace")
    found: list[str] = []
    for line in text.splitlines():
        for pattern, template in _TROUBLE:
            match = pattern.search(line.strip())
            if match:
                message = template.format(match.group(1), url=remote.remote_url, fix=_fix(remote))
                if message not in found:
                    found.append(message)
    return found


def disk_cache_size(path: Path, stop_after: int | None = None) -> int:
    """Bytes under ``path``; the walk stops early once past ``stop_after``."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            if stop_after is not None and total > stop_after:
                return total
    return total


def _recent_size(stamp: Path, now: float) -> int | None:
    """The size recorded in ``stamp`` if it was measured less than SIZE_CHECK_EVERY_S ago."""
    try:
        data = json.loads(stamp.read_text("utf-8"))
        if now - float(data["measured"]) < SIZE_CHECK_EVERY_S:
            return int(data["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def disk_cache_warning(remote: RemotePlan, now: float | None = None) -> str | None:
    """A warning when the disk cache has grown past its limit, else None.

    Walking a TensorFlow-sized cache takes a while, so a size under the limit is remembered in
    ``<cache>/tfwheels-size.json`` and measured again only after SIZE_CHECK_EVERY_S: a no-op
    rebuild does not pay for the walk.
    """
    if remote.disk_cache is None or not remote.disk_cache.is_dir():
        return None
    now = time.time() if now is None else now
    limit = remote.settings.disk_cache_max_gb * _GB
    stamp = remote.disk_cache / SIZE_STAMP
    size = _recent_size(stamp, now)
    if size is None or size > limit:
        size = disk_cache_size(remote.disk_cache, stop_after=int(limit))
        try:
            stamp.write_text(json.dumps({"bytes": size, "measured": now}), "utf-8")
        except OSError:
            pass
    if size <= limit:
        return None
    return (
        f"the disk cache {remote.disk_cache} holds more than {size / _GB:.2f} GB, past "
        f"remote.disk_cache.max_gb {remote.settings.disk_cache_max_gb:g}; delete it (rm -rf "
        f"{remote.disk_cache}) or raise the limit with --disk-cache-max-gb"
    )


def _after_build(plan: Plan, values: Mapping[str, str], log_start: int) -> None:
    if values:
        scrub_bazel_files(plan)
    for message in explain_trouble(plan.log_path, log_start, plan.remote):
        err.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
    warning = disk_cache_warning(plan.remote)
    if warning:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


# --- the session -------------------------------------------------------------------------------


@contextmanager
def session(plan: Plan, *, build: bool = False) -> Iterator[None]:
    """Make the remote settings available to the Bazel command run inside, then clean up.

    ``build`` marks the ``bazel build`` itself: only then is the remote probed, and afterwards
    the BEP and server logs redacted and the disk cache measured.
    """
    remote = plan.remote
    if build:
        sweep_stale()
    values = check_secrets(remote, os.environ)
    for name, value in values.items():
        redactor.add(value, redacted(name))
    log_start = plan.log_path.stat().st_size if plan.log_path.is_file() else 0
    rc = remote.rc_path
    if rc is not None:
        if build:
            _local_only.discard(rc)
            if not preflight(remote, values):
                _local_only.add(rc)
        write_private(rc, remote.rc_text(values, local_only=rc in _local_only))
    try:
        yield
    finally:
        if rc is not None:
            remove_private(rc)
        if build:
            _after_build(plan, values, log_start)
