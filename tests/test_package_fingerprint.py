"""What the packaging step's fingerprint reads: every file of a runfiles tree, as Bazel lays it out."""

from __future__ import annotations

import os
from pathlib import Path

from tfwheels.pipeline import _files_under


def test_runfiles_are_listed_through_file_links_not_folder_links(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    root = tmp_path / "tool.runfiles"
    (root / "ws" / "pkg").mkdir(parents=True)
    os.symlink(source / "pkg" / "mod.py", root / "ws" / "pkg" / "mod.py")  # how runfiles look
    (root / "MANIFEST").write_text("ws/pkg/mod.py\n")
    os.symlink(source, root / "ws" / "linked_folder")  # not followed, as Path.rglob does not
    os.symlink(tmp_path / "gone", root / "ws" / "dangling")
    listed = _files_under(root)
    assert [relative for relative, _, _ in listed] == ["MANIFEST", "ws/pkg/mod.py"]
    before = dict((r, (s, m)) for r, s, m in listed)
    (source / "pkg" / "mod.py").write_text("x = 2  # edited through the link\n")
    after = dict((r, (s, m)) for r, s, m in _files_under(root))
    assert after["ws/pkg/mod.py"] != before["ws/pkg/mod.py"] and after["MANIFEST"] == before["MANIFEST"]
