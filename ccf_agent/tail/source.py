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

Rotated generations are found by logrotate's names (combined.log.1, .2.gz, ...; with dateext
combined.log-20240115, .gz) and the `rotated_paths` globs. A compressed one is never a new log:
it continues a stream the registry knows (identified by the fingerprint of its decompressed
start, resumed at the stream's offset in decompressed bytes), or it is a generation written while
the agent was stopped, which no scan could see (see `_consider_compressed`). Rotated generations
are read before live files, oldest first: after an outage the backlog ships in the order written.
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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccf_agent.acks import Flow, Ledger
from ccf_agent.batch import Batch
from ccf_agent.config import InputConfig
from ccf_agent.fsutil import descriptor_limit, descriptors_free, descriptors_held
from ccf_agent.pipeline.native import ScanSpec, read_ahead
from ccf_agent.registry import Entry, Registry, content_hash, stream_id_for
from ccf_agent.tail import compressed
from ccf_agent.tail.multiline import Multiline
from ccf_agent.tail.reader import (
    CHUNK,
    TAIL_BYTES,
    CompressedReader,
    FileReader,
    fingerprint,
    fingerprint_of,
    same_prefix,
    tail_matches,
)
from ccf_agent.tail.watch import DirWatcher

if TYPE_CHECKING:
    from ccf_agent.pipeline.native import ReadAhead

log = logging.getLogger("ccf_agent.tail")

MIN_POLL = 0.005
FD_RESERVE = 32  # descriptors log files leave to output connections, state files and the status endpoint
FD_RETRY = 1.0  # seconds between attempts to open files while descriptors are short


def chain_globs(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Where logrotate puts a log's rotations: combined.log.1, combined.log.2.gz, ... and, with
    `dateext`, combined.log-20240115 (.gz), whatever the `dateformat` after the dash."""
    return tuple(g for p in paths for g in (p + ".[0-9]*", p + "-[0-9]*"))


@dataclass
class _Candidate:
    """A compressed file that may continue a stream (or be an unseen generation): to be probed."""

    path: str
    fd: int
    st: os.stat_result

    @property
    def key(self) -> tuple[int, int]:
        return self.st.st_dev, self.st.st_ino

    @property
    def sig(self) -> tuple[int, int]:  # a compressed file that changed is looked at again
        return self.st.st_size, self.st.st_mtime_ns


class TailInput:
    def __init__(self, cfg: InputConfig, registry: Registry, flow: Flow,
                 dispatch: Callable[[Batch], None], wait_for_room: Callable[[], Awaitable[None]],
                 first_run: bool = False, scan_spec: ScanSpec | None = None,
                 has_room: Callable[[Ledger], bool] | None = None) -> None:
        self.cfg = cfg
        # This input's read-ahead thread (one for all its files, a job at a time), doing what the
        # pipeline's scan spec asks; None: every read on the loop's thread. Closed when run ends.
        self.read_ahead: ReadAhead | None = read_ahead(scan_spec)
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
        self.rotated_globs = (*cfg.rotated_paths, *chain_globs(cfg.paths))
        # A compressed generation is an unseen one only if written between the last run and our first scan.
        self.watched_before = registry.previous_run_at is not None and any(
            e.input_id == cfg.id for e in registry.entries.values())
        self.started_at: float | None = None
        self._probes: dict[tuple[int, int], _Candidate] = {}
        # Rotated files known to continue nothing (by their size and mtime): not looked at again.
        self._settled: dict[tuple[int, int], tuple[int, int]] = {}
        self._unreadable: dict[tuple[int, int], tuple[tuple[int, int], float]] = {}  # first failure
        self._heads: dict[tuple[int, int], tuple[tuple[int, int], str | None]] = {}  # fingerprints, by sig
        self._seen: set[tuple[int, int]] = set()  # the input's files at the last scan
        self._missing: dict[str, float] = {}  # streams whose file this process found gone, since when
        self._warned: set[str] = set()
        self._rescan = asyncio.Event()
        self._pause: asyncio.Timeout | None = None  # while reading waits for room
        self._wake = asyncio.Event()
        # One regex for every exclusion glob: a scan tests each path once, not once per glob.
        self._exclude = re.compile("|".join(fnmatch.translate(p) for p in cfg.exclude) or "(?!)")
        hides = [x for x in cfg.exclude for p in cfg.paths if fnmatch.fnmatch(os.path.basename(p) + ".2.gz", x)]
        if hides:
            log.warning("input %s: exclude %s also hides logrotate's compressed rotations, which the agent "
                        "reads only to finish a stream an outage left unread (never as new logs): remove it "
                        "unless losing those records is meant", cfg.id, hides[0])
        self.dirty: set[tuple[int, int]] = set()
        self.by_path: dict[str, tuple[int, int]] = {}
        self.watcher: DirWatcher = DirWatcher(self._changed, self._structure_changed)
        self.bytes_read = 0
        self.bytes_read_ahead = 0  # of those, read and scanned by the read-ahead thread
        self.retry_open = False  # a file could not be opened for want of descriptors: scan again soon
        self._retry_at = 0.0
        self.fd_short_since: float | None = None  # monotonic start of the current shortage
        self.open_failures = 0  # opens that failed for want of descriptors
        self.scans = 0
        self.lost_bytes = 0  # unread bytes of deleted files given up on (deleted_max_*), or of streams gone
        self.lost_files = 0  # files gone (or undecompressable) before they were read to their end
        self.opened = 0  # readers started, ever

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
                if self._probes:  # compressed rotations a scan found: resolved before reading on
                    await self._probe_compressed()
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
                    if any(r.rotated or r.partial or r.holds_event for r in self.readers.values()):
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
            for c in self._probes.values():
                os.close(c.fd)
            self._probes.clear()
            for reader in self.readers.values():
                reader.close()
                reader.entry.state = "closed"  # nobody holds it now (a reload's next input will)
            self.readers.clear()
            if self.read_ahead is not None:
                self.read_ahead.close()

    def _reading_order(self) -> list[tuple[int, int]]:
        """Rotated generations first, oldest first, then live files: after an outage the backlog
        ships in the order it was written, and a rotation chain finishes in order."""
        rotated: list[tuple[float, tuple[int, int]]] = []
        live: list[tuple[int, int]] = []
        for key in self.dirty:
            reader = self.readers.get(key)
            if reader is not None and reader.rotated:
                try:
                    rotated.append((os.fstat(reader.fd).st_mtime, key))
                except OSError:
                    rotated.append((0.0, key))
            else:
                live.append(key)
        rotated.sort()
        return [k for _, k in rotated] + live

    async def _read_dirty(self, notified: bool) -> bool:
        """One chunk from each file with news, except that while a rotated generation has data it
        is the only one read; files at their end leave the dirty set."""
        progressed = False
        for key in self._reading_order():
            reader = self.readers.get(key)
            if reader is None:
                self.dirty.discard(key)
                continue
            if not self.flow.has_room:
                opened = self.opened
                await self._wait_room()
                if self.opened != opened:
                    return True  # files opened during the pause may be older: order again
            if self.has_room is not None:
                ledger = self.ledgers.get(reader.entry.stream_id)
                if ledger is not None and not self.has_room(ledger):
                    continue  # stays dirty: read when its outputs have room (room_again), the others read on
            if isinstance(reader, CompressedReader):
                await reader.prefetch(CHUNK)
            if reader.fd < 0:
                continue  # closed while waiting
            if self._dispatch_read(reader.read(CHUNK)):
                progressed = True
                await asyncio.sleep(0)  # let outputs and acknowledgements run between chunks
                if self._rescan.is_set():
                    break  # a rename storm: find the new files before reading on
                if reader.rotated:
                    break  # older data first: nothing newer is read until this generation is done
            else:
                self._at_eof(reader)
                if notified and not reader.rotated and not reader.partial and not reader.holds_event:
                    self.dirty.discard(key)
        return progressed

    def _dispatch_read(self, batches: list[Batch]) -> bool:
        # Its own function so that no name holds the chunks after dispatch: the reading loop
        # would otherwise keep them alive while it waits for room.
        for b in batches:
            self.bytes_read += b.end - b.start
            if b.scan is not None:
                self.bytes_read_ahead += b.end - b.start
            self.dispatch(b)
        return bool(batches)

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
                if self._probes:  # a compressed rotation continues a stream given up meanwhile
                    await self._probe_compressed()
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
        # What the reader held unshipped (a line's first half) is read again by whoever continues
        # the stream: after copytruncate the copy holds that line whole.
        reader.entry.read_offset = reader.unshipped_from
        reader.close()
        self.readers.pop(reader.dev_ino, None)
        self.dirty.discard(reader.dev_ino)
        if self.by_path.get(reader.path) == reader.dev_ino:
            del self.by_path[reader.path]
        entry = reader.entry
        entry.state = state
        entry.updated = time.time()
        self.registry.dirty = True
        self._settled.clear()  # a compressed file passed over may continue this stream now

    def _finish(self, reader: FileReader, state: str) -> None:
        """A rotated generation read to its end: ship what it held back, then close it."""
        for batch in (*reader.flush_partial(), *reader.flush_multiline()):
            self.dispatch(batch)
        self.stop_file(reader, state)
        log.info("%s read to its end (offset %d): closed", reader.path, reader.offset)

    # ------------------------------------------------------------------ end of file: rotation, truncation

    def _at_eof(self, reader: FileReader) -> None:
        if isinstance(reader, CompressedReader):
            if reader.error is not None:
                self.lost_files += 1
                log.error("cannot decompress %s past offset %d (%s): the records after that are LOST",
                          reader.path, reader.offset, reader.error)
            self._finish(reader, "done")
            return
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
            if not moved and reader.rotated:  # found under a rotated name: done once idle for rotate_wait
                if now - reader.last_data >= self.cfg.rotate_wait:
                    self._finish(reader, "done")
                return
            if moved:
                reader.moved_at = now
                reader.rotated = True
                reader.deleted = st.st_nlink == 0
                if self.by_path.get(reader.path) == reader.dev_ino:
                    del self.by_path[reader.path]
                self._rescan.set()  # pick up the new file at the old path at once
                log.info("%s was %s; finishing the old file", reader.path,
                         "deleted" if reader.deleted else "rotated")
            return
        # The old file is finished once it stayed idle for rotate_wait after it moved.
        if now - max(reader.last_data, reader.moved_at) >= self.cfg.rotate_wait:
            self._finish(reader, "gone" if reader.deleted or st.st_nlink == 0 else "done")

    # ------------------------------------------------------------------ discovery

    def scan(self) -> None:
        self.scans += 1
        if self.started_at is None:
            self.started_at = time.time()
        candidates: dict[str, bool] = {}
        # Log files may take the descriptors the process has, less a reserve for output connections,
        # state files and the status endpoint: a shortage must not stop offsets being saved. (glob
        # lists directories through a descriptor too and, without one, silently finds nothing.)
        room = descriptors_free(FD_RESERVE)
        if room <= 0:
            self._short_of_descriptors("the directories of " + ", ".join(self.cfg.paths))
        else:
            for pattern in self.rotated_globs:
                for p in glob.glob(pattern):
                    candidates[p] = False
            for pattern in self.cfg.paths:
                for p in glob.glob(pattern):
                    candidates[p] = True
        found: list[tuple[str, bool, os.stat_result]] = []
        for path, may_start in sorted(candidates.items()):
            if self._excluded(path):
                continue
            try:
                found.append((path, may_start, os.stat(path)))
            except OSError:
                continue
        self._seen = {(st.st_dev, st.st_ino) for _, _, st in found if stat.S_ISREG(st.st_mode)}
        self._check_files()
        self._watch_dirs()
        added = False
        held_fps = {r.entry.fingerprint for r in self.readers.values()}
        for path, may_start, st in found:
            key = (st.st_dev, st.st_ino)
            held = self.by_path.get(path)
            if held is not None and held != key and held in self.readers:
                self.dirty.add(held)  # its path now names another file: let _at_eof see the move
                self.readers[held].rotated = True  # (and read it before the file now at its path)
            if not stat.S_ISREG(st.st_mode):
                self._not_a_file(path, st.st_mode)
                continue
            if key in self.readers:
                continue
            if compressed.is_compressed_name(path):
                self._consider_compressed(path, st)
                continue
            if self._unchanged_closed(st) or self._settled.get(key) == (st.st_size, st.st_mtime_ns):
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
            open_before = len(self.readers)
            added |= self._open(path, may_start, held_fps)
            room -= len(self.readers) - open_before
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
            if reader.compressed:  # never grows nor shrinks: read until its end
                self.dirty.add(reader.dev_ino)
                continue
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
            if not reader.compressed:
                reader.entry.size = st.st_size
            if st.st_nlink == 0:
                if reader.deleted_at is None:
                    reader.deleted_at = now
                left = reader.entry.size - reader.offset
                if left > 0 and (now - reader.deleted_at > self.cfg.deleted_max_wait or left > self.cfg.deleted_max_bytes):
                    self._give_up_deleted(reader, left, now - reader.deleted_at)
                continue
            idle = now - reader.last_data
            if reader.compressed:
                continue  # not idle: waiting for room, or about to be finished
            if (reader.moved_at is None and not reader.partial and reader.offset >= st.st_size
                    and idle >= self.cfg.close_inactive):
                log.debug("closing %s: idle for %.0fs (close_inactive)", reader.path, idle)
                self.stop_file(reader, "closed")
        self._forget_gone()

    def _give_up_deleted(self, reader: FileReader, left: int, waited: float) -> None:
        """A deleted file still unread past deleted_max_*: free the disk. Its records are lost,
        unless logrotate compressed it first: then its compressed rotation continues the stream."""
        copy = None if reader.compressed else self._compressed_copy(reader.entry.fingerprint)
        if copy is not None:
            log.warning("%s was deleted with %d bytes still unread; closing it after %.0fs to free the disk "
                        "(deleted_max_wait / deleted_max_bytes): %s continues it", reader.path, left, waited, copy)
            self.stop_file(reader, "gone")
            self._news()
            return
        self.lost_bytes += left
        self.lost_files += 1
        log.error("%s was deleted with %d bytes still unread; closing it after %.0fs to free the "
                  "disk (deleted_max_wait / deleted_max_bytes): those records are LOST",
                  reader.path, left, waited)
        self.stop_file(reader, "gone")

    def _compressed_copy(self, fp: str) -> str | None:
        """A compressed rotation whose decompressed start is `fp`'s, if any (a cheap look: the
        probe decides whether it really continues the stream)."""
        for pattern in self.rotated_globs:
            for path in glob.glob(pattern):
                if not compressed.is_compressed_name(path) or self._excluded(path):
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    if self._head_fingerprint(_Candidate(path, fd, os.fstat(fd))) == fp:
                        return path
                except (compressed.Unreadable, OSError):
                    pass
                finally:
                    os.close(fd)
        return None

    def _forget_gone(self) -> None:
        """Drop streams whose file is none of the input's files (live or rotated) any more, once
        this process has seen them missing for forget_after: a file that rotated away while the
        agent was stopped is looked for first. A stream that was never read to its end is
        reported lost."""
        now = time.time()
        if self._probes:
            return  # one of the compressed files not resolved yet may continue a stream missing
        held = {r.entry.stream_id for r in self.readers.values()}
        mine = [e for e in self.registry.entries.values() if e.input_id == self.cfg.id]
        # An inode is the file of the newest stream on it (an older one's file was deleted and the
        # inode reused), and of the stream read from it if one is.
        owner: dict[tuple[int, int], Entry] = {}
        for e in sorted(mine, key=lambda e: (e.stream_id in held, e.updated)):
            owner[(e.dev, e.ino)] = e
        for e in mine:
            if e.stream_id in held:
                continue
            if (e.dev, e.ino) in self._seen and owner[(e.dev, e.ino)] is e:
                self._missing.pop(e.stream_id, None)
                continue
            since = self._missing.setdefault(e.stream_id, now)
            ledger = self.ledgers.get(e.stream_id)
            if (now - since < self.cfg.forget_after or now - e.updated < self.cfg.forget_after
                    or (ledger is not None and ledger.unacked)):
                continue
            self._report_unfinished(e)
            del self.registry.entries[e.stream_id]
            self.ledgers.pop(e.stream_id, None)
            self._missing.pop(e.stream_id, None)
            self.registry.dirty = True

    def _report_unfinished(self, e: Entry) -> None:
        """A stream forgotten before it was read to its end: the file and every rotation of it are gone."""
        unread = max(0, e.size - self._resume_offset(e))
        if e.state in ("done", "truncated") or (e.state == "gone" and not unread):
            return  # read to its end, or replaced by a new stream on purpose
        self.lost_files += 1
        self.lost_bytes += unread
        log.error("%s (stream %s, read to offset %d of %d) is gone, and no rotation of it was found "
                  "(deleted by logrotate's rotate N before it was shipped, or named outside rotated_paths): "
                  "%d bytes known unread and whatever was written to it after %s are LOST",
                  e.path, e.stream_id, self._resume_offset(e), e.size, unread,
                  time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.updated)))

    def _excluded(self, path: str) -> bool:
        return self._exclude.match(os.path.basename(path)) is not None or self._exclude.match(path) is not None

    def _unchanged_closed(self, st: os.stat_result) -> bool:
        for e in self.registry.by_inode(st.st_dev, st.st_ino):
            if e.state in ("closed", "done") and e.size == st.st_size and self._resume_offset(e) >= st.st_size:
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
        reader = self._start(fd, path, st, entry, offset, st.st_size)
        reader.rotated = not may_start
        held_fps.add(entry.fingerprint)
        log.info("%s %s at offset %d (size %d)", "reading" if is_new else "resuming", path, offset, st.st_size)
        return is_new

    def _start(self, fd: int, path: str, st: os.stat_result, entry: Entry, offset: int, size: int,
               stream: compressed.Stream | None = None) -> FileReader:
        """A reader for the stream `entry` on the open file `fd`, from `offset`."""
        entry.path, entry.dev, entry.ino, entry.state, entry.size = path, st.st_dev, st.st_ino, "live", size
        entry.updated = time.time()
        ledger = self.ledgers.get(entry.stream_id)
        if ledger is None or ledger.entry is not entry:
            ledger = self.ledgers[entry.stream_id] = Ledger(entry, self.registry, self.flow)
        opts = self.cfg.options
        multiline = Multiline(opts.multiline) if opts.multiline is not None else None
        reader: FileReader
        if stream is not None:
            reader = CompressedReader(fd, path, entry, ledger, offset, self.cfg.max_line_bytes, multiline, stream)
        else:
            reader = FileReader(fd, path, entry, ledger, offset, self.cfg.max_line_bytes, multiline)
            if multiline is None:
                reader.ahead = self.read_ahead
        key = (st.st_dev, st.st_ino)
        self.readers[key] = reader
        self.by_path[path] = key
        self.dirty.add(key)
        self._missing.pop(entry.stream_id, None)
        self.opened += 1
        return reader

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
        if not may_start and any(r.compressed and r.entry.fingerprint == fp for r in self.readers.values()):
            return None  # its stream goes on from a compressed rotation: that one is read first
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
            # Rotated before we were watching: not ours to ship (nor to open at every scan: logrotate
            # keeps `rotate 30` of them).
            self._settled[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns)
            return None
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
            if r.entry.fingerprint == fp and r.fd >= 0 and not r.compressed:
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

    # ------------------------------------------------------------------ compressed rotations

    def _consider_compressed(self, path: str, st: os.stat_result) -> None:
        """A compressed file is read only if it continues one of this input's streams, or if it is
        a generation written while the agent was stopped (between the last run and this one's first
        scan) that continues nothing: no scan could have seen it. Deciding decompresses it, so it is
        queued for `_probe_compressed` (threads); what was decided is remembered by size and mtime."""
        key = (st.st_dev, st.st_ino)
        if key in self._probes or self._settled.get(key) == (st.st_size, st.st_mtime_ns):
            return
        if any(e.state == "done" for e in self.registry.by_inode(*key)):
            self._settled[key] = (st.st_size, st.st_mtime_ns)  # read to its end already
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        self._probes[key] = _Candidate(path, fd, st)

    def _head_fingerprint(self, c: _Candidate) -> str | None:
        """The fingerprint of a compressed file's decompressed start (cached: bzip2 decompresses
        a whole 900 KB block for it). Raises Unreadable. Blocks: run it in a thread."""
        cached = self._heads.get(c.key)
        if cached is not None and cached[0] == c.sig:
            return cached[1]
        fp = fingerprint_of(compressed.head(c.fd, self.cfg.fingerprint_bytes), self.cfg.fingerprint_bytes)
        self._heads[c.key] = (c.sig, fp)
        return fp

    async def _probe_compressed(self) -> None:
        """Resolve the queued compressed files, oldest first, each decompressed in a thread: whose
        stream it starts, then (if that may matter) its size and the bytes where each stream with
        its fingerprint has its committed offset end, to tell whether it continues that stream."""
        for key, c in sorted(self._probes.items(), key=lambda kv: kv[1].st.st_mtime):
            try:
                choice = await self._resolve_compressed(c)
            finally:
                del self._probes[key]
            if choice is None:
                os.close(c.fd)
                continue
            entry, offset, size = choice
            try:
                stream = await asyncio.to_thread(compressed.open_at, c.fd, offset)
            except compressed.Unreadable as e:
                os.close(c.fd)
                log.error("cannot decompress %s to offset %d (%s)", c.path, offset, e)
                continue
            if any(r.entry.stream_id == entry.stream_id for r in self.readers.values()):  # taken meanwhile
                stream.close()
                os.close(c.fd)
                continue
            self._start(c.fd, c.path, c.st, entry, offset, size, stream)
            log.info("%s %s at offset %d (%d bytes decompressed)", "resuming" if offset else "reading",
                     c.path, offset, size)
            self.registry.save()  # new streams are persisted before any of their records leave

    async def _resolve_compressed(self, c: _Candidate) -> tuple[Entry, int, int] | None:
        """(stream, offset to read from, decompressed size), or None: not to be read (now)."""
        try:
            fp = await asyncio.to_thread(self._head_fingerprint, c)
        except (compressed.Unreadable, OSError) as e:
            if self._give_up_unreadable(c.key, c.sig):
                self._report_unreadable(c.path, c.st, str(e))
            return None
        entries = [e for e in self.registry.by_fingerprint(fp or "") if e.input_id == self.cfg.id]
        if fp is not None and any(e.state == "live" for e in entries):
            return None  # its stream is still read from the plain file (compressed meanwhile): later
        unfinished = [e for e in entries if not (e.state in ("done", "gone") and self._resume_offset(e) >= e.size)]
        new_generation = (self.watched_before and self.registry.previous_run_at is not None
                          and self.registry.previous_run_at < c.st.st_mtime <= (self.started_at or time.time()))
        if fp is None or not (unfinished or new_generation):
            self._settled[c.key] = c.sig
            return None
        windows = [(e.offset - e.tail_len, e.offset) for e in entries if e.tail_len and e.offset >= e.tail_len]
        found = await asyncio.to_thread(compressed.probe, c.fd, windows)
        if found.error is not None and not self._give_up_unreadable(c.key, c.sig):
            return None  # try again at a later scan (still being written?)
        self._settled[c.key] = c.sig  # whatever follows, this file is decided
        choice = self._continuation(c, fp, entries, new_generation, found)
        if found.error is not None and choice is None:
            self._report_unreadable(c.path, c.st, found.error)  # else the reader reports where it stops
        return None if choice is None else (*choice, found.size)

    def _give_up_unreadable(self, key: tuple[int, int], sig: tuple[int, int]) -> bool:
        """A compressed file that cannot be decompressed (to its end): logrotate may still be
        writing it, so it is given up only once it stayed so, unchanged, for rotate_wait."""
        now = time.monotonic()
        first = self._unreadable.get(key)
        if first is None or first[0] != sig:
            self._unreadable[key] = (sig, now)
            return False
        if now - first[1] < self.cfg.rotate_wait:
            return False
        del self._unreadable[key]
        self._settled[key] = sig
        return True

    def _report_unreadable(self, path: str, st: os.stat_result, why: str) -> None:
        """Counted lost if it may hold records not shipped: written since the agent last watched,
        or while a stream of this input is unfinished."""
        if st.st_mtime > self.watching_since or any(e.input_id == self.cfg.id and e.state not in ("done", "live")
                                                    for e in self.registry.entries.values()):
            self.lost_files += 1
            log.error("cannot decompress %s (%s): records in it that were not shipped yet are LOST", path, why)

    def _continuation(self, c: _Candidate, fp: str, entries: list[Entry], new_generation: bool,
                      found: compressed.Probe) -> tuple[Entry, int] | None:
        def holds(e: Entry) -> bool:  # the stream's bytes where its committed offset ends
            if found.size < e.offset:
                return False
            if not e.tail_len or e.offset < e.tail_len:
                return True
            return content_hash(found.windows.get((e.offset - e.tail_len, e.offset), b"")) == e.tail_hash

        for e in sorted(entries, key=lambda e: e.updated, reverse=True):
            if e.state == "live" or not holds(e):
                continue
            offset = self._resume_offset(e)
            if found.size > offset:
                log.info("%s continues %s (same content) from offset %d", c.path, e.path, offset)
                return e, offset
            if e.state == "closed":
                e.state = "done"  # nothing more in its last rotation: done, not lost
                self.registry.dirty = True
            return None
        if new_generation and found.size > 0:
            entry = Entry(stream_id=stream_id_for(fp, *c.key), fingerprint=fp, input_id=self.cfg.id,
                          path=c.path, dev=c.key[0], ino=c.key[1], offset=0)
            self.registry.add(entry)
            log.info("%s was rotated and compressed while the agent was stopped: reading it", c.path)
            return entry, 0
        return None

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
                mtime = st.st_mtime
                if not r.compressed:
                    e.size = st.st_size
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
