"""Live progress of a Bazel build, read from its console lines and its Build Event Protocol file.

Three layers, each usable alone:

- pure parsing: ``parse_progress_line`` and ``parse_stage`` read one console line;
  ``ProgressState`` folds console lines and BEP events (the time is passed in) into what a user
  wants to know: stage, actions done / total, rate, ETA, the longest-running actions, cache hits,
  and the ``ERROR:`` blocks;
- reading: ``BepTail`` reads the BEP JSON file while Bazel still writes it (a torn last line is
  kept until it is complete; a file truncated by a new command is read again from the start);
- display: ``LiveDisplay`` draws a rich Live panel on a terminal, ``PlainDisplay`` prints one
  plain line at a steady pace (CI, pipes, files), without a single control character.
  ``BuildMonitor`` ties them together for ``pipeline.execute``.

Bazel 4.2.3 writes no per-action BEP events unless ``--build_event_publish_all_actions`` is set,
and has no running total in the BEP (research/bazel-facts.md 1.2, 1.4), so done / total comes
from the console's ``[done / total]`` lines; the BEP gives the stage, targets configured, failed
actions and the authoritative result.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # rich's renderables load with the Live panel, on a terminal only
    from rich.console import Console, RenderableType

from tfwheels.bazel import parse_processes

# Stages in the order a build goes through them; a stage never goes back within one build.
STAGES = ("starting", "loading", "analysis", "executing", "packaging", "done", "failed")
_ORDER = {name: index for index, name in enumerate(STAGES)}

_TIMESTAMP = re.compile(r"^\(\d\d:\d\d:\d\d(?:\.\d+)?\) ")
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
# research/bazel-facts.md section 2, extended by the [Prepa]-style phase marker Bazel puts
# before actions that wait for their inputs or for local resources.
_PROGRESS = re.compile(
    r"^\[(?P<done>\d[\d,]*) / (?P<total>\d[\d,]*)\] "
    r"(?:\[(?P<phase>\w+)\] )?"
    r"(?P<action>.*?)"
    r"(?:; (?P<seconds>\d+)s (?P<strategy>[\w, -]+?))?"
    r"(?: \.\.\. \((?P<in_flight>\d+) actions?(?:, (?P<running>\d+))? running\))?$"
)
_ONLY_COUNTS = re.compile(r"^(?P<in_flight>\d+) actions?(?:, (?P<running>\d+))? running$")
_FOUND_TARGETS = re.compile(r"^INFO: Found \d[\d,]* (?:test )?targets?")
_ANALYZING = re.compile(r"\((\d[\d,]*) packages? loaded, (\d[\d,]*) targets? configured\)")
# Lines Bazel's UI writes; anything else after an ERROR: line belongs to that error.
_UI_LINE = re.compile(
    r"^(INFO|WARNING|ERROR|DEBUG|FAILED|Loading|Analyzing):|^\[\d|^Target |^Use --verbose|"
    r"^Starting local Bazel|^Still waiting|^Extracting Bazel|^Another command"
)
# Bazel's own summary lines, shown to the user as they come in every display.
_PASSTHROUGH = re.compile(
    r"^(INFO: \d[\d,]* process|INFO: Elapsed time|INFO: Build completed|FAILED: |"
    r"ERROR: Build did NOT complete)"
)
_CACHE_STRATEGIES = {"remote-cache", "disk-cache", "cache"}
_MAX_ERROR_LINES = 80
_KEEP_LONGEST = 10
_DRAW_EVERY = 0.25  # seconds between redraws caused by console lines


def clean_line(line: str) -> str:
    """A console line without colour codes, carriage returns or a ``--show_timestamps`` prefix.

    >>> clean_line("(10:22:36) [1 / 6] Executing genrule //slow:s0; 1s local\\r")
    '[1 / 6] Executing genrule //slow:s0; 1s local'
    """
    return _TIMESTAMP.sub("", _CONTROL.sub("", line).rstrip())


def plain_text(text: str) -> str:
    """``text`` with every control character but the newline removed (for CI logs and files).

    >>> plain_text("\\x1b[1mbold\\x1b[0m and a bell\\x07")
    'bold and a bell'
    """
    return _CONTROL.sub("", text)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@dataclass(frozen=True)
class ProgressLine:
    """One ``[done / total]`` line: counts and the oldest running action Bazel shows."""

    done: int
    total: int
    action: str = ""
    phase: str = ""
    seconds: int | None = None
    strategy: str = ""
    in_flight: int = 0
    running: int = 0


def parse_progress_line(line: str) -> ProgressLine | None:
    """Parse Bazel's ``[done / total] action; Ns strategy ... (N actions, M running)`` line.

    Real lines (research/bazel-facts.md section 2; the first two from a TF 2.16 macOS log):

    >>> parse_progress_line("[22,375 / 22,439] Linking tensorflow/libtensorflow_cc.2.16.0.dylib; 3s remote-cache")
    ProgressLine(done=22375, total=22439, action='Linking tensorflow/libtensorflow_cc.2.16.0.dylib', phase='', seconds=3, strategy='remote-cache', in_flight=1, running=1)
    >>> parse_progress_line("[224 / 2,346] Compiling external/pcre/pcre_byte_order.c [for host]").total
    2346
    >>> parse_progress_line("[1 / 10] Executing genrule //:s0; 1s local ... (3 actions, 2 running)")
    ProgressLine(done=1, total=10, action='Executing genrule //:s0', phase='', seconds=1, strategy='local', in_flight=3, running=2)
    >>> parse_progress_line("[3 / 10] Executing genrule //:s2; 6s local ... (3 actions running)").running
    3
    >>> parse_progress_line("[0 / 4] [Prepa] BazelWorkspaceStatusAction stable-status.txt").phase
    'Prepa'
    >>> parse_progress_line("INFO: Found 1 target...") is None
    True
    """
    match = _PROGRESS.match(clean_line(line))
    if not match:
        return None
    action = match["action"]
    in_flight = int(match["in_flight"]) if match["in_flight"] else 0
    running = int(match["running"]) if match["running"] else in_flight
    counts_only = _ONLY_COUNTS.match(action)
    if counts_only:  # newer Bazel: "[10 / 20] 8 actions, 7 running" with no oldest action
        action = ""
        in_flight = int(counts_only["in_flight"])
        running = int(counts_only["running"] or in_flight)
    elif action and not in_flight and not match["phase"]:
        in_flight = running = 1
    return ProgressLine(
        done=_number(match["done"]),
        total=_number(match["total"]),
        action=action,
        phase=match["phase"] or "",
        seconds=int(match["seconds"]) if match["seconds"] else None,
        strategy=match["strategy"] or "",
        in_flight=in_flight,
        running=running,
    )


def parse_stage(line: str) -> str | None:
    """The build stage a console line shows, or None.

    >>> parse_stage("Loading: 0 packages loaded")
    'loading'
    >>> parse_stage("INFO: Analyzed target //pkg:wheel (18 packages loaded, 67 targets configured).")
    'analysis'
    >>> parse_stage("[6 / 7] Executing genrule //pkg:wheel; 1s local, remote-cache")
    'executing'
    >>> parse_stage("INFO: Found applicable config definition build:opt in file .bazelrc") is None
    True
    """
    text = clean_line(line)
    if text.startswith("Loading:"):
        return "loading"
    if text.startswith(("Analyzing:", "INFO: Analyzed ")):
        return "analysis"
    if _FOUND_TARGETS.match(text) or _PROGRESS.match(text):
        return "executing"
    return None


def is_cache_strategy(strategy: str) -> bool:
    """True when every strategy Bazel names for an action is a cache (a hit, not a run).

    >>> is_cache_strategy("remote-cache"), is_cache_strategy("local, remote-cache")
    (True, False)
    """
    names = {part.strip() for part in strategy.split(",") if part.strip()}
    return bool(names) and names <= _CACHE_STRATEGIES


@dataclass(frozen=True)
class ActionTime:
    """How long an action has run (``running``) or ran, as far as the console showed it."""

    action: str
    seconds: float
    strategy: str
    running: bool


@dataclass
class _Oldest:
    action: str
    strategy: str
    started: float


@dataclass
class ProgressState:
    """Everything the displays and the report know about a running build, folded from lines
    (``feed_line``) and BEP events (``feed_event``). Pure: every method takes the time ``now``.

    ``bep_progress`` makes the BEP's ``progress`` events (which carry Bazel's console text) count
    as console lines: for replaying a BEP file alone. A live build feeds the console lines
    themselves, so it leaves this off to see each line once.
    """

    label: str = ""
    bep_progress: bool = False
    stage: str = "starting"
    started_at: float | None = None
    stage_started_at: float | None = None
    executing_since: float | None = None
    done: int = 0
    total: int = 0
    in_flight: int = 0
    running: int = 0
    packages_loaded: int = 0
    targets_configured: int = 0
    processes: dict[str, int] = field(default_factory=dict)
    cache_hits_seen: int = 0
    warnings: int = 0
    error_blocks: list[list[str]] = field(default_factory=list)
    failed_actions: list[str] = field(default_factory=list)
    bazel_ok: bool | None = None
    exit_name: str = ""
    exit_code: int | None = None
    actions_created: int = 0
    bep_events: int = 0
    invocation: str = ""
    finished_at: float | None = None
    _oldest: _Oldest | None = field(default=None, repr=False)
    _longest: list[ActionTime] = field(default_factory=list, repr=False)
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=600), repr=False)
    _in_error: bool = field(default=False, repr=False)

    # --- folding ----------------------------------------------------------------------------

    def enter(self, stage: str, now: float) -> None:
        """Move on to ``stage`` (never back: a later ``Loading:`` line is not a new stage)."""
        if self.started_at is None:
            self.started_at = now
        if _ORDER[stage] <= _ORDER[self.stage]:
            return
        self.stage = stage
        self.stage_started_at = now
        if stage == "executing" and self.executing_since is None:
            self.executing_since = now
        if stage in ("packaging", "done", "failed"):
            self._finish_oldest(now)

    def feed_line(self, line: str, now: float) -> None:
        """Fold one console line."""
        if self.started_at is None:
            self.started_at = now
        text = clean_line(line)
        self._collect_error(text, _CONTROL.sub("", line).rstrip())
        if self.stage in ("packaging", "done", "failed"):
            return  # the packaging step's own Bazel run must not change the build's figures
        stage = parse_stage(text)
        if stage is not None:
            self.enter(stage, now)
        if text.startswith("WARNING:"):
            self.warnings += 1
        progress = parse_progress_line(text)
        if progress is not None:
            self._progress(progress, now)
            return
        analyzing = _ANALYZING.search(text) if stage == "analysis" else None
        if analyzing:
            self.packages_loaded = _number(analyzing[1])
            self.targets_configured = max(self.targets_configured, _number(analyzing[2]))
        counts = parse_processes(text)
        if counts is not None:
            self.processes = counts
        elif text.startswith("INFO: Build completed successfully"):
            self._bazel_finished(True, now)
        elif text.startswith(("FAILED: Build did NOT complete", "ERROR: Build did NOT complete")):
            self._bazel_finished(False, now)

    def feed_event(self, event: Mapping[str, Any], now: float) -> None:
        """Fold one BEP event (see research/bazel-facts.md 1.3 for the kinds)."""
        if self.started_at is None:
            self.started_at = now
        ids = event.get("id", {})
        self.bep_events += 1
        if "started" in ids:
            uuid = event.get("started", {}).get("uuid", "")
            if self.invocation and uuid != self.invocation:
                self._new_invocation()
            self.invocation = uuid
            self.enter("loading", now)
        elif "targetConfigured" in ids:
            self.enter("analysis", now)
        elif "progress" in ids and self.bep_progress:
            for line in event.get("progress", {}).get("stderr", "").splitlines():
                self.feed_line(line, now)
        elif "actionCompleted" in ids:
            self._failed_action(event.get("action", {}))
        elif "buildFinished" in ids:
            finished = event.get("finished", {})
            exit_code = finished.get("exitCode", {})
            self.exit_name = exit_code.get("name", "")
            self.exit_code = int(exit_code.get("code", 0))
            self._bazel_finished(bool(finished.get("overallSuccess")), now)
        elif "buildMetrics" in ids:
            metrics = event.get("buildMetrics", {})
            self.actions_created = int(metrics.get("actionSummary", {}).get("actionsCreated", 0))
            configured = metrics.get("targetMetrics", {}).get("targetsConfigured")
            if configured is not None:
                self.targets_configured = max(self.targets_configured, int(configured))

    def finish(self, ok: bool, now: float) -> None:
        """The whole run (build and packaging) is over."""
        self.enter("done" if ok else "failed", now)
        self.finished_at = now

    def _new_invocation(self) -> None:
        """A new Bazel command truncated the BEP file: forget the previous command's verdict."""
        self.bazel_ok = None
        self.exit_name = ""
        self.exit_code = None
        self.failed_actions = []

    def _progress(self, progress: ProgressLine, now: float) -> None:
        self.done = progress.done
        self.total = progress.total
        self.in_flight = progress.in_flight
        self.running = progress.running
        self._samples.append((now, self.done))
        if progress.seconds is None or not progress.action:
            return
        oldest = self._oldest
        if oldest is not None and oldest.action == progress.action:
            oldest.started = min(oldest.started, now - progress.seconds)
            return
        self._finish_oldest(now)
        self._oldest = _Oldest(progress.action, progress.strategy, now - progress.seconds)
        if is_cache_strategy(progress.strategy):
            self.cache_hits_seen += 1

    def _finish_oldest(self, now: float) -> None:
        """The oldest action Bazel showed is no longer the oldest: it has finished."""
        if self._oldest is None:
            return
        oldest, self._oldest = self._oldest, None
        self._remember(ActionTime(oldest.action, now - oldest.started, oldest.strategy, False))

    def _remember(self, action: ActionTime) -> None:
        self._longest.append(action)
        self._longest.sort(key=lambda a: a.seconds, reverse=True)
        del self._longest[_KEEP_LONGEST:]

    def _bazel_finished(self, ok: bool, now: float) -> None:
        if self.bazel_ok is None or not ok:
            self.bazel_ok = ok
        if ok and self.total:
            self.done = self.total
            self._samples.append((now, self.done))
        self._finish_oldest(now)

    def _failed_action(self, action: Mapping[str, Any]) -> None:
        if action.get("success"):
            return
        kind = action.get("type", "action")
        label = action.get("label", "")
        code = action.get("exitCode")
        text = f"{kind} {label}".strip() + (f" (exit {code})" if code is not None else "")
        if text not in self.failed_actions:
            self.failed_actions.append(text)

    def _collect_error(self, text: str, raw: str) -> None:
        """Keep ``ERROR:`` lines and the compiler output under them (indentation kept)."""
        lines = sum(len(block) for block in self.error_blocks)
        if text.startswith("ERROR:") and not text.startswith("ERROR: Build did NOT complete"):
            self._in_error = lines < _MAX_ERROR_LINES
            if self._in_error:
                self.error_blocks.append([text])
        elif self._in_error and (not text or _UI_LINE.match(text)):
            self._in_error = False
        elif self._in_error and lines < _MAX_ERROR_LINES:
            self.error_blocks[-1].append(raw)

    # --- derived figures --------------------------------------------------------------------

    def elapsed(self, now: float) -> float:
        """Seconds since the first line or event."""
        return 0.0 if self.started_at is None else max(0.0, (self.finished_at or now) - self.started_at)

    def rate(self, now: float, window: float = 60.0) -> float:
        """Actions per second over the last ``window`` seconds (over the whole run before that)."""
        recent = [(t, d) for t, d in self._samples if t >= now - window]
        if len(recent) >= 2 and recent[-1][0] - recent[0][0] >= 2.0:
            first, last = recent[0], recent[-1]
            return max(0.0, (last[1] - first[1]) / (now - first[0]))
        if self.executing_since is not None and now - self.executing_since >= 2.0:
            return self.done / (now - self.executing_since)
        return 0.0

    def eta(self, now: float) -> float | None:
        """Seconds until done at the current rate, or None. Bazel's total grows as it discovers
        actions, so this is a lower bound until the end."""
        remaining = self.total - self.done
        rate = self.rate(now)
        if remaining <= 0 or rate <= 0:
            return None
        return remaining / rate

    def oldest(self, now: float) -> ActionTime | None:
        """The action running longest right now, as Bazel's last progress line showed it."""
        if self._oldest is None:
            return None
        oldest = self._oldest
        return ActionTime(oldest.action, now - oldest.started, oldest.strategy, True)

    def longest(self, now: float, count: int = 3) -> list[ActionTime]:
        """The longest-running actions seen so far, the one still running included."""
        running = self.oldest(now)
        actions = [*self._longest, *([running] if running else [])]
        return sorted(actions, key=lambda a: a.seconds, reverse=True)[:count]

    @property
    def cache_hits(self) -> int:
        """Remote (and disk) cache hits: Bazel's summary line once it came, else the actions
        the console showed as served by a cache."""
        if self.processes:
            return sum(n for kind, n in self.processes.items() if "cache hit" in kind)
        return self.cache_hits_seen

    @property
    def error_lines(self) -> list[str]:
        """Every collected ``ERROR:`` block, one after another."""
        return [line for block in self.error_blocks for line in block]


# --- text -------------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """``83`` -> ``1:23``, ``3723`` -> ``1:02:03``.

    >>> format_seconds(83), format_seconds(3723)
    ('1:23', '1:02:03')
    """
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _actions_text(state: ProgressState, now: float) -> str:
    if not state.total:
        return "no actions yet"
    percent = 100.0 * state.done / state.total
    text = f"{state.done:,}/{state.total:,} actions ({percent:.1f}%)"
    rate = state.rate(now)
    if rate > 0:
        text += f", {rate:.1f}/s"
    eta = state.eta(now)
    if eta is not None and state.stage == "executing":
        text += f", ETA {format_seconds(eta)}"
    return text


def status_text(state: ProgressState, now: float) -> str:
    """One plain line about the build, as CI logs show it every few seconds."""
    parts = [f"{state.stage} {format_seconds(state.elapsed(now))}"]
    if state.stage == "analysis" and state.targets_configured:
        parts.append(f"{state.targets_configured:,} targets configured")
    if state.total:
        parts.append(_actions_text(state, now))
    if state.stage == "executing" and state.running:
        parts.append(f"{state.running} running")
    if state.cache_hits:
        parts.append(f"{state.cache_hits:,} cache hits")
    if state.error_blocks:
        parts.append(f"{len(state.error_blocks)} error(s)")
    oldest = state.oldest(now)
    if state.stage == "executing" and oldest is not None:
        parts.append(f"oldest: {oldest.action} {format_seconds(oldest.seconds)}")
    prefix = f"[tfwheels {state.label}] " if state.label else "[tfwheels] "
    return plain_text(prefix + ", ".join(parts))


# --- diagnosis (tfwheels.diagnose is optional) -----------------------------------------------


def finding_text(finding: object) -> str:
    """One line for a diagnose Finding, whatever fields it has."""
    parts = []
    for name in ("title", "summary", "cause", "message"):
        value = getattr(finding, name, None)
        if isinstance(value, str) and value:
            parts.append(value)
            break
    for name in ("fix", "suggestion", "hint"):
        value = getattr(finding, name, None)
        if isinstance(value, str) and value:
            parts.append(f"fix: {value}")
            break
    return " — ".join(parts) if parts else str(finding)


def diagnose_log(path: Path) -> list[str]:
    """What ``tfwheels.diagnose`` concludes from a build log, one line per finding; nothing
    while that module is not there."""
    try:
        from tfwheels.diagnose import diagnose_file
    except ImportError:
        return []
    try:
        findings = diagnose_file(path)
    except Exception as exc:  # noqa: BLE001 - a diagnoser bug must never hide the build's error
        return [f"diagnosis failed: {exc}"]
    return [finding_text(f) for f in findings]


# --- displays ---------------------------------------------------------------------------------


class Display(Protocol):
    """What the monitor asks of a display. Every call comes with the monitor's lock held."""

    def start(self, state: ProgressState, now: float) -> None: ...

    def update(self, state: ProgressState, now: float) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self, state: ProgressState, now: float, diagnosis: list[str]) -> None: ...


def _failure_lines(state: ProgressState, diagnosis: list[str]) -> list[str]:
    lines: list[str] = []
    if state.error_blocks:
        lines.append("Bazel's errors:")
        lines += [f"  {line}" for line in state.error_lines]
    elif state.failed_actions:
        lines.append("failed actions: " + "; ".join(state.failed_actions))
    if diagnosis:
        lines.append("diagnosis:")
        lines += [f"  - {text}" for text in diagnosis]
    return lines


class PlainDisplay:
    """Plain lines for logs: a status line every ``interval`` seconds and at each new stage."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._last_stage = ""
        self._last_time = float("-inf")

    def _write(self, text: str) -> None:
        self.stream.write(plain_text(text) + "\n")
        self.stream.flush()

    def start(self, state: ProgressState, now: float) -> None:
        """Nothing to set up."""

    def update(self, state: ProgressState, now: float) -> None:
        """Print the status when the stage changed or ``interval`` seconds went by."""
        if state.stage == "starting":
            return
        if state.stage != self._last_stage or now - self._last_time >= self.interval:
            self._write(status_text(state, now))
            self._last_stage = state.stage
            self._last_time = now

    def message(self, text: str) -> None:
        """Print one of Bazel's summary lines as it is."""
        self._write(text)

    def stop(self, state: ProgressState, now: float, diagnosis: list[str]) -> None:
        """The final status, then on failure Bazel's errors and the diagnosis."""
        self._write(status_text(state, now))
        if state.stage == "failed":
            for line in _failure_lines(state, diagnosis):
                self._write(line)


class LiveDisplay:
    """A rich Live panel for terminals, redrawn in place."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self.console = console
        self.live = Live(console=console, refresh_per_second=4, transient=True, auto_refresh=True)

    def start(self, state: ProgressState, now: float) -> None:
        """Show the panel."""
        self.live.update(render_panel(state, now))
        self.live.start()

    def update(self, state: ProgressState, now: float) -> None:
        """Replace the panel's content; Live redraws it at its own pace."""
        self.live.update(render_panel(state, now))

    def message(self, text: str) -> None:
        """Print a line above the panel."""
        self.live.console.print(text, markup=False, highlight=False)

    def stop(self, state: ProgressState, now: float, diagnosis: list[str]) -> None:
        """Remove the panel; leave the final status and, on failure, the errors."""
        from rich.text import Text

        self.live.stop()
        style = "red" if state.stage == "failed" else "green"
        self.console.print(Text(status_text(state, now), style=style))
        if state.stage == "failed":
            for line in _failure_lines(state, diagnosis):
                self.console.print(Text(line, style="red" if line.startswith("  ERROR") else ""))


def render_panel(state: ProgressState, now: float) -> RenderableType:
    """The Live panel: stage, bar, rate and ETA, the longest-running actions, cache hits."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="ellipsis", no_wrap=True)
    grid.add_row("stage", f"{state.stage}  ({format_seconds(state.elapsed(now))})")
    if state.total:
        grid.add_row("actions", _actions_text(state, now))
    elif state.targets_configured:
        grid.add_row("targets", f"{state.targets_configured:,} configured")
    if state.running:
        grid.add_row("running", f"{state.running} of {state.in_flight} in flight")
    for index, action in enumerate(state.longest(now, 3)):
        flag = "" if action.running else " (done)"
        grid.add_row(
            "longest" if index == 0 else "",
            f"{format_seconds(action.seconds)}  {action.action}{flag}",
        )
    grid.add_row("cache hits", f"{state.cache_hits:,}")
    if state.error_blocks:
        grid.add_row(Text("error", style="red"), Text(state.error_blocks[0][0], style="red"))
    parts: list[RenderableType] = []
    if state.total:
        parts.append(ProgressBar(total=state.total, completed=state.done, width=None))
    parts.append(grid)
    title = f"tfwheels {state.label}".strip()
    return Panel(Group(*parts), title=title, title_align="left", border_style="blue")


def use_live(stream: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """A Live panel only on a terminal outside CI; plain lines everywhere else."""
    stream = stream if stream is not None else sys.stderr
    environ = environ if environ is not None else os.environ
    if environ.get("CI") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def make_display(console: Console, stream: IO[str] | None = None) -> Display:
    """The display for this process's stderr (``console`` writes there)."""
    if use_live(stream):
        return LiveDisplay(console)
    return PlainDisplay(stream)


# --- reading the BEP file while Bazel writes it -----------------------------------------------


class BepTail:
    """Read new complete events from a BEP JSON file that Bazel is still writing.

    Bazel truncates the file at each command; the first line (the ``started`` event, with the
    invocation's uuid) is remembered, and when the file no longer starts with it, or shrank,
    it is read again from the beginning.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.restarts = 0
        self._offset = 0
        self._partial = b""
        self._head = b""

    def _reset(self) -> None:
        self._offset = 0
        self._partial = b""
        self._head = b""
        self.restarts += 1

    def poll(self) -> list[dict[str, Any]]:
        """The events completed since the last call (a torn last line waits for its end)."""
        try:
            with self.path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self._offset or (self._head and handle.read(len(self._head)) != self._head):
                    self._reset()
                handle.seek(self._offset)
                data = handle.read(max(0, size - self._offset))
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if not self._head and lines:
            self._head = lines[0] + b"\n"
        return list(_decode(lines))

    def finish(self) -> list[dict[str, Any]]:
        """Events still to read once Bazel has exited, a last line without newline included."""
        events = self.poll()
        if self._partial.strip():
            events += list(_decode([self._partial]))
            self._partial = b""
        return events


def _decode(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    for raw in lines:
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except ValueError:  # a line cut by a truncation in the middle of our read
            continue
        if isinstance(event, dict):
            yield event


def replay(path: Path, label: str = "") -> ProgressState:
    """The state a finished (or cut-off) BEP file describes on its own."""
    state = ProgressState(label=label, bep_progress=True)
    tail = BepTail(path)
    for event in tail.finish():
        state.feed_event(event, 0.0)
    return state


# --- the monitor ------------------------------------------------------------------------------


class BuildMonitor:
    """Feeds a ProgressState from console lines and the BEP file, and keeps a display drawn.

    ``on_line`` is called from the thread that reads Bazel's output; a ticker thread polls the
    BEP file and redraws every ``interval`` seconds, so a display moves even while Bazel is
    silent (one long link step can print nothing for many minutes).
    """

    def __init__(
        self,
        bep_path: Path,
        display: Display | None = None,
        *,
        label: str = "",
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = ProgressState(label=label)
        self.display = display
        self.tail = BepTail(bep_path)
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._tail_lock = threading.Lock()
        self._last_draw = float("-inf")
        self._drawn_stage = ""
        self._shown: set[str] = set()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._tailing = False

    def start(self) -> None:
        """Show the display and start the ticker."""
        with self._lock:
            now = self.clock()
            self.state.enter("starting", now)
            if self.display is not None:
                self.display.start(self.state, now)
        self._thread = threading.Thread(target=self._tick, name="tfwheels-progress", daemon=True)
        self._thread.start()

    def tail_bep(self, on: bool) -> None:
        """Read the BEP file only while the build command runs (other commands don't write it)."""
        if not on:
            self._poll(final=True)
        self._tailing = on

    def on_line(self, line: str) -> None:
        """Fold one console line; show it if it is one of Bazel's summary lines."""
        with self._lock:
            now = self.clock()
            self.state.feed_line(line, now)
            if self.display is None:
                return
            text = clean_line(line)
            if self._passes(text):
                self.display.message(text)
            if self.state.stage != self._drawn_stage or now - self._last_draw >= _DRAW_EVERY:
                self._draw(now)

    def _passes(self, text: str) -> bool:
        """Bazel's summary lines are shown once each (Bazel prints some of them twice)."""
        if self.state.stage in ("packaging", "done", "failed") or not _PASSTHROUGH.match(text):
            return False
        if text in self._shown:
            return False
        self._shown.add(text)
        return True

    def _draw(self, now: float) -> None:
        assert self.display is not None
        self.display.update(self.state, now)
        self._drawn_stage = self.state.stage
        self._last_draw = now

    def enter(self, stage: str) -> None:
        """Tell the state (and the display) about a stage Bazel does not show: packaging."""
        with self._lock:
            now = self.clock()
            self.state.enter(stage, now)
            if self.display is not None:
                self._draw(now)

    def stop(self, ok: bool, diagnosis: list[str] | None = None) -> ProgressState:
        """Stop the ticker, read the rest of the BEP file and draw the final state."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        if self._tailing:
            self.tail_bep(False)
        with self._lock:
            now = self.clock()
            self.state.finish(ok, now)
            if self.display is not None:
                self.display.stop(self.state, now, diagnosis or [])
        return self.state

    def _poll(self, final: bool = False) -> None:
        with self._tail_lock:
            events = self.tail.finish() if final else self.tail.poll()
        with self._lock:
            now = self.clock()
            for event in events:
                self.state.feed_event(event, now)

    def _tick(self) -> None:
        while not self._stopped.wait(self.interval):
            if self._tailing:
                self._poll()
            with self._lock:
                if self.display is not None:
                    self._draw(self.clock())
