"""A local NDJSON file output: for trying the agent without a server, and for archives.

Each document is written as one line with its `_id` alongside; a batch is acknowledged
after it was written and fsynced. A file cannot deduplicate, so a crash can repeat the
unacknowledged tail: readers dedupe on `_id`.
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
from ccf_agent.outputs.base import Output
from ccf_agent.outputs.deadletter import DeadLetters

log = logging.getLogger("ccf_agent.outputs.file")


class FileOutput(Output):
    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        ids, docs = events.ids, events.docs
        parts: list[bytes] = []
        add = parts.extend
        for i in indices:
            add((b'{"_id":"', ids[i], b'","doc":', docs[i], b"}\n"))
        return b"".join(parts)

    async def run(self) -> None:
        fd = await self._open()
        try:
            while True:
                await self.wait_for_work()
                fragments = self.take(self.cfg.batch_max_docs, self.cfg.batch_max_bytes)
                self.in_flight += 1
                try:
                    body = b"".join(f.body for f in fragments)
                    await asyncio.to_thread(write_all, fd, body)
                    self.stats.requests += 1
                    self.acked(fragments)
                except OSError as e:
                    # Put them back and retry: never acknowledge what did not reach the disk.
                    self.health.report("write", f"cannot write {self.cfg.path}: {e.strerror}", logging.ERROR)
                    for f in reversed(fragments):
                        self.queue.appendleft(f)
                        self.queued_bytes += len(f.body)
                        self.queued_docs += f.count
                    await asyncio.sleep(1.0)
                finally:
                    self.in_flight -= 1
        finally:
            os.close(fd)

    async def _open(self) -> int:
        """The file, once it can be opened: until then records wait queued (reading pauses when the
        queue is full) and the error shows in status, instead of the daemon dying on it."""
        assert self.cfg.path is not None
        logged = None
        while True:
            try:
                fd = await asyncio.to_thread(_open_append, self.cfg.path)
            except OSError as e:
                message = self.health.report("open", f"cannot open {self.cfg.path}: {e.strerror or e}; retrying",
                                             logging.ERROR)
                logged = message
                await asyncio.sleep(1.0)
                continue
            if logged is not None:
                log.info("output %s: %s opened", self.name, self.cfg.path)
                self.health.delivered()
            return fd

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["path"] = self.cfg.path
        return s


def _open_append(path: str) -> int:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return FileOutput(cfg)
