"""Apply a profile's patch series to a source tree as one transaction, and undo it.

The whole series is first applied to copies of the files it touches, in a staging folder outside
the tree. Only when every patch applies (or is found already applied) are the originals backed up
under ``.tfwheels/originals/`` and the patched files moved in, each with one rename. A journal in
``.tfwheels/state.json`` makes an interrupted move roll back on the next run, so the tree is always
either as it was or fully patched and recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tfwheels.atomic import copy_atomic, file_sha256, write_atomic
from tfwheels.errors import PatchError, ProfileError
from tfwheels.layout import STATE_DIR, STATE_FILE
from tfwheels.run import run

if TYPE_CHECKING:
    from tfwheels.profiles import Profile

ORIGINALS = "originals"


@dataclass(frozen=True)
class PatchFile:
    """A patch of the series: its file as the profile names it (relative to patches/), the
    sha256 the profile pins, and the file, verified against it."""

    name: str
    sha256: str
    path: Path


@dataclass
class PatchReport:
    """What one apply or revert did."""

    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    tool: str = ""

    def to_json(self) -> dict[str, Any]:
        """The report as plain data."""
        return {
            "applied": self.applied,
            "skipped": self.skipped,
            "reverted": self.reverted,
            "tool": self.tool,
        }


def load_series(profile: Profile, patches_dir: Path) -> list[PatchFile]:
    """The profile's active patches, each found under ``patches_dir`` with a matching sha256."""
    root = patches_dir.resolve()
    series: list[PatchFile] = []
    for index, entry in enumerate(profile.active_patches()):
        path = patches_dir / entry.file
        where = f"{profile.file} patches.{index}.file"
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            msg = f"{where}: {entry.file!r} leaves patches/ (a symlink?); keep patches as files there"
            raise ProfileError(msg)
        if not path.is_file():
            msg = f"{where}: {entry.file!r} not found under {patches_dir}; check the path"
            raise ProfileError(msg)
        actual = file_sha256(path)
        if actual != entry.sha256:
            msg = (
                f"{where}: sha256 of {entry.file} is {actual}, the profile pins {entry.sha256}; "
                "if the change is intended, put the new sha256 in the profile"
            )
            raise PatchError(msg)
        series.append(PatchFile(entry.file, entry.sha256, path))
    return series


def touched_files(patch_text: str) -> list[str]:
    """Paths (relative to the tree, ``-p1``) that a unified diff reads or writes."""
    paths: list[str] = []
    for line in patch_text.splitlines():
        if not line.startswith(("--- ", "+++ ")):
            continue
        name = line[4:].split("\t")[0].strip()
        if name == "/dev/null":
            continue
        parts = PurePosixPath(name).parts
        relative = PurePosixPath(*parts[1:]) if len(parts) > 1 else PurePosixPath(name)
        text = str(relative)
        if name.startswith("/") or ".." in relative.parts:
            msg = f"patch names {name!r}, outside the source tree; a patch may only touch files inside it"
            raise PatchError(msg)
        if text not in paths:
            paths.append(text)
    return paths


def tree_tool(tree: Path) -> str:
    """``git`` for a git checkout (``git apply``), else ``patch``."""
    return "git" if (tree / ".git").exists() else "patch"


def _apply_argv(tool: str, patch: Path, reverse: bool, check: bool) -> list[str]:
    if tool == "git":
        argv = ["git", "apply", "--whitespace=nowarn"]
        if reverse:
            argv.append("--reverse")
        if check:
            argv.append("--check")
        return [*argv, str(patch)]
    argv = ["patch", "-p1", "--batch", "--forward", "--silent", "--no-backup-if-mismatch"]
    if reverse:
        argv = ["patch", "-p1", "--batch", "--reverse", "--silent", "--no-backup-if-mismatch"]
    if check:
        argv.append("--dry-run")
    return [*argv, "-i", str(patch)]


def _apply_in(staging: Path, tool: str, patch: Path, reverse: bool, check: bool) -> bool:
    # The staging folder is outside any repository; stop git from looking above it.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(staging.parent)}
    result = run(
        _apply_argv(tool, patch, reverse, check), cwd=staging, env=env, check=False, echo=False
    )
    return result.ok


# --- state --------------------------------------------------------------------------------------


def _state_path(tree: Path) -> Path:
    return tree / STATE_DIR / STATE_FILE


def read_state(tree: Path) -> dict[str, Any]:
    """The recorded patch state of ``tree`` (empty when nothing was applied)."""
    path = _state_path(tree)
    if not path.is_file():
        return {"applied": [], "originals": {}}
    try:
        state = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{path}: patch state unreadable ({exc}); restore the tree from git or a fresh copy"
        raise PatchError(msg) from exc
    state.setdefault("applied", [])
    state.setdefault("originals", {})
    return state


def _write_state(tree: Path, state: dict[str, Any]) -> None:
    data = json.dumps(state, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_atomic(_state_path(tree), data)


def _backup(tree: Path, relative: str, state: dict[str, Any]) -> None:
    """Keep the first original of a file (None when the patch series creates it)."""
    if relative in state["originals"]:
        return
    source = tree / relative
    if source.is_file():
        target = tree / STATE_DIR / ORIGINALS / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        state["originals"][relative] = file_sha256(source)
    else:
        state["originals"][relative] = None


def _restore(tree: Path, state: dict[str, Any]) -> list[str]:
    restored: list[str] = []
    for relative, digest in sorted(state["originals"].items()):
        target = tree / relative
        if digest is None:
            target.unlink(missing_ok=True)
        else:
            backup = tree / STATE_DIR / ORIGINALS / relative
            copy_atomic(backup, target)
        restored.append(relative)
    return restored


def recover(tree: Path) -> bool:
    """Roll back a move that was interrupted; True when there was one."""
    state = read_state(tree)
    if not state.get("pending"):
        return False
    pending = state["pending"]
    partial = {"applied": [], "originals": {k: state["originals"][k] for k in pending}}
    _restore(tree, partial)
    state.pop("pending")
    _write_state(tree, state)
    return True


# --- apply and revert ---------------------------------------------------------------------------


def _stage(tree: Path, files: Iterable[str], staging: Path) -> None:
    for relative in files:
        source = tree / relative
        if source.is_file():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _recorded(series: Sequence[PatchFile]) -> list[dict[str, str]]:
    return [{"file": p.name, "sha256": p.sha256} for p in series]


def series_in_place(tree: Path, series: Sequence[PatchFile]) -> bool:
    """True when ``apply_series`` would change nothing: the tree's state records exactly this
    series as applied and no interrupted move waits to be rolled back."""
    try:
        state = read_state(tree)
    except PatchError:
        return False
    return not state.get("pending") and state["applied"] == _recorded(series)


def apply_series(tree: Path, series: Sequence[PatchFile]) -> PatchReport:
    """Apply ``series`` to ``tree`` all or nothing; already-applied patches are skipped."""
    recover(tree)
    state = read_state(tree)
    wanted = _recorded(series)
    recorded = state["applied"]
    report = PatchReport(tool=tree_tool(tree))
    if recorded != wanted[: len(recorded)]:
        # The profile's series changed under an applied one: start again from the originals.
        report.reverted = [p["file"] for p in recorded]
        revert_series(tree)
        state = read_state(tree)
        recorded = []
    todo = list(series[len(recorded) :])
    report.skipped = [p["file"] for p in recorded]
    if not todo:
        return report
    texts = {p.name: p.path.read_text("utf-8", errors="replace") for p in todo}
    files: list[str] = []
    for patch in todo:
        for relative in touched_files(texts[patch.name]):
            if relative not in files:
                files.append(relative)
    with tempfile.TemporaryDirectory(prefix="tfwheels-patch-") as tmp:
        staging = Path(tmp) / "tree"
        staging.mkdir()
        _stage(tree, files, staging)
        newly: list[PatchFile] = []
        for patch in todo:
            if _apply_in(staging, report.tool, patch.path, reverse=False, check=False):
                newly.append(patch)
            elif _apply_in(staging, report.tool, patch.path, reverse=True, check=True):
                report.skipped.append(patch.name)
            else:
                msg = (
                    f"patch {patch.name} does not apply to {tree} (nor is it already applied); "
                    "nothing was changed. Refresh the patch for this source version"
                )
                raise PatchError(msg)
        _move_in(tree, staging, files, state)
    state["applied"] = wanted
    _write_state(tree, state)
    report.applied = [p.name for p in newly]
    return report


def _move_in(tree: Path, staging: Path, files: Sequence[str], state: dict[str, Any]) -> None:
    for relative in files:
        _backup(tree, relative, state)
    state["pending"] = list(files)
    _write_state(tree, state)
    for relative in files:
        staged = staging / relative
        target = tree / relative
        if staged.is_file():
            if not target.is_file() or target.read_bytes() != staged.read_bytes():
                copy_atomic(staged, target)
        else:
            target.unlink(missing_ok=True)
    state.pop("pending")


def revert_series(tree: Path) -> PatchReport:
    """Restore the original bytes of every file the recorded series changed."""
    recover(tree)
    state = read_state(tree)
    report = PatchReport(tool=tree_tool(tree))
    report.reverted = [p["file"] for p in state["applied"]]
    _restore(tree, state)
    shutil.rmtree(tree / STATE_DIR / ORIGINALS, ignore_errors=True)
    _state_path(tree).unlink(missing_ok=True)
    return report
