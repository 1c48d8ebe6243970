"""Durable writes shared by everything under `state_dir` and the file output."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write less than asked) and fsync."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in `path` survive a power cut."""
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """tmp file, fsync, rename over, fsync the directory: the file is old or new, never torn."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class SnapshotOrder:
    """Snapshots numbered as they are taken, written one at a time and never an older one over a
    newer: a periodic write running in a thread may finish after the shutdown's own."""

    def __init__(self) -> None:
        self._taken = self._written = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        self._taken += 1
        return self._taken

    def write(self, seq: int, write: Callable[[], None]) -> bool:
        """Run `write` for snapshot `seq` unless a newer one was written; False if it was."""
        with self._lock:
            if seq <= self._written:
                return False
            write()
            self._written = seq
            return True
