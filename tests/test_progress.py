"""Progress from Bazel's console lines and Build Event Protocol file, and its two displays.

The unit tests fold real Bazel 4.2.3 console lines (copied from runs of the example and of a
workspace of sleeping genrules) with a clock the test controls. The Bazel tests build the
example for real, replay and tail the BEP files those builds wrote (whole, cut in the middle of
lines, truncated by a new command), and check what a user sees on a pipe and on a terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, FixedProject, copy_example, invoke, requires_bazel
from rich.console import Console

from tfwheels.bazel import parse_processes
from tfwheels.progress import (
    BepTail,
    BuildMonitor,
    LiveDisplay,
    PlainDisplay,
    ProgressLine,
    ProgressState,
    diagnose_log,
    parse_progress_line,
    parse_stage,
    replay,
    status_text,
    use_live,
)

# Console lines of a real Bazel 4.2.3 build of 8 sleeping genrules and one that joins them
# (--jobs=3 --curses=no --color=no), with the second each line came at.
SLOW_BUILD = [
    (0.0, "Loading: "),
    (0.0, "Loading: 0 packages loaded"),
    (0.1, "Analyzing: target //:all (1 packages loaded, 0 targets configured)"),
    (0.3, "INFO: Analyzed target //:all (5 packages loaded, 15 targets configured)."),
    (0.3, "INFO: Found 1 target..."),
    (0.4, "[0 / 10] [Prepa] BazelWorkspaceStatusAction stable-status.txt"),
    (1.5, "[1 / 10] Executing genrule //:s0; 1s local ... (3 actions, 2 running)"),
    (3.0, "[2 / 10] Executing genrule //:s1; 2s local ... (3 actions, 2 running)"),
    (4.0, "[2 / 10] Executing genrule //:s1; 3s local ... (3 actions, 2 running)"),
    (5.0, "[3 / 10] Executing genrule //:s2; 2s local ... (3 actions, 2 running)"),
    (6.0, "[3 / 10] Executing genrule //:s2; 3s local ... (3 actions, 2 running)"),
    (9.0, "[3 / 10] Executing genrule //:s2; 6s local ... (3 actions running)"),
    (11.0, "[4 / 10] Executing genrule //:s3; 5s local ... (3 actions, 2 running)"),
    (13.0, "[5 / 10] Executing genrule //:s3; 7s local ... (3 actions, 2 running)"),
    (15.0, "[6 / 10] Executing genrule //:s5; 3s local ... (3 actions, 2 running)"),
    (17.0, "[7 / 10] Executing genrule //:s6; 3s local ... (2 actions running)"),
    (19.0, "[7 / 10] Executing genrule //:s6; 5s local ... (2 actions running)"),
    (21.0, "[9 / 10] [Prepa] Executing genrule //:all"),
    (22.0, "Target //:all up-to-date:"),
    (22.0, "INFO: Elapsed time: 23.570s, Critical Path: 10.06s"),
    (22.0, "INFO: 10 processes: 1 internal, 9 local."),
    (22.0, "INFO: Build completed successfully, 10 total actions"),
]

# The example built unpatched by Bazel 4.2.3: the undeclared inclusion the patch fixes.
FAILED_BUILD = [
    "INFO: Found 1 target...",
    "[0 / 4] [Prepa] Creating source manifest for //tensorflow/tools/pip_package:build_pip_package",
    ("ERROR: /tmp/p6/tfu/tensorflow/core/framework/BUILD:3:11: Compiling tensorflow/core/framework/"
    "tensor.cc failed: undeclared inclusion(s) in rule '//tensorflow/core/framework:tensor':"),
    ("this rule is missing dependency declarations for the following files included by "
    "'tensorflow/core/framework/tensor.cc':"),
    "  'tensorflow/core/platform/logging.h'",
    "Target //tensorflow/tools/pip_package:build_pip_package failed to build",
    "Use --verbose_failures to see the command lines of failed build steps.",
    "INFO: Elapsed time: 3.170s, Critical Path: 0.07s",
    "INFO: 8 processes: 7 internal, 1 local.",
    "FAILED: Build did NOT complete successfully",
]


def fold(lines: list[tuple[float, str]], state: ProgressState | None = None) -> ProgressState:
    state = state or ProgressState(label="slow")
    for now, line in lines:
        state.feed_line(line, now)
    return state


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # From a TensorFlow 2.16 build on macOS (shared fixtures, log C06): thousands separators.
        (
            "[22,375 / 22,439] Linking tensorflow/libtensorflow_cc.2.16.0.dylib; 3s remote-cache",
            ProgressLine(22375, 22439, "Linking tensorflow/libtensorflow_cc.2.16.0.dylib", "", 3,
                         "remote-cache", 1, 1),
        ),
        (
            ("[22,376 / 22,439] [Prepa] action 'SolibSymlink _solib_darwin_arm64/_Utensorflow/"
            "libtensorflow_cc.2.16.0.dylib'"),
            ProgressLine(22376, 22439, "action 'SolibSymlink _solib_darwin_arm64/_Utensorflow/"
                         "libtensorflow_cc.2.16.0.dylib'", "Prepa", None, "", 0, 0),
        ),
        # From log D04: an action without timing.
        (
            "[224 / 2,346] Compiling external/pcre/pcre_byte_order.c [for host]",
            ProgressLine(224, 2346, "Compiling external/pcre/pcre_byte_order.c [for host]", "",
                         None, "", 1, 1),
        ),
        (
            "[1 / 10] Executing genrule //:s0; 1s local ... (3 actions, 2 running)",
            ProgressLine(1, 10, "Executing genrule //:s0", "", 1, "local", 3, 2),
        ),
        (
            "[6 / 7] Executing genrule //pkg:wheel; 1s local, remote-cache",
            ProgressLine(6, 7, "Executing genrule //pkg:wheel", "", 1, "local, remote-cache", 1, 1),
        ),
        (
            "(10:22:36) [3 / 10] Executing genrule //:s2; 6s local ... (3 actions running)",
            ProgressLine(3, 10, "Executing genrule //:s2", "", 6, "local", 3, 3),
        ),
    ],
)
def test_progress_lines_parse(line: str, expected: ProgressLine) -> None:
    assert parse_progress_line(line) == expected


@pytest.mark.parametrize(
    "line",
    ["INFO: Found 1 target...", "Target //:all up-to-date:", "INFO: 10 processes: 1 internal, 9 local.",
     "  [1 / 2] indented is compiler output", ""],
)
def test_other_lines_are_not_progress(line: str) -> None:
    assert parse_progress_line(line) is None


def test_stages_follow_the_console_and_never_go_back() -> None:
    stages = [parse_stage(line) for _, line in SLOW_BUILD[:6]]
    assert stages == ["loading", "loading", "analysis", "analysis", "executing", "executing"]
    state = fold(SLOW_BUILD)
    state.feed_line("Loading: 3 packages loaded", 23.0)  # e.g. the packaging step's bazel run
    assert state.stage == "executing" and state.stage_started_at == 0.3


def test_fold_counts_rate_eta_longest_and_the_summary() -> None:
    state = fold(SLOW_BUILD[:12])  # up to t=9: 3 of 10 done, //:s2 running for 6 s
    assert (state.done, state.total, state.running, state.in_flight) == (3, 10, 3, 3)
    assert state.targets_configured == 15 and state.packages_loaded == 5
    # 3 actions since the first progress line (t=0.4); 7 to go at that rate.
    assert state.rate(9.0) == pytest.approx(3 / 8.6)
    assert state.eta(9.0) == pytest.approx(7 / (3 / 8.6))
    oldest = state.oldest(9.0)
    assert oldest is not None and (oldest.action, oldest.seconds) == ("Executing genrule //:s2", 6.0)
    state = fold(SLOW_BUILD[12:], state)
    assert state.bazel_ok is True and state.done == state.total == 10
    assert state.processes == {"total": 10, "internal": 1, "local": 9}
    longest = state.longest(22.0, 3)
    # //:s3 showed 5 s at t=11 (so it started at t=6) and stayed the oldest until t=15: 9 s;
    # //:s2 started at t=3 and was replaced at t=11; //:s6 ran from t=14 to the end (t=22).
    assert [(a.action, a.seconds, a.running) for a in longest] == [
        ("Executing genrule //:s3", pytest.approx(9.0), False),
        ("Executing genrule //:s2", pytest.approx(8.0), False),
        ("Executing genrule //:s6", pytest.approx(8.0), False),
    ]


def test_cache_hits_from_strategies_then_from_the_summary_line() -> None:
    state = ProgressState()
    state.feed_line("[5 / 40] Compiling a.cc; 1s remote-cache", 1.0)
    state.feed_line("[6 / 40] Compiling b.cc; 0s remote-cache", 2.0)
    state.feed_line("[7 / 40] Compiling c.cc; 2s local, remote-cache", 3.0)  # a lookup, then a run
    assert state.cache_hits == 2
    state.feed_line("INFO: 7 processes: 5 remote cache hit, 2 internal.", 4.0)
    assert state.cache_hits == 5


def test_error_blocks_are_kept_whole_and_only_them() -> None:
    state = ProgressState()
    for index, line in enumerate(FAILED_BUILD):
        state.feed_line(line, float(index))
    assert state.error_blocks == [FAILED_BUILD[2:5]]
    assert state.bazel_ok is False and state.processes == {"total": 8, "internal": 7, "local": 1}


def test_plain_display_keeps_a_steady_pace_without_control_characters() -> None:
    stream = io.StringIO()
    clock = [0.0]
    monitor = BuildMonitor(Path("/nonexistent.json"), PlainDisplay(stream, interval=10.0),
                           label="tf-x", clock=lambda: clock[0])
    monitor.interval = 3600.0  # no ticker redraws: this test drives the clock itself
    monitor.start()
    for now, line in SLOW_BUILD:
        clock[0] = now
        monitor.on_line(line)
    monitor.enter("packaging")
    clock[0] = 24.0
    monitor.stop(True)
    lines = stream.getvalue().splitlines()
    status = [line for line in lines if line.startswith("[tfwheels tf-x] ")]
    stages = [line.split()[2] for line in status]
    # Each stage once when it starts; executing again only after 10 s (t=0.3 -> 11.0 -> 21.0).
    assert stages == ["loading", "analysis", "executing", "executing", "executing", "packaging", "done"]
    assert "INFO: 10 processes: 1 internal, 9 local." in lines
    assert "[tfwheels tf-x] done 0:24, 10/10 actions (100.0%)" in stream.getvalue()
    assert not any(ch in stream.getvalue() for ch in "\x1b\r\x07\x08")


def test_failed_build_shows_the_error_block_and_the_diagnosis() -> None:
    stream = io.StringIO()
    monitor = BuildMonitor(Path("/nonexistent.json"), PlainDisplay(stream), label="tf-x")
    monitor.start()
    for line in FAILED_BUILD:
        monitor.on_line(line)
    monitor.stop(False, ["undeclared header — fix: add the dep"])
    text = stream.getvalue()
    assert "Bazel's errors:\n  ERROR: /tmp/p6/tfu/tensorflow/core/framework/BUILD:3:11" in text
    assert "    'tensorflow/core/platform/logging.h'\ndiagnosis:\n  - undeclared header — fix: add the dep" in text
    assert "Use --verbose_failures" not in text  # Bazel's UI lines are not part of the error


def test_live_display_draws_a_panel_and_clears_it() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system="standard")
    display = LiveDisplay(console)
    state = fold(SLOW_BUILD[:12])
    display.start(state, 9.0)
    display.update(state, 9.0)
    display.live.refresh()
    display.stop(state, 9.0, [])
    output = screen.getvalue()
    assert "\x1b[" in output and "╭" in output
    assert "3/10 actions (30.0%)" in output and "Executing genrule //:s2" in output


@pytest.mark.parametrize(
    ("tty", "environ", "live"),
    [(True, {}, True), (True, {"CI": "true"}, False), (False, {}, False), (True, {"TERM": "dumb"}, False)],
)
def test_live_only_on_a_terminal_outside_ci(tty: bool, environ: dict[str, str], live: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    assert use_live(Stream(), environ) is live


# --- real Bazel --------------------------------------------------------------------------------


def run_in_pty(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr; return its output."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=600), b"".join(chunks).decode("utf-8", "replace")


@dataclass
class Builds:
    """What the two real builds left: output, exit codes, BEP files and logs."""

    failed: subprocess.CompletedProcess[str]
    failed_bep: Path
    failed_log: Path
    terminal_code: int
    terminal: str
    passed_bep: Path
    passed_log: Path


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, bazel_trees: list[Path],
           fixed_example: FixedProject) -> Builds:
    """The example built twice in one tree: unpatched on a pipe (fails), then patched on a
    terminal (succeeds). Each build's BEP file and log are copied aside. Both use the project
    where `--fix` patched the example's second undeclared inclusion (conftest)."""
    base = tmp_path_factory.mktemp("progress")
    tree = copy_example("tf-mini", base / "tf")
    bazel_trees.append(tree)
    unpatched = base / "unpatched.yaml"
    unpatched.write_text(fixed_example.unpatched_profile())
    env = {"TFWHEELS_BUILD": str(base / "build"), "TFWHEELS_DIST": str(base / "dist"), "CI": "",
           "TFWHEELS_PROJECT": str(fixed_example.root)}
    failed = invoke("build-tf", "--profile", str(unpatched), "--source", str(tree), env=env)
    bep = base / "build" / "bep"
    shutil.copy(bep / "tf-unpatched" / "build_events.json", base / "failed.json")
    failed_log = (base / "build" / "logs" / "latest.log").resolve()
    term_env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR", "FORCE_COLOR")}
    term_env.update(env, TERM="xterm-256color", COLUMNS="110")
    del term_env["CI"]
    code, output = run_in_pty(
        [sys.executable, "-m", "invoke", "build-tf", "--profile", "example", "--source", str(tree)],
        term_env, ROOT,
    )
    shutil.copy(bep / "tf-example" / "build_events.json", base / "passed.json")
    return Builds(
        failed=failed, failed_bep=base / "failed.json", failed_log=failed_log,
        terminal_code=code, terminal=output, passed_bep=base / "passed.json",
        passed_log=(base / "build" / "logs" / "latest.log").resolve(),
    )


def summary_line(log: Path) -> dict[str, int]:
    [counts] = [c for c in map(parse_processes, log.read_text().splitlines()) if c is not None]
    return counts


@pytest.mark.bazel
@requires_bazel
def test_replay_of_a_complete_bep_file(builds: Builds) -> None:
    state = replay(builds.passed_bep, "tf-example")
    assert state.bazel_ok is True and state.exit_name == "SUCCESS" and state.exit_code == 0
    assert state.stage == "executing" and state.targets_configured > 0
    assert state.processes == summary_line(builds.passed_log)
    assert state.failed_actions == [] and state.error_blocks == []


@pytest.mark.bazel
@requires_bazel
def test_replay_of_a_failed_build(builds: Builds) -> None:
    state = replay(builds.failed_bep)
    assert state.bazel_ok is False and (state.exit_name, state.exit_code) == ("BUILD_FAILURE", 1)
    assert state.failed_actions == ["CppCompile //tensorflow/core/framework:tensor (exit 1)"]
    assert "undeclared inclusion(s) in rule '//tensorflow/core/framework:tensor'" in state.error_lines[0]
    assert state.processes == summary_line(builds.failed_log)


@pytest.mark.bazel
@requires_bazel
def test_tailing_a_file_written_in_pieces_then_truncated(builds: Builds, tmp_path: Path) -> None:
    whole = builds.passed_bep.read_bytes()
    expected = [json.loads(line) for line in whole.splitlines()]
    live = tmp_path / "build_events.json"
    tail = BepTail(live)
    assert tail.poll() == []  # not written yet
    seen: list[dict[str, object]] = []
    with live.open("wb") as writer:
        # Stop in the middle of every line, as a file Bazel is still writing looks when read.
        for index, line in enumerate(whole.splitlines(keepends=True)):
            writer.write(line[: len(line) // 2])
            writer.flush()
            got = tail.poll()
            assert len(got) == (1 if index else 0)  # the line before this one is now complete
            seen += got
            writer.write(line[len(line) // 2 :])
            writer.flush()
    seen += tail.finish()
    assert seen == expected
    # A new command truncates the file and writes its own events from the start.
    failed = builds.failed_bep.read_bytes()
    live.write_bytes(failed)
    again = tail.poll()
    assert tail.restarts == 1 and again == [json.loads(line) for line in failed.splitlines()]
    assert again[0]["started"]["uuid"] != expected[0]["started"]["uuid"]


@pytest.mark.bazel
@requires_bazel
def test_replay_of_a_file_cut_off_mid_build(builds: Builds, tmp_path: Path) -> None:
    whole = builds.passed_bep.read_bytes()
    finished_at = whole.index(b'{"id":{"buildFinished"')
    cut = tmp_path / "cut.json"
    cut.write_bytes(whole[: finished_at + 40])  # half of the buildFinished line
    state = replay(cut)
    assert state.bazel_ok is None and state.exit_name == ""
    assert state.stage in ("analysis", "executing") and state.targets_configured > 0
    assert status_text(state, 0.0).startswith("[tfwheels] ")


@pytest.mark.bazel
@requires_bazel
def test_non_terminal_output_is_plain_and_shows_errors_and_diagnosis(builds: Builds) -> None:
    failed = builds.failed
    assert failed.returncode == 1, failed.stderr[-2000:]
    everything = failed.stdout + failed.stderr
    assert "\x1b" not in everything
    stderr = failed.stderr.splitlines()
    log = builds.failed_log
    assert "[tfwheels tf-unpatched] executing" in failed.stderr
    [summary] = [line for line in log.read_text().splitlines() if parse_processes(line)]
    assert summary in stderr  # Bazel's own summary line, shown as it is
    assert stderr[stderr.index("Bazel's errors:") + 1].startswith("  ERROR: ")
    for finding in diagnose_log(log):
        assert f"  - {finding}" in stderr
    assert "Analyzing: target" not in failed.stderr  # Bazel's own progress stays in the log
    assert "Analyzing: target" in log.read_text()


@pytest.mark.bazel
@requires_bazel
def test_terminal_output_draws_a_live_panel(builds: Builds) -> None:
    output = builds.terminal
    assert builds.terminal_code == 0, output[-3000:]
    assert "\x1b[" in output and "╭" in output and "tfwheels tf-example" in output
    assert "[tfwheels tf-example] done" in output


# --- outputs of a directory (tree artifact), as Bazel 4.2.3 reports them ----------------------

_WHEEL_DIR = "tensorflow/tools/pip_package/wheel_house"
_WHEEL = "tensorflow-0.1.0-cp311-cp311-linux_x86_64.whl"


def _wheel_bep(exec_root: Path, *, files: list[str], directory: bool) -> list[str]:
    """The events a `bazel build //tensorflow/tools/pip_package:wheel` writes (Bazel 4.2.3, the
    example's wheel rule; trimmed to the fields read), with paths under ``exec_root``."""
    prefix = ["bazel-out", "k8-opt", "bin"]
    label = "//tensorflow/tools/pip_package:wheel"
    target = {"targetCompleted": {"label": label, "configuration": {"id": "39a3"}}}
    completed: dict[str, object] = {
        "success": True,
        "outputGroup": [{"name": "default", "fileSets": [{"id": "0"}]}],
    }
    if directory:
        completed["directoryOutput"] = [{"name": _WHEEL_DIR, "pathPrefix": prefix}]
    named = [
        {"name": n, "uri": f"file://{exec_root}/bazel-out/k8-opt/bin/{n}", "pathPrefix": prefix}
        for n in files
    ]
    events = [
        {"id": {"workspace": {}}, "workspaceInfo": {"localExecRoot": str(exec_root)}},
        {"id": {"namedSet": {"id": "0"}}, "namedSetOfFiles": {"files": named}},
        {"id": target, "completed": completed},
        {"id": {"buildFinished": {}}, "finished": {"overallSuccess": True}},
    ]
    return [json.dumps(e) for e in events]


def _plan_for(tree: Path) -> object:
    from types import SimpleNamespace

    host = SimpleNamespace(placeholders=dict)
    return SimpleNamespace(
        tree=tree, host=host, profile=SimpleNamespace(package=SimpleNamespace(directory=_WHEEL_DIR))
    )


@pytest.mark.parametrize(
    ("files", "directory"),
    [
        ([f"{_WHEEL_DIR}/{_WHEEL}"], True),  # declare_directory: files expanded + directoryOutput
        ([f"{_WHEEL_DIR}/{_WHEEL}"], False),  # declare_file("wheel_house/<name>.whl")
        ([_WHEEL_DIR], False),  # the directory as one entry (a Bazel that does not expand it)
        ([], True),  # directoryOutput alone: exec root / pathPrefix / name
    ],
)
def test_wheels_of_a_directory_output_come_from_the_bep(
    tmp_path: Path, files: list[str], directory: bool
) -> None:
    from tfwheels.bep import iter_events, summarize
    from tfwheels.pipeline import _built_wheels

    exec_root = tmp_path / "execroot" / "org_tensorflow"
    house = exec_root / "bazel-out" / "k8-opt" / "bin" / _WHEEL_DIR
    house.mkdir(parents=True)
    (house / _WHEEL).write_bytes(b"wheel")
    tree = tmp_path / "tree"
    tree.mkdir()  # no bazel-bin symlink at all: the BEP alone must find it
    summary = summarize(iter_events(_wheel_bep(exec_root, files=files, directory=directory)))
    if files and files[0].endswith(".whl"):
        [listed] = summary.files["//tensorflow/tools/pip_package:wheel"]
        assert listed.path == house / _WHEEL
        assert listed.path_prefix == ("bazel-out", "k8-opt", "bin")
        assert summary.outputs["//tensorflow/tools/pip_package:wheel"] == [house / _WHEEL]
    if directory:
        [folder] = summary.directories["//tensorflow/tools/pip_package:wheel"]
        assert (folder.name, folder.path) == (_WHEEL_DIR, house)
    assert _built_wheels(_plan_for(tree), summary) == [house / _WHEEL]  # type: ignore[arg-type]


def test_wheels_fall_back_to_bazel_bin_only_when_the_bep_names_none(tmp_path: Path) -> None:
    from tfwheels.bep import BuildSummary
    from tfwheels.pipeline import _built_wheels

    out = tmp_path / "out" / _WHEEL_DIR
    out.mkdir(parents=True)
    (out / _WHEEL).write_bytes(b"wheel")
    (out / "notes.txt").write_text("not a wheel")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "bazel-bin").symlink_to(tmp_path / "out")
    globbed = [tree / "bazel-bin" / _WHEEL_DIR / _WHEEL]
    assert _built_wheels(_plan_for(tree), BuildSummary()) == globbed  # type: ignore[arg-type]
    assert _built_wheels(_plan_for(tree), None) == globbed  # type: ignore[arg-type]
