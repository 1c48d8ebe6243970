"""Elasticsearch / OpenSearch output over the `_bulk` HTTP API.

Spoken directly over aiohttp rather than through the official client, because that
client refuses OpenSearch. Every document is sent with op type `create` and a
deterministic `_id`, so a resend is a no-op at the destination (409 = already stored).

Per-item outcomes: 2xx and 409 are delivered; 429 and 5xx items are retried alone with
backoff; any other rejection (mapping conflicts, 400s) is dead-lettered with its error,
counted, and acknowledged so the pipeline never stalls on it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig, TlsConfig
from ccf_agent.outputs.base import Fragment, Output, backoff_delay
from ccf_agent.outputs.deadletter import DeadLetters

log = logging.getLogger("ccf_agent.outputs.elasticsearch")

_DATE_PATTERN = re.compile(r"%\{\+([^}]+)\}")
_FILTER = "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"


def make_ssl_context(tls: TlsConfig, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if not tls.verify:
        log.warning("output %s: TLS certificate verification is OFF (tls.verify: false); "
                    "anyone on the path can read and alter what is shipped", name)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class IndexNamer:
    """Index names from the record's event time (`ccf-logs-%{+yyyy.MM.dd}`), never the wall clock."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.dated = bool(_DATE_PATTERN.search(pattern))
        self._cache: dict[bytes, bytes] = {}
        self.static_action = b'{"create":{"_index":' + orjson.dumps(pattern) + b',"_id":"'

    def action(self, stamp: bytes) -> bytes:
        if not self.dated:
            return self.static_action
        day = stamp[:10]
        hit = self._cache.get(day)
        if hit is None:
            y, m, d = day[0:4].decode(), day[5:7].decode(), day[8:10].decode()

            def fmt(mt: re.Match[str]) -> str:
                return mt.group(1).replace("yyyy", y).replace("MM", m).replace("dd", d)

            name = _DATE_PATTERN.sub(fmt, self.pattern)
            hit = b'{"create":{"_index":' + orjson.dumps(name) + b',"_id":"'
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[day] = hit
        return hit


@dataclass
class Host:
    url: str
    down_until: float = 0.0
    failures: int = 0


class BulkRejected(Exception):
    """The whole request failed in a way worth retrying (connection, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ElasticsearchOutput(Output):
    def __init__(self, cfg: OutputConfig, dead_letters: DeadLetters) -> None:
        super().__init__(cfg)
        self.namer = IndexNamer(cfg.index)
        self.dead = dead_letters
        self.hosts = [Host(h.rstrip("/")) for h in cfg.hosts]
        self._next_host = 0
        self.engine: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.headers = {"Content-Type": "application/x-ndjson"}
        if cfg.compression == "gzip":
            self.headers["Content-Encoding"] = "gzip"
        if cfg.api_key:
            self.headers["Authorization"] = f"ApiKey {cfg.api_key}"
        elif cfg.bearer_token:
            self.headers["Authorization"] = f"Bearer {cfg.bearer_token}"
        elif cfg.username:
            token = base64.b64encode(f"{cfg.username}:{cfg.password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        needs_tls = any(h.startswith("https://") for h in cfg.hosts)
        self.ssl: ssl.SSLContext | bool = make_ssl_context(cfg.tls, cfg.name) if needs_tls else False

    # ------------------------------------------------------------------ encode (hot path)

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        ids, docs, stamps = events.ids, events.docs, events.stamps
        parts: list[bytes] = []
        add = parts.extend
        namer = self.namer
        if not namer.dated:
            action = namer.static_action
            for i in indices:
                add((action, ids[i], b'"}}\n', docs[i], b"\n"))
        else:
            act = namer.action
            for i in indices:
                add((act(stamps[i]), ids[i], b'"}}\n', docs[i], b"\n"))
        return b"".join(parts)

    # ------------------------------------------------------------------ delivery

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout, connect=min(10.0, self.cfg.timeout))
        connector = aiohttp.TCPConnector(limit=self.cfg.max_in_flight * max(1, len(self.hosts)) + 2,
                                         ssl=self.ssl, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=connector, headers=self.headers,
                                             json_serialize=lambda o: orjson.dumps(o).decode())
        slots = asyncio.Semaphore(self.cfg.max_in_flight)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._detect_engine())
                while True:
                    if not self.queue:
                        self._update_idle()
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    await slots.acquire()
                    # Adaptive batching: a free slot sends whatever is queued at once (low latency);
                    # under load, slots are busy and batches grow while they wait (throughput).
                    fragments = self.take(self.cfg.batch_max_docs, self.cfg.batch_max_bytes)
                    if not fragments:
                        slots.release()
                        continue
                    self.in_flight += 1
                    tg.create_task(self._deliver(fragments, slots))
        finally:
            await self.session.close()

    async def _detect_engine(self) -> None:
        attempt = 0
        while self.engine is None:
            host = self._pick_host()
            try:
                assert self.session is not None
                async with self.session.get(host.url + "/") as resp:
                    if resp.status == 401 or resp.status == 403:
                        raise BulkRejected(self._auth_message(resp.status))
                    info = orjson.loads(await resp.read())
                version = info.get("version", {})
                dist = version.get("distribution", "elasticsearch")
                self.engine = f"{dist} {version.get('number', '?')}"
                log.info("output %s: connected to %s at %s", self.name, self.engine, host.url)
            except Exception as e:  # noqa: BLE001 - any failure here is reported and retried
                self.note_error(self._describe(e, host.url))
                await asyncio.sleep(backoff_delay(attempt, 1.0, 60.0))
                attempt += 1

    async def _deliver(self, fragments: list[Fragment], slots: asyncio.Semaphore) -> None:
        try:
            body = b"".join(f.body for f in fragments) if len(fragments) > 1 else fragments[0].body
            attempt = 0
            while True:
                try:
                    outcome = await self._post(body)
                except BulkRejected as e:
                    self.healthy = False
                    self.stats.request_errors += 1
                    self.note_error(str(e))
                    if attempt == 0 or attempt % 10 == 0:
                        log.warning("output %s: %s; retrying", self.name, e)
                    delay = backoff_delay(attempt, self.cfg.backoff_initial, self.cfg.backoff_max)
                    await asyncio.sleep(max(delay, e.retry_after or 0.0))
                    attempt += 1
                    continue
                self.healthy = True
                body = self._settle(body, outcome)
                if not body:
                    break
                delay = backoff_delay(attempt, self.cfg.backoff_initial, self.cfg.backoff_max)
                await asyncio.sleep(delay)
                attempt += 1
            self.acked(fragments)
        finally:
            self.in_flight -= 1
            slots.release()
            self._update_idle()
            self._wake.set()

    def _settle(self, body: bytes, outcome: dict[str, Any] | None) -> bytes:
        """Account for per-item results; return the body of the items to retry (empty when done)."""
        if outcome is None:  # errors: false
            return b""
        items = outcome.get("items", [])
        lines = body.split(b"\n")
        retry: list[bytes] = []
        for i, item in enumerate(items):
            result = next(iter(item.values()), {})
            status = result.get("status", 0)
            if 200 <= status < 300:
                continue
            if status == 409:
                self.stats.duplicates += 1
                continue
            action, doc = lines[2 * i], lines[2 * i + 1]
            error = result.get("error", {})
            if status == 429 or status >= 500 or _is_block(error):
                if _is_block(error):
                    self.healthy = False
                    self.note_error(f"index blocked: {error.get('reason', '')} — the index is read-only "
                                    "(often the disk flood-stage watermark): free disk space, then clear "
                                    "index.blocks.read_only_allow_delete; retrying")
                self.stats.docs_retried += 1
                retry.extend((action, b"\n", doc, b"\n"))
                continue
            self.stats.docs_dead += 1
            self.dead.write(self.name, status, error, action, doc)
        if len(items) * 2 != len(lines) - 1:
            # The engine answered for a different number of items than sent: resend all rather than guess.
            log.error("output %s: bulk response has %d items for %d sent; resending", self.name,
                      len(items), (len(lines) - 1) // 2)
            return body
        return b"".join(retry)

    async def _post(self, body: bytes) -> dict[str, Any] | None:
        assert self.session is not None
        host = self._pick_host()
        url = f"{host.url}/_bulk?{_FILTER}"
        data = zlib.compress(body, 1, wbits=31) if self.cfg.compression == "gzip" else body
        started = time.monotonic()
        self.stats.requests += 1
        try:
            async with self.session.post(url, data=data) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._host_failed(host)
            raise BulkRejected(self._describe(e, host.url)) from e
        self.stats.observe_latency(time.monotonic() - started)
        if status == 200:
            host.failures = 0
            if b'"errors":false' in raw[:64]:
                return None
            return orjson.loads(raw)
        wait = _parse_retry_after(retry_after)
        if status == 429 or status >= 500:
            if status in (502, 503, 504):
                self._host_failed(host)
            raise BulkRejected(f"{host.url} answered {status} to a bulk request: {_reason(raw)}", wait)
        if status in (401, 403):
            raise BulkRejected(self._auth_message(status), wait)
        raise BulkRejected(f"{host.url} rejected the bulk request with {status}: {_reason(raw)}", wait)

    # ------------------------------------------------------------------ hosts and messages

    def _pick_host(self) -> Host:
        now = time.monotonic()
        n = len(self.hosts)
        for k in range(n):
            h = self.hosts[(self._next_host + k) % n]
            if h.down_until <= now:
                self._next_host = (self._next_host + k + 1) % n
                return h
        return min(self.hosts, key=lambda h: h.down_until)  # all down: probe the soonest

    def _host_failed(self, host: Host) -> None:
        host.failures += 1
        if len(self.hosts) > 1:
            host.down_until = time.monotonic() + min(60.0, 0.5 * 2 ** min(host.failures, 7))

    def _auth_message(self, status: int) -> str:
        if status == 401:
            return (f"authentication failed (401): check the username/password or api_key of output "
                    f"'{self.name}'")
        return f"not authorised (403): the credentials of output '{self.name}' lack the index privileges"

    def _describe(self, e: BaseException, url: str) -> str:
        if isinstance(e, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
            return (f"TLS verification of {url} failed ({getattr(e, 'certificate_error', e)}): "
                    "set tls.ca_file to the CA that signed the server's certificate")
        if isinstance(e, aiohttp.ClientSSLError | ssl.SSLError):
            return f"TLS handshake with {url} failed: {e}"
        if isinstance(e, aiohttp.ClientConnectorDNSError):
            return f"unknown host in {url}: the name does not resolve"
        if isinstance(e, aiohttp.ClientConnectorError):
            return f"cannot connect to {url}: {e.os_error.strerror if e.os_error else e}"
        if isinstance(e, TimeoutError):
            return f"{url} did not answer within {self.cfg.timeout:g}s"
        if isinstance(e, BulkRejected):
            return str(e)
        return f"{url}: {type(e).__name__}: {e}"

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["engine"] = self.engine
        s["hosts"] = [h.url for h in self.hosts]
        return s


def _is_block(error: Any) -> bool:
    return isinstance(error, dict) and error.get("type") == "cluster_block_exception"


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _reason(raw: bytes) -> str:
    try:
        err = orjson.loads(raw).get("error", {})
        if isinstance(err, dict):
            kind, reason = err.get("type", ""), err.get("reason", "")
            if kind == "cluster_block_exception" or "read-only" in reason or "read_only" in reason:
                return (f"{kind}: {reason} — the index is blocked read-only (often the disk flood-stage "
                        "watermark): free disk space, then clear index.blocks.read_only_allow_delete")
            return f"{kind}: {reason}"
        return str(err)
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace")


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return ElasticsearchOutput(cfg, dead_letters)
