"""Plain HTTP output: POSTs records as NDJSON or a JSON array, for Logstash's `http` input and any
other collector that takes JSON over HTTP.

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
import email.utils
import logging
import ssl
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig, header_problem
from ccf_agent.credentials import basic_auth, safe_url, split_userinfo
from ccf_agent.outputs.base import Fragment, Output, backoff_delay, client_ssl_context
from ccf_agent.outputs.deadletter import DeadLetters

log = logging.getLogger("ccf_agent.outputs.http")

Where = Callable[[tuple[str | int, ...], str], Exception]

OPTION_KEYS: tuple[str, ...] = ("format", "headers")
FORMATS = ("ndjson", "json_array")
_RESERVED_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding", "host"})
_RETRY_STATUSES = frozenset({401, 403, 407, 408, 425, 429})


@dataclass(frozen=True)
class HttpOptions:
    format: str = "ndjson"
    headers: Mapping[str, str] = field(default_factory=dict)


def parse_options(raw: Mapping[str, Any], where: Where) -> HttpOptions:
    fmt = raw.get("format", "ndjson")
    if fmt not in FORMATS:
        raise where(("format",), f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise where(("headers",), "must be a mapping of header names to values")
    for name, value in headers.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise where(("headers", name), "must be a string")
        if name.lower() in _RESERVED_HEADERS:
            raise where(("headers", name), "is set by the agent itself")
        problem = header_problem(str(name), str(value))
        if problem:
            raise where(("headers", name), problem)
    return HttpOptions(fmt, {str(k): str(v) for k, v in headers.items()})


def config_problem(cfg: OutputConfig) -> str | None:
    """One source of credentials: aiohttp refuses a request that has both an Authorization header and
    credentials in its URL, so such a config would pass `check` and fail every delivery."""
    in_url = [j for j, h in enumerate(cfg.hosts) if split_userinfo(h)[1] is not None]
    headers = cfg.options.headers if isinstance(cfg.options, HttpOptions) else {}
    other = [k for k, v in (("api_key", cfg.api_key), ("bearer_token", cfg.bearer_token),
                            ("username", cfg.username)) if v]
    other += [f"headers.{k}" for k in headers if k.lower() == "authorization"]
    if in_url and other:
        return (f"hosts[{in_url[0]}] carries user:password@ and {other[0]} is set too: give the credentials "
                "one way only")
    return None


class Rejected(Exception):
    """The request failed in a way worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None, unknown_fate: bool = False) -> None:
        super().__init__(message)
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
        self.urls: list[str] = []
        self.url_auth: list[dict[str, str] | None] = []
        for h in cfg.hosts:
            bare, user, password = split_userinfo(h)
            self.urls.append(bare)
            self.url_auth.append({"Authorization": basic_auth(user, password or "")} if user is not None else None)
        self.shown = [safe_url(u) for u in self.urls]
        if not self.urls:
            raise ValueError(f"output {cfg.name}: http needs at least one URL in hosts")
        self._next_url = 0
        self.array = self.options.format == "json_array"
        headers = {"Content-Type": "application/json" if self.array else "application/x-ndjson"}
        if cfg.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        if cfg.api_key:
            headers["Authorization"] = f"ApiKey {cfg.api_key}"
        elif cfg.bearer_token:
            headers["Authorization"] = f"Bearer {cfg.bearer_token}"
        elif cfg.username:
            headers["Authorization"] = basic_auth(cfg.username, cfg.password or "")
        headers.update(self.options.headers)
        self.headers = headers
        needs_tls = any(u.startswith("https://") for u in self.urls)
        self.ssl: ssl.SSLContext | bool = client_ssl_context(cfg.tls, cfg.name) if needs_tls else False
        self.session: aiohttp.ClientSession | None = None

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
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout, connect=min(10.0, self.cfg.timeout))
        connector = aiohttp.TCPConnector(limit=self.cfg.max_in_flight + 2, ssl=self.ssl,
                                         enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=connector, headers=self.headers)
        slots = asyncio.Semaphore(self.cfg.max_in_flight)
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    fragments = await self.next_request(slots)
                    tg.create_task(self._deliver(fragments, slots))
        finally:
            await self.session.close()

    async def _deliver(self, fragments: list[Fragment], slots: asyncio.Semaphore) -> None:
        try:
            body = b"".join(f.body for f in fragments) if len(fragments) > 1 else fragments[0].body
            work = [_Chunk(body, sum(f.count for f in fragments))]
            attempt = 0
            while work:
                chunk = work[0]
                try:
                    status, answer = await self._post(chunk)
                except Rejected as e:
                    self.healthy = False
                    self.stats.request_errors += 1
                    self.stats.docs_retried += chunk.count
                    if e.unknown_fate:
                        self.stats.duplicates += chunk.count
                    message = self.note_error(str(e))
                    if attempt == 0 or attempt % 10 == 0:
                        log.warning("output %s: %s; retrying", self.name, message)
                    delay = backoff_delay(attempt, self.cfg.backoff_initial, self.cfg.backoff_max)
                    await asyncio.sleep(max(delay, e.retry_after or 0.0))
                    attempt += 1
                    continue
                work.pop(0)
                attempt = 0
                self.healthy = True
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
        finally:
            self.in_flight -= 1
            slots.release()
            self._update_idle()
            self._wake.set()

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
        assert self.session is not None
        k = self._next_url
        url, shown = self.urls[k], self.shown[k]
        self._next_url = (k + 1) % len(self.urls)
        data = self.wire(chunk.body)
        if self.cfg.compression == "gzip":
            data = zlib.compress(data, 1, wbits=31)
        started = time.monotonic()
        self.stats.requests += 1
        try:
            async with self.session.post(url, data=data, headers=self.url_auth[k]) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:  # ValueError: aiohttp refused it
            raise Rejected(self._describe(e, shown), unknown_fate=_maybe_received(e)) from e
        self.stats.observe_latency(time.monotonic() - started)
        answer = raw[:300].decode("utf-8", "replace").strip()
        if status in _RETRY_STATUSES or status >= 500:
            hint = " (check the credentials of this output)" if status in (401, 403, 407) else ""
            raise Rejected(f"{shown} answered {status}{hint}: {answer}", _parse_retry_after(retry_after))
        return status, answer

    def _describe(self, e: BaseException, url: str) -> str:
        if isinstance(e, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
            return (f"TLS verification of {url} failed ({getattr(e, 'certificate_error', e)}): "
                    "set tls.ca_file to the CA that signed the server's certificate")
        if isinstance(e, aiohttp.ClientConnectorError):
            return f"cannot connect to {url}: {e.os_error.strerror if e.os_error else e}"
        if isinstance(e, TimeoutError):
            return f"{url} did not answer within {self.cfg.timeout:g}s"
        return f"{url}: {type(e).__name__}: {e}"

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["hosts"] = self.shown
        s["format"] = self.options.format
        return s


def _maybe_received(e: BaseException) -> bool:
    """False only when the request certainly never reached the server (no connection was made)."""
    return not isinstance(e, aiohttp.ClientConnectorError | ValueError)  # ValueError: refused before sending


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return HttpOutput(cfg, dead_letters, cfg.options)
