"""The tap's stream to its client, in-process: what it costs the daemon is a few writes a second,
not one per batch that passes."""

from __future__ import annotations

import asyncio

import aiohttp

from ccf_agent.ops.server import StatusServer
from ccf_agent.ops.tap import Taps
from tests.harness import free_port

TARGETS = (("default", ("logs",)),)


def _snapshot() -> object:
    raise AssertionError("the tap stream needs no snapshot")


async def _writes_for(batches: int) -> tuple[int, int]:
    """(HTTP chunks the client got, events in them) while `batches` one-event batches pass ~1 ms apart."""
    taps = Taps()
    taps.names = {"input": ("app",), "route": ("default",), "output": ("logs",)}
    port = free_port()
    server = StatusServer(f"127.0.0.1:{port}", _snapshot, taps)  # type: ignore[arg-type]
    await server.start()
    chunks = events = 0
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/tap") as resp:
            assert resp.status == 200
            for i in range(batches):
                taps.offer("app", [b'{"seq":%d}' % i], [[0]], TARGETS)
                await asyncio.sleep(0.001)
            await server.stop()  # the stream ends with what it holds
            async for data, end_of_chunk in resp.content.iter_chunks():
                chunks += end_of_chunk
                events += data.count(b'"event"')
    finally:
        await server.stop()
    return chunks, events


def test_a_tap_stream_gathers_many_batches_into_each_write() -> None:
    chunks, events = asyncio.run(_writes_for(300))  # ~0.3-0.6 s of batches
    assert events == 300  # the rate allows 1,000 a second: none dropped
    assert chunks <= 12, f"{chunks} writes for 300 batches: one per batch is what a tap must not cost"
