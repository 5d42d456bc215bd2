"""The one way tfwheels runs an external tool: ``sh`` with an argument list, never a shell string.

Every command is echoed as ``+ cmd`` (quoted so it can be pasted), either captured or streamed line
by line to callbacks and a log file, and on failure the error names the command and shows the end of
its output.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import sh

from tfwheels import console
from tfwheels.errors import InterruptedRun, ToolMissingError, TfwheelsError
from tfwheels.redact import scrub

LineHandler = Callable[[str], None]

_TAIL_LINES = 40


@dataclass(frozen=True)
class Result:
    """What a finished command left: its exit status and (when captured) its output."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    tail: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0


class CommandFailed(TfwheelsError):
    """A command exited non-zero while the caller required success."""

    def __init__(self, result: Result) -> None:
        shown = "\n".join(result.tail or (result.stderr or result.stdout).splitlines()[-_TAIL_LINES:])
        msg = f"command failed with exit {result.exit_code}: {format_argv(result.argv)}"
        if shown.strip():
            msg += "\n" + shown
        super().__init__(msg)
        self.result = result


def format_argv(argv: Sequence[str]) -> str:
    """Render an argument list the way a user would type it in a POSIX shell (secrets scrubbed)."""
    return scrub(" ".join(shlex.quote(a) for a in argv))


class _Interrupter:
    """Remembers the running child so a signal handler can pass a signal on to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[sh.RunningCommand] = []

    def add(self, proc: sh.RunningCommand) -> None:
        with self._lock:
            self._procs.append(proc)

    def remove(self, proc: sh.RunningCommand) -> None:
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    stopping: int | None = None

    def stop(self, signum: int) -> None:
        """Remember that the run is stopping on ``signum``; pass one SIGINT on to the children.

        From then on ``run`` starts no new command: the step in progress ends, nothing new begins.
        """
        if self.stopping is None:
            self.stopping = signum
            self.signal_all(signal.SIGINT)

    def signal_all(self, signum: int = signal.SIGINT) -> None:
        """Send ``signum`` once to every running child's process group.

        Children run in a session of their own, so Ctrl-C at the terminal reaches only tfwheels,
        which passes exactly one SIGINT on: Bazel's client cancels cleanly on one (three kill
        its server), and a packaging script's own children stop with it.
        """
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            try:
                proc.signal_group(signum)
            except (ProcessLookupError, OSError):  # already gone
                pass


running = _Interrupter()


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that makes the kernel send SIGINT to a child when tfwheels dies.

    Children run in a session of their own (see _Interrupter.signal_all), so if tfwheels itself
    is killed with SIGKILL nothing else would stop a Bazel client that goes on building and
    holds its output base; SIGINT lets it cancel cleanly. macOS has no such call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGINT)

    return hook


_DIE_WITH_PARENT = _parent_death_signal()


def _command(program: str) -> sh.Command:
    try:
        return sh.Command(program)
    except sh.CommandNotFound as exc:
        msg = f"{program}: command not found on PATH; install it and try again"
        raise ToolMissingError(msg) from exc


def _refuse_when_stopping(program: str) -> None:
    if running.stopping is not None:
        name = signal.Signals(running.stopping).name
        msg = f"stopped by {name} before running {program}; rerun the same command to resume"
        raise InterruptedRun(msg, running.stopping)


def _spawn_kwargs(
    cwd: str | os.PathLike[str] | None, env: Mapping[str, str] | None, stdin: str | None
) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "_ok_code": list(range(256)),
        "_cwd": str(cwd) if cwd is not None else None,
        "_env": dict(env) if env is not None else None,
        "_bg": True,
        "_bg_exc": False,
        "_new_session": True,
        "_in": stdin if stdin is not None else "",
    }
    if _DIE_WITH_PARENT is not None:
        kwargs["_preexec_fn"] = _DIE_WITH_PARENT
    return kwargs


def _exit_code(proc: sh.RunningCommand) -> int:
    try:
        proc.wait()
    except sh.SignalException:
        pass  # killed by a signal (ours, passed on at Ctrl-C): exit_code is -signum, handled below
    finally:
        running.remove(proc)
    code = proc.exit_code if proc.exit_code is not None else 1
    return 128 - code if code < 0 else code  # < 0: killed by a signal


class Started:
    """A streamed command that is already running; its output lines are held until ``finish``
    takes them, or dropped by ``cancel``.

    ``run(stream=True)`` finishes one at once. tfwheels.early starts a rebuild's Bazel before
    the plan is made and finishes it only if the plan runs the very same command, so nothing of
    a command that was not wanted reaches the console or a log.
    """

    def __init__(self, argv: tuple[str, ...], env: dict[str, str] | None) -> None:
        self.argv = argv
        self.env = env
        self._lock = threading.Lock()
        self._held: list[str] = []
        self._sink: LineHandler | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._proc: sh.RunningCommand | None = None
        self._code: int | None = None
        self.began = time.monotonic()

    def _line(self, line: str) -> None:
        text = scrub(line.rstrip("\n"))  # before the log, the console and error messages
        with self._lock:
            self._tail.append(text)
            if self._sink is None:
                self._held.append(text)
            else:
                self._sink(text)

    @property
    def done(self) -> bool:
        """True once the command has ended and been waited for."""
        return self._code is not None

    def _wait(self) -> int:
        if self._code is None:
            assert self._proc is not None
            self._code = _exit_code(self._proc)
        return self._code

    def finish(
        self, *, on_line: LineHandler | None = None, log: IO[str] | None = None, echo: bool = False,
        check: bool = False,
    ) -> Result:
        """Show (``echo``) and hand on the output so far, then each line as it comes, to ``log``
        and ``on_line``; wait for the command and return its result."""
        if echo:
            console.err.print(f"+ {format_argv(self.argv)}", style="dim", highlight=False, markup=False)

        def sink(text: str) -> None:
            if log is not None:
                log.write(text + "\n")
                log.flush()
            if on_line is not None:
                on_line(text)

        with self._lock:  # the held lines first, in order, before any new one
            for text in self._held:
                sink(text)
            self._held.clear()
            self._sink = sink
        result = Result(self.argv, self._wait(), tail=tuple(self._tail))
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def cancel(self) -> int:
        """Stop the command as Ctrl-C would (one SIGINT to its process group), wait for it and
        drop its output; returns its exit status."""
        if self._code is None and self._proc is not None and self._proc.is_alive():
            try:
                self._proc.signal_group(signal.SIGINT)
            except (ProcessLookupError, OSError):  # it has just ended
                pass
        with self._lock:
            self._held.clear()
            self._sink = lambda _text: None
        return self._wait()


def start(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cleanup: bool = False,
) -> Started:
    """Start ``argv`` with its stdout and stderr merged, held line by line (see ``Started``);
    once the run is stopping (Ctrl-C), only ``cleanup`` commands still start."""
    _refuse_when_stopping(str(argv[0]))
    started = Started(tuple(str(a) for a in argv), dict(env) if env is not None else None)
    kwargs = _spawn_kwargs(cwd, env, stdin)
    kwargs.update(_out=started._line, _err_to_out=True, _out_bufsize=1, _encoding="utf-8",
                  _decode_errors="replace")
    started._proc = _command(started.argv[0])(*started.argv[1:], **kwargs)
    running.add(started._proc)
    return started


def run(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    echo: bool = True,
    stream: bool = False,
    on_line: LineHandler | None = None,
    log: IO[str] | None = None,
    stdin: str | None = None,
    cleanup: bool = False,
) -> Result:
    """Run ``argv`` and wait for it.

    ``stream=False`` captures stdout and stderr. ``stream=True`` merges them and hands each line to
    ``on_line`` and ``log`` as it arrives, keeping only the last lines for error messages, so a
    multi-gigabyte Bazel log never sits in memory. ``env`` replaces the environment when given.
    Once the run is stopping (Ctrl-C), only ``cleanup`` commands still start.
    """
    argv = tuple(str(a) for a in argv)
    if not cleanup:
        _refuse_when_stopping(argv[0])
    if echo:
        console.err.print(f"+ {format_argv(argv)}", style="dim", highlight=False, markup=False)
    if stream:
        started = start(argv, cwd=Path(cwd) if cwd is not None else None, env=env, stdin=stdin, cleanup=True)
        return started.finish(on_line=on_line, log=log, check=check)
    kwargs = _spawn_kwargs(cwd, env, stdin)
    proc = _command(argv[0])(*argv[1:], **kwargs)
    running.add(proc)
    code = _exit_code(proc)
    result = Result(
        argv,
        code,
        stdout=scrub(proc.stdout.decode("utf-8", "replace")),
        stderr=scrub(proc.stderr.decode("utf-8", "replace")),
    )
    if check and code != 0:
        raise CommandFailed(result)
    return result


def which(program: str, path: str | None = None) -> Path | None:
    """Find ``program`` on PATH (or on ``path``), or None."""
    found = shutil.which(program, path=path)
    return Path(found) if found else None
