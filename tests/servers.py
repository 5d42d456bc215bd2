"""Real cache servers on 127.0.0.1 for the remote-cache tests: nginx with WebDAV (Bazel's HTTP
cache protocol) and BuildGrid (the REAPI gRPC cache), each on a free port, with bounded waits,
killed on teardown.

nginx comes from Debian (``.ci/install`` installs ``nginx-light``). BuildGrid comes from PyPI in
its own virtual environment, because its pins clash with tfwheels' own: ``$TFWHEELS_BGD`` names
its ``bgd``, else ``.venv-buildgrid/bin/bgd`` in the project, else ``bgd`` on PATH; without one,
the BuildGrid tests are skipped and say how to install it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

BUILDGRID_HINT = (
    "BuildGrid is not installed: python3 -m venv .venv-buildgrid && "
    ".venv-buildgrid/bin/pip install buildgrid (or set TFWHEELS_BGD to its bgd)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Return once 127.0.0.1:port accepts connections; raise with the server's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"server exited with {proc.returncode} before listening:\n{_tail(log)}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    msg = f"server did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{_tail(log)}"
    raise RuntimeError(msg)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.is_file() else "(no log)"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a server started in its own session: ``sig`` to its group, then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=STOP_TIMEOUT_S)


# --- nginx ------------------------------------------------------------------------------------


def find_nginx() -> str | None:
    """Debian's nginx (in /usr/sbin, often not on a user's PATH), or one on PATH."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    return found


@dataclass(frozen=True)
class Nginx:
    """A running nginx serving a WebDAV folder as Bazel's HTTP cache."""

    url: str
    port: int
    folder: Path

    @property
    def stored(self) -> Path:
        """Where the cache's files land (``ac/`` and ``cas/``)."""
        return self.folder / "root" / "cache"

    def requests(self) -> list[str]:
        """The access log: one ``METHOD /cache/... STATUS`` line per request."""
        log = self.folder / "logs" / "access.log"
        return log.read_text().splitlines() if log.is_file() else []


def nginx_config(folder: Path, port: int, api_key: str | None) -> str:
    """An nginx.conf serving ``folder/root/cache`` over WebDAV on 127.0.0.1:port.

    ``api_key`` makes every request without ``x-api-key: <api_key>`` fail with 401.
    """
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    guard = f'      if ($http_x_api_key != "{api_key}") {{ return 401; }}\n' if api_key else ""
    return (
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"
        f"{user}"
        f"pid {folder}/nginx.pid;\n"
        f"error_log {folder}/logs/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        '  log_format cache "$request_method $uri $status";\n'
        f"  access_log {folder}/logs/access.log cache;\n"
        f"  client_body_temp_path {folder}/tmp/body;\n"
        f"  proxy_temp_path {folder}/tmp/proxy;\n"
        f"  fastcgi_temp_path {folder}/tmp/fastcgi;\n"
        f"  uwsgi_temp_path {folder}/tmp/uwsgi;\n"
        f"  scgi_temp_path {folder}/tmp/scgi;\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        "    location /cache/ {\n"
        f"      root {folder}/root;\n"
        f"{guard}"
        "      dav_methods PUT;\n"
        "      create_full_put_path on;\n"
        "      client_max_body_size 1G;\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


@contextmanager
def nginx_cache(folder: Path, api_key: str | None = None) -> Iterator[Nginx]:
    """Run nginx as a WebDAV cache in ``folder`` until the block ends."""
    binary = find_nginx()
    if binary is None:
        msg = "nginx is not installed (apt-get install nginx-light)"
        raise RuntimeError(msg)
    for sub in ("logs", "tmp", "root/cache"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(nginx_config(folder, port, api_key))
    log = folder / "logs" / "stderr.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(folder), "-e", str(folder / "logs" / "error.log")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        wait_for_port(port, proc, log)
        yield Nginx(f"http://127.0.0.1:{port}/cache", port, folder)
    finally:
        stop(proc, signal.SIGQUIT)  # graceful: lets an in-flight PUT finish


# --- BuildGrid --------------------------------------------------------------------------------


def find_bgd() -> str | None:
    """BuildGrid's ``bgd``: $TFWHEELS_BGD, the project's .venv-buildgrid, or PATH."""
    for candidate in (os.environ.get("TFWHEELS_BGD"), str(ROOT / ".venv-buildgrid" / "bin" / "bgd")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("bgd")


def buildgrid_config(folder: Path, port: int) -> str:
    """A BuildGrid config: action cache, CAS and ByteStream on disk, no auth, no execution."""
    return (
        "server:\n"
        "  - !channel\n"
        f'    address: "127.0.0.1:{port}"\n'
        "    insecure-mode: true\n"
        "authorization:\n"
        "  method: none\n"
        "storages:\n"
        "  - !disk-storage &cas\n"
        f"    path: {folder}/cas\n"
        "caches:\n"
        "  - !lru-action-cache &ac\n"
        "    storage: *cas\n"
        "    max-cached-refs: 10000\n"
        "    allow-updates: true\n"
        "    cache-failed-actions: false\n"
        "instances:\n"
        '  - name: ""\n'
        "    services:\n"
        "      - !action-cache\n"
        "        cache: *ac\n"
        "      - !cas\n"
        "        storage: *cas\n"
        "      - !bytestream\n"
        "        storage: *cas\n"
    )


@contextmanager
def buildgrid_cache(folder: Path, bgd: str) -> Iterator[str]:
    """Run BuildGrid as a gRPC cache in ``folder``; yields its ``grpc://`` URL."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cas").mkdir(exist_ok=True)
    port = free_port()
    conf = folder / "bgd.yml"
    conf.write_text(buildgrid_config(folder, port))
    log = folder / "bgd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [bgd, "server", "start", str(conf)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        wait_for_port(port, proc, log)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        stop(proc)
