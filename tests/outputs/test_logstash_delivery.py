"""LogstashOutput in-process: acknowledgement, pipelining, hosts, ttl and limits, against go-lumber
(and, for answers go-lumber never gives, a scripted peer)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
import pytest

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.outputs.logstash.config import LogstashOptions
from ccf_agent.outputs.logstash.lumberjack import decode_frames, encode_ack
from ccf_agent.outputs.logstash.output import LogstashOutput
from tests.harness import free_port
from tests.lumber.server import LumberServer
from tests.outputs.conftest import StartLumber
from tests.outputs.helpers import CountingToken, sample_events


def make_output(*ports: int, **options: Any) -> LogstashOutput:
    cfg_keys = {k: options.pop(k) for k in ("batch_max_bytes", "timeout") if k in options}
    cfg = OutputConfig(name="beats", type="logstash", hosts=tuple(f"127.0.0.1:{p}" for p in ports),
                       backoff_initial=0.05, backoff_max=0.5, **{"timeout": 5.0, **cfg_keys})
    return LogstashOutput(cfg, LogstashOptions(**options))


async def eventually(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(out: LogstashOutput) -> AsyncIterator[None]:
    task = asyncio.create_task(out.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ship(out: LogstashOutput, batches: Sequence[Events], tokens: Sequence[CountingToken] = (),
               during: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the output, submit every batch (token k with batch k), run `during`, wait until drained."""
    async with running(out):
        for k, ev in enumerate(batches):
            await out.wait_for_room()
            out.submit(ev, range(len(ev)), tokens[k] if k < len(tokens) else None)  # type: ignore[arg-type]
        if during is not None:
            await during()
        assert await out.drain(asyncio.get_running_loop().time() + 60), out.status()


def seqs(srv: LumberServer) -> list[int]:
    return [e["event"]["seq"] for e in srv.events()]


def test_a_fragment_is_acknowledged_only_once_the_server_acked_all_of_it(start_lumber: StartLumber) -> None:
    srv = start_lumber(mode="stall", keepalive=0.1)
    out = make_output(srv.port)
    tokens = [CountingToken() for _ in range(3)]

    async def while_stalled() -> None:
        await eventually(lambda: len(srv.events()) >= 10, 10, "the first batch at the server")
        await eventually(lambda: out.progress_acks >= 3, 10, "keepalive ACKs")
        assert [t.released for t in tokens] == [0, 0, 0]
        assert out.status()["docs_acked"] == 0
        await asyncio.to_thread(srv.set_mode, "ack")

    asyncio.run(ship(out, sample_events(3000), tokens, during=while_stalled))
    assert [(t.held, t.released) for t in tokens] == [(1, 1)] * 3
    assert seqs(srv) == list(range(3000))


def test_pipelining_puts_that_many_batches_on_the_wire_before_the_first_ack() -> None:
    """go-lumber hands one batch at a time to its application, so a scripted peer: it holds its
    ACKs until three whole batches have arrived (or the line goes quiet), then ACKs them in order."""
    received: list[int] = []
    most_outstanding = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal most_outstanding
        buf, window, got, outstanding = b"", 0, 0, []
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.3)
            except TimeoutError:
                chunk = None  # quiet: acknowledge what is held
            if chunk == b"":
                return
            frames, used = decode_frames(buf + (chunk or b""))
            buf = (buf + (chunk or b""))[used:]
            for f in frames:
                if f[0] == "W":
                    window, got = f[1], 0
                elif f[0] == "J":
                    received.append(orjson.loads(f[2])["seq"])
                    got += 1
                    if got == window:
                        outstanding.append(window)
                        most_outstanding = max(most_outstanding, len(outstanding))
            if len(outstanding) >= 3 or (chunk is None and outstanding):
                writer.write(b"".join(encode_ack(n) for n in outstanding))
                outstanding.clear()
                await writer.drain()

    async def run() -> None:
        srv = await asyncio.start_server(peer, "127.0.0.1", 0)
        out = make_output(srv.sockets[0].getsockname()[1], pipelining=3)
        try:
            await ship(out, sample_events(5000))
        finally:
            srv.close()

    asyncio.run(run())
    assert received == list(range(5000))
    assert most_outstanding == 3


@pytest.mark.parametrize("doc", [
    b'{"seq": 2,\n  "message": "pretty-printed",\n  "@timestamp": "2024-01-15T10:00:00.000Z"}',
    b'{"seq": 2,\n  "message": "pretty-printed",\n  "@timestamp": "2024-01-15T10:00:00.000Z"\n}',
], ids=["brace-after-value", "brace-on-its-own-line"])
def test_a_record_with_raw_newlines_arrives_as_one_event(start_lumber: StartLumber, doc: bytes) -> None:
    srv = start_lumber()
    events = sample_events(5)[0]
    events.docs[2] = doc
    asyncio.run(ship(make_output(srv.port), [events]))

    assert seqs(srv) == [0, 1, 2, 3, 4]
    assert srv.events()[2]["event"]["message"] == "pretty-printed"
    assert srv.events()[2]["event"]["@metadata"]["beat"] == "ccf-agent"


def test_batches_stay_within_batch_max_bytes(start_lumber: StartLumber) -> None:
    srv = start_lumber()
    out = make_output(srv.port, batch_max_bytes=20_000)
    asyncio.run(ship(out, sample_events(5000)))

    nbytes: Counter[tuple[int, int]] = Counter()
    count: Counter[tuple[int, int]] = Counter()
    for e in srv.events():  # go-lumber writes each event compacted, as the agent sent it
        nbytes[(e["conn"], e["batch"])] += len(orjson.dumps(e["event"]))
        count[(e["conn"], e["batch"])] += 1
    assert seqs(srv) == list(range(5000))
    assert max(nbytes.values()) <= 20_000
    assert max(count.values()) > 23  # the window grew until the byte cap bound it


def test_failover_moves_to_the_next_host_when_one_refuses(start_lumber: StartLumber) -> None:
    srv = start_lumber()
    dead = free_port()  # nothing listens there
    out = make_output(dead, srv.port)
    asyncio.run(ship(out, sample_events(3000)))

    assert seqs(srv) == list(range(3000))
    status = out.status()
    assert [c["host"] for c in status["connections"]] == [f"127.0.0.1:{srv.port}"]
    assert status["request_errors"] >= 1 and "cannot connect" in status["last_error"]


def test_loadbalance_spreads_batches_over_every_host(start_lumber: StartLumber) -> None:
    a, b = start_lumber(), start_lumber()
    out = make_output(a.port, b.port, loadbalance=True, window_max=200)
    asyncio.run(ship(out, sample_events(20_000)))

    got_a, got_b = seqs(a), seqs(b)
    assert got_a and got_b
    assert sorted(got_a + got_b) == list(range(20_000))


def test_loadbalance_hands_a_failing_hosts_batches_to_the_others(start_lumber: StartLumber) -> None:
    good, bad = start_lumber(), start_lumber(mode="drop-after 0")
    out = make_output(good.port, bad.port, loadbalance=True)
    asyncio.run(ship(out, sample_events(10_000)))

    assert seqs(bad) == []
    assert sorted(seqs(good)) == list(range(10_000))
    assert out.status()["request_errors"] >= 1


def test_ttl_reconnects_between_batches_and_keeps_order(start_lumber: StartLumber) -> None:
    srv = start_lumber()
    out = make_output(srv.port, ttl=0.2)

    async def trickle() -> None:
        async with running(out):
            for ev in sample_events(3000, per_batch=50):  # a slow writer: 20 batches a second, 3 s
                out.submit(ev, range(len(ev)), None)
                await asyncio.sleep(0.05)
            assert await out.drain(asyncio.get_running_loop().time() + 30)

    asyncio.run(trickle())
    assert len({e["conn"] for e in srv.events()}) >= 5
    assert seqs(srv) == list(range(3000))
    assert out.status()["request_errors"] == 0


def test_an_ack_beyond_the_batch_is_an_error_and_the_batch_is_resent() -> None:
    """go-lumber never misbehaves like this, so a scripted peer: the first connection answers
    every batch with ACK count+5, later ones acknowledge properly."""
    received: list[bytes] = []
    connections = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        liar = connections == 1
        buf, window, got = b"", 0, 0
        while chunk := await reader.read(65536):
            frames, used = decode_frames(buf + chunk)
            buf = (buf + chunk)[used:]
            for f in frames:
                if f[0] == "W":
                    window, got = f[1], 0
                elif f[0] == "J":
                    received.append(f[2])
                    got += 1
                    if got == window:
                        writer.write(encode_ack(window + 5 if liar else window))
            await writer.drain()

    async def run() -> LogstashOutput:
        srv = await asyncio.start_server(peer, "127.0.0.1", 0)
        out = make_output(srv.sockets[0].getsockname()[1], pipelining=1, compression_level=0)
        try:
            await ship(out, sample_events(50))
        finally:
            srv.close()
        return out

    out = asyncio.run(run())
    status = out.status()
    assert "ACK 15 for a batch of 10" in status["last_error"]
    assert status["request_errors"] == 1 and status["docs_acked"] == 50
    assert status["duplicates"] == 10  # the first batch, sent twice
    assert len(received) == 60
