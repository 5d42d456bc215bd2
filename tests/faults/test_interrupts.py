"""Ctrl-C, SIGTERM, SIGKILL and a second terminal, on real Bazel builds of the example.

Each test copies the example and makes one step wait while a flag file exists (a genrule, or a
`patch`/Python stand-in that waits before running the real one), sends the signal once that step
is running, then removes the flag and reruns the same command.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, FixedProject, copy_example, requires_bazel
from faultkit import count

pytestmark = [pytest.mark.bazel, requires_bazel]

SLOW_RULE = """
genrule(
    name = "slow",
    outs = ["slow.txt"],
    cmd = "while [ -f {flag} ]; do sleep 0.2; done; touch $@",
)
"""


def make_tree(base: Path, name: str, bazel_trees: list[Path]) -> tuple[Path, Path]:
    """A copy of the example whose pip package waits in a genrule while ``flag`` exists."""
    tree = copy_example("tf-mini", base / name)
    flag = base / f"{name}.slow"
    build = tree / "tensorflow/tools/pip_package/BUILD"
    text = build.read_text().replace('        "setup.py",\n', '        "setup.py",\n        ":slow.txt",\n')
    build.write_text(text + SLOW_RULE.format(flag=flag))
    bazel_trees.append(tree)
    return tree, flag


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )


def wait_for(predicate: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def running(fragment: str, since: float = 0.0) -> list[psutil.Process]:
    """Processes whose command line holds ``fragment``, started after ``since`` (epoch s)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        if fragment in " ".join(proc.info["cmdline"] or []) and proc.info["create_time"] >= since:
            found.append(proc)
    return found


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


def no_children_left(tree: Path) -> None:
    """Nothing but the Bazel server (a daemon by design, holding the caches) runs for ``tree``."""
    for proc in psutil.process_iter(["cmdline", "cwd", "name"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            in_tree = proc.info["cwd"] == str(tree)
        except (psutil.Error, OSError):
            continue
        if str(tree) in cmdline and ("while [ -f" in cmdline or "build_pip_package" in cmdline):
            raise AssertionError(f"left behind: {cmdline}")
        if in_tree and "bazel" in (proc.info["name"] or "") and "(" not in (proc.info["name"] or ""):
            if "--output_user_root" not in cmdline and "-client_env" not in cmdline:
                raise AssertionError(f"Bazel client left behind: {cmdline}")


def private_tmp(base: Path) -> dict[str, str]:
    """TMPDIR for one run: the system temp folder, private to the test so it can be checked."""
    tmp = base / "tmp"
    tmp.mkdir(exist_ok=True)
    return {"TMPDIR": str(tmp)}


def no_temporaries(base: Path) -> None:
    """No temporary file of tfwheels is left: ``tfwheels-*`` scratch folders (patch staging,
    smoke-test venvs, ...) in the run's temp folder, ``*.partial`` atomic writes and half-made
    ``.NAME.XXXXXXXX`` staging folders under build/ and dist/."""
    tmp = base / "tmp"
    left = [p.name for p in tmp.iterdir() if p.name.startswith("tfwheels-")] if tmp.is_dir() else []
    assert not left, f"left in the temp folder: {left}"
    for folder in (base / "build", base / "dist"):
        if not folder.exists():
            continue
        partial = [str(p) for p in folder.rglob("*") if p.name.endswith((".partial", ".tmp"))]
        assert not partial, f"partial files left: {partial}"
        src = folder / "src"
        staging = [p.name for p in src.iterdir() if p.name.startswith(".")] if src.is_dir() else []
        assert not staging, f"staging folders left in {src}: {staging}"


def interrupt(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C the run: it must end with 130 and its one line, no traceback; returns stderr."""
    proc.send_signal(signal.SIGINT)
    returncode, _, stderr = finish(proc)
    assert returncode == 130, stderr[-2000:]
    assert "stopped by SIGINT" in stderr and "Traceback" not in stderr
    return stderr


def dist_is_clean(dist: Path) -> None:
    if dist.exists():
        assert not [p.name for p in dist.iterdir() if p.name.startswith(".")], list(dist.iterdir())


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_bazel_builds(
    fixed_example: FixedProject, tmp_path: Path, bazel_trees: list[Path], signum: int, code: int
) -> None:
    tree, flag = make_tree(tmp_path, "tree", bazel_trees)
    flag.touch()
    env = fixed_example.env(TFWHEELS_BUILD=str(tmp_path / "build"), TFWHEELS_DIST=str(tmp_path / "dist"),
                            **private_tmp(tmp_path))
    t0 = time.time() - 1
    proc = start(["build-tf", "--profile", "example", "--source", str(tree)], env)
    wait_for(lambda: bool(running(f"while [ -f {flag} ]", t0)), "the slow genrule to run")
    proc.send_signal(signum)
    returncode, _, stderr = finish(proc)
    assert returncode == code, stderr[-2000:]
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith(f"stopped: stopped by {signal.Signals(signum).name}; ")
    assert "Bazel stopped its build cleanly and kept its caches. Rerun the same command to resume" in last
    assert "Traceback" not in stderr
    wait_for(lambda: not running(f"while [ -f {flag} ]", t0), "the genrule to be cancelled", 30)
    no_children_left(tree)
    dist_is_clean(tmp_path / "dist")
    no_temporaries(tmp_path)
    assert not list((tmp_path / "dist").glob("*.whl"))
    flag.unlink()
    returncode, _, stderr = finish(start(["build-tf", "--profile", "example", "--source", str(tree)], env))
    assert returncode == 0, stderr[-2000:]
    assert len(list((tmp_path / "dist").glob("*.whl"))) == 1
    count("interrupts")


def _stand_in(folder: Path, name: str, real: str, flag: Path, when: str = "") -> Path:
    """A ``name`` on PATH that sleeps while ``flag`` exists (and its args contain ``when``)."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *{when}*) while [ -f {flag} ]; do sleep 0.2; done ;; esac\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_sigint_while_patching_leaves_the_tree_as_it_was(
    fixed_example: FixedProject, tmp_path: Path, bazel_trees: list[Path]
) -> None:
    tree, _ = make_tree(tmp_path, "tree", bazel_trees)
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    flag = tmp_path / "patch.slow"
    flag.touch()
    shims = tmp_path / "shims"
    _stand_in(shims, "patch", "/usr/bin/patch", flag)
    env = fixed_example.env(
        TFWHEELS_BUILD=str(tmp_path / "build"), TFWHEELS_DIST=str(tmp_path / "dist"),
        PATH=f"{shims}{os.pathsep}{os.environ['PATH']}", **private_tmp(tmp_path),
    )
    t0 = time.time() - 1
    proc = start(["build-tf", "--profile", "example", "--source", str(tree)], env)
    wait_for(lambda: bool(running(f"{shims}/patch ", t0)), "the patch step to run")
    assert list((tmp_path / "tmp").glob("tfwheels-patch-*")), "the patch staging folder should exist now"
    interrupt(proc)
    after = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file() and ".tfwheels" not in p.parts}
    # configure wrote its two files before patching began; everything else is byte-identical.
    rendered = {tree / ".bazelrc.user", tree / ".tf_configure.bazelrc"}
    assert {p: b for p, b in after.items() if p not in rendered} == before
    assert not (tree / ".tfwheels" / "state.json").exists()
    no_children_left(tree)
    no_temporaries(tmp_path)
    flag.unlink()
    returncode, _, stderr = finish(start(["build-tf", "--profile", "example", "--source", str(tree)], env))
    assert returncode == 0, stderr[-2000:]
    count("interrupts")


def test_sigint_while_packaging_leaves_dist_untouched(
    fixed_example: FixedProject, tmp_path: Path, bazel_trees: list[Path]
) -> None:
    tree, _ = make_tree(tmp_path, "tree", bazel_trees)
    flag = tmp_path / "python.slow"
    python = _stand_in(tmp_path / "shims", "python3", sys.executable, flag, when="setup.py")
    profile = tmp_path / "slow-packaging.yaml"
    profile.write_text(f"extends: tf/example\nenv:\n  PYTHON_BIN_PATH: {python}\n")
    env = fixed_example.env(TFWHEELS_BUILD=str(tmp_path / "build"), TFWHEELS_DIST=str(tmp_path / "dist"),
                            **private_tmp(tmp_path))
    flag.touch()
    t0 = time.time() - 1
    proc = start(["build-tf", "--profile", str(profile), "--source", str(tree)], env)
    wait_for(lambda: bool(running(f"{python} -W ignore setup.py", t0)), "the packaging step to run")
    interrupt(proc)
    no_children_left(tree)
    dist_is_clean(tmp_path / "dist")
    no_temporaries(tmp_path)
    assert not list((tmp_path / "dist").glob("*.whl"))
    flag.unlink()
    returncode, _, stderr = finish(start(["build-tf", "--profile", str(profile), "--source", str(tree)], env))
    assert returncode == 0, stderr[-2000:]
    count("interrupts")


def test_second_build_of_the_same_tree_refuses_or_waits(
    fixed_example: FixedProject, tmp_path: Path, bazel_trees: list[Path]
) -> None:
    tree, flag = make_tree(tmp_path, "tree", bazel_trees)
    env = fixed_example.env(TFWHEELS_BUILD=str(tmp_path / "build"), TFWHEELS_DIST=str(tmp_path / "dist"))
    flag.touch()
    t0 = time.time() - 1
    first = start(["build-tf", "--profile", "example", "--source", str(tree)], env)
    wait_for(lambda: bool(running(f"while [ -f {flag} ]", t0)), "the first build to reach Bazel")
    returncode, _, stderr = finish(start(["build-tf", "--profile", "example", "--source", str(tree)], env))
    assert returncode == 75, stderr
    assert f"is in use by pid {first.pid}: " in stderr and "build-tf --profile example" in stderr
    assert "--wait" in stderr
    waiting = start(["build-tf", "--profile", "example", "--source", str(tree), "--wait"], env)
    time.sleep(1.0)
    assert waiting.poll() is None  # still waiting for the lock
    flag.unlink()  # let the first build finish
    assert finish(first)[0] == 0
    returncode, _, stderr = finish(waiting)
    assert returncode == 0, stderr[-2000:]
    count("concurrency cases", 2)


def test_build_killed_with_sigkill_never_blocks_the_next(
    fixed_example: FixedProject, tmp_path: Path, bazel_trees: list[Path]
) -> None:
    tree, flag = make_tree(tmp_path, "tree", bazel_trees)
    env = fixed_example.env(TFWHEELS_BUILD=str(tmp_path / "build"), TFWHEELS_DIST=str(tmp_path / "dist"))
    flag.touch()
    t0 = time.time() - 1
    proc = start(["build-tf", "--profile", "example", "--source", str(tree)], env)
    wait_for(lambda: bool(running(f"while [ -f {flag} ]", t0)), "the build to reach Bazel")
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    flag.unlink()
    returncode, _, stderr = finish(start(["build-tf", "--profile", "example", "--source", str(tree)], env))
    assert returncode == 0, stderr[-2000:]
    assert len(list((tmp_path / "dist").glob("*.whl"))) == 1
    count("concurrency cases")


def test_sigint_while_collecting_rejects_nothing_and_leaves_dist_whole(
    fixed_example: FixedProject, tmp_path: Path, bazel_trees: list[Path]
) -> None:
    # The profile's test command runs in the smoke test, inside the collect stage.
    tree, _ = make_tree(tmp_path, "tree", bazel_trees)
    flag = tmp_path / "collect.slow"
    profile = tmp_path / "slow-collect.yaml"
    profile.write_text(
        "extends: tf/example\n"
        f"test_command: [sh, -c, 'while [ -f {flag} ]; do sleep 0.2; done']\n"
    )
    env = fixed_example.env(TFWHEELS_BUILD=str(tmp_path / "build"), TFWHEELS_DIST=str(tmp_path / "dist"),
                            **private_tmp(tmp_path))
    flag.touch()
    t0 = time.time() - 1
    proc = start(["build-tf", "--profile", str(profile), "--source", str(tree)], env)
    wait_for(lambda: bool(running(f"while [ -f {flag} ]", t0)), "the collect stage's smoke test")
    interrupt(proc)
    dist_is_clean(tmp_path / "dist")
    no_temporaries(tmp_path)
    assert not list((tmp_path / "dist").glob("*.whl"))
    assert not (tmp_path / "build" / "rejected").exists() or not list((tmp_path / "build" / "rejected").iterdir())
    flag.unlink()
    returncode, _, stderr = finish(start(["build-tf", "--profile", str(profile), "--source", str(tree)], env))
    assert returncode == 0, stderr[-2000:]
    assert len(list((tmp_path / "dist").glob("*.whl"))) == 1
    count("interrupts")
