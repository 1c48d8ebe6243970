"""One input: finds files by glob, decides where to resume each, and reads them in turn.

Identity: a live file is its open descriptor's (device, inode); a stream in the registry
is (fingerprint, device, inode). On discovery the registry decides:
- same inode, same fingerprint: resume at the committed offset;
- same inode, other fingerprint: the inode was reused (or truncated and rewritten): from 0;
- unknown inode whose fingerprint matches a stream nobody holds: a rotated or renamed copy,
  finished from that stream's offset;
- fingerprint of a stream still held open: a copy in progress (copytruncate), wait;
- nothing known: a new file, from the start. A `rotated_paths` match is new only if it changed
  since we last watched (a generation that rotated away before a scan saw it).
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import glob
import logging
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ccf_agent.acks import Flow, Ledger
from ccf_agent.batch import Batch
from ccf_agent.config import InputConfig
from ccf_agent.fsutil import descriptor_limit, descriptors_free, descriptors_held
from ccf_agent.registry import Entry, Registry, content_hash, stream_id_for
from ccf_agent.tail.multiline import Multiline
from ccf_agent.tail.reader import CHUNK, TAIL_BYTES, FileReader, fingerprint, same_prefix, tail_matches
from ccf_agent.tail.watch import DirWatcher

log = logging.getLogger("ccf_agent.tail")

COMPRESSED = ("*.gz", "*.bz2", "*.xz", "*.zst", "*.zip", "*.lz4")
MIN_POLL = 0.005
FD_RESERVE = 32  # descriptors log files leave to output connections, state files and the status endpoint
FD_RETRY = 1.0  # seconds between attempts to open files while descriptors are short


class TailInput:
    def __init__(self, cfg: InputConfig, registry: Registry, flow: Flow,
                 dispatch: Callable[[Batch], None], wait_for_room: Callable[[], Awaitable[None]],
                 first_run: bool = False, read_ahead: Any = None,
                 has_room: Callable[[Ledger], bool] | None = None) -> None:
        self.cfg = cfg
        self.read_ahead = read_ahead  # the pipeline's _fast.ReadAhead (a thread), or None
        self.registry = registry
        self.flow = flow
        self.dispatch = dispatch
        self.wait_for_room = wait_for_room
        self.has_room = has_room  # per file: may its next chunk be read (see Agent.room_for)
        self.readers: dict[tuple[int, int], FileReader] = {}
        self.ledgers: dict[str, Ledger] = {}
        self._first_scan = first_run
        # A rotated file changed after this moment was live while nobody watched it: read it.
        self.watching_since = registry.previous_run_at or time.time()
        self._warned: set[str] = set()
        self._rescan = asyncio.Event()
        self._pause: asyncio.Timeout | None = None  # while reading waits for room
        self._wake = asyncio.Event()
        # One regex for every exclusion glob: a scan tests each path once, not once per glob.
        self._exclude = re.compile("|".join(fnmatch.translate(p) for p in (*COMPRESSED, *cfg.exclude)))
        self.dirty: set[tuple[int, int]] = set()
        self.by_path: dict[str, tuple[int, int]] = {}
        self.watcher: DirWatcher = DirWatcher(self._changed, self._structure_changed)
        self.bytes_read = 0
        self.bytes_read_ahead = 0  # of those, read and scanned by the read-ahead thread
        self.lost_bytes = 0  # unread bytes of deleted files given up on (deleted_max_*)
        self.retry_open = False  # a file could not be opened for want of descriptors: scan again soon
        self._retry_at = 0.0
        self.fd_short_since: float | None = None  # monotonic start of the current shortage
        self.open_failures = 0  # opens that failed for want of descriptors
        self.scans = 0

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        self.watcher = DirWatcher(self._changed, self._structure_changed)
        notified = self.watcher.start()
        next_scan = 0.0
        idle = MIN_POLL
        try:
            while True:
                now = time.monotonic()
                if now >= next_scan or self._rescan.is_set() or (self.retry_open and now >= self._retry_at):
                    self._rescan.clear()
                    self.retry_open = False
                    self._retry_at = now + FD_RETRY
                    self.scan()  # marks dirty the files with news: grown, shrunk, moved
                    next_scan = now + self.cfg.scan_interval
                elif not notified:
                    self.dirty.update(self.readers)  # no inotify: poll them all
                progressed = await self._read_dirty(notified)
                await self._wait_room()
                if progressed:
                    idle = MIN_POLL
                    continue
                self._wake.clear()
                if notified:
                    # Only rotated files wait on a timer; everything else waits for an event.
                    timeout = next_scan - time.monotonic()
                    if self.retry_open:
                        timeout = min(timeout, FD_RETRY)
                    if any(r.moved_at is not None or r.partial or r.holds_event for r in self.readers.values()):
                        timeout = min(timeout, self.cfg.poll_interval)
                else:
                    timeout = idle
                    idle = min(idle * 2, self.cfg.poll_interval)
                try:
                    async with asyncio.timeout(max(0.0, timeout)):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self.watcher.close()
            for reader in self.readers.values():
                reader.close()
                reader.entry.state = "closed"  # nobody holds it now (a reload's next input will)
            self.readers.clear()
            if self.read_ahead is not None:
                self.read_ahead.close()

    async def _read_dirty(self, notified: bool) -> bool:
        """One chunk from each file with news; files at their end leave the dirty set."""
        progressed = False
        for key in list(self.dirty):
            reader = self.readers.get(key)
            if reader is None:
                self.dirty.discard(key)
                continue
            if not self.flow.has_room:
                await self._wait_room()
            if self.has_room is not None:
                ledger = self.ledgers.get(reader.entry.stream_id)
                if ledger is not None and not self.has_room(ledger):
                    continue  # stays dirty: read when its outputs have room (room_again), the others read on
            batches = reader.read(CHUNK)
            if batches:
                progressed = True
                for b in batches:
                    self.bytes_read += b.end - b.start
                    if b.scan is not None:
                        self.bytes_read_ahead += b.end - b.start
                    self.dispatch(b)
                await asyncio.sleep(0)  # let outputs and acknowledgements run between chunks
                if self._rescan.is_set():
                    break  # a rename storm: find the new files before reading on
            else:
                self._at_eof(reader)
                if notified and reader.moved_at is None and not reader.partial and not reader.holds_event:
                    self.dirty.discard(key)
        return progressed

    async def _wait_room(self) -> None:
        """Backpressure, with the housekeeping that must go on while an output is down. New files
        are still opened as they appear, though none is read until there is room: in a rename
        storm a generation may be renamed over within the pause, and only a descriptor opened
        before that keeps it readable. So inotify's news cuts the wait short (see _news)."""
        next_scan = time.monotonic() + self.cfg.scan_interval
        while True:
            try:
                delay = 0.0 if self._rescan.is_set() else max(0.0, next_scan - time.monotonic())
                async with asyncio.timeout(delay) as pause:
                    self._pause = pause
                    await self.wait_for_room()
                return
            except TimeoutError:
                now = time.monotonic()
                if self._rescan.is_set() or now >= next_scan:  # inotify saw a file appear or move
                    self._rescan.clear()
                    self.scan()
                if now >= next_scan:
                    self._maintain()
                    next_scan = now + self.cfg.scan_interval
            finally:
                self._pause = None

    def room_again(self) -> None:
        """An output has room again: a file held back for it may be read."""
        self._wake.set()

    def _news(self) -> None:
        """A file appeared or moved: scan soon, and now if reading is paused for room."""
        self._rescan.set()
        if self._pause is not None and not self._pause.expired():
            self._pause.reschedule(asyncio.get_running_loop().time())

    def _changed(self, path: str) -> None:
        key = self.by_path.get(path)
        if key is not None and key in self.readers:
            self.dirty.add(key)
        else:
            # A write under a name we do not hold: a renamed file still being written, or a new one.
            self.dirty.update(k for k, r in self.readers.items() if r.moved_at is not None)
            if any(fnmatch.fnmatch(path, p) for p in (*self.cfg.paths, *self.cfg.rotated_paths)):
                self._news()
        self._wake.set()

    def _structure_changed(self) -> None:
        self._news()
        self._wake.set()

    def _watch_dirs(self) -> None:
        if not self.watcher.active:
            return
        for pattern in (*self.cfg.paths, *self.cfg.rotated_paths):
            parent = os.path.dirname(pattern)
            found = glob.glob(parent) if glob.has_magic(parent) else ([parent] if os.path.isdir(parent) else [])
            for d in found:
                self.watcher.watch(d)
            if not found:
                # The directory does not exist yet: watch the nearest ancestor to see it appear.
                base = parent
                while glob.has_magic(base) or not os.path.isdir(base):
                    up = os.path.dirname(base)
                    if up == base:
                        break
                    base = up
                self.watcher.watch(base)

    def stop_file(self, reader: FileReader, state: str) -> None:
        reader.entry.size = max(reader.entry.size, reader.offset)
        reader.close()
        self.readers.pop(reader.dev_ino, None)
        self.dirty.discard(reader.dev_ino)
        if self.by_path.get(reader.path) == reader.dev_ino:
            del self.by_path[reader.path]
        entry = reader.entry
        entry.state = state
        entry.updated = time.time()
        self.registry.dirty = True

    # ------------------------------------------------------------------ end of file: rotation, truncation

    def _at_eof(self, reader: FileReader) -> None:
        try:
            st = os.fstat(reader.fd)
        except OSError:
            self.stop_file(reader, "gone")
            return
        entry = reader.entry
        entry.size = st.st_size
        if st.st_size < reader.offset:
            log.info("%s was truncated (size %d < offset %d): reading it again from the start",
                     reader.path, st.st_size, reader.offset)
            self.stop_file(reader, "truncated")
            self._rescan.set()
            return
        now = time.monotonic()
        for batch in reader.flush_multiline(now):  # an event whose next line never came
            self.dispatch(batch)
        if reader.partial and reader.moved_at is None and now - reader.last_data >= self.cfg.partial_flush:
            for batch in reader.flush_partial():  # a writer that never finished its line: ship what is there
                self.dispatch(batch)
        if reader.moved_at is None:
            try:
                pst = os.stat(reader.path)
                moved = (pst.st_dev, pst.st_ino) != reader.dev_ino
            except OSError:
                moved = True
            if moved:
                reader.moved_at = now
                reader.deleted = st.st_nlink == 0
                if self.by_path.get(reader.path) == reader.dev_ino:
                    del self.by_path[reader.path]
                self._rescan.set()  # pick up the new file at the old path at once
                log.info("%s was %s; finishing the old file", reader.path,
                         "deleted" if reader.deleted else "rotated")
            return
        # The old file is finished once it stayed idle for rotate_wait after it moved.
        if now - max(reader.last_data, reader.moved_at) >= self.cfg.rotate_wait:
            for batch in (*reader.flush_partial(), *reader.flush_multiline()):
                self.dispatch(batch)
            self.stop_file(reader, "gone" if reader.deleted or st.st_nlink == 0 else "closed")

    # ------------------------------------------------------------------ discovery

    def scan(self) -> None:
        self.scans += 1
        candidates: dict[str, bool] = {}
        # Log files may take the descriptors the process has, less a reserve for output connections,
        # state files and the status endpoint: a shortage must not stop offsets being saved. (glob
        # lists directories through a descriptor too and, without one, silently finds nothing.)
        room = descriptors_free(FD_RESERVE)
        if room <= 0:
            self._short_of_descriptors("the directories of " + ", ".join(self.cfg.paths))
        else:
            for pattern in self.cfg.rotated_paths:
                for p in glob.glob(pattern):
                    candidates[p] = False
            for pattern in self.cfg.paths:
                for p in glob.glob(pattern):
                    candidates[p] = True
        self._check_files()
        self._watch_dirs()
        added = False
        held_fps = {r.entry.fingerprint for r in self.readers.values()}
        for path, may_start in sorted(candidates.items()):
            if self._excluded(path):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            held = self.by_path.get(path)
            if held is not None and held != key and held in self.readers:
                self.dirty.add(held)  # its path now names another file: let _at_eof see the move
            if not stat.S_ISREG(st.st_mode):
                self._not_a_file(path, st.st_mode)
                continue
            if key in self.readers:
                continue
            if self._unchanged_closed(st):
                continue
            if len(self.readers) >= self.cfg.max_open_files:
                if "max_open_files" not in self._warned:
                    log.warning("input %s: %d files open (max_open_files); others wait until some close "
                                "(close_inactive)", self.cfg.id, len(self.readers))
                    self._warned.add("max_open_files")
                break
            if room <= 0:
                self._short_of_descriptors(path)
                break
            held = len(self.readers)
            added |= self._open(path, may_start, held_fps)
            room -= len(self.readers) - held
        if room > 0 and not self.retry_open:
            self._descriptors_back()
        self._first_scan = False
        if added:
            # New streams are persisted before any of their records leave, so their ids are stable.
            self.registry.save()

    def _not_a_file(self, path: str, mode: int) -> None:
        """A match that is no regular file (a FIFO, a device, a directory named *.log) is not read: say
        so once per path, so an operator is not left wondering why it never ships."""
        if path in self._warned:
            return
        self._warned.add(path)
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        log.warning("input %s: %s is %s, not a log file: not read", self.cfg.id, path, kind)

    def _check_files(self) -> None:
        """One fstat per open file per scan: files with news become dirty, and files truncated (or
        truncated and regrown past our offset) are noticed before new files are resolved, since a
        copytruncate copy can only be recognised once its original is known to be truncated.
        Idle files cost one system call here and nothing else."""
        for reader in list(self.readers.values()):
            try:
                st = os.fstat(reader.fd)
            except OSError:
                continue
            size = st.st_size
            # A deleted file, even one read to its end, is finished like a rotated one (_at_eof):
            # otherwise its descriptor, and its disk space, were held until the agent stopped.
            if size != reader.offset or reader.moved_at is not None or st.st_nlink == 0:
                self.dirty.add(reader.dev_ino)
            if reader.moved_at is not None or size == reader.checked_size:
                continue
            reader.checked_size = size
            if size < reader.offset:
                log.info("%s was truncated (size %d < offset %d): reading it again from the start",
                         reader.path, size, reader.offset)
                self.stop_file(reader, "truncated")
                continue
            try:
                fp = fingerprint(reader.fd, self.cfg.fingerprint_bytes)
            except OSError:
                continue
            if fp is not None and fp != reader.entry.fingerprint:
                log.warning("%s was truncated and rewritten: reading it again from the start", reader.path)
                self.stop_file(reader, "truncated")
        self._maintain()

    def _maintain(self) -> None:
        """Bounds that hold even while reading is paused: deleted files, idle files, old entries."""
        now = time.monotonic()
        for reader in list(self.readers.values()):
            try:
                st = os.fstat(reader.fd)
            except OSError:
                continue
            reader.entry.size = st.st_size
            if st.st_nlink == 0:
                if reader.deleted_at is None:
                    reader.deleted_at = now
                left = st.st_size - reader.offset
                if left > 0 and (now - reader.deleted_at > self.cfg.deleted_max_wait or left > self.cfg.deleted_max_bytes):
                    self.lost_bytes += left
                    log.error("%s was deleted with %d bytes still unread; closing it after %.0fs to free the "
                              "disk (deleted_max_wait / deleted_max_bytes): those records are LOST",
                              reader.path, left, now - reader.deleted_at)
                    self.stop_file(reader, "gone")
                continue
            idle = now - reader.last_data
            if (reader.moved_at is None and not reader.partial and reader.offset >= st.st_size
                    and idle >= self.cfg.close_inactive):
                log.debug("closing %s: idle for %.0fs (close_inactive)", reader.path, idle)
                self.stop_file(reader, "closed")
        self._forget_gone()

    def _forget_gone(self) -> None:
        horizon = time.time() - self.cfg.forget_after
        held = {r.entry.stream_id for r in self.readers.values()}
        for e in list(self.registry.entries.values()):
            if e.input_id != self.cfg.id or e.stream_id in held or e.updated > horizon:
                continue
            try:
                st = os.stat(e.path)
                exists = (st.st_dev, st.st_ino) == (e.dev, e.ino)
            except OSError:
                exists = False
            if not exists:
                del self.registry.entries[e.stream_id]
                self.ledgers.pop(e.stream_id, None)
                self.registry.dirty = True

    def _excluded(self, path: str) -> bool:
        return self._exclude.match(os.path.basename(path)) is not None or self._exclude.match(path) is not None

    def _unchanged_closed(self, st: os.stat_result) -> bool:
        for e in self.registry.by_inode(st.st_dev, st.st_ino):
            if e.state == "closed" and e.size == st.st_size and e.offset >= st.st_size:
                return True
        return False

    def _open(self, path: str, may_start: bool, held_fps: set[str]) -> bool:
        try:
            # O_NONBLOCK: a FIFO swapped in since the scan's stat must not block the event loop in open.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                if path not in self._warned:
                    log.warning("permission denied reading %s: give the agent's user read access "
                                "(e.g. the adm group); retrying every scan", path)
                    self._warned.add(path)
            elif e.errno in (errno.EMFILE, errno.ENFILE):
                self._short_of_descriptors(path, e.strerror)
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                self._not_a_file(path, st.st_mode)
                return False
            self._warned.discard(path)
            fp = fingerprint(fd, self.cfg.fingerprint_bytes)
            choice = self._resolve(fd, path, fp, st, may_start, held_fps) if fp else None
        except OSError as e:
            log.warning("cannot read %s: %s", path, e.strerror)
            choice = None
        if choice is None:
            os.close(fd)
            return False
        entry, offset, is_new = choice
        entry.path, entry.dev, entry.ino, entry.state, entry.size = path, st.st_dev, st.st_ino, "live", st.st_size
        ledger = self.ledgers.get(entry.stream_id)
        if ledger is None or ledger.entry is not entry:
            ledger = self.ledgers[entry.stream_id] = Ledger(entry, self.registry, self.flow)
        opts = self.cfg.options
        multiline = Multiline(opts.multiline) if opts is not None and opts.multiline is not None else None
        reader = FileReader(fd, path, entry, ledger, offset, self.cfg.max_line_bytes, multiline)
        if multiline is None:
            reader.ahead = self.read_ahead
        self.readers[(st.st_dev, st.st_ino)] = reader
        self.by_path[path] = (st.st_dev, st.st_ino)
        self.dirty.add((st.st_dev, st.st_ino))
        held_fps.add(entry.fingerprint)
        log.info("%s %s at offset %d (size %d)", "reading" if is_new else "resuming", path, offset, st.st_size)
        return is_new

    def _short_of_descriptors(self, what: str, why: str | None = None) -> None:
        """Out of descriptors, or down to the reserve: say so once per shortage, and try again every
        second rather than at the next full scan."""
        self.retry_open = True
        self.open_failures += 1
        if self.fd_short_since is None:
            self.fd_short_since = time.monotonic()
            limit, held = descriptor_limit(), descriptors_held()
            log.warning("input %s: cannot open %s: %s (the agent holds %s of its %d descriptors, %d of them log "
                        "files of this input, and keeps %d for outputs and state files): retrying every %gs; "
                        "raise LimitNOFILE= or lower max_open_files", self.cfg.id, what,
                        why or "too few file descriptors left", "all" if held is None else held, limit,
                        len(self.readers), min(FD_RESERVE, limit // 4), FD_RETRY)

    def _descriptors_back(self) -> None:
        if self.fd_short_since is not None:
            log.warning("input %s: file descriptors available again after %.1fs", self.cfg.id,
                        time.monotonic() - self.fd_short_since)
            self.fd_short_since = None

    def _resolve(self, fd: int, path: str, fp: str, st: os.stat_result, may_start: bool,
                 held_fps: set[str]) -> tuple[Entry, int, bool] | None:
        same_inode = [e for e in self.registry.by_inode(st.st_dev, st.st_ino) if e.state != "truncated"]
        for e in same_inode:
            if e.fingerprint == fp:
                if st.st_size >= e.offset and tail_matches(fd, e):
                    return e, self._resume_offset(e), False
                break  # shrank or was rewritten while we were away: a new stream below
        if fp in held_fps and self._copy_of_held(fd, fp, st.st_size):
            if path not in self._warned:
                log.info("%s is a copy of a file being read (copytruncate?): waiting for the original to "
                         "be truncated before finishing it", path)
                self._warned.add(path)
            return None
        orphans = [e for e in self.registry.by_fingerprint(fp)
                   if e.state != "live" and (e.dev, e.ino) != (st.st_dev, st.st_ino)]
        orphans.sort(key=lambda e: e.updated, reverse=True)
        for e in orphans:
            offset = self._resume_offset(e)
            if st.st_size >= offset and tail_matches(fd, e):
                log.info("%s continues %s (same content) from offset %d", path, e.path, offset)
                return e, offset, False
            if st.st_size < offset and e.stream_id in self.ledgers and (st.st_size < e.offset or tail_matches(fd, e)):
                # A copy taken before lines we had already read from the original (copytruncate
                # while we kept up): nothing in it is new. Remember it as read to its end.
                self._register_done(fd, path, fp, st)
                return None
        if not may_start and st.st_mtime <= self.watching_since:
            return None  # rotated before we were watching: not ours to ship
        if self.cfg.ignore_older and time.time() - st.st_mtime > self.cfg.ignore_older:
            return None
        offset = 0
        if self.cfg.start_at == "end" and self._first_scan:
            offset = _last_line_end(path, st.st_size)
        entry = Entry(stream_id=stream_id_for(fp, st.st_dev, st.st_ino), fingerprint=fp, input_id=self.cfg.id,
                      path=path, dev=st.st_dev, ino=st.st_ino, offset=offset)
        self.registry.add(entry)
        return entry, offset, True

    def _copy_of_held(self, fd: int, fp: str, size: int) -> bool:
        """Same first line as a file we hold is not enough (error.log and combined.log often share
        one): a copy has the same bytes all along."""
        for r in self.readers.values():
            if r.entry.fingerprint == fp and r.fd >= 0:
                n = min(size, r.entry.size or size, 1 << 16)
                if same_prefix(fd, r.fd, n):
                    return True
                # Not the same bytes, unless the original was truncated (and maybe written again)
                # since this scan checked it, or while they were compared: copytruncate truncates
                # just after its copy. Then wait until the truncation is handled; the copy is
                # that stream's continuation, not a new file.
                if (os.fstat(r.fd).st_size < r.offset
                        or fingerprint(r.fd, self.cfg.fingerprint_bytes) != r.entry.fingerprint):
                    return True
        return False

    def _register_done(self, fd: int, path: str, fp: str, st: os.stat_result) -> None:
        entry = Entry(stream_id=stream_id_for(fp, st.st_dev, st.st_ino), fingerprint=fp, input_id=self.cfg.id,
                      path=path, dev=st.st_dev, ino=st.st_ino, offset=st.st_size, size=st.st_size, state="closed")
        n = min(TAIL_BYTES, st.st_size)
        entry.tail_len, entry.tail_hash = n, content_hash(os.pread(fd, n, st.st_size - n))
        self.registry.add(entry)
        log.info("%s is a copy of what was already read; nothing new in it", path)

    def _resume_offset(self, e: Entry) -> int:
        # In this process, reading resumes where the last reader stopped (its unacknowledged
        # batches are still in flight); after a restart, at the committed offset.
        return e.read_offset if e.stream_id in self.ledgers else e.offset

    def status(self) -> list[dict[str, object]]:
        out = []
        now = time.time()
        for r in self.readers.values():
            e = r.entry
            try:
                st = os.fstat(r.fd)
                e.size, mtime = st.st_size, st.st_mtime
            except OSError:
                mtime = now
            lag = max(0, e.size - e.offset)
            out.append({
                "input": self.cfg.id, "path": r.path, "stream": e.stream_id, "dev": e.dev, "inode": e.ino,
                "offset": e.offset, "read_offset": r.offset, "size": e.size, "lag_bytes": lag,
                # How long the newest unshipped write has waited (0 when caught up).
                "lag_seconds": round(max(0.0, now - mtime), 1) if lag else 0.0,
                "state": "deleted" if r.deleted else ("rotated" if r.moved_at else
                                                       ("reading" if r.offset < e.size else "idle")),
                "unacked_batches": r.ledger.unacked,
            })
        return out


def _last_line_end(path: str, size: int) -> int:
    """Offset just past the last newline, so `start_at: end` never starts mid-line."""
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            buf = f.read(step)
            nl = buf.rfind(b"\n")
            if nl >= 0:
                return pos - step + nl + 1
            pos -= step
    return 0
