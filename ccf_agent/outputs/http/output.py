"""The HTTP output's protocol: POST the records, and read what each answer means for them.

A request is retried with backoff (the server's Retry-After honoured) after a connection error, a
timeout, 429, 5xx, 408, or an authentication refusal (401/403/407: credentials get fixed, records
must not be thrown away meanwhile). 413 splits the request in two. Any other 4xx means the
collector rejects those records for good: each is written to the dead-letter file with the status
and the answer, and acknowledged so the pipeline moves on.

An HTTP collector cannot deduplicate: records resent after a connection error or timeout (the
server may have stored them before the answer was lost) are counted in `stats.duplicates`.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.httpclient import HttpClient, TransportError, client_ssl_context
from ccf_agent.httpclient.auth import Endpoint, auth_header
from ccf_agent.outputs.base import Fragment, Output
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.delivery.retry import Backoff
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


@dataclass(slots=True)
class _Chunk:
    body: bytes  # NDJSON, one record per line
    count: int


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
                                 limit=cfg.max_in_flight + 2, server_hostname=cfg.tls.server_name)

    @property
    def shown(self) -> list[str]:
        return [e.shown for e in self.endpoints]

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
        slots = asyncio.Semaphore(self.cfg.max_in_flight)
        try:
            await self.serve_requests(self._deliver, slots)
        finally:
            await self.client.close()

    async def _deliver(self, fragments: list[Fragment]) -> None:
        body = b"".join(f.body for f in fragments) if len(fragments) > 1 else fragments[0].body
        work = [_Chunk(body, sum(f.count for f in fragments))]
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max)
        while work:
            chunk = work[0]
            try:
                status, answer = await self._post(chunk)
            except Rejected as e:
                self.stats.request_errors += 1
                self.stats.docs_retried += chunk.count
                if e.unknown_fate:
                    self.stats.duplicates += chunk.count
                self.health.report(e.kind, f"{e}; retrying")
                await backoff.wait(e.retry_after)
                continue
            work.pop(0)
            backoff.reset()
            self.health.delivered()
            if 200 <= status < 300:
                continue
            if status == 413 and chunk.count > 1:
                lines = chunk.body.split(b"\n")[:-1]
                half = len(lines) // 2
                work[:0] = [_Chunk(b"\n".join(lines[:half]) + b"\n", half),
                            _Chunk(b"\n".join(lines[half:]) + b"\n", len(lines) - half)]
                continue
            self._dead_letter(chunk, status, answer)
        self.acked(fragments)

    def _dead_letter(self, chunk: _Chunk, status: int, answer: str) -> None:
        self.stats.docs_dead += chunk.count
        answer = self.scrub(answer)  # a collector may quote the request's credentials back
        self.note_error(f"{status} from the collector, {chunk.count} records dead-lettered: {answer}")
        log.error("output %s: the collector rejected %d records with %d (%s); written to %s",
                  self.name, chunk.count, status, answer, self.dead.path_for(self.name))
        for doc in chunk.body.split(b"\n")[:-1]:
            self.dead.write(self.name, status, answer, b"", doc)

    async def _post(self, chunk: _Chunk) -> tuple[int, str]:
        """(status, start of the answer) for any final answer; raises Rejected for retryable ones."""
        k = self._next_url
        endpoint = self.endpoints[k]
        self._next_url = (k + 1) % len(self.endpoints)
        data = self.wire(chunk.body)
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
        return resp.status, answer

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["hosts"] = self.shown
        s["format"] = self.options.format
        return s


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return HttpOutput(cfg, dead_letters, cfg.options)
