"""The bulk body: an action line with the record's deterministic `_id` before each document.

`bulk_body` runs per fragment on the event loop (the hot path), in C when the extension is built:
one pass that sizes the body and one that writes it. Its Python twin (`interleave`, the
reference the tests hold it to) interleaves the columns by slice assignment and joins them, 4 or
5 parts a record; it was the only version for a while (issue 18, under the ~10% rule) and costs
~4% of the default scenario's instructions more, enough to put the default and business scenarios
more than 5% behind the tree before the restructuring (bench/RESULTS.md, fifth stop). A request
is sent as the fragments it was queued in (`Parts`), and gzipped with ISA-L when installed.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from operator import itemgetter

import aiohttp

from ccf_agent.batch import Events
from ccf_agent.outputs.elasticsearch.indices import IndexNamer
from ccf_agent.pipeline.native import fast as _fast

GZIP_THREAD_MIN = 256 << 10  # with stdlib zlib, larger bodies are compressed on a worker thread

_MID = [b'"}}\n']
_NL = [b"\n"]

try:  # ISA-L writes the same gzip format ~5x faster than zlib at level 1 (see bench/es_output.py)
    from isal import isal_zlib as _zlib

    _GZIP_OFF_LOOP = False  # ~2 ms per 1.5 MB body: a thread hop would cost more CPU than it frees
except ImportError:  # pragma: no cover - optional speed-up
    _zlib = zlib  # type: ignore[misc]  # the same interface: the stdlib module when ISA-L is missing
    _GZIP_OFF_LOOP = True  # ~10 ms per 1.5 MB body: off the event loop


Body = bytes | list[bytes]  # a bulk request's NDJSON: one bytes object, or its fragments in order


def bulk_body(namer: IndexNamer, events: Events, indices: Sequence[int],
              actions: bytes | list[bytes] | None = None) -> bytes:
    """The records at `indices` (increasing, unique) as bulk NDJSON; `actions`: their action lines
    when the caller has them (a pattern that reads fields: IndexNamer.route)."""
    n = len(indices)
    if n == 0:
        return b""
    every = n == len(events.docs)  # indices are increasing and unique: every record, in order
    if actions is not None:
        pass
    elif not namer.dated:
        actions = namer.static_action
    else:
        stamps = events.stamps if every else [events.stamps[i] for i in indices]
        if len(set(map(namer.period, stamps))) == 1:  # the usual batch: one day, one index
            actions = namer.action(stamps[0])
        else:
            actions = list(map(namer.action, stamps))
    if _fast is not None:
        return _fast.bulk_body(actions, events.ids, events.docs,
                               None if every else indices if type(indices) is list else list(indices))
    return interleave(actions, events, indices, every)


def interleave(actions: bytes | list[bytes], events: Events, indices: Sequence[int], every: bool) -> bytes:
    """bulk_body in Python: the columns interleaved by slice assignment, then joined."""
    n = len(indices)
    ids: Sequence[bytes]
    docs: Sequence[bytes]
    if every:
        ids, docs = events.ids, events.docs
    elif n > 1:
        pick = itemgetter(*indices)
        ids, docs = pick(events.ids), pick(events.docs)
    else:
        ids, docs = (events.ids[indices[0]],), (events.docs[indices[0]],)
    if isinstance(actions, bytes):  # one action line for all: it joins each document to the next id
        parts = [b"\n" + actions] * (4 * n + 1)
        parts[0] = actions
        parts[1::4] = ids
        parts[2::4] = _MID * n
        parts[3::4] = docs
        parts[-1] = b"\n"
        return b"".join(parts)
    parts = [b""] * (5 * n)
    parts[0::5] = actions
    parts[1::5] = ids
    parts[2::5] = _MID * n
    parts[3::5] = docs
    parts[4::5] = _NL * n
    return b"".join(parts)


def joined(body: Body) -> bytes:
    return body if isinstance(body, bytes) else b"".join(body)


class Parts(aiohttp.payload.Payload):
    """A request body written as the fragments it was queued in, one after the other: joining
    them first would copy every record once more."""

    _value: list[bytes]

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__(parts, content_type="application/x-ndjson")
        self._size = sum(map(len, parts))

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"".join(self._value)

    async def write(self, writer: aiohttp.abc.AbstractStreamWriter) -> None:
        for part in self._value:
            await writer.write(part)

    async def write_with_length(self, writer: aiohttp.abc.AbstractStreamWriter, content_length: int | None) -> None:
        if content_length is None or self._size is None or content_length >= self._size:
            await self.write(writer)
            return
        await writer.write(b"".join(self._value)[:content_length])


def _gzip(body: bytes) -> bytes:
    gzipped: bytes = _zlib.compress(body, 1, wbits=31)
    return gzipped


def request_data(body: Body) -> bytes | Parts:
    """What goes on the wire for `body` uncompressed: the fragments as they are."""
    return body if isinstance(body, bytes) else Parts(body)


async def gzipped(body: Body) -> bytes:
    """`body` gzipped (large bodies off the loop with stdlib zlib)."""
    raw = joined(body)
    if _GZIP_OFF_LOOP and len(raw) > GZIP_THREAD_MIN:
        return await asyncio.to_thread(_gzip, raw)  # zlib drops the GIL while it works
    return _gzip(raw)
