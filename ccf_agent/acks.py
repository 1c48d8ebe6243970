"""Acknowledgements flowing back from outputs to the registry.

Every batch the tailer reads gets one `AckToken`. Each output that receives part of
the batch holds one share of the token; a batch nobody needs (all records dropped) is
done at once. A stream's `Ledger` keeps its tokens in read order and commits the end
of the longest fully acknowledged prefix: offsets never run ahead of acknowledgements,
and one slow file holds back nobody else.

`Flow` bounds the bytes read but not yet acknowledged, so an output outage pauses
reading instead of growing memory: the files are the buffer. A ledger also knows which outputs
its stream's latest records went to (`bound_for`): reading that file waits for their room only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ccf_agent.registry import Entry, Registry


class Flow:
    """Global budget of bytes in flight between the tailer and acknowledgement."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0
        self._room = asyncio.Event()
        self._room.set()
        self.paused_waits = 0

    def take(self, n: int) -> None:
        self.inflight += n
        if self.inflight >= self.limit:
            self._room.clear()

    def give(self, n: int) -> None:
        self.inflight -= n
        if self.inflight < self.limit:
            self._room.set()

    @property
    def has_room(self) -> bool:
        return self.inflight < self.limit

    async def wait_for_room(self) -> None:
        if not self._room.is_set():
            self.paused_waits += 1
            await self._room.wait()


class AckToken:
    __slots__ = ("ledger", "end", "nbytes", "pending", "tail")

    def __init__(self, ledger: Ledger, end: int, nbytes: int, tail: bytes | None) -> None:
        self.ledger = ledger
        self.end = end
        self.nbytes = nbytes
        self.tail = tail  # the bytes just before `end`, to recognise this content on resume
        self.pending = 1  # the reader's own share, released once the batch is dispatched

    def hold(self, n: int = 1) -> None:
        self.pending += n

    def done(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.ledger.advance()


class Ledger:
    """Per stream, the batches read but not yet fully acknowledged, in read order."""

    def __init__(self, entry: Entry, registry: Registry, flow: Flow,
                 on_commit: Callable[[Entry, int], None] | None = None) -> None:
        self.entry = entry
        self.registry = registry
        self.flow = flow
        self.on_commit = on_commit
        self.tokens: deque[AckToken] = deque()
        self.bound_for: Sequence[Any] = ()  # the outputs (with `has_room`) of the stream's latest batch

    def issue(self, end: int, nbytes: int, tail: bytes | None = None) -> AckToken:
        token = AckToken(self, end, nbytes, tail)
        self.tokens.append(token)
        self.flow.take(nbytes)
        return token

    def advance(self) -> None:
        committed = -1
        tail = None
        tokens = self.tokens
        while tokens and tokens[0].pending == 0:
            t = tokens.popleft()
            committed = t.end
            tail = t.tail if t.tail is not None else (tail if t.nbytes == 0 else None)
            self.flow.give(t.nbytes)
        if committed >= 0:
            self.registry.commit(self.entry, committed, tail)
            if self.on_commit:
                self.on_commit(self.entry, committed)

    @property
    def unacked(self) -> int:
        return len(self.tokens)
