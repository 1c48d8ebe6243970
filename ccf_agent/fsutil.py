"""Durable writes shared by everything under `state_dir` and the file output.

Nothing under `state_dir` is opened through a symbolic link or a second hard link: the agent often
runs with more rights than whoever else could write there, and a link planted at `lock` or
`registry.json.tmp` would otherwise have it truncate and overwrite the link's target. Temporary
files are created afresh (O_EXCL after removing any leftover), files appended to or rewritten in
place are opened with O_NOFOLLOW and must be plain files with one link, and `state_dir_problem`
refuses a directory another user can write into in the first place.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
import threading
from collections.abc import Callable
from pathlib import Path

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
STATE_SUBDIRS = ("alerts", "dead_letter")


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


def create_fresh(path: str | os.PathLike[str], mode: int) -> int:
    """A new, empty file of ours at `path` for writing: whatever stood there (a leftover, or a link
    someone planted) is removed first, never written through."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)


def open_plain(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """Open a state file to read, append to or rewrite in place: never through a symbolic link
    (ELOOP), and only a plain file with no other hard link."""
    fd = os.open(path, flags | _NOFOLLOW, mode)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise OSError(errno.EPERM, "not a plain file with a single link (planted by someone?)", str(path))
    return fd


def read_plain(path: str | os.PathLike[str]) -> bytes:
    """A state file's bytes, read as open_plain opens it (FileNotFoundError when it is not there)."""
    fd = open_plain(path, os.O_RDONLY)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int = 0o750) -> None:
    """`path` as a real directory (not a link to one somewhere else), created if missing."""
    try:
        path.mkdir(mode=mode, parents=True)
    except FileExistsError:
        pass
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise OSError(errno.ENOTDIR, "not a directory (a symbolic link planted by someone?)", str(path))


def state_dir_problem(state_dir: str | os.PathLike[str], check_owner: bool = True) -> str | None:
    """Why `state_dir` (or one of the agent's directories in it) is not safe to run with, or None.
    Another user who can write there could plant links there; with `check_owner`, it must also
    belong to the user we run as or to root (`check`, run as root for a service user, skips that)."""
    root = Path(state_dir)
    for path in (root, *(root / d for d in STATE_SUBDIRS)):
        try:
            st = os.stat(path) if path == root else os.lstat(path)
        except FileNotFoundError:
            continue  # created by the agent, mode 0750
        except OSError as e:
            return f"cannot inspect {path}: {e.strerror}"
        if not stat.S_ISDIR(st.st_mode):
            return f"{path} is not a directory"
        who = "every user" if st.st_mode & stat.S_IWOTH else "its group" if st.st_mode & stat.S_IWGRP else None
        if who:
            return (f"{path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}): another user could plant "
                    f"links there that the agent would write through; make it 0750 (chmod go-w {path})")
        uid = os.geteuid()
        if check_owner and st.st_uid not in (uid, 0):
            return (f"{path} belongs to uid {st.st_uid}, not to the agent's user (uid {uid}) or root: its owner "
                    f"could plant links there that the agent would write through; chown it to the agent's user")
    return None


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """tmp file, fsync, rename over, fsync the directory: the file is old or new, never torn."""
    tmp = path.with_name(path.name + ".tmp")
    fd = create_fresh(tmp, mode)
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


def descriptor_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def descriptors_held() -> int | None:
    """How many descriptors the process holds; None when that cannot be told (no /proc, or not one
    descriptor left to list it with)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listing it
    except OSError:
        return None


def descriptors_free(reserve: int) -> int:
    """Descriptors that may be taken before only `reserve` (at most a quarter of the limit) are left;
    0 when not even one is (EMFILE)."""
    limit = descriptor_limit()
    held = descriptors_held()
    if held is None:
        try:
            os.close(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                return 0
        return limit  # cannot count them: leave it to EMFILE
    return limit - held - min(reserve, limit // 4)
