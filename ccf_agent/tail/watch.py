"""inotify through ctypes: which directories changed, without polling every file.

Events are hints, never truth: the tailer still rescans and re-stats on a timer, and an
overflowed queue (`IN_Q_OVERFLOW`) just means "look at everything". Where inotify is
unavailable the tailer polls.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Callable

log = logging.getLogger("ccf_agent.tail.watch")

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

DIR_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
            | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
STRUCTURE = IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
_HEADER = struct.Struct("iIII")


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 - probe the symbols
        return libc
    except (OSError, AttributeError):
        return None


class DirWatcher:
    """Watches directories; calls `on_change(path)` for a changed file, `on_structure()` for the rest."""

    def __init__(self, on_change: Callable[[str], None], on_structure: Callable[[], None]) -> None:
        self.on_change = on_change
        self.on_structure = on_structure
        self.fd = -1
        self.dirs: dict[int, str] = {}
        self.by_path: dict[str, int] = {}
        self._libc = _libc()
        self.events = 0
        self.overflows = 0

    def start(self) -> bool:
        if self._libc is None:
            return False
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            log.warning("inotify unavailable (%s): polling files instead", os.strerror(ctypes.get_errno()))
            return False
        self.fd = fd
        asyncio.get_running_loop().add_reader(fd, self._read)
        return True

    @property
    def active(self) -> bool:
        return self.fd >= 0

    def watch(self, directory: str) -> bool:
        if not self.active or directory in self.by_path:
            return directory in self.by_path
        assert self._libc is not None
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), DIR_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                log.warning("inotify watch limit reached (fs.inotify.max_user_watches): polling %s", directory)
            return False
        self.dirs[wd] = directory
        self.by_path[directory] = wd
        return True

    def _read(self) -> None:
        structure = False
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not buf:
                break
            pos = 0
            while pos < len(buf):
                wd, mask, _cookie, length = _HEADER.unpack_from(buf, pos)
                name = buf[pos + 16: pos + 16 + length].rstrip(b"\0")
                pos += 16 + length
                self.events += 1
                if mask & IN_Q_OVERFLOW:
                    self.overflows += 1
                    structure = True
                    continue
                if mask & IN_IGNORED:
                    d = self.dirs.pop(wd, None)
                    if d is not None:
                        self.by_path.pop(d, None)
                    structure = True
                    continue
                if mask & STRUCTURE:
                    structure = True
                if mask & (IN_MODIFY | IN_CLOSE_WRITE) and name:
                    d = self.dirs.get(wd)
                    if d is not None:
                        self.on_change(os.path.join(d, os.fsdecode(name)))
        if structure:
            self.on_structure()

    def close(self) -> None:
        if self.fd >= 0:
            try:
                asyncio.get_running_loop().remove_reader(self.fd)
            except RuntimeError:
                pass
            os.close(self.fd)
            self.fd = -1
