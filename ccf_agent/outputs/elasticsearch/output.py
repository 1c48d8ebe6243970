"""The Elasticsearch output's protocol: bulk requests and what their answers mean.

Every document is sent with op type `create` and a deterministic `_id`, so a resend is a no-op at
the destination (409 = already stored); `create` is also the only op data streams accept.

Batches close on count, bytes or time (delivery.linger), optionally gzipped. Per-item outcomes
(bulk.settle_items): delivered, retried, or dead-lettered with its error and the original record,
counted, and acknowledged so the pipeline never stalls on it. A whole request answered 400/413 is
split in halves until the offending record stands alone.

Pushback. A bulk most of whose items were taken is progress: its refused items wait on their own
short backoff in the output's retry queue (delivery.batch) and go out again with the next
requests, while new records keep flowing. Only a cluster refusing (nearly) all it gets, or a whole
request (429, 503, no answer), closes the output's gate (delivery.retry.Gate): then a few probes
per backoff interval test it, not a retry storm. How many requests run at once adapts to the
pushback, up to `max_in_flight` (delivery.slots).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
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
from ccf_agent.outputs.delivery.batch import Batch, Piece
from ccf_agent.outputs.delivery.health import RELOG_SECONDS
from ccf_agent.outputs.delivery.linger import Linger
from ccf_agent.outputs.delivery.retry import Backoff, Gate, Refusals, backoff_delay, loop_time
from ccf_agent.outputs.delivery.slots import AdaptiveSlots
from ccf_agent.outputs.elasticsearch.bulk import (
    FILTER,
    RequestFailed,
    item_problem_message,
    request_failed,
    settle_items,
)
from ccf_agent.outputs.elasticsearch.client import EsClient
from ccf_agent.outputs.elasticsearch.config import config_problem, options_of
from ccf_agent.outputs.elasticsearch.encoding import bulk_body, gzipped, request_data
from ccf_agent.outputs.elasticsearch.indices import IndexNamer
from ccf_agent.outputs.names import Refused

log = logging.getLogger("ccf_agent.outputs.elasticsearch")

OnDead = Callable[[list[DeadItem]], Awaitable[None]]

# Refused items of a bulk the cluster mostly took back off at most 2**PARTIAL_STEPS x backoff_initial
# (0.4 s by default): a hot shard refusing a third of every bulk costs its items a few short waits.
PARTIAL_STEPS = 2
# The output backs off as a whole when its latest bulks' items were refused at least this much.
MOSTLY_REFUSED = 0.9


def _at_once(attempt: int) -> float:
    return 0.0  # no wait of their own: the closed gate holds every request back


class ElasticsearchOutput(Output):
    record_lines = 2  # the action line and the document

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
        self.gate = Gate(cfg.backoff_initial, cfg.backoff_max)  # closed when the cluster refuses a whole request
        self.refusals = Refusals()  # or nearly every item of its latest bulks
        self.slots = AdaptiveSlots(cfg.max_in_flight, cfg.batch_max_docs)
        self.linger = linger = Linger(self)
        self._linger_wait = linger.wait
        self._refused: deque[tuple[list[DeadItem], Fragment]] = deque()  # records given no index name
        self._refused_ready = asyncio.Event()
        self._refused_logged = -RELOG_SECONDS

    @property
    def hosts(self) -> list[Any]:
        return self.client.hosts

    def record_fields(self) -> set[str]:
        return self.namer.compiled.top_fields

    def batch_docs(self) -> int:
        return self.slots.batch_docs

    # ------------------------------------------------------------------ encode (hot path)

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        return bulk_body(self.namer, events, indices)

    def submit(self, events: Events, indices: Sequence[int], token: AckToken | None) -> None:
        if self.namer.by_record:  # the index from the record's fields: a name per record
            actions, kept, refused = self.namer.route(events, indices)
            if refused:
                self._refuse(events, refused, token)
            if not kept:
                return
            self.enqueue(bulk_body(self.namer, events, kept, actions), len(kept), token)
        else:
            super().submit(events, indices, token)

    def _refuse(self, events: Events, refused: list[tuple[int, Refused]], token: AckToken | None) -> None:
        """Records the index pattern gives no name (a field missing without a default, a name the
        engine would refuse): never sent, dead-lettered with why by `_settle_refused`."""
        ids, docs = events.ids, events.docs
        items = [DeadItem(0, {"type": "index_name_refused", "reason": r.reason},
                          b'{"create":{"_index":' + orjson.dumps(r.name) + b',"_id":"' + ids[i] + b'"}}', docs[i])
                 for i, r in refused]
        n = len(items)
        if token is not None:
            token.hold()
            self.held_bytes += token.nbytes
        self.stats.docs_in += n
        self._refused.append((items, Fragment(b"", n, token, n)))
        self._idle.clear()
        self._refused_ready.set()

    async def _settle_refused(self) -> None:
        """Until cancelled: dead-letter the records refused a name, then acknowledge them."""
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max)
        while True:
            if not self._refused:
                self._refused_ready.clear()
                self._update_idle()
                await self._refused_ready.wait()
                continue
            items, fragment = self._refused[0]
            try:
                await self._dead_letter(items)
            except OSError as e:
                self._dead_letter_failed(e)
                await backoff.wait()
                continue
            backoff.reset()
            self._refused.popleft()
            now = time.monotonic()
            if now - self._refused_logged > RELOG_SECONDS:
                self._refused_logged = now
                log.warning("output %s: %s", self.name, self.note_error(
                    f"{len(items)} records got no index name and were dead-lettered: {items[0].error['reason']}"))
            self.credit(fragment, len(items))

    def _update_idle(self) -> None:
        if not self._refused:
            super()._update_idle()

    # ------------------------------------------------------------------ delivery loop

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._detect_engine(), name=f"{self.name}:engine")
                tg.create_task(self.client.probe(), name=f"{self.name}:probe")
                if self.namer.by_record:
                    tg.create_task(self._settle_refused(), name=f"{self.name}:refused-names")
                if self.opts.discovery:
                    tg.create_task(self.client.discover(self.opts.discovery_interval, self.scrub),
                                   name=f"{self.name}:discovery")
                await self.serve_requests(self._deliver, self.slots, self._linger_wait)
        finally:
            await self.client.close()

    async def _deliver(self, batch: Batch) -> list[Piece]:
        return await self._attempt(batch, self._dead_letter)

    async def _attempt(self, batch: Batch, on_dead: OnDead) -> list[Piece]:
        """One bulk request for `batch`: every record settled, or returned to be sent again."""
        try:
            async with self.gate.passage():
                sent_at = time.monotonic()
                answer, rtt = await self._post(batch)
        except RequestFailed as e:
            self.stats.request_errors += 1
            if e.kind == "rejected":
                return await self._rejected(batch, e, on_dead)
            self.health.report(e.kind, str(e))
            # Refused as a whole (429/503), no answer in time, or no usable answer at all: the
            # output backs off as a whole, one request at a time testing the cluster.
            pushback = e.status in (429, 503) or e.kind == "timeout"
            if pushback:
                self.refusals.record(batch.count, batch.count)
            self.slots.observe(sent_at, None, pushback)
            self.gate.close(e.retry_after)
            return batch.retry_all(_at_once, loop_time())
        if answer is None:
            self.refusals.record(batch.count, 0)
            self.slots.observe(sent_at, rtt, False, batch.count, 0)
            self._delivered()
            batch.ack()
            return []
        return await self._settle(batch, answer, sent_at, rtt, on_dead)

    async def _rejected(self, batch: Batch, e: RequestFailed, on_dead: OnDead) -> list[Piece]:
        """Something in this request the engine refuses as a whole (400, 413): halve it until the
        record at fault is alone, then dead-letter just that one."""
        if batch.count > 1:
            again: list[Piece] = []
            for half in batch.split():
                again += await self.settled(lambda b: self._attempt(b, on_dead), half)
            return again
        action, doc = batch.records()[0].split(b"\n")[:2]
        error = e.error if isinstance(e.error, dict) else {"type": "request_rejected", "reason": str(e)}
        try:
            await on_dead([DeadItem(e.status, error, action, doc)])
        except OSError as io_error:
            self._dead_letter_failed(io_error)
            return batch.retry_all(self._retry_delay(partial=False), loop_time())
        batch.ack()
        return []

    async def _settle(self, batch: Batch, answer: dict[str, Any], sent_at: float, rtt: float,
                      on_dead: OnDead) -> list[Piece]:
        """Account for per-item results; return the pieces to send again.

        A bulk most of whose items were taken is progress, whatever was refused: the refused items
        come back on their own short backoff and new requests keep going. Only a cluster refusing
        (nearly) every item of its latest bulks closes the gate, as a 429 to the whole request does."""
        items = answer.get("items") if isinstance(answer, dict) else None
        items = items if isinstance(items, list) else []
        n = batch.count
        if len(items) != n:
            # The engine answered for a different number of items than sent: resend all rather than
            # guess (creates with fixed ids make that safe).
            self.health.report("protocol", f"bulk response has {len(items)} items for {n} sent; resending the request")
            self.gate.close()
            return batch.retry_all(_at_once, loop_time())
        s = settle_items(items)
        self.stats.duplicates += s.duplicates
        kept = True
        if s.dead:
            records = batch.records()
            try:
                await on_dead([DeadItem(status, error, *records[p].split(b"\n")[:2]) for p, status, error in s.dead])
            except OSError as e:
                self._dead_letter_failed(e)
                s.retry = sorted(s.retry + [p for p, _, _ in s.dead])
                kept = False
        refused = len(s.retry)
        mostly_refused = self.refusals.record(n, refused) >= MOSTLY_REFUSED
        self.slots.observe(sent_at, rtt, mostly_refused, n, s.throttled)
        if s.problem:
            kind, reason = s.problem
            self.health.report(kind, item_problem_message(kind, reason, self.name))
        elif mostly_refused and s.throttled:
            self.health.report("throttled", f"the cluster rejected {s.throttled} of {n} items with 429 (write "
                               "queue or memory full): backing off")
        elif kept:
            self._delivered()
            if refused:
                self.note_error(f"the cluster refused {refused} of {n} items ({s.throttled} with 429); "
                                "sending them again")
        if mostly_refused:
            self.gate.close()
        return batch.settle(s.retry, self._retry_delay(partial=not (mostly_refused or s.problem)), loop_time())

    def _retry_delay(self, partial: bool) -> Callable[[int], float]:
        """Backoff of records sent again. Refused by a cluster that took most of their request
        (a hot shard, a write queue full now and then): a short one, growing at most PARTIAL_STEPS
        times; the gate and the adaptive slots pace the cluster as a whole. Otherwise the
        output's full backoff."""
        cfg = self.cfg
        steps = PARTIAL_STEPS if partial else 1 << 30
        return lambda attempt: backoff_delay(min(attempt - 1, steps), cfg.backoff_initial, cfg.backoff_max)

    async def _post(self, batch: Batch) -> tuple[dict[str, Any] | None, float]:
        """One bulk request: (None when every item was stored, else the parsed response; round trip)."""
        host = self.client.pick()
        parts = batch.parts()
        body = parts[0] if len(parts) == 1 else parts
        data = await gzipped(body) if self.gzip else request_data(body)
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
                return None, resp.elapsed
            try:
                answer: dict[str, Any] = orjson.loads(raw)
                return answer, resp.elapsed
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
        """Into the dead-letter index, before the records' fragments are acknowledged (so within
        this request, retried here); what the index refuses too goes to the file (returned)."""
        assert self.opts.dead_letter_index is not None
        body, by_line = dead_letter_body(self.opts.dead_letter_index, self.name, items)
        refused: list[DeadItem] = []

        async def to_file(dead: list[DeadItem]) -> None:
            for d in dead:
                orig = by_line.get(d.doc)
                if orig is not None:
                    refused.append(DeadItem(orig.status, {"original": orig.error, "dead_letter_index": d.error},
                                            orig.action, orig.doc))

        batch = Batch(None, [Piece(body, len(items), None)], self.record_lines)
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max)
        while True:
            again = await self.settled(lambda b: self._attempt(b, to_file), batch)
            if not again:
                return refused
            await backoff.wait(max(p.due for p in again) - loop_time())
            batch = Batch(None, again, self.record_lines)

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
                if self.problem in ("auth", "forbidden", "tls", "dns", "connect", "timeout", "proxy"):
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
        if self.namer.by_record:  # values a name may not hold, replaced by their defaults
            s["index_name_fallbacks"] = self.namer.names.fallbacks
            s["index_name_last_fallback"] = self.namer.names.last_fallback
        # adapted to the cluster's pushback, up to max_in_flight and batch_max_docs
        s["request_slots"], s["batch_docs"] = self.slots.limit, self.slots.batch_docs
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
