"""A fault-injecting HTTP proxy in front of a real Elasticsearch/OpenSearch node.

    proxy = FaultProxy(es_url)
    url = proxy.start()                      # http://127.0.0.1:PORT, forwards everything
    proxy.set("items", fraction=0.3)         # 30% of bulk items answered 429, never stored
    proxy.set("items", fraction=0.3, reject_marker='"poison"')  # and items whose document holds
                                             # the marker answered 400 (mapper_parsing_exception) every time
    proxy.set("reject", status=429, retry_after=2)   # whole bulk requests answered 429
    proxy.set("reject", status=503, count=3) # the next 3 bulk requests answered 503, then pass
    proxy.set("reset")                       # connections cut while the request body is read
    proxy.set("reset", after_forward=True)   # forwarded (stored!), then cut before the answer
    proxy.set("delay", seconds=2)            # forwarded after a pause
    proxy.set("pass")
    proxy.counters()                         # {"requests": .., "items_rejected": .., ...}
    proxy.stop()

Modes apply to bulk requests (`paths="all"` widens that to every request), to each one
with probability `fraction` (in "items" mode: to each item), at most `count` times. Any
mode takes `delay=SECONDS`, a pause before the fault. `FaultProxy(url, ssl_context=ctx)`
serves https (terminating TLS in front of a plain node); `require_client_cert` is a
property of that context. Request headers are kept in memory for assertions
(`requests()`), never printed: they carry credentials.

The proxy runs its own event loop in a thread, so synchronous tests and a daemon in a
subprocess can both use it; `set` may be called at any time from any thread.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

MODES = ("pass", "reject", "items", "reset", "delay")
_HOP_HEADERS = {"host", "content-length", "content-encoding", "transfer-encoding", "connection",
                "accept-encoding", "keep-alive"}
_ERRORS = {
    400: {"type": "mapper_parsing_exception", "reason": "injected by FaultProxy: failed to parse field [amount]"},
    429: {"type": "rejected_execution_exception", "reason": "injected by FaultProxy: write queue full"},
    401: {"type": "security_exception", "reason": "injected by FaultProxy: missing authentication credentials"},
    403: {"type": "security_exception", "reason": "injected by FaultProxy: no permissions"},
}


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str] = field(repr=False)  # may hold credentials: compared, never printed
    body_bytes: int = 0


@dataclass
class _Mode:
    name: str = "pass"
    params: dict[str, Any] = field(default_factory=dict)
    remaining: int | None = None


class FaultProxy:
    def __init__(self, upstream_url: str, *, ssl_context: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1", seed: int = 1, keep_requests: int = 10_000) -> None:
        self.upstream = upstream_url.rstrip("/")
        self.ssl_context = ssl_context
        self.host = host
        self.url = ""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._mode = _Mode()
        self._counters: Counter[str] = Counter()
        self._seen: list[SeenRequest] = []
        self._keep = keep_requests
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_server())
            except BaseException as e:  # noqa: BLE001 - reported to start()'s caller
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop_server())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def set(self, mode: str = "pass", **params: Any) -> None:
        """Switch the fault; see the module docstring for modes and parameters."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (modes: {', '.join(MODES)})")
        known = {"fraction", "count", "paths", "delay", "status", "retry_after", "store_rejected",
                 "after_forward", "seconds", "reject_marker"}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        with self._lock:
            self._mode = _Mode(mode, dict(params), params.get("count"))

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._seen)

    def clear(self) -> None:
        with self._lock:
            self._counters.clear()
            self._seen.clear()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ server (proxy thread)

    async def _start_server(self) -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.ssl_context else 'http'}://{self.host}:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=True,
                                              timeout=aiohttp.ClientTimeout(total=120))

    async def _stop_server(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    def _decide(self, request: web.Request) -> _Mode | None:
        """The fault for this request (a copy of the mode's settings), or None to pass it through."""
        is_bulk = "_bulk" in request.path
        with self._lock:
            self._counters["requests"] += 1
            if is_bulk:
                self._counters["bulk_requests"] += 1
            if len(self._seen) < self._keep:
                self._seen.append(SeenRequest(request.method, request.path_qs, dict(request.headers),
                                              request.content_length or 0))
            m = self._mode
            if m.name == "pass" or (m.params.get("paths", "bulk") == "bulk" and not is_bulk):
                return None
            if m.remaining is not None and m.remaining <= 0:
                return None
            if m.name != "items" and self._rng.random() >= m.params.get("fraction", 1.0):
                return None
            if m.remaining is not None:
                m.remaining -= 1
            return _Mode(m.name, dict(m.params))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._decide(request)
        if fault is None:
            return await self._forward(request, await self._body(request))
        p = fault.params
        delay = p.get("seconds", 0.0) if fault.name == "delay" else p.get("delay", 0.0)
        if delay:
            self._count("delayed")
            await asyncio.sleep(delay)
        if fault.name == "reject":
            status = int(p.get("status", 503))
            await request.read()
            self._count("rejected")
            error = _ERRORS.get(status, {"type": "unavailable", "reason": f"injected by FaultProxy: {status}"})
            headers = {"Retry-After": str(p["retry_after"])} if p.get("retry_after") is not None else {}
            return web.Response(status=status, headers=headers, content_type="application/json",
                                body=orjson.dumps({"error": {**error, "root_cause": [error]}, "status": status}))
        if fault.name == "reset":
            self._count("resets")
            if p.get("after_forward"):
                await self._forward(request, await self._body(request))
            else:
                await request.content.read(1024)  # the client is still sending when the line drops
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        if fault.name == "items":
            marker = p.get("reject_marker")
            return await self._items(request, float(p.get("fraction", 0.3)), int(p.get("status", 429)),
                                     bool(p.get("store_rejected", False)), marker.encode() if marker else None)
        return await self._forward(request, await self._body(request))

    async def _body(self, request: web.Request) -> bytes:
        raw = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            self._count("gzip_requests")
            if raw[:2] == b"\x1f\x8b":  # aiohttp usually inflates request bodies itself
                return gzip.decompress(raw)
        return raw

    async def _upstream(self, request: web.Request, body: bytes, query: Any = None) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url = URL(self.upstream + request.rel_url.raw_path, encoded=True)
        url = url.with_query(request.query if query is None else query)
        async with self._session.request(request.method, url, data=body if body else None,
                                         headers=headers) as resp:
            raw = await resp.read()
            keep = {k: v for k, v in resp.headers.items()
                    if k.lower() in ("content-type", "retry-after", "x-elastic-product", "warning")}
            return resp.status, keep, raw

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        try:
            status, headers, raw = await self._upstream(request, body)
        except (aiohttp.ClientError, TimeoutError) as e:
            self._count("upstream_errors")
            return web.Response(status=502, text=f"FaultProxy: upstream failed: {type(e).__name__}")
        self._count("forwarded")
        self._count(f"status_{status}")
        return web.Response(status=status, headers=headers, body=raw)

    async def _items(self, request: web.Request, fraction: float, status: int, store_rejected: bool,
                     marker: bytes | None = None) -> web.Response:
        """Per-item faults: chosen items get `status`; unless `store_rejected`, they never reach the node.
        Items whose document holds `marker` get 400 every time (rejected for good) and never reach it."""
        body = await self._body(request)
        lines = body.split(b"\n")
        entries: list[tuple[str, dict[str, Any], list[bytes]]] = []  # (op, meta, lines)
        i = 0
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            action = orjson.loads(lines[i])
            op = next(iter(action))
            n = 1 if op == "delete" else 2
            entries.append((op, action[op], lines[i:i + n]))
            i += n
        poisoned = [marker is not None and len(e[2]) > 1 and marker in e[2][1] for e in entries]
        with self._lock:
            chosen = [self._rng.random() < fraction for _ in entries]
        sent = [e for e, c, bad in zip(entries, chosen, poisoned, strict=True) if not bad and (store_rejected or not c)]
        upstream_items: list[dict[str, Any]] = []
        errors = False
        if sent:
            query = {k: v for k, v in request.query.items() if k != "filter_path"}  # we need whole items
            fwd = b"".join(b"\n".join(e[2]) + b"\n" for e in sent)
            try:
                code, headers, raw = await self._upstream(request, fwd, query)
            except (aiohttp.ClientError, TimeoutError) as e:
                self._count("upstream_errors")
                return web.Response(status=502, text=f"FaultProxy: upstream failed: {type(e).__name__}")
            if code != 200:
                self._count(f"status_{code}")
                return web.Response(status=code, headers=headers, body=raw)
            answer = orjson.loads(raw)
            upstream_items = answer["items"]
            errors = bool(answer.get("errors"))
            self._count("forwarded")
        items: list[dict[str, Any]] = []
        it = iter(upstream_items)
        rejected = 0
        error = _ERRORS.get(status, {"type": "unavailable", "reason": f"injected by FaultProxy: {status}"})
        for (op, meta, _), c, bad in zip(entries, chosen, poisoned, strict=True):
            if bad:
                self._count("items_poisoned")
                items.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 400,
                                   "error": _ERRORS[400]}})
                continue
            real = next(it) if (store_rejected or not c) else None
            if c:
                rejected += 1
                items.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": status,
                                   "error": error}})
            else:
                items.append(real)  # type: ignore[arg-type]
        self._count("items", len(entries))
        self._count("items_rejected", rejected)
        self._count("status_200")
        return web.Response(status=200, content_type="application/json",
                            body=orjson.dumps({"took": 1, "errors": errors or rejected > 0 or any(poisoned),
                                               "items": items}))
