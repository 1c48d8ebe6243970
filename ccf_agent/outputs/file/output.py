"""A local NDJSON file output: for trying the agent without a server, and for archives.

Each document is written as one line with its `_id` alongside; a batch is acknowledged
after it was written and fsynced. A file cannot deduplicate, so a crash can repeat the
unacknowledged tail: readers dedupe on `_id`.

The file holds whole lines only. A write that fails part-way (a full disk) is cut off again
before the batch is written once more, and a partial last line left by a crash mid-write is cut
when the file is opened: its records were not acknowledged, so they come again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.fsutil import write_all
from ccf_agent.outputs.base import Fragment, Output
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.delivery.retry import Backoff

log = logging.getLogger("ccf_agent.outputs.file")

TAIL_SCAN = 64 << 10  # bytes read at a time, backwards, looking for the last newline


class FileOutput(Output):
    def __init__(self, cfg: OutputConfig) -> None:
        super().__init__(cfg)
        self.end = 0  # where the file's last whole line ends: what a failed write is cut back to

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        ids, docs = events.ids, events.docs
        parts: list[bytes] = []
        add = parts.extend
        for i in indices:
            add((b'{"_id":"', ids[i], b'","doc":', docs[i], b"}\n"))
        return b"".join(parts)

    async def run(self) -> None:
        fd = await self._open()
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max)
        try:
            while True:
                await self.wait_for_work()
                await self._write_batch(fd, backoff)
        finally:
            os.close(fd)

    async def _write_batch(self, fd: int, backoff: Backoff) -> None:
        # A method of its own so that the batch and its body are freed when it returns, not kept
        # alive while the loop waits for the next one.
        fragments = self.take(self.cfg.batch_max_docs, self.cfg.batch_max_bytes)
        self.in_flight += 1
        try:
            await asyncio.to_thread(self._write, fd, b"".join(f.body for f in fragments))
            self.stats.requests += 1
            backoff.reset()
            self.health.delivered()
            self.acked(fragments)
        except OSError as e:
            # Put them back and retry: never acknowledge what did not reach the disk.
            self.stats.request_errors += 1
            self.health.report("write", f"cannot write {self.cfg.path}: {e.strerror or e}; retrying", logging.ERROR)
            self._requeue(fragments)
            await backoff.wait()
        finally:
            self.in_flight -= 1

    def _write(self, fd: int, body: bytes) -> None:
        """Append `body` after the last whole line (cutting off what a failed write left), fsynced."""
        if os.fstat(fd).st_size != self.end:
            os.ftruncate(fd, self.end)
        try:
            write_all(fd, body)
        except OSError:
            try:
                os.ftruncate(fd, self.end)  # now if the disk lets us, else before the next write
            except OSError:
                pass
            raise
        self.end += len(body)

    def _requeue(self, fragments: list[Fragment]) -> None:
        for f in reversed(fragments):
            self.queue.appendleft(f)
            self.queued_bytes += len(f.body)
            self.queued_docs += f.count

    async def _open(self) -> int:
        """The file, once it can be opened: until then records wait queued (reading pauses when the
        queue is full) and the error shows in status, instead of the daemon dying on it."""
        assert self.cfg.path is not None
        backoff = Backoff(1.0, 30.0)
        while True:
            try:
                fd, self.end = await asyncio.to_thread(_open_append, self.cfg.path)
            except OSError as e:
                self.health.report("open", f"cannot open {self.cfg.path}: {e.strerror or e}; retrying", logging.ERROR)
                await backoff.wait()
                continue
            if not self.healthy:
                log.info("output %s: %s opened", self.name, self.cfg.path)
                self.health.delivered()
            return fd

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["path"] = self.cfg.path
        return s


def _open_append(path: str) -> tuple[int, int]:
    """The file opened for appending, and the end of its last whole line (a partial one is cut)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Read-write: the end of the file is read back to find its last whole line.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        end = whole_lines_end(fd, os.fstat(fd).st_size)
        if end != os.fstat(fd).st_size:
            log.warning("%s ended in a partial line (a write cut short by a crash); cut back to its last whole "
                        "line: those records were not acknowledged and are written again", path)
            os.ftruncate(fd, end)
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, end


def whole_lines_end(fd: int, size: int) -> int:
    """The offset just past the last newline in the first `size` bytes of `fd` (0 for none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - TAIL_SCAN)
        nl = os.pread(fd, pos - start, start).rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return FileOutput(cfg)
