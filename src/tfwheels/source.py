"""Get a source tree for a profile: a shallow clone of a pinned tag, a shallow fetch of a pinned
commit, or a copy of a local folder.

A clone is checked against the commit the profile pins (a moved tag is an error) and made in a
temporary folder that is renamed into place, so a failed fetch leaves nothing behind. A profile
whose ``source.git.ref`` is the full sha of ``commit`` (an untagged upstream HEAD) is fetched by
that sha alone: ``git init``, ``git fetch --depth 1 origin <sha>``, checkout of ``FETCH_HEAD``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tfwheels.atomic import copy_plain, same_bytes, write_atomic
from tfwheels.errors import TfwheelsError, UsageError
from tfwheels.layout import Layout
from tfwheels.patches import STATE_DIR, read_state
from tfwheels.run import Result, run

if TYPE_CHECKING:
    from tfwheels.profiles import GitSource, Profile

# Where a build records the wheels it put into the tree (requires.tree_folder).
STAGED_WHEELS = "staged-wheels.json"
# Files tfwheels itself writes into a tree; they never make a checkout "dirty".
OWN_FILES = (f"/{STATE_DIR}/", "/.bazelrc.user", "/.tf_configure.bazelrc", "/bazel-*")


class SourceError(TfwheelsError):
    """The source tree cannot be fetched or is not in the state the profile requires."""

    exit_code = 5


def default_tree(profile: Profile, layout: Layout) -> Path:
    """Where a profile's working tree lives unless ``--source`` names another."""
    return layout.sources / profile.key


def source_tree(profile: Profile, layout: Layout, override: str | None) -> Path:
    """The tree a build of ``profile`` uses, without creating anything."""
    if override:
        tree = Path(override).resolve()
        if not tree.is_dir():
            msg = f"--source {override}: no such directory; give an existing checkout"
            raise UsageError(msg)
        return tree
    return default_tree(profile, layout)


def _ignore_build_outputs(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("bazel-") or n == STATE_DIR]


def copy_path_source(profile: Profile, layout: Layout, dest: Path) -> bool:
    """Copy a ``source.path`` tree to ``dest`` once; False when ``dest`` already exists."""
    assert profile.source.path is not None
    if dest.exists():
        return False
    origin = (layout.root / profile.source.path).resolve()
    if not origin.is_dir():
        msg = f"{profile.file} source.path: {origin} is not a directory; fix the path"
        raise SourceError(msg)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(origin, tmp / "tree", ignore=_ignore_build_outputs)
        os.replace(tmp / "tree", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    return run(["git", *args], cwd=cwd, check=check, echo=False).stdout.strip()


def head_commit(tree: Path) -> str | None:
    """The commit a checkout is at, or None when ``tree`` is no git checkout."""
    if not (tree / ".git").exists():
        return None
    result = run(["git", "rev-parse", "HEAD^{commit}"], cwd=tree, check=False, echo=False)
    return result.stdout.strip() if result.ok else None


def _staged_paths(tree: Path) -> set[str]:
    """The tree-relative paths of the wheels a build put into ``tree`` (``stage_wheels``)."""
    try:
        data = json.loads((tree / STATE_DIR / STAGED_WHEELS).read_text("utf-8"))
        folder = str(data["folder"]).rstrip("/")
        return {f"{folder}/{name}" for name in data["wheels"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def staging_changes(
    wheels: list[Path], tree: Path, folder: str
) -> tuple[list[str], list[Path], bytes | None]:
    """What ``stage_wheels`` would do in ``tree``: the tree-relative paths of wheels an earlier
    run staged to remove, the wheels to copy, and the record to write (None: it is in place);
    empty lists and None when the tree already holds this staging."""
    wanted = {f"{folder.rstrip('/')}/{wheel.name}" for wheel in wheels}
    remove = sorted(stale for stale in _staged_paths(tree) - wanted if (tree / stale).exists())
    copy = [wheel for wheel in wheels if not same_bytes(wheel, tree / folder / wheel.name)]
    listed = {"folder": folder, "wheels": sorted(wheel.name for wheel in wheels)}
    record = json.dumps(listed, indent=1).encode() + b"\n"
    path = tree / STATE_DIR / STAGED_WHEELS
    return remove, copy, None if path.is_file() and path.read_bytes() == record else record


def stage_wheels(wheels: list[Path], tree: Path, folder: str) -> None:
    """Put ``wheels`` in ``tree/folder`` (``requires.tree_folder``), removing only wheels an
    earlier run put there (the folder may hold the user's own); what was put there is recorded
    in the tree's state folder, and ``user_changes`` does not count it as a local change."""
    remove, copy, record = staging_changes(wheels, tree, folder)
    for stale in remove:
        (tree / stale).unlink(missing_ok=True)
    (tree / folder).mkdir(parents=True, exist_ok=True)
    for wheel in copy:
        copy_plain(wheel, tree / folder / wheel.name)
    if record is not None:
        write_atomic(tree / STATE_DIR / STAGED_WHEELS, record)


def user_changes(tree: Path) -> list[str]:
    """Files changed in a checkout other than by tfwheels (its patches, rendered files and the
    wheels it staged into the tree)."""
    out = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tree, check=False,
              echo=False).stdout
    ours = set(read_state(tree)["originals"]) | _staged_paths(tree)
    changed = [line[3:] for line in out.splitlines() if line.strip()]
    return [path for path in changed if path not in ours]


def _exclude_own_files(tree: Path) -> None:
    exclude = tree / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text("utf-8") if exclude.is_file() else ""
    missing = [p for p in OWN_FILES if p not in text.splitlines()]
    if missing:
        with exclude.open("a", encoding="utf-8") as handle:
            handle.write("# written by tfwheels\n" + "\n".join(missing) + "\n")


_FULL_SHA = re.compile(r"[0-9a-f]{40}")
# What git says when a server will not send a commit asked for by its id (protocol v0/v1 without
# uploadpack.allowReachableSHA1InWant / allowAnySHA1InWant, or a commit the server lacks).
_REFUSED = ("not our ref", "does not allow request for unadvertised object")


def pinned_by_commit(git: GitSource) -> bool:
    """True when the profile names no tag, only a commit: ``ref`` is absent or a full sha.

    A ``ref`` that is a full sha other than ``commit`` is a contradiction, refused here.
    """
    ref = git.ref or git.commit
    if not _FULL_SHA.fullmatch(ref):
        return False
    if ref != git.commit:
        msg = (
            f"source.git.ref {ref} is a commit, but source.git.commit pins {git.commit}; "
            "give the same sha in both (or name a tag in ref)"
        )
        raise SourceError(msg)
    return True


def _last_line(result: Result) -> str:
    detail = (result.stderr or result.stdout).strip().splitlines()
    return detail[-1].strip() if detail else f"exit code {result.exit_code}"


def _fetch_commit(git: GitSource, clone: Path) -> None:
    """Make ``clone`` a shallow checkout of exactly ``git.commit`` (nothing else is fetched)."""
    clone.mkdir()
    _git("init", "--quiet", cwd=clone)
    _git("remote", "add", "origin", git.url, cwd=clone)
    result = run(
        ["git", "fetch", "--quiet", "--no-tags", "--depth", "1", "origin", git.commit],
        cwd=clone, check=False,
    )
    if not result.ok:
        detail = _last_line(result)
        if any(text in detail.lower() for text in _REFUSED):
            msg = (
                f"{git.url} refused to send commit {git.commit} by its sha ({detail}); check that "
                "the commit exists upstream, let the server serve commits by sha "
                "(uploadpack.allowReachableSHA1InWant=true), or pin a tag in source.git.ref"
            )
        else:
            msg = f"git fetch of {git.url} at commit {git.commit} failed: {detail}"
        raise SourceError(msg)
    _git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", "FETCH_HEAD",
         cwd=clone)


def _clone_tag(git: GitSource, clone: Path) -> None:
    """Make ``clone`` a shallow clone of the tag (or branch) ``git.ref``."""
    result = run(
        ["git", "clone", "--quiet", "--depth", "1", "--branch", git.ref, git.url, str(clone)],
        check=False,
    )
    if not result.ok:
        msg = f"git clone of {git.url} at {git.ref} failed: {_last_line(result)}"
        raise SourceError(msg)


def reuse_checkout(dest: Path, commit: str, *, force: bool = False) -> str | None:
    """What was done when the existing checkout ``dest`` is at ``commit`` with no changes of the
    user's; None when it is elsewhere and ``force`` lets it be fetched again; else SourceError."""
    current = head_commit(dest)
    if current is None:
        msg = f"{dest} exists and is not a git checkout; remove it or pass --source"
        raise SourceError(msg)
    changes = user_changes(dest)
    if changes and not force:
        msg = f"{dest} has local changes ({', '.join(changes[:3])}); commit or discard them, or pass --force"
        raise SourceError(msg)
    if current == commit:
        _exclude_own_files(dest)
        return f"reused {dest} at {commit[:12]}"
    if not force:
        msg = f"{dest} is at {current[:12]}, not the pinned {commit[:12]}; pass --force to fetch again"
        raise SourceError(msg)
    return None


def fetch_git(git: GitSource, dest: Path, *, force: bool = False) -> str:
    """Shallow-clone ``git.ref`` into ``dest`` and verify it is ``git.commit``.

    When ``ref`` is that commit's full sha (no tag), only that commit is fetched, by its sha.

    An existing checkout at the pinned commit is reused; one with changes of the user's is refused
    unless ``force``. Returns what was done, for the user.
    """
    by_commit = pinned_by_commit(git)
    if dest.exists():
        reused = reuse_checkout(dest, git.commit, force=force)
        if reused is not None:
            return reused
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        clone = tmp / "tree"
        if by_commit:
            _fetch_commit(git, clone)
        else:
            _clone_tag(git, clone)
        got = _git("rev-parse", "HEAD^{commit}", cwd=clone)
        if got != git.commit:
            if by_commit:
                msg = (
                    f"{git.url}: fetching commit {git.commit} checked out {got}; "
                    "the server sent another commit"
                )
            else:
                msg = (
                    f"{git.url} tag {git.ref} resolves to {got}, but the profile pins {git.commit}: "
                    "the tag moved. Check upstream, then update source.git.commit"
                )
            raise SourceError(msg)
        _exclude_own_files(clone)
        os.replace(clone, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if by_commit:
        return f"fetched {git.url} commit {git.commit[:12]} into {dest}"
    return f"cloned {git.url} {git.ref} into {dest} at {git.commit[:12]}"


def tree_as_is(tree: Path, *, overridden: bool, commit: str | None, force: bool = False) -> str | None:
    """What ``prepare_source`` says of a tree it leaves as it is: a ``--source`` tree, an
    existing copy of a path source, or a checkout at the pinned ``commit`` of a git source
    (SourceError as ``reuse_checkout`` raises it); None when the tree is to be fetched or copied."""
    if overridden:
        return f"using {tree}"
    if not tree.exists():
        return None
    if commit is not None:
        return reuse_checkout(tree, commit, force=force)
    return f"reusing {tree}"


def prepare_source(
    profile: Profile, layout: Layout, override: str | None, force: bool = False
) -> tuple[Path, str]:
    """Make the tree exist (clone or copy it when needed); return it and what was done."""
    tree = source_tree(profile, layout, override)
    git = profile.source.git
    commit = git.commit if git is not None else None
    done = tree_as_is(tree, overridden=bool(override), commit=commit, force=force)
    if done is not None:
        return tree, done
    if git is not None:  # none there, or one elsewhere that --force lets go: fetch_git decides
        return tree, fetch_git(git, tree, force=force)
    copy_path_source(profile, layout, tree)
    return tree, f"copied {profile.source.path} to {tree}"
