"""Elasticsearch / OpenSearch output over the `_bulk` HTTP API.

Spoken directly over aiohttp rather than through the official client, because that
client refuses OpenSearch. Every document is sent with op type `create` and a
deterministic `_id`, so a resend is a no-op at the destination (409 = already stored);
`create` is also the only op data streams accept.

Batches close on count, bytes or time (`flush_interval` after a free request slot found
records waiting); `max_in_flight` requests run at once, optionally gzipped. Batching adapts to
load: a partial batch leaves `flush_interval` after its oldest record unless records arrive fast
enough to fill half a batch within LINGER_FACTOR x `flush_interval`; then it waits for that. A
backlog ships in few large requests, a trickle still leaves within `flush_interval`.

Per-item outcomes: 2xx and 409 are delivered; 429, 5xx and conditions an operator fixes
(write blocks, missing index or ingest pipeline, missing privileges) are retried alone with
backoff; any other rejection (mapping conflicts, 400s) is dead-lettered with its error and
the original record, counted, and acknowledged so the pipeline never stalls on it. A whole
request answered 400/413 is split in halves until the offending record stands alone.

429s (whole request or items) close a gate shared by every request of the output, so a
cluster pushing back for minutes sees a few probes per backoff interval, not a retry storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from ccf_agent.acks import AckToken
from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig, parse_duration
from ccf_agent.credentials import basic_auth, split_userinfo
from ccf_agent.outputs.base import Fragment, Output, backoff_delay, client_ssl_context
from ccf_agent.outputs.deadletter import DeadItem, DeadLetters
from ccf_agent.pipeline.native import fast as _fast  # the bulk body in C, or None

# How much longer than flush_interval a fast-growing batch may wait to fill: bench/run.py's default
# scenario sent 3,255 requests of ~300 documents without it, at ~0.6 ms of agent CPU per request.
LINGER_FACTOR = 20

log = logging.getLogger("ccf_agent.outputs.elasticsearch")


def half_full_in(age: float, span: float, later_docs: int, later_bytes: int, docs: int, size: int,
                 cfg: OutputConfig) -> float | None:
    """How long a partial batch whose oldest record came `age` s ago should wait for half a batch,
    given that `later_docs` (`later_bytes`) arrived over the last `span` s; None: send it now.

    The rate leaves out the burst the span starts with: records come in bursts (one read, one
    writer's flush), and counting it would see a steady 10,000 lines/s written 100 per 10 ms as
    twice that. The wait is worth it only if the batch is half full within LINGER_FACTOR x
    `flush_interval` of its oldest record."""
    if later_docs <= 0 or span <= 0:
        return None
    need_docs = cfg.batch_max_docs / 2 - docs
    need_bytes = cfg.batch_max_bytes / 2 - size
    if need_docs <= 0 or need_bytes <= 0:
        return None
    wait = need_docs * span / later_docs
    if later_bytes > 0:
        wait = min(wait, need_bytes * span / later_bytes)
    return wait if age + wait <= cfg.flush_interval * LINGER_FACTOR else None


_DATE_PATTERN = re.compile(r"%\{\+([^}]+)\}")
# Enough of each failed item to dead-letter it with its cause, and no more: a clean
# response shrinks to one small object per item.
_FILTER = ("filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason,"
           "items.*.error.caused_by.type,items.*.error.caused_by.reason")
RETRY_AFTER_MAX = 300.0  # honour Retry-After, but a bogus header must not park an output for hours
PROBE_TIMEOUT = 5.0
GZIP_THREAD_MIN = 256 << 10  # with stdlib zlib, larger bodies are compressed on a worker thread

# ---------------------------------------------------------------------------------- options

OPTION_KEYS = ("dead_letter_index", "discovery", "data_stream", "pipeline", "retention", "template")
DEFAULT_RETENTION = 30 * 86400.0  # the seed's logrotate keeps 30 days
_INDEX_NAME = re.compile(r'^[a-z0-9][^\\/*?"<>| ,#:A-Z]*$')


@dataclass(frozen=True)
class EsOptions:
    dead_letter_index: str | None = None  # else the NDJSON file under state_dir/dead_letter/
    discovery: bool = False  # add the cluster's HTTP nodes (GET /_nodes/http) to `hosts`
    discovery_interval: float = 300.0
    data_stream: bool = False  # `index` names a data stream (setup installs a data-stream template)
    pipeline: str | None = None  # ingest pipeline applied to every document
    retention: float | None = DEFAULT_RETENTION  # seconds; None: setup installs no ILM/ISM policy
    template: str | None = None  # name of setup's index template and policy; default ccf-agent-<output>


def parse_options(raw: dict[str, Any], where: Callable[[tuple[str, ...], str], Exception]) -> EsOptions:
    """This output's own config keys; `where(key_path, message)` gives an error naming file:line."""
    kw: dict[str, Any] = {}
    dli = raw.get("dead_letter_index")
    if dli is not None:
        if not isinstance(dli, str) or not _INDEX_NAME.match(dli) or "%{" in dli:
            raise where(("dead_letter_index",), "must be a lowercase index name without wildcards or "
                        f"date patterns, like ccf-dead-letters, not {dli!r}")
        kw["dead_letter_index"] = dli
    disc = raw.get("discovery")
    if isinstance(disc, bool):
        kw["discovery"] = disc
    elif isinstance(disc, dict):
        unknown = set(disc) - {"enabled", "interval"}
        if unknown:
            raise where(("discovery", sorted(unknown)[0]), "unknown key (known keys here: enabled, interval)")
        enabled = disc.get("enabled", True)
        if not isinstance(enabled, bool):
            raise where(("discovery", "enabled"), "must be true or false")
        interval = parse_duration(disc.get("interval", 300))
        if interval is None or interval < 1:
            raise where(("discovery", "interval"), "must be a duration of at least 1s, like 5m")
        kw["discovery"], kw["discovery_interval"] = enabled, interval
    elif disc is not None:
        raise where(("discovery",), "must be true, false or a mapping {enabled, interval}")
    ds = raw.get("data_stream")
    if ds is not None:
        if not isinstance(ds, bool):
            raise where(("data_stream",), "must be true or false")
        kw["data_stream"] = ds
    pipeline = raw.get("pipeline")
    if pipeline is not None:
        if not isinstance(pipeline, str) or not pipeline.strip():
            raise where(("pipeline",), "must be the name of an ingest pipeline")
        kw["pipeline"] = pipeline
    if "retention" in raw:
        ret = raw["retention"]
        if ret is False or (isinstance(ret, str) and ret.strip().lower() in ("off", "none")):
            kw["retention"] = None
        else:
            seconds = parse_duration(ret)
            if seconds is None or seconds < 3600 or seconds % 3600:
                raise where(("retention",), f"must be a whole number of hours or days like 30d, or off, not {ret!r}")
            kw["retention"] = seconds
    tpl = raw.get("template")
    if tpl is not None:
        if not isinstance(tpl, str) or not _INDEX_NAME.match(tpl):
            raise where(("template",), f"must be a lowercase name like ccf-agent-logs, not {tpl!r}")
        kw["template"] = tpl
    return EsOptions(**kw)


def options_of(cfg: OutputConfig) -> EsOptions:
    return cfg.options if isinstance(cfg.options, EsOptions) else EsOptions()


def index_problem(index: str) -> str | None:
    """What Elasticsearch refuses in an index name (its date pattern filled in): it would answer
    every record's create with invalid_index_name_exception, and every record be dead-lettered."""
    name = IndexNamer(index).name(b"2024-12-31")
    if not name or len(name.encode()) > 255 or not _INDEX_NAME.match(name):
        return ("must be a lowercase index name of at most 255 bytes, starting with a letter or digit, without "
                f"spaces or any of \\ / * ? \" < > | , # : (a date pattern like %{{+yyyy.MM.dd}} may follow), "
                f"not {index!r}")
    return None


def config_problem(cfg: OutputConfig) -> str | tuple[tuple[str, ...], str] | None:
    """Checks across common and own keys that the loader cannot make on either alone."""
    problem = index_problem(cfg.index)
    if problem:
        return ("index",), problem
    if options_of(cfg).data_stream and _DATE_PATTERN.search(cfg.index):
        return (f"data_stream: a data stream is one name (index {cfg.index!r} has a date pattern); "
                "its backing indices roll over by themselves")
    return None


# ---------------------------------------------------------------------------------- TLS, auth, hosts


def auth_header(cfg: OutputConfig) -> str | None:
    if cfg.api_key:
        return f"ApiKey {cfg.api_key}"
    if cfg.bearer_token:
        return f"Bearer {cfg.bearer_token}"
    if cfg.username:
        return basic_auth(cfg.username, cfg.password or "")
    return None


@dataclass
class Host:
    url: str  # scheme://host:port[/prefix], never with credentials: safe to print
    auth: str | None = None  # from user:password@ in the configured URL
    alive: bool = True
    failures: int = 0
    retry_at: float = 0.0  # monotonic: next probe of a host taken out
    discovered: bool = False

    @classmethod
    def parse(cls, url: str, discovered: bool = False) -> Host:
        bare, user, password = split_userinfo(url)
        parts = urlsplit(bare)
        auth = basic_auth(user, password or "") if user is not None else None
        return cls(f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", auth, discovered=discovered)


def parse_publish_address(address: str, scheme: str) -> str | None:
    """`10.0.0.5:9200`, `es1.example/10.0.0.5:9200` or `[::1]:9200` to a base URL."""
    name, _, rest = address.rpartition("/") if "/" in address else ("", "", address)
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    # A hostname, when the node publishes one, is what its certificate names.
    return f"{scheme}://{name or host}:{port}"


# ---------------------------------------------------------------------------------- index names


class IndexNamer:
    """Index names from the record's event time (`ccf-logs-%{+yyyy.MM.dd}`), never the wall clock."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.dated = bool(_DATE_PATTERN.search(pattern))
        self._cache: dict[bytes, bytes] = {}
        self.static_action = b'{"create":{"_index":' + orjson.dumps(pattern) + b',"_id":"'

    def name(self, day: bytes) -> str:
        """The index for a day `YYYY-MM-DD` (Joda-style yyyy, yy, MM, dd in the pattern)."""
        y, m, d = day[0:4].decode(), day[5:7].decode(), day[8:10].decode()

        def fmt(mt: re.Match[str]) -> str:
            return mt.group(1).replace("yyyy", y).replace("yy", y[2:]).replace("MM", m).replace("dd", d)

        return _DATE_PATTERN.sub(fmt, self.pattern)

    def action(self, stamp: bytes) -> bytes:
        if not self.dated:
            return self.static_action
        day = stamp[:10]
        hit = self._cache.get(day)
        if hit is None:
            hit = b'{"create":{"_index":' + orjson.dumps(self.name(day)) + b',"_id":"'
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[day] = hit
        return hit


def index_pattern(index: str) -> str:
    """The wildcard pattern covering every index an `index` setting names (for templates)."""
    return _DATE_PATTERN.sub("*", index)


# ---------------------------------------------------------------------------------- per-item results

RETRY, DEAD = 1, 2


@dataclass
class Settled:
    """What one bulk response says about each item sent."""

    retry: list[int] = field(default_factory=list)  # positions to send again
    dead: list[tuple[int, int, Any]] = field(default_factory=list)  # (position, status, error)
    duplicates: int = 0
    throttled: int = 0  # items answered 429
    problem: tuple[str, str] | None = None  # (kind, detail) of an operator-fixable item failure


def _operator_fixable(status: int, error: Any) -> tuple[str, str] | None:
    """Item failures no record is to blame for: retried, never dead-lettered."""
    if not isinstance(error, dict):
        return None
    kind, reason = str(error.get("type", "")), str(error.get("reason", ""))
    if kind == "cluster_block_exception":
        return "blocked", reason
    if kind == "index_not_found_exception" or status == 404:
        return "index_missing", reason
    if "pipeline with id" in reason and "does not exist" in reason:
        return "pipeline_missing", reason
    if status in (401, 403) or kind == "security_exception":
        return "forbidden", reason
    return None


def settle_items(items: Sequence[dict[str, Any]]) -> Settled:
    out = Settled()
    for pos, item in enumerate(items):
        result = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
        status = result.get("status", 0) if isinstance(result, dict) else 0
        status = status if isinstance(status, int) else 0
        error = result.get("error") if isinstance(result, dict) else None
        if 200 <= status < 300:
            continue
        if status == 409:
            out.duplicates += 1
            continue
        fixable = _operator_fixable(status, error) if status else ("protocol", "an item without a status")
        if status == 429 or status >= 500 or fixable:
            out.retry.append(pos)
            if status == 429 and not fixable:
                out.throttled += 1
            if fixable and out.problem is None:
                out.problem = fixable
            continue
        out.dead.append((pos, status, error))
    return out


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds, or an HTTP date; capped at RETRY_AFTER_MAX."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(RETRY_AFTER_MAX, max(0.0, seconds))


# ---------------------------------------------------------------------------------- errors


class RequestFailed(Exception):
    """A whole bulk request failed; `kind` says why, the message what to do."""

    def __init__(self, kind: str, message: str, status: int = 0, retry_after: float | None = None,
                 error: Any = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.error = error


def describe_connection_error(e: BaseException, url: str, timeout: float) -> tuple[str, str]:
    """(kind, operator-facing message) for a failure to get any HTTP answer."""
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert = e.certificate_error
        detail = getattr(cert, "verify_message", None) or str(cert)
        return "tls", (f"TLS certificate of {url} is not trusted ({detail}): set tls.ca_file to the CA that "
                       "signed the server's certificate (or tls.server_name to the name it carries)")
    if isinstance(e, ssl.SSLCertVerificationError):
        return "tls", (f"TLS certificate of {url} is not trusted ({e.verify_message}): set tls.ca_file to "
                       "the CA that signed the server's certificate")
    if isinstance(e, aiohttp.ClientSSLError | ssl.SSLError):
        reason = getattr(getattr(e, "os_error", None), "reason", None) or getattr(e, "reason", None) or e
        return "tls", (f"TLS handshake with {url} failed ({reason}): check that it speaks https, and whether "
                       "it requires a client certificate (tls.cert_file, tls.key_file)")
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        host = urlsplit(url).hostname
        return "dns", f"unknown host: '{host}' in {url} does not resolve; check the output's hosts"
    if isinstance(e, aiohttp.ClientConnectorError):
        err = e.os_error.strerror if e.os_error and e.os_error.strerror else str(e.os_error or e)
        return "connect", f"cannot connect to {url}: {err}; is the node up and the port right?"
    if isinstance(e, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", f"{url} did not answer within {timeout:g}s; the cluster may be overloaded"
    if isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError):
        hint = ""
        if url.startswith("https://"):
            # With TLS 1.3 a server refusing a missing or unknown client certificate just hangs up.
            hint = (" (a server that requires a client certificate hangs up like this: check tls.cert_file "
                    "and tls.key_file)")
        return "connect", f"connection to {url} was cut before an answer ({type(e).__name__}){hint}; retrying"
    return "connect", f"{url}: {type(e).__name__}: {e}"


def _reason(raw: bytes) -> tuple[str, str, Any]:
    """(type, reason, error object) of an error response body."""
    try:
        err = orjson.loads(raw).get("error", {})
    except (ValueError, AttributeError):
        return "", raw[:200].decode("utf-8", "replace").strip(), None
    if isinstance(err, dict):
        return str(err.get("type", "")), str(err.get("reason", "")), err
    return "", str(err), err


def block_message(reason: str) -> str:
    if "flood-stage" in reason or "read-only-allow-delete" in reason or "read_only_allow_delete" in reason:
        return (f"index blocked read-only ({reason.strip()}): the cluster's disk passed the flood-stage "
                "watermark; free disk space, then clear the block with PUT <index>/_settings "
                '{"index.blocks.read_only_allow_delete": null}; records wait and are retried')
    return (f"index blocked for writes ({reason.strip()}): clear index.blocks.write / index.blocks.read_only "
            "on the index (PUT <index>/_settings); records wait and are retried")


# ---------------------------------------------------------------------------------- the output


class ElasticsearchOutput(Output):
    def __init__(self, cfg: OutputConfig, dead_letters: DeadLetters) -> None:
        super().__init__(cfg)
        problem = config_problem(cfg)
        if problem:
            raise ValueError(f"output {cfg.name}: {problem if isinstance(problem, str) else problem[1]}")
        self.opts = options_of(cfg)
        self.namer = IndexNamer(cfg.index)
        self.dead = dead_letters
        self.hosts = [Host.parse(h) for h in cfg.hosts]
        self.seeds = [h.url for h in self.hosts]
        self._next_host = 0
        self.engine: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.problem: str | None = None  # kind of the current trouble, None while delivering fine
        self._logged: tuple[str, float] = ("", 0.0)
        self.headers = {"Content-Type": "application/x-ndjson"}
        if cfg.compression == "gzip":
            self.headers["Content-Encoding"] = "gzip"
        header = auth_header(cfg)
        if header:
            self.headers["Authorization"] = header
        self.bulk_path = "/_bulk?" + _FILTER
        if self.opts.pipeline:
            self.bulk_path += "&pipeline=" + quote(self.opts.pipeline, safe="")
        needs_tls = any(h.url.startswith("https://") for h in self.hosts)
        self.ssl: ssl.SSLContext | bool = client_ssl_context(cfg.tls, cfg.name) if needs_tls else False
        self._request_extra: dict[str, Any] = {}
        if cfg.tls.server_name:
            self._request_extra["server_hostname"] = cfg.tls.server_name
        self._throttle_until = 0.0  # loop time before which no bulk request leaves (shared 429 gate)
        self._throttle_level = 0
        self._probe_busy = False
        self._probe_free = asyncio.Event()
        self._hosts_changed = asyncio.Event()
        self._oldest_at: float | None = None  # monotonic time the oldest queued fragment arrived (about)
        self._half_full = asyncio.Event()  # what a lingering batch waits for (not every submit)

    # ------------------------------------------------------------------ encode (hot path)

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        n = len(indices)
        if n == 0:
            return b""
        every = n == len(events.docs)  # indices are increasing and unique: every record, in order
        namer = self.namer
        actions: bytes | list[bytes]
        if not namer.dated:
            actions = namer.static_action
        else:
            stamps = events.stamps if every else [events.stamps[i] for i in indices]
            if len(set(map(_DAY, stamps))) == 1:  # the usual batch: one day, one index
                actions = namer.action(stamps[0])
            else:
                actions = list(map(namer.action, stamps))
        if _fast is not None:  # one pass in C, no list of parts
            return _fast.bulk_body(actions, events.ids, events.docs,
                                   None if every else indices if type(indices) is list else list(indices))
        return encode_parts(actions, events, indices, every)

    def submit(self, events: Events, indices: Sequence[int], token: AckToken | None) -> None:
        if not self.queue:
            self._oldest_at = time.monotonic()
        super().submit(events, indices, token)
        if self.queued_docs * 2 >= self.cfg.batch_max_docs or self.queued_bytes * 2 >= self.cfg.batch_max_bytes:
            self._half_full.set()

    # ------------------------------------------------------------------ delivery loop

    def _make_session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout, connect=min(10.0, self.cfg.timeout))
        connector = aiohttp.TCPConnector(limit=self.cfg.max_in_flight * max(1, len(self.hosts)) + 4,
                                         ssl=self.ssl)
        return aiohttp.ClientSession(timeout=timeout, connector=connector, headers=self.headers,
                                     auto_decompress=True)

    async def run(self) -> None:
        self.session = self._make_session()
        slots = asyncio.Semaphore(self.cfg.max_in_flight)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._detect_engine(), name=f"{self.name}:engine")
                tg.create_task(self._probe_hosts(), name=f"{self.name}:probe")
                if self.opts.discovery:
                    tg.create_task(self._discover(), name=f"{self.name}:discovery")
                while True:
                    fragments = await self.next_request(slots, self._linger)
                    self._oldest_at = time.monotonic() if self.queue else None
                    tg.create_task(self._deliver(fragments, slots))
        finally:
            await self.session.close()

    async def _linger(self) -> None:
        """Batching by time: a partial batch waits until `flush_interval` after its oldest record,
        then longer while records keep arriving fast enough to fill half a batch soon: the rate is
        looked at again every `flush_interval`, so a catch-up burst (a read after a stall) that
        is not followed by more records does not hold its batch."""
        cfg = self.cfg
        seen: tuple[float, int, int] | None = None  # (when, docs, bytes) at the last look at the rate
        while self.queued_docs < cfg.batch_max_docs and self.queued_bytes < cfg.batch_max_bytes:
            now = time.monotonic()
            oldest = self._oldest_at if self._oldest_at is not None else now
            remaining = oldest + cfg.flush_interval - now
            wake = self._wake
            if remaining <= 0:
                if seen is None:  # the first look counts what came after the oldest fragment
                    first = self.queue[0] if self.queue else None
                    seen = (oldest, first.count, len(first.body)) if first else (oldest, 0, 0)
                wait = half_full_in(now - oldest, now - seen[0], self.queued_docs - seen[1],
                                    self.queued_bytes - seen[2], self.queued_docs, self.queued_bytes, cfg)
                if wait is None:
                    return
                seen = (now, self.queued_docs, self.queued_bytes)
                remaining, wake = min(wait, cfg.flush_interval), self._half_full
            wake.clear()
            with contextlib.suppress(TimeoutError):  # either way, look again
                async with asyncio.timeout(remaining):
                    await wake.wait()

    async def _deliver(self, fragments: list[Fragment], slots: asyncio.Semaphore) -> None:
        try:
            # The fragments' bodies are sent as they are (no join: one copy of each record fewer);
            # the request holds them from here on, so a retried body is held once (an outage's memory).
            body: Body = [f.body for f in fragments] if len(fragments) > 1 else fragments[0].body
            for f in fragments:
                f.body = b""
            attempt = 0
            while True:
                try:
                    await self._send(body, self._dead_letter)
                    break
                except Exception as e:  # noqa: BLE001 - a bug here must not stop shipping or lose records
                    log.exception("output %s: unexpected error while delivering; resending the batch", self.name)
                    self._report("internal", f"unexpected {type(e).__name__} while delivering: {e}; resending")
                    await asyncio.sleep(backoff_delay(attempt, self.cfg.backoff_initial, self.cfg.backoff_max))
                    attempt += 1
            self.acked(fragments)
        finally:
            self.in_flight -= 1
            slots.release()
            self._update_idle()
            self._wake.set()

    async def _send(self, body: Body, on_dead: Callable[[list[DeadItem]], Awaitable[None]]) -> None:
        """Until every item of `body` is stored, found already stored, or handed to `on_dead`."""
        pending = body
        attempt = 0
        while pending:
            try:
                async with self._gate():
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
                        await asyncio.sleep(backoff_delay(attempt, self.cfg.backoff_initial, self.cfg.backoff_max))
                        attempt += 1
                        continue
                self._report(e.kind, str(e))
                if e.status == 429:
                    self._throttled(e.retry_after)
                else:
                    delay = backoff_delay(attempt, self.cfg.backoff_initial, self.cfg.backoff_max)
                    await asyncio.sleep(max(delay, e.retry_after or 0.0))
                attempt += 1
                continue
            if outcome is None:
                self._delivered()
                return
            pending = await self._settle(pending, outcome, on_dead)
            if pending:
                attempt += 1
                if self._throttle_until <= asyncio.get_running_loop().time():
                    await asyncio.sleep(backoff_delay(attempt - 1, self.cfg.backoff_initial,
                                                      self.cfg.backoff_max))

    async def _settle(self, body: Body, outcome: dict[str, Any],
                      on_dead: Callable[[list[DeadItem]], Awaitable[None]]) -> Body:
        """Account for per-item results; return the body of the items to send again."""
        items = outcome.get("items") if isinstance(outcome, dict) else None
        items = items if isinstance(items, list) else []
        lines = joined(body).split(b"\n")
        if len(items) * 2 != len(lines) - 1:
            # The engine answered for a different number of items than sent: resend all rather than
            # guess (creates with fixed ids make that safe).
            self._report("protocol", f"bulk response has {len(items)} items for {(len(lines) - 1) // 2} sent; "
                         "resending the request")
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
            self._report(kind, _item_problem_message(kind, reason, self.name))
        elif s.throttled:
            self._report("throttled", f"the cluster rejected {s.throttled} of {len(items)} items with 429 "
                         "(write queue or memory full): backing off")
        if s.throttled:
            self._throttled(None)
        if not trouble:
            self._delivered()
        if not s.retry:
            return b""
        self.stats.docs_retried += len(s.retry)
        return b"".join(b"%b\n%b\n" % (lines[2 * p], lines[2 * p + 1]) for p in s.retry)

    async def _post(self, body: Body) -> dict[str, Any] | None:
        """One bulk request: None when every item was stored, else the parsed response."""
        assert self.session is not None
        host = self._pick_host()
        url = host.url + self.bulk_path
        data: bytes | Parts
        if self.cfg.compression == "gzip":
            body = joined(body)
            if _GZIP_OFF_LOOP and len(body) > GZIP_THREAD_MIN:
                data = await asyncio.to_thread(_gzip, body)  # zlib drops the GIL while it works
            else:
                data = _gzip(body)
        else:
            data = body if type(body) is bytes else Parts(body)
        headers = {"Authorization": host.auth} if host.auth and "Authorization" not in self.headers else None
        started = time.monotonic()
        self.stats.requests += 1
        try:
            async with self.session.post(url, data=data, headers=headers, **self._request_extra) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            kind, message = describe_connection_error(e, host.url, self.cfg.timeout)
            self._host_failed(host, message)
            raise RequestFailed(kind, message) from e
        self.stats.observe_latency(time.monotonic() - started)
        if status == 200:
            host.failures = 0
            if b'"errors":false' in raw[:64]:
                return None
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise RequestFailed("protocol", f"{host.url} answered a bulk request with 200 but no JSON: is it an "
                                    "Elasticsearch/OpenSearch node (or a proxy's login page)?") from None
        raise self._request_error(host, status, raw, parse_retry_after(retry_after))

    def _request_error(self, host: Host, status: int, raw: bytes, wait: float | None) -> RequestFailed:
        kind, reason, error = _reason(raw)
        if kind == "cluster_block_exception":
            return RequestFailed("blocked", block_message(reason), status, wait)
        if status == 401:
            return RequestFailed("auth", self._auth_message(401, host.url), status, wait)
        if status == 403:
            return RequestFailed("forbidden", self._auth_message(403, host.url), status, wait)
        if status == 429:
            return RequestFailed("throttled", f"{host.url} rejected the bulk request with 429 ({kind or reason}): "
                                 "the cluster is overloaded; backing off", status, wait)
        if status >= 500:
            if status in (502, 503, 504):
                self._host_failed(host, f"answered {status}")
            return RequestFailed("server", f"{host.url} answered {status} to a bulk request ({kind}: {reason})",
                                 status, wait)
        if status == 404:
            return RequestFailed("not_found", f"{host.url} answered 404 to {self.bulk_path.split('?')[0]} "
                                 f"({kind}: {reason}): is this URL an Elasticsearch/OpenSearch node?", status, wait)
        if status in (400, 413) and "unrecognized parameter" not in reason:
            return RequestFailed("rejected", f"{host.url} rejected a bulk request with {status} ({kind}: {reason})",
                                 status, wait, error)
        return RequestFailed("config", f"{host.url} refused the bulk request with {status} ({kind}: {reason}): "
                             "an engine or proxy this output cannot talk to as configured", status, wait)

    # ------------------------------------------------------------------ dead letters

    def _dead_letter_failed(self, e: OSError) -> None:
        # Never acknowledge a rejected record that is not safely kept: it is sent again later.
        self._report("dead_letter_io", f"cannot write dead letters ({e.strerror or e}) in {self.dead.dir}: "
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
        now = time.time()
        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}.{int(now * 1000) % 1000:03d}Z"
        head = b'{"create":{"_index":' + orjson.dumps(self.opts.dead_letter_index) + b',"_id":'
        body: list[bytes] = []
        by_line: dict[bytes, DeadItem] = {}
        for it in items:
            try:
                action = orjson.loads(it.action)
                op = next(iter(action.values()))
                doc_id, index = op.get("_id"), op.get("_index")
            except (ValueError, StopIteration, AttributeError):
                doc_id = index = None
            envelope = orjson.dumps({"@timestamp": stamp, "output": self.name, "index": index, "status": it.status,
                                     "error": it.error, "document": it.doc.decode("utf-8", "replace")})
            line = head + orjson.dumps(doc_id) + b"}}"
            by_line[envelope] = it
            body += (line, b"\n", envelope, b"\n")
        refused: list[DeadItem] = []

        async def to_file(dead: list[DeadItem]) -> None:
            for d in dead:
                orig = by_line.get(d.doc)
                if orig is not None:
                    refused.append(DeadItem(orig.status, {"original": orig.error, "dead_letter_index": d.error},
                                            orig.action, orig.doc))

        await self._send(b"".join(body), to_file)
        return refused

    # ------------------------------------------------------------------ engine, hosts, discovery

    async def _get_json(self, host: Host, path: str, seconds: float) -> Any:
        assert self.session is not None
        headers = {"Authorization": host.auth} if host.auth and "Authorization" not in self.headers else None
        async with self.session.get(host.url + path, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds),
                                    **self._request_extra) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise self._request_error(host, resp.status, raw, None)
            return orjson.loads(raw)

    async def _detect_engine(self) -> None:
        """GET / once at start: says which engine this is, and surfaces auth/TLS/DNS trouble at once."""
        attempt = 0
        while self.engine is None:
            host = self._pick_host()
            try:
                info = await self._get_json(host, "/", min(self.cfg.timeout, 10.0))
            except RequestFailed as e:
                self._report(e.kind, str(e))
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                self._report(*describe_connection_error(e, host.url, min(self.cfg.timeout, 10.0)))
            else:
                version = info.get("version", {}) if isinstance(info, dict) else {}
                dist = version.get("distribution", "elasticsearch")
                self.engine = f"{dist} {version.get('number', '?')}"
                log.info("output %s: connected to %s at %s", self.name, self.engine, host.url)
                if self.problem in ("auth", "forbidden", "tls", "dns", "connect", "timeout"):
                    self._delivered()
                return
            await asyncio.sleep(backoff_delay(attempt, 1.0, 60.0))
            attempt += 1

    def _pick_host(self) -> Host:
        """Round robin over the hosts in rotation; with none, the one due for a probe soonest."""
        n = len(self.hosts)
        for k in range(n):
            h = self.hosts[(self._next_host + k) % n]
            if h.alive:
                self._next_host = (self._next_host + k + 1) % n
                return h
        return min(self.hosts, key=lambda h: h.retry_at)

    def _host_failed(self, host: Host, why: str) -> None:
        host.failures += 1
        host.retry_at = time.monotonic() + min(30.0, 0.5 * 2 ** min(host.failures, 6)) * random.uniform(0.8, 1.0)
        if len(self.hosts) > 1 and host.alive:
            host.alive = False
            log.warning("output %s: host %s taken out of rotation (%s); probing it until it answers",
                        self.name, host.url, why)
            self._hosts_changed.set()

    async def _probe_hosts(self) -> None:
        """A host taken out comes back only after a `GET /` succeeds, never on live traffic."""
        while True:
            down = [h for h in self.hosts if not h.alive]
            if not down:
                self._hosts_changed.clear()
                await self._hosts_changed.wait()
                continue
            now = time.monotonic()
            due = [h for h in down if h.retry_at <= now]
            for h in due:
                try:
                    await self._get_json(h, "/", PROBE_TIMEOUT)
                except (RequestFailed, aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                    h.failures += 1
                    h.retry_at = time.monotonic() + min(30.0, 0.5 * 2 ** min(h.failures, 6))
                    log.debug("output %s: probe of %s failed: %s", self.name, h.url, e)
                else:
                    h.alive, h.failures = True, 0
                    log.info("output %s: host %s answers again; back in rotation", self.name, h.url)
            if not due:
                wait = min(h.retry_at for h in down) - now
                self._hosts_changed.clear()
                try:
                    async with asyncio.timeout(max(0.05, wait)):
                        await self._hosts_changed.wait()
                except TimeoutError:
                    pass

    async def _discover(self) -> None:
        """Node discovery (off by default): HTTP nodes other than dedicated cluster managers."""
        scheme = urlsplit(self.seeds[0]).scheme
        auth = self.hosts[0].auth
        while True:
            host = self._pick_host()
            try:
                info = await self._get_json(host, "/_nodes/http?filter_path=nodes.*.roles,nodes.*.http.publish_address",
                                            min(self.cfg.timeout, 10.0))
                self.set_discovered(discovered_urls(info, scheme), auth)
            except (RequestFailed, aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                log.warning("output %s: node discovery through %s failed: %s", self.name, host.url,
                            self.scrub(str(e)))
            await asyncio.sleep(self.opts.discovery_interval)

    def set_discovered(self, urls: Sequence[str], auth: str | None) -> None:
        known = {h.url for h in self.hosts}
        keep = [h for h in self.hosts if not h.discovered or h.url in urls]
        added = [Host(u, auth, discovered=True) for u in urls if u not in known]
        if added or len(keep) != len(self.hosts):
            self.hosts = keep + added
            self._next_host = 0
            log.info("output %s: hosts now %s", self.name, ", ".join(h.url for h in self.hosts))

    # ------------------------------------------------------------------ back-pressure from the cluster

    def _throttled(self, retry_after: float | None) -> None:
        loop_now = asyncio.get_running_loop().time()
        delay = backoff_delay(self._throttle_level, self.cfg.backoff_initial, self.cfg.backoff_max)
        self._throttle_level += 1
        self._throttle_until = max(self._throttle_until, loop_now + max(delay, retry_after or 0.0))

    @asynccontextmanager
    async def _gate(self) -> AsyncIterator[None]:
        """Around every bulk request: closed until the 429 backoff deadline; while the cluster is
        throttling, one request at a time tests it (the others wait for its answer)."""
        loop = asyncio.get_running_loop()
        while True:
            wait = self._throttle_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif self._throttle_level and self._probe_busy:
                self._probe_free.clear()
                await self._probe_free.wait()
            else:
                break
        probing = self._throttle_level > 0
        self._probe_busy = probing
        try:
            yield
        finally:
            if probing:
                self._probe_busy = False
                self._probe_free.set()

    # ------------------------------------------------------------------ health and messages

    def _delivered(self) -> None:
        self._throttle_level = 0
        if not self.healthy or self.problem:
            log.info("output %s: delivering again", self.name)
        self.healthy = True
        self.problem = None

    def _report(self, kind: str, message: str) -> None:
        message = self.scrub(message)
        self.healthy = False
        self.problem = kind
        self.note_error(message)
        now = time.monotonic()
        if message != self._logged[0] or now - self._logged[1] > 60:
            log.warning("output %s: %s", self.name, message)
            self._logged = (message, now)

    def _auth_message(self, status: int, url: str) -> str:
        if status == 401:
            return (f"authentication failed (401 from {url}): the username/password, api_key or bearer_token "
                    f"of output '{self.name}' was refused; fix the credential (env var or file) and restart")
        return (f"not authorised (403 from {url}): the credentials of output '{self.name}' lack a privilege "
                "(create_doc on the target indices, monitor on the cluster)")

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["engine"] = self.engine
        s["problem"] = self.problem
        s["hosts"] = [{"url": h.url, "alive": h.alive} for h in self.hosts]
        s["tls_verify"] = self.cfg.tls.verify
        s["dead_letter"] = self.opts.dead_letter_index or str(self.dead.path_for(self.name))
        s["throttled_for_s"] = round(max(0.0, self._throttle_until - _loop_time()), 1)
        return s


_MID = [b'"}}\n']
_DAY = itemgetter(slice(0, 10))  # YYYY-MM-DD of an @timestamp
_NL = [b"\n"]


try:  # ISA-L writes the same gzip format ~5x faster than zlib at level 1 (see bench/es_output.py)
    from isal import isal_zlib as _zlib

    _GZIP_OFF_LOOP = False  # ~2 ms per 1.5 MB body: a thread hop would cost more CPU than it frees
except ImportError:  # pragma: no cover - optional speed-up
    _zlib = zlib  # type: ignore[no-redef]
    _GZIP_OFF_LOOP = True  # ~10 ms per 1.5 MB body: off the event loop


Body = bytes | list[bytes]  # a bulk request's NDJSON: one bytes object, or its fragments in order


def encode_parts(actions: bytes | list[bytes], events: Events, indices: Sequence[int], every: bool) -> bytes:
    """ElasticsearchOutput.encode without the C extension: slice assignment and itemgetter
    interleave the columns in C, with no Python-level work per record."""
    n = len(indices)
    if every:
        ids, docs = events.ids, events.docs
    elif n > 1:
        pick = itemgetter(*indices)
        ids, docs = pick(events.ids), pick(events.docs)
    else:
        ids, docs = (events.ids[indices[0]],), (events.docs[indices[0]],)
    parts: list[bytes] = [actions] * (5 * n) if type(actions) is bytes else [b""] * (5 * n)
    if type(actions) is not bytes:
        parts[0::5] = actions
    parts[1::5] = ids
    parts[2::5] = _MID * n
    parts[3::5] = docs
    parts[4::5] = _NL * n
    return b"".join(parts)


def joined(body: Body) -> bytes:
    return body if type(body) is bytes else b"".join(body)


class Parts(aiohttp.payload.Payload):
    """A request body written as the fragments it was queued in, one after the other: joining
    them first would copy every record once more."""

    _value: list[bytes]

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__(parts, content_type="application/x-ndjson")
        self._size = sum(map(len, parts))

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"".join(self._value)

    async def write(self, writer: aiohttp.abc.AbstractStreamWriter) -> None:
        for part in self._value:
            await writer.write(part)

    async def write_with_length(self, writer: aiohttp.abc.AbstractStreamWriter, content_length: int | None) -> None:
        if content_length is None or content_length >= self._size:
            await self.write(writer)
            return
        await writer.write(b"".join(self._value)[:content_length])


def _gzip(body: bytes) -> bytes:
    return _zlib.compress(body, 1, wbits=31)


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return 0.0


def _item_problem_message(kind: str, reason: str, name: str) -> str:
    if kind == "blocked":
        return block_message(reason)
    if kind == "index_missing":
        return (f"target index or data stream missing ({reason}) and not created automatically: run "
                "`ccf-agent setup` or allow auto-creation; records wait and are retried")
    if kind == "protocol":
        return f"the bulk response made no sense ({reason}): is the URL an Elasticsearch/OpenSearch node?"
    if kind == "pipeline_missing":
        return f"ingest pipeline missing ({reason}): create it or remove `pipeline` from output '{name}'"
    return (f"not authorised for some items ({reason}): the credentials of output '{name}' lack "
            "create_doc on the target indices; records wait and are retried")


def discovered_urls(info: Any, scheme: str) -> list[str]:
    """Base URLs of the HTTP nodes in a `GET /_nodes/http` answer that can take bulk requests."""
    nodes = info.get("nodes", {}) if isinstance(info, dict) else {}
    out = []
    for node in nodes.values():
        roles = set(node.get("roles") or ())
        if roles and roles <= {"master", "cluster_manager", "voting_only"}:
            continue  # dedicated cluster managers should not carry indexing traffic
        address = (node.get("http") or {}).get("publish_address")
        url = parse_publish_address(address, scheme) if isinstance(address, str) else None
        if url and url not in out:
            out.append(url)
    return sorted(out)


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return ElasticsearchOutput(cfg, dead_letters)
