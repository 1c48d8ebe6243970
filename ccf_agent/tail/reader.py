"""One open file: reads new bytes in large chunks and cuts them into complete lines.

The reader holds the file descriptor, so it keeps reading the same inode through a
rename or a delete. A trailing partial line is held until its newline arrives; a line
longer than `max_line_bytes` is cut there, tagged, and the rest of it skipped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from ccf_agent.acks import Ledger
from ccf_agent.batch import Batch
from ccf_agent.registry import Entry, content_hash

CHUNK = 1 << 20
TAIL_BYTES = 64


def fingerprint(fd: int, nbytes: int) -> str | None:
    """Hash of the file's first line (at most `nbytes`); None until that line is complete."""
    head = os.pread(fd, nbytes, 0)
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
    def __init__(self, fd: int, path: str, entry: Entry, ledger: Ledger, offset: int,
                 max_line_bytes: int) -> None:
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
        self.deleted = False
        self.deleted_at: float | None = None
        self.lines_truncated = 0
        entry.read_offset = offset

    @property
    def dev_ino(self) -> tuple[int, int]:
        return self.entry.dev, self.entry.ino

    def read(self, size: int = CHUNK) -> list[Batch]:
        """The batches in the next chunk; empty at end of file."""
        data = os.pread(self.fd, size, self.offset)
        if not data:
            return []
        start = self.offset - len(self.partial)
        self.offset += len(data)
        self.entry.read_offset = self.offset
        self.last_data = time.monotonic()
        batches: list[Batch] = []
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                batches.append(self._batch(start, self.offset, []))  # acknowledge the skipped bytes
                return batches
            self.skipping = False
            batches.append(self._batch(start, start + nl + 1, []))
            start += nl + 1
            data = data[nl + 1:]
        buf = self.partial + data if self.partial else data
        nl = buf.rfind(b"\n")
        if nl < 0:
            self.partial = buf
            if len(buf) > self.max_line:
                batches.append(self._batch(start, self.offset, [buf[: self.max_line]], truncated=True))
                self.lines_truncated += 1
                self.partial = b""
                self.skipping = True
            return batches
        self.partial = buf[nl + 1:]
        lines = buf[:nl].split(b"\n")
        if nl > self.max_line and any(len(line) > self.max_line for line in lines):
            batches.extend(self._cut_long(start, lines))
        else:
            batches.append(self._batch(start, start + nl + 1, lines))
        return batches

    def flush_partial(self) -> Batch | None:
        """Ship a partial last line that stayed without its newline (idle, or the file is done)."""
        if not self.partial:
            return None
        start = self.offset - len(self.partial)
        line, self.partial = self.partial, b""
        return self._batch(start, self.offset, [line])

    def _cut_long(self, start: int, lines: list[bytes]) -> Iterator[Batch]:
        run: list[bytes] = []
        run_start = pos = start
        for line in lines:
            if len(line) > self.max_line:
                if run:
                    yield self._batch(run_start, pos, run)
                    run = []
                self.lines_truncated += 1
                yield self._batch(pos, pos + len(line) + 1, [line[: self.max_line]], truncated=True)
                pos += len(line) + 1
                run_start = pos
                continue
            run.append(line)
            pos += len(line) + 1
        if run:
            yield self._batch(run_start, pos, run)

    def _batch(self, start: int, end: int, lines: list[bytes], truncated: bool = False) -> Batch:
        tail = (lines[-1] + b"\n")[-TAIL_BYTES:] if lines and not truncated and lines[-1] else None
        token = self.ledger.issue(end, end - start, tail)
        return Batch(self.entry, self.path, start, end, lines, token, truncated)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
