"""The HTTP output's protocol: POST the records, and read what each answer means for them.

A request's records are sent again after a connection error, a timeout, 429, 5xx, 408, or an
authentication refusal (401/403/407: credentials get fixed, records must not be thrown away
meanwhile); the output then backs off as a whole (the server's Retry-After honoured), one request
at a time testing the collector. 413 splits the request in two. Any other 4xx means the collector
rejects those records for good: each is written to the dead-letter file with the status and the
answer, and acknowledged so the pipeline moves on.

An HTTP collector cannot deduplicate: records resent after a connection error or timeout (the
server may have stored them before the answer was lost) are counted in `stats.duplicates`.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.httpclient import HttpClient, TransportError, client_ssl_context
from ccf_agent.httpclient.auth import Endpoint, auth_header
from ccf_agent.outputs.base import Output
from ccf_agent.outputs.deadletter import DeadItem, DeadLetters
from ccf_agent.outputs.delivery.batch import Batch, Piece
from ccf_agent.outputs.delivery.retry import Gate, backoff_delay, loop_time
from ccf_agent.outputs.delivery.slots import AdaptiveSlots
from ccf_agent.outputs.http.config import HttpOptions, config_problem

log = logging.getLogger("ccf_agent.outputs.http")

_RETRY_STATUSES = frozenset({401, 403, 407, 408, 425, 429})


class Rejected(Exception):
    """The request failed in a way worth retrying."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None, unknown_fate: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.unknown_fate = unknown_fate  # the server may have stored the records anyway


def _at_once(attempt: int) -> float:
    return 0.0  # no wait of their own: the closed gate holds every request back


class HttpOutput(Output):
    def __init__(self, cfg: OutputConfig, dead_letters: DeadLetters, options: HttpOptions | None = None) -> None:
        super().__init__(cfg)
        self.options = options or HttpOptions()
        self.dead = dead_letters
        problem = config_problem(cfg)
        if problem:
            raise ValueError(f"output {cfg.name}: {problem}")
        # user:password@ becomes that request's Basic auth; the URL itself, as requested and as
        # shown in messages and /status, carries no credentials.
        self.endpoints = [Endpoint.parse(h) for h in cfg.hosts]
        if not self.endpoints:
            raise ValueError(f"output {cfg.name}: http needs at least one URL in hosts")
        self._next_url = 0
        self.array = self.options.format == "json_array"
        headers = {"Content-Type": "application/json" if self.array else "application/x-ndjson"}
        if cfg.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        header = auth_header(cfg)
        if header:
            headers["Authorization"] = header
        headers.update(self.options.headers)
        needs_tls = any(e.url.startswith("https://") for e in self.endpoints)
        self.client = HttpClient(ssl_context=client_ssl_context(cfg.tls, cfg.name) if needs_tls else False,
                                 headers=headers, timeout=cfg.timeout, connect_timeout=min(10.0, cfg.timeout),
                                 limit=cfg.max_in_flight + 2, server_hostname=cfg.tls.server_name,
                                 proxy=self.options.proxy)
        self.gate = Gate(cfg.backoff_initial, cfg.backoff_max)  # closed while the collector fails requests
        self.slots = AdaptiveSlots(cfg.max_in_flight, cfg.batch_max_docs)

    @property
    def shown(self) -> list[str]:
        return [e.shown for e in self.endpoints]

    def batch_docs(self) -> int:
        return self.slots.batch_docs

    # ------------------------------------------------------------------ encode (hot path)

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        """NDJSON whatever the wire format: a JSON array is built per request, and 413 splitting and
        dead letters need the record boundaries. A raw newline in a JSON document can only be
        whitespace between tokens, so replacing it keeps the document intact."""
        docs = events.docs
        parts: list[bytes] = []
        add = parts.append
        for i in indices:
            doc = docs[i]
            if b"\n" in doc:
                doc = doc.replace(b"\n", b" ")
            add(doc)
        add(b"")
        return b"\n".join(parts)

    def wire(self, body: bytes) -> bytes:
        """A chunk's request body before compression."""
        if not self.array:
            return body
        return b"[" + body[:-1].replace(b"\n", b",") + b"]"

    # ------------------------------------------------------------------ delivery

    async def run(self) -> None:
        try:
            await self.serve_requests(self._deliver, self.slots)
        finally:
            await self.client.close()

    async def _deliver(self, batch: Batch) -> list[Piece]:
        try:
            async with self.gate.passage():
                sent_at = time.monotonic()
                status, answer, rtt = await self._post(batch.body())
        except Rejected as e:
            self.stats.request_errors += 1
            if e.unknown_fate:
                self.stats.duplicates += batch.count
            self.health.report(e.kind, f"{e}; retrying")
            self.slots.observe(sent_at, None, e.kind in ("throttled", "timeout", "server"))
            self.gate.close(e.retry_after)  # one request at a time tests the collector until it answers
            return batch.retry_all(_at_once, loop_time())
        self.slots.observe(sent_at, rtt, False)
        self.gate.reset()
        self.health.delivered()
        if 200 <= status < 300:
            batch.ack()
            return []
        if status == 413 and batch.count > 1:
            again: list[Piece] = []
            for half in batch.split():
                again += await self.settled(self._deliver, half)
            return again
        return self._dead_letter(batch, status, answer)

    def _dead_letter(self, batch: Batch, status: int, answer: str) -> list[Piece]:
        answer = self.scrub(answer)  # a collector may quote the request's credentials back
        path = self.dead.path_for(self.name)
        try:
            self.dead.write_many(self.name, [DeadItem(status, answer, b"", r[:-1]) for r in batch.records()])
        except OSError as e:
            # Never acknowledge a rejected record that is not safely kept: it is sent again later.
            self.health.report("dead_letter_io", f"cannot write dead letters ({e.strerror or e}) to {path}: free disk "
                               "space or fix permissions; the records wait")
            cfg = self.cfg
            return batch.retry_all(lambda a: backoff_delay(a - 1, cfg.backoff_initial, cfg.backoff_max), loop_time())
        self.stats.docs_dead += batch.count
        self.note_error(f"{status} from the collector, {batch.count} records dead-lettered: {answer}")
        log.error("output %s: the collector rejected %d records with %d (%s); written to %s",
                  self.name, batch.count, status, answer, path)
        batch.ack()
        return []

    async def _post(self, body: bytes) -> tuple[int, str, float]:
        """(status, start of the answer, round trip) for any final answer; raises Rejected for
        retryable ones."""
        k = self._next_url
        endpoint = self.endpoints[k]
        self._next_url = (k + 1) % len(self.endpoints)
        data = self.wire(body)
        if self.cfg.compression == "gzip":
            data = zlib.compress(data, 1, wbits=31)
        self.stats.requests += 1
        headers = {"Authorization": endpoint.auth} if endpoint.auth else None
        try:
            resp = await self.client.request("POST", endpoint.url, data=data, headers=headers, shown=endpoint.shown)
        except TransportError as e:
            raise Rejected(e.kind, str(e), unknown_fate=e.maybe_received) from e
        self.stats.observe_latency(resp.elapsed)
        answer = resp.text()
        if resp.status in _RETRY_STATUSES or resp.status >= 500:
            hint = " (check the credentials of this output)" if resp.status in (401, 403, 407) else ""
            kind = "auth" if resp.status in (401, 403, 407) else "throttled" if resp.status == 429 else "server"
            raise Rejected(kind, f"{endpoint.shown} answered {resp.status}{hint}: {answer}", resp.retry_after)
        return resp.status, answer, resp.elapsed

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["hosts"] = self.shown
        s["format"] = self.options.format
        return s


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return HttpOutput(cfg, dead_letters, cfg.options)
