"""The local HTTP endpoint: `/status` for `ccf-agent status`, `/health`, `/metrics`.

Bound to loopback by default (`status.listen`): it describes the host's files. Any local user can
connect, so the endpoint must never cost the daemon what shipping needs: each connection holds a
file descriptor, the same descriptors the tail opens log files with. So:

- at most MAX_CONNECTIONS at once, and no more than two while descriptors run short (FD_RESERVE
  left): others are closed as soon as they are accepted, and that is logged (once a minute at most);
- a connection must send a complete request within REQUEST_WAIT of opening (or of its previous
  answer), and be done with it within REQUEST_MAX: a half-sent request, or a client that does
  not read its answer, is cut then. aiohttp has no timeout for reading a request's head (its
  keepalive timer does that only in some versions, and never bounds a slow reader of the answer),
  hence the deadline kept here per connection;
- a malformed request gets aiohttp's 400 and one counted log line a minute, not a traceback each.

`GET /tap` (`ccf-agent tap`) is a streaming answer on the same terms: at most MAX_TAPS at once
within the connection cap, and each write must be taken by the client within REQUEST_MAX (it writes
at least once a second), so a client that stops reading is cut like any other. What it cannot take
in time is dropped from its own buffer (ops/tap.py), never held back from the outputs.

It runs on aiohttp's low-level server (`Server`, one handler for a few fixed paths) and imports
only the modules that needs: `aiohttp.web` would bring the application, router, file and websocket
machinery (and the mime types table) besides, ~1.3 MiB of RSS an idle daemon held for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse
from aiohttp.web_server import Server

from ccf_agent.config.values import LISTEN_OFF, split_listen
from ccf_agent.fsutil import descriptor_limit, descriptors_free, descriptors_held
from ccf_agent.ops.health import ErrorWindow, health
from ccf_agent.ops.metrics import render_metrics
from ccf_agent.ops.snapshot import Snapshot
from ccf_agent.ops.tap import TapClient, Taps, dropped_line, parse_filter

log = logging.getLogger("ccf_agent.ops")

MAX_CONNECTIONS = 16  # ccf-agent status, a Prometheus scraper and a health checker need a few
FD_RESERVE = 64  # descriptors kept free (twice the tail's reserve, so this endpoint gives way first)
REQUEST_WAIT = 5.0  # seconds from connecting (or from the previous answer) to a complete request head
REQUEST_MAX = 10.0  # seconds from the request head to the answer sent
REPORT_EVERY = 60.0  # seconds between two log lines about refused or malformed connections
TAP_BEAT = 1.0  # seconds between two writes to a tap client at most (its drop count): it shows a live daemon
# Seconds a tap stream lets events gather after the first arrives: one write for every batch of a
# tenth of a second, not a wake-up and a write per batch (which cost the daemon ~7% of its events
# per CPU-second at full speed); a person watching does not see 0.1 s.
TAP_GATHER = 0.1


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP server's transport (uvloop's is not an asyncio.Transport subclass, but has abort()).
        cast(asyncio.Transport, transport).abort()


class _Connection(RequestHandler):
    """aiohttp's handler for one connection, with the deadline aiohttp does not keep itself."""

    def __init__(self, server: StatusServer, **kwargs: Any) -> None:
        assert server.http is not None
        super().__init__(server.http, loop=asyncio.get_running_loop(), **kwargs)
        self.guard = server
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.guard.open += 1
        self.expire_in(REQUEST_WAIT)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.open -= 1
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)

    def expire_in(self, seconds: float) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        if self.transport is not None:
            self.guard.cut += 1
            self.transport.abort()
            self.guard.report()


class _QuietLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger: a malformed request is counted (and reported once a minute), not
    logged with its traceback; anything else goes to our log as aiohttp meant it."""

    def __init__(self, server: StatusServer) -> None:
        super().__init__(log, {})
        self.server = server

    def _malformed(self, exc_info: Any) -> bool:
        if not isinstance(exc_info, HttpProcessingError):
            return False
        # The client's bytes end up in the message: one line, printable, short.
        self.server.last_malformed = repr(str(exc_info.message).split("\n", 1)[0][:100])
        self.server.malformed += 1
        self.server.report()
        return True

    def debug(self, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        if not self._malformed(exc_info):  # aiohttp logs a non-HTTP first line at debug level
            super().debug(msg, *args, exc_info=exc_info, **kwargs)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if not self._malformed(exc_info):
            super().exception(msg, *args, exc_info=exc_info, **kwargs)


class StatusServer:
    """Serves what `snapshot()` says (the supervisor's Snapshot, built per request) on `listen`."""

    def __init__(self, listen: str, snapshot: Callable[[], Snapshot], taps: Taps | None = None) -> None:
        self.listen = listen
        self.snapshot = snapshot
        self.taps = taps
        self.errors = ErrorWindow()  # /health's error rate is over the readings of earlier requests
        self.http: Server | None = None
        self.routes: dict[str, Callable[[BaseRequest], Awaitable[StreamResponse]]] = {
            "/status": self._status, "/health": self._health, "/metrics": self._metrics}
        if self.taps is not None:
            self.routes["/tap"] = self._tap
        self.listener: asyncio.AbstractServer | None = None
        self.open = 0  # connections now
        self.refused = 0  # connections closed at once: over the cap, or descriptors short
        self.cut = 0  # connections closed at their deadline
        self.malformed = 0  # requests aiohttp answered 400
        self.last_malformed = ""
        self._reported = (0, 0, 0)
        self._report_at = 0.0

    async def start(self) -> None:
        listen = self.listen
        address = None if listen in LISTEN_OFF else split_listen(listen)
        if address is None:  # the loader refused any other value
            return
        self.http = Server(self._handle)
        host, port = address
        try:
            self.listener = await asyncio.get_running_loop().create_server(
                self._accept, host, port, reuse_address=True)
        except OSError as e:
            log.error("status endpoint %s unavailable: %s (shipping continues)", listen, e.strerror)

    async def stop(self) -> None:
        if self.taps is not None:
            self.taps.close()  # its streams end: the shutdown below waits for every answer to finish
        if self.listener is not None:
            self.listener.close()
        if self.http is not None:
            await self.http.shutdown(REQUEST_MAX)  # answers under way finish (none takes longer: cut then)

    def _accept(self) -> asyncio.Protocol:
        """The protocol for a connection just accepted: aiohttp's, or a refusal."""
        if self.open >= MAX_CONNECTIONS or (self.open >= 2 and descriptors_free(FD_RESERVE) <= 0):
            self.refused += 1
            self.report()
            return _Refused()
        return _Connection(self, logger=_QuietLog(self), access_log=None, keepalive_timeout=REQUEST_WAIT,
                           lingering_time=1.0, max_headers=64)

    async def _handle(self, request: BaseRequest) -> StreamResponse:
        """The request head is in: the answer must be sent within REQUEST_MAX, and the next request
        (keep-alive) must come within REQUEST_WAIT after that."""
        conn = request.protocol
        if isinstance(conn, _Connection):
            conn.expire_in(REQUEST_MAX + REQUEST_WAIT)
        handler = self.routes.get(request.path)
        if handler is None:
            return Response(status=404, text="404: Not Found")
        if request.method not in ("GET", "HEAD"):
            return Response(status=405, text="405: Method Not Allowed", headers={"Allow": "GET,HEAD"})
        return await handler(request)

    def report(self) -> None:
        """One log line a minute at most about connections refused, cut or malformed."""
        now = time.monotonic()
        counts = (self.refused, self.cut, self.malformed)
        if now - self._report_at < REPORT_EVERY or counts == self._reported:
            return
        new = [c - r for c, r in zip(counts, self._reported, strict=True)]
        self._reported, self._report_at = counts, now
        held = descriptors_held()
        log.warning("status endpoint: %d connection(s) refused (open: %d of %d allowed; the agent holds %s of its "
                    "%d descriptors), %d cut at their deadline, %d malformed request(s)%s since the last report; "
                    "shipping is not affected", new[0], self.open, MAX_CONNECTIONS, "all" if held is None else held,
                    descriptor_limit(), new[1], new[2], f" (last: {self.last_malformed})" if new[2] else "")

    async def _status(self, request: BaseRequest) -> Response:
        return Response(body=orjson.dumps(self.snapshot().to_json()), content_type="application/json")

    async def _health(self, request: BaseRequest) -> Response:
        body, ok = health(self.snapshot, self.errors)
        return Response(body=orjson.dumps(body), content_type="application/json", status=200 if ok else 503)

    async def _metrics(self, request: BaseRequest) -> Response:
        # The text exposition format's own media type (Prometheus picks its parser by it).
        return Response(body=render_metrics(self.snapshot()).encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8",
                                     "X-Content-Type-Options": "nosniff"})

    async def _tap(self, request: BaseRequest) -> StreamResponse:
        assert self.taps is not None
        want = parse_filter(dict(request.query))
        problem = want if isinstance(want, str) else self.taps.unknown(want)
        if problem or isinstance(want, str):
            return Response(status=400, text=f"{problem}\n")
        client = self.taps.attach(want)
        if client is None:
            return Response(status=503, text=f"{len(self.taps.clients)} taps attached already (the most at once)\n")
        try:
            response = StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                                   "X-Content-Type-Options": "nosniff"})
            await response.prepare(request)
            await self._stream(request, response, client)
            await response.write_eof()
        except ConnectionError:  # the client went away (Ctrl-C), or was cut at its deadline
            pass
        finally:
            self.taps.detach(client)
        return response

    async def _stream(self, request: BaseRequest, response: StreamResponse, client: TapClient) -> None:
        """Write what the client's buffer gathered in TAP_GATHER from its first event, its drop count
        at most once a second (and once a second when nothing else goes), until its limit. Each write
        must be taken within REQUEST_MAX: a client that stops reading is cut."""
        assert self.taps is not None
        conn = request.protocol
        dropped, beat = -1, 0.0
        loop = asyncio.get_running_loop()
        while not client.finished and not self.taps.closed:
            try:
                await asyncio.wait_for(client.ready.wait(), TAP_BEAT)
            except TimeoutError:
                pass
            else:
                await asyncio.sleep(TAP_GATHER)
            lines, n = client.take()
            if not lines or (client.dropped != dropped and loop.time() - beat >= TAP_BEAT):
                dropped, beat = client.dropped, loop.time()
                lines += dropped_line(dropped)
            if isinstance(conn, _Connection):
                conn.expire_in(REQUEST_MAX)
            await response.write(lines)
            self.taps.sent += n
        lines, n = client.take()  # what the daemon's stop caught in the buffer
        await response.write(lines + dropped_line(client.dropped))
        self.taps.sent += n
        if isinstance(conn, _Connection):
            conn.expire_in(REQUEST_WAIT)
