"""The Elasticsearch output's protocol: bulk requests and what their answers mean.

Every document is sent with op type `create` and a deterministic `_id`, so a resend is a no-op at
the destination (409 = already stored); `create` is also the only op data streams accept.

Batches close on count, bytes or time (delivery.linger); `max_in_flight` requests run at once,
optionally gzipped. Per-item outcomes (bulk.settle_items): delivered, retried alone with backoff,
or dead-lettered with its error and the original record, counted, and acknowledged so the
pipeline never stalls on it. A whole request answered 400/413 is split in halves until the
offending record stands alone.

429s (whole request or items) close the output's gate (delivery.retry.Gate), so a cluster pushing
back for minutes sees a few probes per backoff interval, not a retry storm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from ccf_agent.acks import AckToken
from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.httpclient import TransportError
from ccf_agent.outputs.base import Fragment, Output
from ccf_agent.outputs.deadletter import DeadItem, DeadLetters
from ccf_agent.outputs.delivery.linger import Linger
from ccf_agent.outputs.delivery.retry import Backoff, Gate
from ccf_agent.outputs.elasticsearch.bulk import (
    FILTER,
    RequestFailed,
    item_problem_message,
    request_failed,
    settle_items,
)
from ccf_agent.outputs.elasticsearch.client import EsClient
from ccf_agent.outputs.elasticsearch.config import config_problem, options_of
from ccf_agent.outputs.elasticsearch.encoding import Body, bulk_body, joined, request_data
from ccf_agent.outputs.elasticsearch.indices import IndexNamer

log = logging.getLogger("ccf_agent.outputs.elasticsearch")

OnDead = Callable[[list[DeadItem]], Awaitable[None]]


class ElasticsearchOutput(Output):
    def __init__(self, cfg: OutputConfig, dead_letters: DeadLetters) -> None:
        super().__init__(cfg)
        problem = config_problem(cfg)
        if problem:
            raise ValueError(f"output {cfg.name}: {problem if isinstance(problem, str) else problem[1]}")
        self.opts = options_of(cfg)
        self.namer = IndexNamer(cfg.index)
        self.dead = dead_letters
        self.client = EsClient(cfg)
        self.engine: str | None = None
        self.bulk_path = "/_bulk?" + FILTER
        if self.opts.pipeline:
            self.bulk_path += "&pipeline=" + quote(self.opts.pipeline, safe="")
        self.gzip = cfg.compression == "gzip"
        self.gate = Gate(cfg.backoff_initial, cfg.backoff_max)  # closed by the cluster's 429s
        self.linger = Linger(self)

    @property
    def hosts(self) -> list[Any]:
        return self.client.hosts

    # ------------------------------------------------------------------ encode (hot path)

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        return bulk_body(self.namer, events, indices)

    def submit(self, events: Events, indices: Sequence[int], token: AckToken | None) -> None:
        was_empty = not self.queue
        super().submit(events, indices, token)
        self.linger.submitted(was_empty)

    def take(self, max_docs: int, max_bytes: int) -> list[Fragment]:
        taken = super().take(max_docs, max_bytes)
        self.linger.taken()
        return taken

    # ------------------------------------------------------------------ delivery loop

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.cfg.max_in_flight)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._detect_engine(), name=f"{self.name}:engine")
                tg.create_task(self.client.probe(), name=f"{self.name}:probe")
                if self.opts.discovery:
                    tg.create_task(self.client.discover(self.opts.discovery_interval, self.scrub),
                                   name=f"{self.name}:discovery")
                await self.serve_requests(self._deliver, slots, self.linger.wait)
        finally:
            await self.client.close()

    async def _deliver(self, fragments: list[Fragment]) -> None:
        # The fragments' bodies are sent as they are (no join: one copy of each record fewer);
        # the request holds them from here on, so a retried body is held once (an outage's memory).
        body: Body = [f.body for f in fragments] if len(fragments) > 1 else fragments[0].body
        for f in fragments:
            f.body = b""
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max)
        while True:
            try:
                await self._send(body, self._dead_letter)
                break
            except Exception as e:  # noqa: BLE001 - a bug here must not stop shipping or lose records
                log.exception("output %s: unexpected error while delivering; resending the batch", self.name)
                self.health.report("internal", f"unexpected {type(e).__name__} while delivering: {e}; resending")
                await backoff.wait()
        self.acked(fragments)

    async def _send(self, body: Body, on_dead: OnDead) -> None:
        """Until every item of `body` is stored, found already stored, or handed to `on_dead`."""
        pending = body
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max)
        while pending:
            try:
                async with self.gate.passage():
                    outcome = await self._post(pending)
            except RequestFailed as e:
                self.stats.request_errors += 1
                if e.kind == "rejected":
                    # Something in this request the engine refuses as a whole: halve it until
                    # the record at fault is alone, then dead-letter just that one.
                    lines = joined(pending).split(b"\n")
                    if len(lines) > 3:
                        half = (len(lines) - 1) // 4 * 2 or 2
                        await self._send(b"\n".join(lines[:half]) + b"\n", on_dead)
                        await self._send(b"\n".join(lines[half:]), on_dead)
                        return
                    error = e.error if isinstance(e.error, dict) else {"type": "request_rejected", "reason": str(e)}
                    try:
                        await on_dead([DeadItem(e.status, error, lines[0], lines[1])])
                        return
                    except OSError as io_error:
                        self._dead_letter_failed(io_error)
                        await backoff.wait()
                        continue
                self.health.report(e.kind, str(e))
                if e.status == 429:
                    self.gate.close(e.retry_after)
                    backoff.attempt += 1
                else:
                    await backoff.wait(e.retry_after)
                continue
            if outcome is None:
                self._delivered()
                return
            pending = await self._settle(pending, outcome, on_dead)
            if pending:
                delay = backoff.next_delay()
                if not self.gate.closed_for():
                    await asyncio.sleep(delay)

    async def _settle(self, body: Body, outcome: dict[str, Any], on_dead: OnDead) -> Body:
        """Account for per-item results; return the body of the items to send again."""
        items = outcome.get("items") if isinstance(outcome, dict) else None
        items = items if isinstance(items, list) else []
        lines = joined(body).split(b"\n")
        if len(items) * 2 != len(lines) - 1:
            # The engine answered for a different number of items than sent: resend all rather than
            # guess (creates with fixed ids make that safe).
            self.health.report("protocol", f"bulk response has {len(items)} items for {(len(lines) - 1) // 2} "
                               "sent; resending the request")
            return body
        s = settle_items(items)
        self.stats.duplicates += s.duplicates
        trouble = bool(s.problem or s.throttled)
        if s.dead:
            try:
                await on_dead([DeadItem(status, error, lines[2 * p], lines[2 * p + 1]) for p, status, error in s.dead])
            except OSError as e:
                self._dead_letter_failed(e)
                s.retry = sorted(s.retry + [p for p, _, _ in s.dead])
                trouble = True
        if s.problem:
            kind, reason = s.problem
            self.health.report(kind, item_problem_message(kind, reason, self.name))
        elif s.throttled:
            self.health.report("throttled", f"the cluster rejected {s.throttled} of {len(items)} items with 429 "
                               "(write queue or memory full): backing off")
        if s.throttled:
            self.gate.close()
        if not trouble:
            self._delivered()
        if not s.retry:
            return b""
        self.stats.docs_retried += len(s.retry)
        return b"".join(b"%b\n%b\n" % (lines[2 * p], lines[2 * p + 1]) for p in s.retry)

    async def _post(self, body: Body) -> dict[str, Any] | None:
        """One bulk request: None when every item was stored, else the parsed response."""
        host = self.client.pick()
        data = await request_data(body, self.gzip)
        self.stats.requests += 1
        try:
            resp = await self.client.request(host, "POST", self.bulk_path, data)
        except TransportError as e:
            self.client.failed(host, str(e))
            raise RequestFailed(e.kind, str(e), maybe_received=e.maybe_received) from e
        self.stats.observe_latency(resp.elapsed)
        status, raw = resp.status, resp.body
        if status == 200:
            host.failures = 0
            if b'"errors":false' in raw[:64]:
                return None
            try:
                answer: dict[str, Any] = orjson.loads(raw)
                return answer
            except orjson.JSONDecodeError:
                raise RequestFailed("protocol", f"{host.url} answered a bulk request with 200 but no JSON: is it an "
                                    "Elasticsearch/OpenSearch node (or a proxy's login page)?") from None
        if status in (502, 503, 504):
            self.client.failed(host, f"answered {status}")
        raise request_failed(status, raw, host.url, self.name, self.bulk_path.split("?")[0], resp.retry_after)

    # ------------------------------------------------------------------ dead letters

    def _dead_letter_failed(self, e: OSError) -> None:
        # Never acknowledge a rejected record that is not safely kept: it is sent again later.
        self.health.report("dead_letter_io", f"cannot write dead letters ({e.strerror or e}) in {self.dead.dir}: "
                           "free disk space or fix permissions; the records wait")

    async def _dead_letter(self, items: list[DeadItem]) -> None:
        """Keep rejected records (index or file) before their fragment is acknowledged."""
        n = len(items)
        if self.opts.dead_letter_index:
            items = await self._dead_letter_to_index(items)
            self.dead.count_elsewhere(n - len(items))
        if items:
            self.dead.write_many(self.name, items)  # OSError: the caller keeps the records pending
        self.stats.docs_dead += n

    async def _dead_letter_to_index(self, items: list[DeadItem]) -> list[DeadItem]:
        """Into the dead-letter index; what it refuses too goes to the file (returned)."""
        assert self.opts.dead_letter_index is not None
        body, by_line = dead_letter_body(self.opts.dead_letter_index, self.name, items)
        refused: list[DeadItem] = []

        async def to_file(dead: list[DeadItem]) -> None:
            for d in dead:
                orig = by_line.get(d.doc)
                if orig is not None:
                    refused.append(DeadItem(orig.status, {"original": orig.error, "dead_letter_index": d.error},
                                            orig.action, orig.doc))

        await self._send(body, to_file)
        return refused

    # ------------------------------------------------------------------ engine

    async def _detect_engine(self) -> None:
        """GET / once at start: says which engine this is, and surfaces auth/TLS/DNS trouble at once."""
        backoff = Backoff(1.0, 60.0)
        while self.engine is None:
            host = self.client.pick()
            try:
                info = await self.client.get_json(host, "/", min(self.cfg.timeout, 10.0))
            except (RequestFailed, TransportError) as e:
                self.health.report(e.kind, str(e))
            except ValueError as e:
                self.health.report("protocol", f"{host.url} answered GET / with something other than JSON ({e})")
            else:
                version = info.get("version", {}) if isinstance(info, dict) else {}
                dist = version.get("distribution", "elasticsearch")
                self.engine = f"{dist} {version.get('number', '?')}"
                log.info("output %s: connected to %s at %s", self.name, self.engine, host.url)
                if self.problem in ("auth", "forbidden", "tls", "dns", "connect", "timeout"):
                    self._delivered()
                return
            await backoff.wait()

    # ------------------------------------------------------------------ health

    def _delivered(self) -> None:
        self.gate.reset()
        self.health.delivered()

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["engine"] = self.engine
        s["hosts"] = [{"url": h.url, "alive": h.alive} for h in self.client.hosts]
        s["tls_verify"] = self.cfg.tls.verify
        s["dead_letter"] = self.opts.dead_letter_index or str(self.dead.path_for(self.name))
        s["throttled_for_s"] = round(self.gate.closed_for(), 1)
        return s


def dead_letter_body(index: str, output: str, items: list[DeadItem]) -> tuple[bytes, dict[bytes, DeadItem]]:
    """A bulk body putting each dead item's envelope into the dead-letter index `index`, and the
    dead item of each envelope line (to find what the index refuses in turn)."""
    now = time.time()
    stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}.{int(now * 1000) % 1000:03d}Z"
    head = b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":'
    body: list[bytes] = []
    by_line: dict[bytes, DeadItem] = {}
    for it in items:
        try:
            action = orjson.loads(it.action)
            op = next(iter(action.values()))
            doc_id, target = op.get("_id"), op.get("_index")
        except (ValueError, StopIteration, AttributeError):
            doc_id = target = None
        envelope = orjson.dumps({"@timestamp": stamp, "output": output, "index": target, "status": it.status,
                                 "error": it.error, "document": it.doc.decode("utf-8", "replace")})
        by_line[envelope] = it
        body += (head + orjson.dumps(doc_id) + b"}}", b"\n", envelope, b"\n")
    return b"".join(body), by_line


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return ElasticsearchOutput(cfg, dead_letters)
