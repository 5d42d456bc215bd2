"""Fetch a profile's source tree on its own, before a build: ``invoke fetch``.

A git source is cloned at its tag and checked against the pinned commit (``source.fetch_git``),
or, when ``source.git.ref`` is that commit's full sha (an untagged upstream HEAD), that one commit
is fetched by its sha (``git fetch --depth 1 origin <sha>``) and checked the same way; a
``source.path`` profile (the bundled examples) is copied. Either way a failed fetch leaves
nothing behind, and an existing tree is reused only when it is at the pinned commit and clean.
"""

from __future__ import annotations

from pathlib import Path

from tfwheels.layout import Layout
from tfwheels.profiles import Profile
from tfwheels.source import copy_path_source, default_tree, fetch_git


def fetch_source(profile: Profile, layout: Layout, dest: Path | None = None, *, force: bool = False) -> tuple[Path, str]:
    """Make the profile's source tree exist at ``dest`` (default: build/src/<key>).

    Returns the tree and one line saying what was done. Raises ``SourceError`` when the tag moved,
    the clone or fetch failed (a server that will not serve a commit by its sha says so in one
    line), or an existing tree has local changes (unless ``force``).
    """
    tree = (dest if dest is not None else default_tree(profile, layout)).resolve()
    if profile.source.git is not None:
        return tree, fetch_git(profile.source.git, tree, force=force)
    copied = copy_path_source(profile, layout, tree)
    return tree, (f"copied {profile.source.path} to {tree}" if copied else f"reused {tree}")
