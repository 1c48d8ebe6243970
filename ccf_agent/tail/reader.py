"""One open file: reads new bytes in large chunks and cuts them into complete lines.

The reader holds the file descriptor, so it keeps reading the same inode through a
rename or a delete. A trailing partial line is held until its newline arrives; a line
longer than `max_line_bytes` is cut there, tagged, and the rest of it skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ccf_agent.acks import Ledger
from ccf_agent.batch import Batch
from ccf_agent.registry import Entry, content_hash
from ccf_agent.tail.compressed import ERRORS as DECOMPRESSION_ERRORS
from ccf_agent.tail.compressed import Stream
from ccf_agent.tail.multiline import Multiline

if TYPE_CHECKING:
    from ccf_agent.pipeline.native import ReadAhead

log = logging.getLogger("ccf_agent.tail")

CHUNK = 1 << 17  # a batch's objects still fit the CPU cache (bench, alternating runs: 128 KiB ~7% cheaper per record than 64 KiB and 256 KiB)
TAIL_BYTES = 64


def fingerprint(fd: int, nbytes: int) -> str | None:
    """Hash of the file's first line (at most `nbytes`); None until that line is complete."""
    return fingerprint_of(os.pread(fd, nbytes, 0), nbytes)


def fingerprint_of(head: bytes, nbytes: int) -> str | None:
    """`fingerprint` of a stream whose first `nbytes` (or all, if shorter) are `head`."""
    nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    elif len(head) < nbytes:
        return None
    return content_hash(head)


def tail_matches(fd: int, entry: Entry) -> bool:
    """Do the bytes before the committed offset still read as they did when it was committed?"""
    if not entry.tail_len or entry.offset < entry.tail_len:
        return True
    return content_hash(os.pread(fd, entry.tail_len, entry.offset - entry.tail_len)) == entry.tail_hash


def same_prefix(fd_a: int, fd_b: int, nbytes: int) -> bool:
    return os.pread(fd_a, nbytes, 0) == os.pread(fd_b, nbytes, 0)


class FileReader:
    compressed = False  # a compressed rotation (CompressedReader): offsets are decompressed bytes

    def __init__(self, fd: int, path: str, entry: Entry, ledger: Ledger, offset: int,
                 max_line_bytes: int, multiline: Multiline | None = None) -> None:
        self.fd = fd
        self.path = path
        self.entry = entry
        self.ledger = ledger
        self.offset = offset  # next byte to read
        self.max_line = max_line_bytes
        self.partial = b""
        self.skipping = False  # inside the cut-off rest of an over-long line
        self.last_data = time.monotonic()
        self.moved_at: float | None = None  # when the path stopped pointing at this file
        self.rotated = False  # a rotated generation (moved, or found under a rotated name): finished, then closed
        self.deleted = False
        self.deleted_at: float | None = None
        self.checked_size = -1  # file size at the last truncation check (see TailInput._check_files)
        self.lines_truncated = 0
        # Multiline: lines of an event still open stay in the joiner; held_start is where they begin.
        self.multiline = multiline
        self.held_start = offset
        entry.read_offset = offset
        self.ahead: ReadAhead | None = None  # the input's, shared by its readers (one job at a time)

    @property
    def holds_event(self) -> bool:
        return self.multiline is not None and self.multiline.pending_lines > 0

    @property
    def unshipped_from(self) -> int:
        """Where this stream's unshipped bytes start: a held partial line or open event was read
        but not shipped, so a copy of this file (copytruncate) must continue from there."""
        if self.holds_event:
            return self.held_start
        return self.offset - len(self.partial)

    @property
    def dev_ino(self) -> tuple[int, int]:
        return self.entry.dev, self.entry.ino

    def read(self, size: int = CHUNK) -> list[Batch]:
        """The batches in the next chunk; empty at end of file."""
        ahead = self.ahead
        # A job the thread has not begun is taken back and read here: under CPU contention the
        # woken thread can wait 100 ms and more for a CPU, and the event loop would wait with it.
        if ahead is not None and ahead.owner is self and not ahead.withdraw():
            got = self._take(ahead, size)
        else:
            got = None
        if got is not None and got[0]:
            batches, full = got
        else:  # nothing read ahead, or only more of an unfinished line: read on now
            want = max(size, len(self.partial))  # a long line still open doubles the read: linear, not quadratic
            data = self._read_at(want)
            if not data:
                return []
            batches, full = self._cut(data), len(data) == want
        if full and ahead is not None and ahead.owner is None and not self.skipping and self.multiline is None:
            # More is likely there: the thread reads and scans it while these batches are processed.
            if not ahead.submit(self, self.fd, self.offset, max(size, len(self.partial)), self.partial):
                log.warning("%s: no read-ahead thread (%s); reading on one core", self.path, ahead.error)
                self.ahead = None
        return batches

    def _read_at(self, want: int) -> bytes:
        return os.pread(self.fd, want, self.offset)

    def _take(self, ahead: ReadAhead, size: int) -> tuple[list[Batch], bool] | None:
        """The chunk read ahead, as `_cut` would have made it, and whether it was a full read of
        `size` (as `read` asked for it); None when it no longer follows (or found the end of the
        file, which may have grown since): then read now."""
        _, offset, partial, block, rest, nread, scan = ahead.take()
        if offset != self.offset or partial is not self.partial or not nread or self.skipping:
            return None
        full = nread == max(size, len(partial))
        if block is None or len(block) - 1 > self.max_line:  # not the common case: as if read now
            return self._cut((rest if block is None else block + rest)[len(partial):]), full
        start = offset - len(partial)
        self._advance(nread)
        self.partial = rest
        batch = self._batch(start, start + len(block), data=block)
        batch.scan = scan
        return [batch], full

    def _advance(self, nread: int) -> None:
        self.offset += nread
        self.entry.read_offset = self.offset
        self.last_data = time.monotonic()

    def _cut(self, data: bytes) -> list[Batch]:
        """The batches of newly read bytes, after the held partial line."""
        start = self.offset - len(self.partial)
        self._advance(len(data))
        batches: list[Batch] = []
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                batches.extend(self._emit(start, self.offset, []))  # acknowledge the skipped bytes
                return batches
            self.skipping = False
            batches.extend(self._emit(start, start + nl + 1, []))
            start += nl + 1
            data = data[nl + 1:]
        nl = data.rfind(b"\n")
        if nl >= 0 and self.multiline is None and len(self.partial) + nl <= self.max_line:
            # The common case (so no line is over max_line): one copy at most, of the held partial
            # line and the chunk's complete lines.
            whole = nl + 1 == len(data)
            block = data if whole and not self.partial else b"".join((self.partial, memoryview(data)[: nl + 1]))
            self.partial = b"" if whole else data[nl + 1:]
            batches.append(self._batch(start, start + len(block), data=block))
            return batches
        buf = self.partial + data if self.partial else data
        nl = buf.rfind(b"\n")
        if nl < 0:
            self.partial = buf
            if len(buf) > self.max_line:
                batches.extend(self._emit(start, self.offset, [buf[: self.max_line]], truncated=True))
                self.lines_truncated += 1
                self.partial = b""
                self.skipping = True
            return batches
        lines = buf.split(b"\n")
        self.partial = lines.pop()
        if nl > self.max_line and any(len(line) > self.max_line for line in lines):
            for start_, end_, lines_, cut in self._cut_long(start, lines):
                batches.extend(self._emit(start_, end_, lines_, cut))
        else:
            batches.extend(self._emit(start, start + nl + 1, lines))
        return batches

    def flush_partial(self) -> list[Batch]:
        """Ship a partial last line that stayed without its newline (idle, or the file is done)."""
        if not self.partial:
            return []
        start = self.offset - len(self.partial)
        line, self.partial = self.partial, b""
        return self._emit(start, self.offset, [line], partial=True)

    def flush_multiline(self, now: float | None = None) -> list[Batch]:
        """The open multiline event, when it timed out (or, with now=None, unconditionally)."""
        ml = self.multiline
        if ml is None or not ml.pending_lines or (now is not None and not ml.expired(now)):
            return []
        nbytes = ml.pending_bytes
        event, _ = ml.flush()
        start = self.held_start
        self.held_start = start + nbytes
        return [self._batch(start, start + nbytes, [event] if event is not None else [])]

    def _emit(self, start: int, end: int, lines: list[bytes], truncated: bool = False,
              partial: bool = False) -> list[Batch]:
        """Batches for lines [start, end): through the multiline joiner when there is one.

        Offsets stay exact: a batch ends at the end of its last complete event, so lines of an
        event still open are committed only once the event is."""
        ml = self.multiline
        if ml is None:
            return [self._batch(start, end, lines, truncated)]
        if truncated or partial or not lines:
            # Not joinable: the open event (which precedes these bytes) goes first, as it is.
            return [*self.flush_multiline(), self._batch(start, end, lines, truncated)]
        if not ml.pending_lines:
            self.held_start = start
        events, _ = ml.push(lines, time.monotonic())
        if not events:
            return []
        first = self.held_start
        covered = sum(len(e) + 1 for e in events)
        self.held_start = first + covered
        return [self._batch(first, first + covered, events)]

    def _cut_long(self, start: int, lines: list[bytes]) -> Iterator[tuple[int, int, list[bytes], bool]]:
        run: list[bytes] = []
        run_start = pos = start
        for line in lines:
            if len(line) > self.max_line:
                if run:
                    yield run_start, pos, run, False
                    run = []
                self.lines_truncated += 1
                yield pos, pos + len(line) + 1, [line[: self.max_line]], True
                pos += len(line) + 1
                run_start = pos
                continue
            run.append(line)
            pos += len(line) + 1
        if run:
            yield run_start, pos, run, False

    def _batch(self, start: int, end: int, lines: list[bytes] | None = None, truncated: bool = False,
               data: bytes | None = None) -> Batch:
        if data is not None:  # the end of its last line, newline included, unless that line is empty
            last = data.rfind(b"\n", 0, len(data) - 1) + 1
            tail = data[max(last, len(data) - TAIL_BYTES):] if len(data) - last > 1 else None
        else:
            tail = (lines[-1] + b"\n")[-TAIL_BYTES:] if lines and not truncated and lines[-1] else None
        token = self.ledger.issue(end, end - start, tail)
        return Batch(self.entry, self.path, start, end, lines, token, truncated, data)

    def close(self) -> None:
        if self.ahead is not None and self.ahead.owner is self:
            self.ahead.drop()  # the thread may be reading this descriptor: let it finish first
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class CompressedReader(FileReader):
    """A compressed rotation continuing its stream: decompressed bytes read forward, one chunk per
    read on the loop (the seek to the resume offset was done in a thread), without read-ahead.
    A decompression error ends the file where it happened; `error` says why."""

    compressed = True

    def __init__(self, fd: int, path: str, entry: Entry, ledger: Ledger, offset: int, max_line_bytes: int,
                 multiline: Multiline | None, stream: Stream) -> None:
        super().__init__(fd, path, entry, ledger, offset, max_line_bytes, multiline)
        self.stream = stream
        self.rotated = True
        self.error: str | None = None
        self._ready: bytes | None = None  # decompressed by prefetch, for the next read

    async def prefetch(self, size: int) -> None:
        """Decompress the next read's bytes in a thread: bzip2 works a 900 KB block at a time
        (50 ms of CPU), which the event loop must not wait for."""
        if self._ready is None:
            self._ready = await asyncio.to_thread(self._decompress, max(size, len(self.partial)))

    def _decompress(self, want: int) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self.stream.read(want)
        except DECOMPRESSION_ERRORS as e:
            self.error = str(e) or type(e).__name__
            return b""

    def _read_at(self, want: int) -> bytes:
        data, self._ready = self._ready, None
        return self._decompress(want) if data is None else data

    def close(self) -> None:
        self.stream.close()
        super().close()
