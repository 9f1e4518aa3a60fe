"""A file read again when it changes (its mtime, size or inode), checked at most once per
interval when it is used: token and grants files edited while the server runs.

The first read must succeed (a bad file stops the start with a clear message). A bad
later version is logged and the previous one kept: an edit caught half written, or a
mistake, never leaves the server with no tokens or no grants, nor opens it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
CHECK_INTERVAL_S = 1.0


class FileProblem(ValueError):
    """A file that cannot be used: its path and what is wrong, for the operator."""


class ReloadingFile(Generic[T]):
    """``parse(text)`` of the file, current within ``interval`` seconds of a change."""

    def __init__(self, path: Path, parse: Callable[[str], T], *, what: str,
                 interval: float = CHECK_INTERVAL_S) -> None:
        self.path = path
        self._parse = parse
        self._what = what
        self._interval = interval
        self._signature = self._stat()
        self.value = self._read()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise FileProblem(f"{self._what} {self.path}: {exc.strerror}") from exc
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> T:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FileProblem(f"{self._what} {self.path}: {exc}") from exc
        try:
            return self._parse(text)
        except ValueError as exc:
            raise FileProblem(f"{self._what} {self.path}: {exc}") from exc

    def current(self) -> T:
        """The value, read again first if the file changed (checked at most once per interval)."""
        now = time.monotonic()
        if now - self._checked < self._interval:
            return self.value
        self._checked = now
        try:
            signature = self._stat()
            if signature == self._signature:
                return self.value
            self._signature = signature
            self.value = self._read()
            log.info("reloaded", extra={"file": str(self.path), "what": self._what})
        except FileProblem as exc:
            log.error("kept the previous version: %s", exc, extra={"file": str(self.path)})
        return self.value
