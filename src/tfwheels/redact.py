"""Keep known secret values out of everything tfwheels prints or writes.

Bazel repeats credentials in places tfwheels does not control: with ``--announce_rc`` (which
TensorFlow's .bazelrc sets) it prints every rc option, the private credentials rc included, to
stderr; its Build Event Protocol file records rc options and every client environment variable;
its server log (``java.log`` in the output base) records the options of each command. So every
secret tfwheels hands to Bazel is registered here first, and:

- every line a command prints passes through ``scrub`` before it reaches the console, the log
  or an error message (``tfwheels.run`` calls it);
- files Bazel wrote are rewritten with ``scrub_file`` (atomically) or, for files Bazel still has
  open, masked in place with ``mask_in_place`` (same length, so the writer's offset stays right).

The set of secrets only grows during a process: a secret once seen stays scrubbed.
"""

from __future__ import annotations

import json
import shlex
import threading
from pathlib import Path

from tfwheels.atomic import write_atomic


class Redactor:
    """The secrets of this process and the text that replaces each of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._ordered: list[tuple[str, str]] = []

    def add(self, secret: str, label: str) -> None:
        """Scrub ``secret`` (and its JSON- and shell-quoted spellings) as ``label`` from now on."""
        if not secret:
            return
        forms = {secret, json.dumps(secret)[1:-1], shlex.quote(secret)}
        with self._lock:
            for form in forms:
                self._labels[form] = label
            # Longest first, so a secret that contains another is replaced whole.
            self._ordered = sorted(self._labels.items(), key=lambda item: -len(item[0]))

    def __bool__(self) -> bool:
        return bool(self._ordered)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by its label."""
        for secret, label in self._ordered:
            if secret in text:
                text = text.replace(secret, label)
        return text

    def scrub_bytes(self, data: bytes) -> bytes:
        """``scrub`` for bytes (secrets matched in their UTF-8 form)."""
        for secret, label in self._ordered:
            raw = secret.encode("utf-8")
            if raw in data:
                data = data.replace(raw, label.encode("utf-8"))
        return data

    def mask_bytes(self, data: bytes) -> bytes:
        """Every secret replaced by as many ``*`` as it has bytes: the length stays the same."""
        for secret, _ in self._ordered:
            raw = secret.encode("utf-8")
            if raw in data:
                data = data.replace(raw, b"*" * len(raw))
        return data

    def clear(self) -> None:
        """Forget every secret (for tests)."""
        with self._lock:
            self._labels.clear()
            self._ordered = []


redactor = Redactor()


def scrub(text: str) -> str:
    """``text`` with every secret this process knows replaced by ``<redacted:env:NAME>``."""
    return redactor.scrub(text) if redactor else text


def scrub_file(path: Path) -> bool:
    """Rewrite ``path`` with the secrets replaced (atomically); True if it changed."""
    if not redactor or not path.is_file():
        return False
    data = path.read_bytes()
    clean = redactor.scrub_bytes(data)
    if clean == data:
        return False
    write_atomic(path, clean, path.stat().st_mode & 0o7777)
    return True


def mask_in_place(path: Path) -> bool:
    """Overwrite the secrets in a file another process may still append to; True if any were.

    The file keeps its length and every byte that is not a secret, so a writer that holds it
    open (Bazel's server log) goes on writing at the right place.
    """
    if not redactor or not path.is_file() or path.is_symlink():
        return False
    with path.open("r+b") as handle:
        data = handle.read()
        masked = redactor.mask_bytes(data)
        if masked == data:
            return False
        handle.seek(0)
        handle.write(masked)
    return True
