"""Get a source tree for a profile: a shallow clone of a pinned tag, or a copy of a local folder.

A clone is checked against the commit the profile pins (a moved tag is an error) and made in a
temporary folder that is renamed into place, so a failed fetch leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tfwheels.errors import TfwheelsError, UsageError
from tfwheels.layout import Layout
from tfwheels.patches import STATE_DIR, read_state
from tfwheels.profiles import GitSource, Profile
from tfwheels.run import run

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


def user_changes(tree: Path) -> list[str]:
    """Files changed in a checkout other than by tfwheels (its patches and rendered files)."""
    out = run(["git", "status", "--porcelain"], cwd=tree, check=False, echo=False).stdout
    ours = set(read_state(tree)["originals"])
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


def fetch_git(git: GitSource, dest: Path, *, force: bool = False) -> str:
    """Shallow-clone ``git.ref`` into ``dest`` and verify it is ``git.commit``.

    An existing checkout at the pinned commit is reused; one with changes of the user's is refused
    unless ``force``. Returns what was done, for the user.
    """
    if dest.exists():
        current = head_commit(dest)
        if current is None:
            msg = f"{dest} exists and is not a git checkout; remove it or pass --source"
            raise SourceError(msg)
        changes = user_changes(dest)
        if changes and not force:
            msg = f"{dest} has local changes ({', '.join(changes[:3])}); commit or discard them, or pass --force"
            raise SourceError(msg)
        if current == git.commit:
            _exclude_own_files(dest)
            return f"reused {dest} at {git.commit[:12]}"
        if not force:
            msg = f"{dest} is at {current[:12]}, not the pinned {git.commit[:12]}; pass --force to fetch again"
            raise SourceError(msg)
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        clone = tmp / "tree"
        result = run(
            ["git", "clone", "--quiet", "--depth", "1", "--branch", git.ref, git.url, str(clone)],
            check=False,
        )
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            msg = f"git clone of {git.url} at {git.ref} failed: {detail[-1] if detail else result.exit_code}"
            raise SourceError(msg)
        got = _git("rev-parse", "HEAD^{commit}", cwd=clone)
        if got != git.commit:
            msg = (
                f"{git.url} tag {git.ref} resolves to {got}, but the profile pins {git.commit}: "
                "the tag moved. Check upstream, then update source.git.commit"
            )
            raise SourceError(msg)
        _exclude_own_files(clone)
        os.replace(clone, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return f"cloned {git.url} {git.ref} into {dest} at {git.commit[:12]}"


def prepare_source(profile: Profile, layout: Layout, override: str | None, force: bool = False) -> tuple[Path, str]:
    """Make the tree exist (clone or copy it when needed); return it and what was done."""
    tree = source_tree(profile, layout, override)
    if override:
        return tree, f"using {tree}"
    if profile.source.git is not None:
        return tree, fetch_git(profile.source.git, tree, force=force)
    copied = copy_path_source(profile, layout, tree)
    return tree, (f"copied {profile.source.path} to {tree}" if copied else f"reusing {tree}")
