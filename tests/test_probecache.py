"""The cache of tools' answers about themselves: reused while the tool is unchanged, never after."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tfwheels.probecache import cached
from tfwheels.pyenv import probe_python


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TFWHEELS_NO_PROBE_CACHE", raising=False)
    return tmp_path / "cache"


def test_answer_is_reused_until_the_tool_changes(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("v1")
    calls: list[str] = []

    def ask() -> str:
        calls.append(tool.read_text())
        return tool.read_text()

    assert cached("tool", [tool], ask) == "v1"
    assert cached("tool", [tool], ask) == "v1"
    assert calls == ["v1"]
    tool.write_text("v2 longer")  # size and mtime change: a reinstalled tool
    assert cached("tool", [tool], ask) == "v2 longer"
    assert calls == ["v1", "v2 longer"]


def test_missing_dependency_or_failed_probe_is_never_kept(tmp_path: Path, _own_cache: Path) -> None:
    calls = []
    assert cached("gone", [tmp_path / "absent"], lambda: calls.append(1) or "x") == "x"
    assert cached("gone", [tmp_path / "absent"], lambda: calls.append(1) or "x") == "x"
    assert len(calls) == 2
    tool = tmp_path / "tool"
    tool.write_text("t")
    assert cached("none", [tool], lambda: None) is None
    assert not (_own_cache / "tfwheels" / "probes.json").exists()


def test_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path, _own_cache: Path) -> None:
    path = _own_cache / "tfwheels" / "probes.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff not json")
    tool = tmp_path / "tool"
    tool.write_text("t")
    assert cached("tool", [tool], lambda: {"a": 1}) == {"a": 1}
    assert json.loads(path.read_text())["tool"]["value"] == {"a": 1}
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_python_probe_is_cached_per_interpreter(tmp_path: Path, _own_cache: Path) -> None:
    # A fake interpreter that counts its runs: the second probe must not run it.
    counter = tmp_path / "runs"
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        f"echo x >> {counter}\n"
        "echo '{\"executable\": \"/x/python\", \"major\": 3, \"minor\": 11, \"site\": \"/x/site\"}'\n"
    )
    fake.chmod(0o755)
    first = probe_python(str(fake))
    second = probe_python(str(fake))
    assert first == second and first.version == "3.11" and first.site_packages == "/x/site"
    assert counter.read_text().count("x") == 1
    os.utime(fake, ns=(1, 1))  # touched: asked again
    probe_python(str(fake))
    assert counter.read_text().count("x") == 2


def test_file_digest_is_kept_until_the_file_changes(tmp_path: Path, _own_cache: Path) -> None:
    import hashlib

    from tfwheels.probecache import file_digest

    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"one")
    assert file_digest(wheel) == hashlib.sha256(b"one").hexdigest()
    kept = json.loads((_own_cache / "tfwheels" / "digests.json").read_text())
    assert [entry["value"] for entry in kept.values()] == [hashlib.sha256(b"one").hexdigest()]
    stat = wheel.stat()
    wheel.write_bytes(b"two")  # the same size: the mtime tells it was rewritten
    os.utime(wheel, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000))
    assert file_digest(wheel) == hashlib.sha256(b"two").hexdigest()
