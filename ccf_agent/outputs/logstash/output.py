"""Logstash output over the Beats (Lumberjack v2) protocol, as Filebeat speaks it to a `beats` input.

Records leave as JSON events carrying `@timestamp` and Beats' `@metadata` ({beat, type, version}),
so an existing Beats pipeline in Logstash keeps working. Delivery has the Elasticsearch output's
guarantee: a fragment is acknowledged (and its file offset may advance) only once the server has
ACKed every one of its records.

Per connection: a window that starts small, grows x1.5 after each fully ACKed batch and halves on
error (`WindowSizer`); up to `pipelining` batches in flight on the one connection, so records of a
file arrive in order; ACKs are cumulative per batch and an ACK below the batch size (keepalive 0,
partial) only means "still working" and restarts the timeout. On a lost connection the batches in
flight go back to the front of the queue minus what the server ACKed; the resent records are counted
in `stats.duplicates`, an upper bound of what the server may now hold twice.

Hosts: `loadbalance: true` keeps one connection per host, each pulling batches from the same queue;
otherwise one connection fails over from host to host. `ttl` closes a connection after that long
(once its batches are ACKed) so a load balancer in front of several Logstash nodes can rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from ccf_agent import AGENT_NAME, __version__
from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.httpclient.tls import client_ssl_context
from ccf_agent.outputs.base import Fragment, Output
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.delivery.retry import backoff_delay
from ccf_agent.outputs.logstash.config import LogstashOptions
from ccf_agent.outputs.logstash.lumberjack import (
    ACK_SIZE,
    LumberjackConnectError,
    LumberjackConnection,
    LumberjackConnectionLost,
    LumberjackError,
    LumberjackProtocolError,
    LumberjackTimeout,
    WindowSizer,
    beats_event,
    decode_ack,
)

log = logging.getLogger("ccf_agent.outputs.logstash")

_NOT_A_MEMBER_END = frozenset(b"{ \t\r\n")

# ---------------------------------------------------------------------------- connection


class PipelinedConnection(LumberjackConnection):
    """A LumberjackConnection whose batch writes and ACK reads are separate calls, so several batches
    can be in flight on one connection (the caller matches ACKs to batches in order). Connect, TLS,
    compression off the event loop and close come from the base class."""

    async def write_batch(self, events: Sequence[bytes]) -> None:
        writer = self._writer
        if writer is None:
            raise LumberjackConnectionLost("not connected")
        payload = await self._encode(events)
        try:
            writer.write(payload)
            async with asyncio.timeout(self.timeout):
                await writer.drain()
        except TimeoutError as e:
            self._abort()
            raise LumberjackTimeout(f"could not write a batch within {self.timeout:g}s") from e
        except OSError as e:
            self._abort()
            raise LumberjackConnectionLost(f"connection lost while writing: {e!r}") from e
        except BaseException:  # cancelled mid-write: the stream is unusable
            self._abort()
            raise

    async def read_ack(self) -> int:
        reader = self._reader
        if reader is None:
            raise LumberjackConnectionLost("not connected")
        try:
            frame = await reader.readexactly(ACK_SIZE)
        except (OSError, asyncio.IncompleteReadError) as e:
            self._abort()
            raise LumberjackConnectionLost(f"connection closed by the server: {e!r}") from e
        except BaseException:  # cancelled or timed out mid-frame
            self._abort()
            raise
        if frame[:2] != b"2A":
            self._abort()
            raise LumberjackProtocolError(f"expected an ACK frame, got {frame!r}")
        return decode_ack(frame)


# ---------------------------------------------------------------------------- bookkeeping


@dataclass(eq=False, slots=True)
class _Run:
    """Consecutive events of one fragment waiting to be sent; `start` is the next one."""

    events: list[bytes]
    owner: Fragment  # acknowledged once every event of it is (Fragment.remaining)
    start: int = 0
    resend: bool = False  # these were on the wire before without an ACK


@dataclass(eq=False, slots=True)
class _Batch:
    events: list[bytes]
    parts: list[tuple[Fragment, int]]  # whose events, in order: (owner, how many)
    resent: int
    sent_at: float = 0.0
    acked: int = 0  # highest partial ACK seen


@dataclass(eq=False)
class _Worker:
    """One connection at a time: to its single host (loadbalance) or failing over across all."""

    hosts: list[tuple[str, int]]
    window: WindowSizer
    index: int = 0
    failures: int = 0
    connected: bool = False
    inflight: deque[_Batch] = field(default_factory=deque)
    slot: asyncio.Event = field(default_factory=asyncio.Event)
    acked_on_conn: int = 0
    last_progress: float = 0.0
    ack_timeout: asyncio.Timeout | None = None

    @property
    def host(self) -> str:
        h, p = self.hosts[self.index]
        return f"{h}:{p}"


class _TtlExpired(Exception):
    pass


# ---------------------------------------------------------------------------- output


class LogstashOutput(Output):
    def __init__(self, cfg: OutputConfig, options: LogstashOptions | None = None) -> None:
        super().__init__(cfg)
        self.options = options or LogstashOptions()
        hosts = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in cfg.hosts]
        if not hosts:
            raise ValueError(f"output {cfg.name}: logstash needs at least one host")
        o = self.options
        self.depth = max(1, o.pipelining)
        groups = [[h] for h in hosts] if o.loadbalance else [hosts]
        self.workers = [_Worker(g, WindowSizer(10, o.window_max)) for g in groups]
        tls = cfg.tls
        # Any `tls` section means TLS, even one that only repeats a default ({verify: true}): sending
        # plaintext to an operator who wrote one is the one outcome that must not happen.
        use_tls = o.tls_enabled if o.tls_enabled is not None else tls.present or tls != type(tls)()
        self.ssl: ssl.SSLContext | None = client_ssl_context(tls, cfg.name) if use_tls else None
        self.server_name = tls.server_name
        self.progress_acks = 0
        self._staged: deque[_Run] = deque()
        self._staged_count = 0
        self._meta = (AGENT_NAME, __version__)
        # beats_event() on '{"a":1}' gives '{"a":1,"@metadata":{...}}': what follows the record's bytes
        self._suffix = beats_event(b'{"a":1}', *self._meta)[len(b'{"a":1'):] + b"\n"

    # ------------------------------------------------------------------ encode (hot path)

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        """One Beats event per line: the record's own bytes with `@metadata` spliced in before its
        closing brace, exactly what beats_event() gives for such a record. The metadata check runs
        once over the fragment (C speed); a record with a `"@metadata"` of its own, or not ending in
        a member and '}', sends the fragment through beats_event() record by record."""
        docs = events.docs
        parts: list[bytes] = []
        add = parts.append
        for i in indices:
            doc = docs[i]
            if doc[-1] != 0x7D or doc[-2] in _NOT_A_MEMBER_END:
                return self._encode_each(docs, indices)
            add(doc[:-1])
        suffix = self._suffix
        body = suffix.join(parts) + suffix
        if body.count(b'"@metadata"') != len(parts):
            return self._encode_each(docs, indices)
        return body

    def _encode_each(self, docs: Sequence[bytes], indices: Sequence[int]) -> bytes:
        beat, version = self._meta
        parts: list[bytes] = []
        for i in indices:
            ev = beats_event(docs[i], beat, version)
            # A raw newline in a JSON document can only be whitespace between tokens.
            parts.append(ev.replace(b"\n", b" ") if b"\n" in ev else ev)
        parts.append(b"")
        return b"\n".join(parts)

    # ------------------------------------------------------------------ staging

    def _has_work(self) -> bool:
        return bool(self._staged) or bool(self.queue)

    def _fill(self, want: int) -> None:
        """Move fragments from the queue to the staging area until `want` events are staged."""
        while self._staged_count < want and self.queue:
            for f in self.take(want - self._staged_count, self.cfg.batch_max_bytes):
                if f.count == 0:
                    self.acked([f])
                    continue
                events = f.body.split(b"\n")
                events.pop()  # after the last newline
                if len(events) != f.count:
                    # A record holding raw newlines (JSON whitespace): cut after each spliced
                    # @metadata instead, which encode() made sure no record contains itself.
                    meta = self._suffix[:-1]
                    events = [part + meta for part in f.body.split(self._suffix)[:-1]]
                if len(events) != f.count:
                    raise RuntimeError(f"output {self.name}: fragment of {f.count} records split into "
                                       f"{len(events)} events")
                self.in_flight += 1  # fragments held until every event is ACKed
                self._staged.append(_Run(events, f))
                self._staged_count += f.count

    def _next_batch(self, size: int) -> _Batch:
        """Up to `size` staged events (at least one), within batch_max_bytes."""
        self._fill(size)
        budget = self.cfg.batch_max_bytes
        events: list[bytes] = []
        parts: list[tuple[Fragment, int]] = []
        resent = nbytes = 0
        while self._staged and len(events) < size:
            run = self._staged[0]
            n = min(size - len(events), len(run.events) - run.start)
            chunk = run.events[run.start : run.start + n]
            cost = sum(map(len, chunk))
            if nbytes + cost > budget:
                fits = sum(1 for c in accumulate(map(len, chunk)) if nbytes + c <= budget)
                if fits == 0 and events:
                    break
                n = max(1, fits)
                chunk = chunk[:n]
                cost = sum(map(len, chunk))
                size = len(events) + n  # the batch is full
            events.extend(chunk)
            parts.append((run.owner, n))
            nbytes += cost
            if run.resend:
                resent += n
            run.start += n
            self._staged_count -= n
            if run.start == len(run.events):
                self._staged.popleft()
        return _Batch(events, parts, resent)

    def _credit(self, fragment: Fragment, n: int) -> None:
        if self.credit(fragment, n):
            self.in_flight -= 1

    def _requeue(self, w: _Worker) -> int:
        """After a failed connection: credit what the server ACKed, put the rest back in front."""
        runs: list[_Run] = []
        for b in w.inflight:
            skip, offset = b.acked, 0
            for held, n in b.parts:
                done = min(n, skip)
                skip -= done
                if done:
                    self._credit(held, done)
                if n > done:
                    runs.append(_Run(b.events[offset + done : offset + n], held, resend=True))
                offset += n
        w.inflight.clear()
        count = sum(len(r.events) for r in runs)
        self._staged.extendleft(reversed(runs))
        self._staged_count += count
        if runs:
            self._wake.set()  # another worker may take them
        return count

    # ------------------------------------------------------------------ delivery

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for w in self.workers:
                tg.create_task(self._work(w))

    async def _wait_for_work(self) -> None:
        while not self._has_work():
            self._update_idle()
            self._wake.clear()
            await self._wake.wait()

    async def _work(self, w: _Worker) -> None:
        while True:
            await self._wait_for_work()
            host, port = w.hosts[w.index]
            conn = PipelinedConnection(self.options.compression_level, self.cfg.timeout)
            try:
                try:
                    await conn.connect(host, port, self.ssl, self.server_name)
                    w.connected = True
                    log.debug("output %s: connected to %s", self.name, w.host)
                    await self._serve(w, conn)
                except _TtlExpired:
                    log.debug("output %s: connection to %s reached its ttl; reconnecting", self.name, w.host)
                    continue
                except LumberjackError as e:
                    self._failed(w, e)
                    await asyncio.sleep(backoff_delay(w.failures - 1, self.cfg.backoff_initial,
                                                      self.cfg.backoff_max))
            finally:
                w.connected = False
                await conn.close()

    def _failed(self, w: _Worker, e: LumberjackError) -> None:
        had = sum(len(b.events) for b in w.inflight)
        requeued = self._requeue(w)
        w.failures += 1
        self.stats.request_errors += 1
        if had:
            w.window.on_error()
        message = self._describe(e, w.host)
        if requeued:
            message += f"; resending {requeued} unacknowledged events"
        self.health.report(_kind(e), message)
        if len(w.hosts) > 1:
            w.index = (w.index + 1) % len(w.hosts)

    async def _serve(self, w: _Worker, conn: PipelinedConnection) -> None:
        """Send and read ACKs until the connection fails (raises) or its ttl ends (_TtlExpired);
        returns when the server closed an idle connection."""
        w.acked_on_conn = 0
        w.slot.clear()
        reader = asyncio.create_task(self._read_acks(w, conn))
        sender = asyncio.create_task(self._send(w, conn))
        try:
            done, _ = await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (reader, sender):
                t.cancel()
            await asyncio.gather(reader, sender, return_exceptions=True)
        for t in (sender, reader):
            if t in done and (exc := t.exception()) is not None:
                raise exc
        if w.inflight:  # the sender got a batch out as the server was closing the idle connection
            raise LumberjackConnectionLost("connection closed by the server")

    async def _send(self, w: _Worker, conn: PipelinedConnection) -> None:
        loop = asyncio.get_running_loop()
        ttl_end = loop.time() + self.options.ttl if self.options.ttl else None
        while True:
            if ttl_end is not None and loop.time() >= ttl_end:
                while w.inflight:  # finish what is on the wire, then hand over
                    w.slot.clear()
                    await w.slot.wait()
                raise _TtlExpired
            if len(w.inflight) >= self.depth:
                w.slot.clear()
                await w.slot.wait()
                continue
            if not self._has_work():
                self._update_idle()
                self._wake.clear()
                try:
                    async with asyncio.timeout_at(ttl_end):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            batch = self._next_batch(w.window.size)
            batch.sent_at = time.monotonic()
            if not w.inflight:
                w.last_progress = loop.time()
                if w.ack_timeout is not None:
                    w.ack_timeout.reschedule(w.last_progress + conn.timeout)
            # In flight before the write: if the write fails, the batch is requeued from here.
            w.inflight.append(batch)
            self.stats.requests += 1
            if batch.resent:
                self.stats.duplicates += batch.resent
                self.stats.docs_retried += batch.resent
            await conn.write_batch(batch.events)
            del batch  # w.inflight holds it until acknowledged; this name would keep it past that

    async def _read_acks(self, w: _Worker, conn: PipelinedConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(None) as cm:
                    # No deadline while nothing is in flight; _send sets one when it writes.
                    if w.inflight:
                        cm.reschedule(w.last_progress + conn.timeout)
                    w.ack_timeout = cm
                    seq = await conn.read_ack()
            except TimeoutError as e:
                raise LumberjackTimeout(f"no ACK within {conn.timeout:g}s") from e
            except LumberjackConnectionLost:
                if not w.inflight and w.acked_on_conn:
                    return  # the server closed an idle connection: reconnect when there is work
                raise
            finally:
                w.ack_timeout = None
            if not w.inflight:
                if seq == 0:
                    continue
                raise LumberjackProtocolError(f"ACK {seq} with no batch in flight")
            head = w.inflight[0]
            n = len(head.events)
            if seq > n:
                raise LumberjackProtocolError(f"ACK {seq} for a batch of {n}")
            w.last_progress = loop.time()
            if seq < n:  # keepalive or partial: still working
                head.acked = max(head.acked, seq)
                self.progress_acks += 1
                continue
            w.inflight.popleft()
            self._delivered(w, head)
            w.slot.set()

    def _delivered(self, w: _Worker, batch: _Batch) -> None:
        w.window.on_success(len(batch.events))
        w.failures = 0
        w.acked_on_conn += 1
        self.health.delivered()
        self.stats.observe_latency(time.monotonic() - batch.sent_at)
        for held, n in batch.parts:
            self._credit(held, n)
        self._update_idle()

    # ------------------------------------------------------------------ status and messages

    def _describe(self, e: LumberjackError, host: str) -> str:
        cause = e.__cause__
        if isinstance(e, LumberjackConnectError) and isinstance(cause, ssl.SSLCertVerificationError):
            return (f"TLS verification of {host} failed ({cause.verify_message}): set tls.ca_file to the CA "
                    "that signed the server's certificate, or tls.server_name to a name in it")
        if isinstance(e, LumberjackConnectError) and isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {host} failed: {cause}"
        if isinstance(e, LumberjackConnectError) and isinstance(cause, TimeoutError):
            return f"cannot connect to {host}: no answer within {self.cfg.timeout:g}s"
        if isinstance(e, LumberjackConnectError) and isinstance(cause, OSError):
            return f"cannot connect to {host}: {cause.strerror or cause}"
        return f"{host}: {e}"

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["hosts"] = list(self.cfg.hosts)
        s["tls"] = self.ssl is not None
        s["connections"] = [
            {"host": w.host, "connected": w.connected, "window": w.window.size,
             "batches_in_flight": len(w.inflight)}
            for w in self.workers
        ]
        s["progress_acks"] = self.progress_acks
        return s


def _kind(e: LumberjackError) -> str:
    """What /status calls a failure (the `problem` every output reports)."""
    if isinstance(e, LumberjackConnectError) and isinstance(e.__cause__, ssl.SSLError):
        return "tls"
    if isinstance(e, LumberjackTimeout):
        return "timeout"
    if isinstance(e, LumberjackProtocolError):
        return "protocol"
    return "connect"


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    # Nothing is dead-lettered: the Beats protocol has no per-event rejection.
    return LogstashOutput(cfg, cfg.options)
