"""An in-process bulk endpoint a test scripts, and helpers to drive one output against it.

For what only the engine can say (mappings, blocks, templates) the tests use the real node;
this fake is for what the output decides: batch shapes, timing, retries, hosts.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.elasticsearch.config import EsOptions
from ccf_agent.outputs.elasticsearch.output import ElasticsearchOutput

INFO = {"name": "fake", "version": {"distribution": "opensearch", "number": "2.19.6"}}


@dataclass
class BulkCall:
    at: float  # arrival, on the event loop's clock
    ids: list[str]
    headers: dict[str, str] = field(repr=False)
    raw_bytes: int  # on the wire (compressed when gzip)
    query: str  # raw, as sent
    body: bytes = field(repr=False, default=b"")  # NDJSON, decompressed


# (status, headers, JSON-able body or raw bytes) or None for "store everything"
Script = Callable[[BulkCall], "tuple[int, dict[str, str], Any] | None"]


class FakeNode:
    def __init__(self) -> None:
        self.calls: list[BulkCall] = []
        self.gets: list[tuple[float, str]] = []
        self.script: Script | None = None
        self.get_status = 200
        self.nodes: dict[str, Any] = {"nodes": {}}
        self.release: asyncio.Event | None = None  # when set: bulk requests wait for it
        self.active = 0
        self.max_active = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            self.gets.append((asyncio.get_running_loop().time(), request.path))
            if self.get_status != 200:
                return web.json_response({"error": "down"}, status=self.get_status)
            return web.json_response(self.nodes if request.path.startswith("/_nodes") else INFO)
        raw = await request.read()
        body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        lines = body.split(b"\n")
        ids = [orjson.loads(a)["create"]["_id"] for a in lines[0:-1:2]]
        call = BulkCall(asyncio.get_running_loop().time(), ids, dict(request.headers), request.content_length or len(raw),
                        request.rel_url.raw_query_string, body)
        self.calls.append(call)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.release is not None:
                await self.release.wait()
            answer = self.script(call) if self.script else None
        finally:
            self.active -= 1
        if answer is None:
            return web.json_response({"errors": False, "items": [{"create": {"status": 201}} for _ in ids]})
        status, headers, payload = answer
        if isinstance(payload, bytes):  # a body as it is, JSON or not
            return web.Response(body=payload, status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    @property
    def stored_ids(self) -> list[str]:
        """Ids of every call that the default answer stored (scripts track their own)."""
        return [i for c in self.calls for i in c.ids]


@asynccontextmanager
async def fake_node() -> AsyncIterator[FakeNode]:
    node = FakeNode()
    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", node.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    node.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield node
    finally:
        await runner.cleanup()


def items(call: BulkCall, status_of: Callable[[str], int], error: dict[str, Any] | None = None) -> Any:
    """A bulk answer giving each item of `call` the status `status_of(id)`."""
    out = []
    for i in call.ids:
        s = status_of(i)
        out.append({"create": {"status": s, **({"error": error or {"type": "x", "reason": "y"}} if s >= 300 else {})}})
    return {"errors": any(o["create"]["status"] >= 300 for o in out), "items": out}


class Token:
    """Stands in for an AckToken: counts the shares held and released."""

    nbytes = 0  # the read bytes an output holds while it holds the token (its budget)

    def __init__(self) -> None:
        self.held = 0
        self.released = 0

    def hold(self) -> None:
        self.held += 1

    def done(self) -> None:
        self.released += 1


def events(n: int, start: int = 0, day: str = "2024-01-15", doc: Callable[[int], bytes] | None = None) -> Events:
    ev = Events(batch=None)  # type: ignore[arg-type]  # outputs never look at the batch
    for i in range(start, start + n):
        ev.docs.append(doc(i) if doc else b'{"seq":%d,"message":"Payout processed","amount":1000}' % i)
        ev.ids.append(b"s-%d" % i)
        ev.stamps.append(f"{day}T10:00:00.000Z".encode())
        ev.times.append(0.0)
    return ev


def output(hosts: list[str], state: Path, options: EsOptions | None = None, **kw: Any) -> ElasticsearchOutput:
    kw.setdefault("backoff_initial", 0.02)
    kw.setdefault("backoff_max", 0.2)
    kw.setdefault("flush_interval", 0.0)
    cfg = OutputConfig(name="t", type="elasticsearch", hosts=tuple(hosts), index=kw.pop("index", "t"),
                       options=options, **kw)
    return ElasticsearchOutput(cfg, DeadLetters(state))


@asynccontextmanager
async def running(out: ElasticsearchOutput) -> AsyncIterator[ElasticsearchOutput]:
    task = asyncio.create_task(out.run())
    try:
        yield out
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def alive(kind: type) -> int:
    """How many objects of `kind` a full collection leaves: what something still holds."""
    gc.collect()
    return sum(isinstance(o, kind) for o in gc.get_objects())


async def drained(out: ElasticsearchOutput, within: float = 20.0) -> None:
    await asyncio.sleep(0)  # let the loop see what was just submitted
    assert await out.drain(asyncio.get_running_loop().time() + within), out.status()
