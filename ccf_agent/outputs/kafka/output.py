"""The Kafka output's protocol: record batches to a topic's partitions through aiokafka, and what the
brokers' answers mean for each record.

A message per record: its key is the record's deterministic id (the Elasticsearch output's `_id`,
so a consumer turns a resend into a no-op) unless `key` names a field; its value the document; its
headers the stream, the file path and the offset. A file's records keep their order: every record
of a stream goes to the partition its stream id picks (with `key` naming a field, the partition
Kafka's own partitioner picks for the key), in the order read.

The producer is idempotent with acks=all: aiokafka sends a batch the brokers did not acknowledge
again by itself, for as long as it takes (a broker restarted, a leader election,
NOT_ENOUGH_REPLICAS), and the broker drops the copies. So a batch slow to be acknowledged is waited
for, never sent again by the output (its health says why meanwhile, and reading pauses as the
output fills). A record settles when its batch is acknowledged. What the brokers refuse for good:

    MESSAGE_TOO_LARGE   refuses a whole batch: its records are sent again one per batch, and a
                        record refused alone is dead-lettered with its error; the file goes on
    unknown topic       (auto-create off) its records wait on the output's backoff and the output
                        is unhealthy until the topic exists; other topics' records keep flowing

A broker that cannot be reached at start, or refuses the credentials or the certificate, is retried
on a backoff with the cause in the output's health (aiokafka only says it could not bootstrap; one
connection of the output's own finds out why).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zlib import crc32

import cramjam  # noqa: F401 - aiokafka's snappy, lz4 and zstd codecs: a broken wheel fails at start, not at a send
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    DuplicateSequenceNumber,
    IllegalSaslStateError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
)
from aiokafka.partitioner import murmur2

from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.httpclient.tls import client_ssl_context
from ccf_agent.outputs.base import Output
from ccf_agent.outputs.deadletter import DeadItem, DeadLetters
from ccf_agent.outputs.delivery.batch import Batch, Piece
from ccf_agent.outputs.delivery.linger import Linger
from ccf_agent.outputs.delivery.retry import Backoff, backoff_delay, loop_time
from ccf_agent.outputs.kafka import topic as topics
from ccf_agent.outputs.kafka.config import KafkaOptions, config_problem, options_of

log = logging.getLogger("ccf_agent.outputs.kafka")

# A record batch as built, uncompressed: under the broker's default message.max.bytes (1 MiB and a
# little), so a batch of ordinary records is never refused for its size as a whole.
MAX_BATCH_BYTES = 960 << 10
TOPICS_COUNTED = 1000  # per-topic counts kept for /status and /metrics; the rest under "_other"
MESSAGE_TOO_LARGE = 10  # Kafka's error code, the `status` of a dead letter
# Sending a request's records again at once, on a renewed producer or in smaller batches: at most
# this often (then they wait on the output's backoff).
MAX_ROUNDS = 24
# Refusals that say the batch was not stored, because of the producer's sequence, not the records.
_NOT_STORED = (OutOfOrderSequenceNumber, InvalidProducerEpoch, InvalidProducerIdMapping)
_CLIENT_LOGGERS = ("aiokafka", "aiokafka.client", "aiokafka.cluster", "aiokafka.conn",
                   "aiokafka.producer.producer", "aiokafka.producer.sender")


class ClientLog(logging.Filter):
    """aiokafka tells some trouble only in its log (a produce request refused with
    NOT_ENOUGH_REPLICAS and retried every 100 ms; why a bootstrap failed): the latest warning is kept
    for the outputs' health, and a line repeated is let through to the agent's log once a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""
        self._passed: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        self.last = text
        now = time.monotonic()
        if now - self._passed.get(text, -3600.0) < 60.0:
            return False
        if len(self._passed) > 100:
            self._passed.clear()
        self._passed[text] = now
        return True


CLIENT_LOG = ClientLog()


def _watch_client_log() -> None:
    for name in _CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if CLIENT_LOG not in logger.filters:
            logger.addFilter(CLIENT_LOG)


@dataclass(slots=True)
class _Message:
    topic: bytes
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    stream: bytes
    size: int  # in a record batch, about (varints and attributes: a few bytes more than the encoded record)


@dataclass(slots=True)
class _Sent:
    """A record batch queued for one partition."""

    topic: str
    partition: int
    positions: list[int]  # whose records, in the request
    nbytes: int  # about, uncompressed
    future: asyncio.Future[Any]


@dataclass
class _Outcome:
    """What became of a request's records, by position."""

    retry: list[int] = field(default_factory=list)
    dead: list[tuple[int, int]] = field(default_factory=list)  # (position, partition)
    delivered: int = 0
    trouble: tuple[str, str] | None = None  # (kind, message) of the latest failure


def _message(record: bytes) -> _Message:
    """A record as encode() wrote it: `topic NUL key NUL stream NUL path NUL offset \\n document \\n`."""
    nl = record.index(b"\n")
    topic, key, stream, path, offset = record[:nl].split(b"\0")
    return _Message(topic, key, record[nl + 1:-1], [("stream", stream), ("path", path), ("offset", offset)],
                     stream, len(record) + 40)


def _clean(value: bytes) -> bytes:
    """A value that must stay on its line of the encoded record."""
    return value.replace(b"\0", b"?").replace(b"\n", b"?") if b"\0" in value or b"\n" in value else value


class KafkaOutput(Output):
    record_lines = 2  # the message's topic, key and headers, then its value

    def __init__(self, cfg: OutputConfig, dead_letters: DeadLetters) -> None:
        super().__init__(cfg)
        problem = config_problem(cfg)
        if problem:
            raise ValueError(f"output {cfg.name}: {problem if isinstance(problem, str) else problem[1]}")
        self.options: KafkaOptions = options_of(cfg)
        self.dead = dead_letters
        o = self.options
        literal = o.topic.literal
        self.static_topic = literal.encode() if literal is not None else None
        self._record_fields = {*o.topic.fields, *((o.key[0],) if o.key else ())}
        # Any `tls` section means TLS, as for the Logstash output: plaintext to an operator who wrote
        # one is the one outcome that must not happen.
        self.ssl: ssl.SSLContext | None = client_ssl_context(cfg.tls, cfg.name) if cfg.tls.present else None
        self.protocol = ("SASL_" if o.sasl else "") + ("SSL" if self.ssl else "PLAINTEXT")
        self.producer: AIOKafkaProducer | None = None
        self.slots = asyncio.Semaphore(cfg.max_in_flight)
        self.linger = linger = Linger(self)
        self._linger_wait = linger.wait
        self.topic_counts: dict[str, int] = {}
        self.missing: dict[str, str] = {}  # topics the cluster does not have -> why
        self.batch_limits: dict[str, int] = {}  # bytes of a record batch, for topics that refused one as too large
        self._renewal = asyncio.Lock()
        self.waiting = 0  # records sent and not acknowledged for longer than `timeout`

    # ------------------------------------------------------------------ encode (hot path)

    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        """Per record, a line with what becomes the message's topic, key and headers, then the
        document on a line of its own (a raw newline in a JSON document is whitespace: a space)."""
        batch = events.batch
        sid = batch.entry.stream_id.encode()
        n = len(sid)
        tail = b"\0" + sid + b"\0" + _clean(os.fsencode(batch.path)) + b"\0"
        ids, docs, records = events.ids, events.docs, events.records
        topic = self.static_topic
        keyed = self.options.key
        parts: list[bytes] = []
        add = parts.append
        for i in indices:
            rid = ids[i]
            doc = docs[i]
            if b"\n" in doc:
                doc = doc.replace(b"\n", b" ")
            add(b"%s\0%s%s%d\n%s\n" % (
                topic if topic is not None else topics.render(self.options.topic, records[i]).encode(),
                rid if keyed is None else self._key(records[i], rid), tail, int(rid[n:-9], 16), doc))
        return b"".join(parts)

    def _key(self, record: dict[str, Any], rid: bytes) -> bytes:
        """The key field's value; the record's id when it has none."""
        assert self.options.key is not None
        value: Any = record
        for k in self.options.key:
            value = value.get(k) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            return rid
        return _clean(str(value).encode())

    # ------------------------------------------------------------------ delivery

    async def run(self) -> None:
        _watch_client_log()
        try:
            self.producer = await self._connect()
            await self.serve_requests(self._deliver, self.slots, self._linger_wait)
        finally:
            await self._stop()

    async def _deliver(self, batch: Batch) -> list[Piece]:
        messages = [_message(r) for r in batch.records()]
        todo: dict[bytes, list[int]] = {}
        for pos, m in enumerate(messages):
            todo.setdefault(m.topic, []).append(pos)
        outcome = _Outcome()
        for _ in range(MAX_ROUNDS):
            producer = self.producer
            assert producer is not None
            sends: list[_Sent] = []
            for name, positions in todo.items():
                topic = name.decode()
                partitions = await self._partitions(producer, topic, len(positions))
                if partitions is None:
                    outcome.retry += positions
                    continue
                for partition, chunk in self._by_partition(positions, messages, partitions).items():
                    sends += await self._send(producer, topic, partition, chunk, messages, outcome)
            again, broken = await self._settle_sends(sends, outcome)
            if broken:
                await self._renew(producer)
            if not again:
                break
            todo = {}
            for topic, pos in sorted(again, key=lambda a: a[1]):
                todo.setdefault(topic.encode(), []).append(pos)
        else:
            outcome.retry += [pos for positions in todo.values() for pos in positions]
        if outcome.dead:
            self._dead_letter(outcome, messages)
        self._report(outcome)
        cfg = self.cfg
        return batch.settle(sorted(outcome.retry),
                            lambda attempt: backoff_delay(attempt - 1, cfg.backoff_initial, cfg.backoff_max),
                            loop_time())

    async def _partitions(self, producer: AIOKafkaProducer, topic: str, n: int) -> list[int] | None:
        """The topic's partitions; None (and the output unhealthy) when the cluster does not have it."""
        try:
            partitions = sorted(await producer.partitions_for(topic))
        except UnknownTopicOrPartitionError:
            why = (f"topic {topic} does not exist and the cluster does not create topics on first use "
                   f"(auto.create.topics.enable=false): create it; {n} records wait")
        except TopicAuthorizationFailedError:
            why = f"not authorised to write to topic {topic}: grant the producer WRITE on it; {n} records wait"
        except KafkaError as e:
            why = f"no metadata for topic {topic} ({type(e).__name__}: {e}); {n} records wait"
        else:
            if self.missing.pop(topic, None) is not None:
                log.info("output %s: topic %s is there now", self.name, topic)
            return partitions
        self.missing[topic] = why
        self.stats.request_errors += 1
        self.health.report("topic", why, logging.ERROR)
        return None

    def _by_partition(self, positions: list[int], messages: list[_Message],
                      partitions: list[int]) -> dict[int, list[int]]:
        """Records by the partition they go to, in order: a stream's own, or the key's."""
        out: dict[int, list[int]] = {}
        count = len(partitions)
        if self.options.key is None:
            for pos in positions:
                out.setdefault(partitions[crc32(messages[pos].stream) % count], []).append(pos)
        else:
            for pos in positions:
                out.setdefault(partitions[(murmur2(messages[pos].key) & 0x7FFFFFFF) % count], []).append(pos)
        return out

    async def _send(self, producer: AIOKafkaProducer, topic: str, partition: int, chunk: list[int],
                    messages: list[_Message], outcome: _Outcome) -> list[_Sent]:
        """The records at `chunk` in as few record batches as the topic takes, queued in order;
        what could not be queued is sent again later (after it, the rest of the chunk too: a
        partition's records stay in order)."""
        limit = self.batch_limits.get(topic, MAX_BATCH_BYTES)
        sent: list[_Sent] = []
        i = 0
        while i < len(chunk):
            builder = producer.create_batch()
            start = i
            size = 0
            while i < len(chunk):
                m = messages[chunk[i]]
                cost = m.size
                if i > start and size + cost > limit:
                    break
                if builder.append(timestamp=None, key=m.key, value=m.value, headers=m.headers) is None:
                    break  # full: the record starts the next batch
                size += cost
                i += 1
            try:
                future = await producer.send_batch(builder, topic, partition=partition)
            except KafkaError as e:  # the partition's queue did not drain within `timeout`: brokers away
                outcome.retry += chunk[start:]
                outcome.trouble = ("unreachable", f"could not queue {len(chunk) - start} records for {topic} "
                                   f"partition {partition} ({type(e).__name__}: {e or CLIENT_LOG.last}); "
                                   "sending them again")
                break
            self.stats.requests += 1
            sent.append(_Sent(topic, partition, chunk[start:i], size, future))
        return sent

    async def _settle_sends(self, sends: list[_Sent], outcome: _Outcome) -> tuple[list[tuple[str, int]], bool]:
        """Wait for every batch's acknowledgement (however long: the producer resends by itself) and
        account for it. Returns the records to send again at once, as (topic, position), and whether
        the producer must be renewed: a batch refused for good ends the idempotent producer's
        sequence on its partition, and the broker refuses every later batch there as out of order.

        A batch refused as too large is sent again in batches half its size (the topic's
        max.message.bytes bounds a whole batch); a record refused alone is dead-lettered."""
        started = time.monotonic()
        await self._acknowledged([s.future for s in sends], sum(len(s.positions) for s in sends))
        self.stats.observe_latency(time.monotonic() - started)
        again: list[tuple[str, int]] = []
        broken = False
        for s in sends:
            error = s.future.exception()
            if error is None or isinstance(error, DuplicateSequenceNumber):  # stored (maybe before)
                outcome.delivered += len(s.positions)
                self._count(s.topic, len(s.positions))
                continue
            if not isinstance(error, KafkaError):
                raise error
            broken = broken or not error.retriable
            if isinstance(error, MessageSizeTooLargeError) and len(s.positions) == 1:
                outcome.dead.append((s.positions[0], s.partition))
            elif isinstance(error, MessageSizeTooLargeError):
                self.batch_limits[s.topic] = min(self.batch_limits.get(s.topic, MAX_BATCH_BYTES), s.nbytes // 2)
                again += [(s.topic, pos) for pos in s.positions]
            elif isinstance(error, _NOT_STORED):
                again += [(s.topic, pos) for pos in s.positions]
            else:
                outcome.retry += s.positions
                outcome.trouble = ("refused", f"the broker refused {len(s.positions)} records for {s.topic} "
                                   f"partition {s.partition}: {type(error).__name__} {error}; sending them again")
        return again, broken

    async def _renew(self, broken: AIOKafkaProducer) -> None:
        """A new producer (a new producer id, sequences from 0) in place of `broken`, once."""
        async with self._renewal:
            if self.producer is not broken:
                return  # another request renewed it
            log.info("output %s: a batch was refused for good, which ends the producer's sequence: starting a "
                     "new producer", self.name)
            self.producer = await self._connect()
        await self._abandon(broken)

    async def _acknowledged(self, futures: list[asyncio.Future[Any]], records: int) -> None:
        """Until every future is done. Past `timeout`, the output is unhealthy and says what the
        client last said; the records stay in flight (reading pauses as the output fills)."""
        pending = set(futures)
        waited = 0.0
        try:
            while pending:
                _, pending = await asyncio.wait(pending, timeout=self.cfg.timeout)
                if pending:
                    if not waited:
                        self.waiting += records
                    waited += self.cfg.timeout
                    self.health.report("unacknowledged", f"no acknowledgement from the brokers for {waited:g}s "
                                       f"({records} records in flight; the client retries them by itself"
                                       f"{'; it says: ' + CLIENT_LOG.last if CLIENT_LOG.last else ''})")
        finally:
            if waited:
                self.waiting -= records

    def _count(self, topic: str, n: int) -> None:
        counts = self.topic_counts
        if topic not in counts and len(counts) >= TOPICS_COUNTED:
            topic = "_other"
        counts[topic] = counts.get(topic, 0) + n

    def _dead_letter(self, outcome: _Outcome, messages: list[_Message]) -> None:
        """The records refused alone as too large, kept with their error; on a disk error they are
        sent again instead (never acknowledged without a copy)."""
        items = []
        for pos, partition in outcome.dead:
            m = messages[pos]
            reason = (f"a message of {len(m.value)} bytes is larger than the topic's max.message.bytes (or the "
                      "broker's message.max.bytes)")
            action = orjson.dumps({"topic": m.topic.decode(), "partition": partition, "key": m.key.decode("utf-8", "replace"),
                                   "headers": {k: v.decode("utf-8", "replace") for k, v in m.headers}})
            items.append(DeadItem(MESSAGE_TOO_LARGE, {"type": "MESSAGE_TOO_LARGE", "reason": reason}, action, m.value))
        path = self.dead.path_for(self.name)
        try:
            self.dead.write_many(self.name, items)
        except OSError as e:
            outcome.retry += [pos for pos, _ in outcome.dead]
            outcome.trouble = ("dead_letter_io", f"cannot write dead letters ({e.strerror or e}) to {path}: free "
                               "disk space or fix permissions; the records wait")
            return
        self.stats.docs_dead += len(items)
        self.note_error(f"{len(items)} messages too large for the topic, dead-lettered to {path}")
        log.error("output %s: %d messages larger than the topic accepts; written to %s", self.name, len(items), path)

    def _report(self, outcome: _Outcome) -> None:
        if outcome.trouble is not None:
            kind, message = outcome.trouble
            self.stats.request_errors += 1
            self.health.report(kind, message)
        elif self.missing:
            # Other topics' records got through; the output is not delivering all it gets.
            self.health.report("topic", "; ".join(self.missing.values()), logging.ERROR)
        elif outcome.delivered:
            self.health.delivered()

    # ------------------------------------------------------------------ connection

    def _client_options(self) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = {
            "bootstrap_servers": list(o.brokers), "client_id": f"ccf-agent-{self.name}",
            "request_timeout_ms": int(self.cfg.timeout * 1000), "security_protocol": self.protocol,
        }
        if self.ssl is not None:
            kw["ssl_context"] = self.ssl
        if o.sasl is not None:
            kw.update(sasl_mechanism=o.sasl.mechanism, sasl_plain_username=o.sasl.username,
                      sasl_plain_password=o.sasl.password)
        return kw

    async def _connect(self) -> AIOKafkaProducer:
        """A started producer. Until the brokers take it, the cause is in the output's health and
        records wait queued (reading pauses when the queue is full): no crash, no loop."""
        o = self.options
        backoff = Backoff(max(self.cfg.backoff_initial, 0.5), max(self.cfg.backoff_max, 1.0))
        while True:
            producer = AIOKafkaProducer(
                **self._client_options(), acks=o.acks, enable_idempotence=o.acks == "all",
                compression_type=None if o.compression == "none" else o.compression,
                max_batch_size=min(self.cfg.batch_max_bytes, MAX_BATCH_BYTES))
            try:
                await producer.start()
            except (KafkaError, OSError) as e:
                await self._abandon(producer)
                kind, why = await self._why(e)
                self.stats.request_errors += 1
                self.health.report(kind, f"{why}; trying again", logging.ERROR)
                await backoff.wait()
                continue
            log.info("output %s: connected to %s (%s)", self.name, ", ".join(o.brokers), self.protocol)
            if not self.healthy:
                self.health.delivered()
            return producer

    async def _why(self, error: BaseException) -> tuple[str, str]:
        """(kind, message) of a failed bootstrap: one connection of our own to each broker gets the
        cause that aiokafka only logs."""
        o = self.options
        kw = {k: v for k, v in self._client_options().items() if k not in ("bootstrap_servers",)}
        for broker in o.brokers:
            host, _, port = broker.rpartition(":")
            try:
                async with asyncio.timeout(self.cfg.timeout):
                    conn = await create_conn(host, int(port), **kw)
            except SaslAuthenticationFailed as e:
                assert o.sasl is not None
                return "auth", (f"{broker} refused SASL {o.sasl.mechanism} authentication as {o.sasl.username!r}: "
                                f"check sasl.username and sasl.password ({e})")
            except UnsupportedSaslMechanismError as e:
                return "auth", f"{broker} does not offer SASL {o.sasl.mechanism if o.sasl else ''}: {e}"
            except IllegalSaslStateError:
                return "auth", f"{broker} does not speak SASL on this port: is it a PLAINTEXT or SSL listener?"
            except ssl.SSLCertVerificationError as e:
                return "tls", (f"TLS verification of {broker} failed ({e.verify_message}): set tls.ca_file to the "
                               "CA that signed the broker's certificate")
            except ssl.SSLError as e:
                return "tls", f"TLS handshake with {broker} failed: {e}"
            except TimeoutError:
                continue
            except (OSError, KafkaError):
                continue
            conn.close()
        why = CLIENT_LOG.last or str(error)
        return "connect", f"cannot reach the brokers {', '.join(o.brokers)} ({why})"

    async def _abandon(self, producer: AIOKafkaProducer) -> None:
        try:
            async with asyncio.timeout(5):
                await producer.stop()
        except (TimeoutError, KafkaError, OSError):
            pass

    async def _stop(self) -> None:
        """Flush and close; bounded: stop() never returns while a batch cannot be delivered."""
        producer, self.producer = self.producer, None
        if producer is None:
            return
        try:
            async with asyncio.timeout(max(1.0, min(self.cfg.timeout, 10.0))):
                await producer.stop()
        except TimeoutError:
            log.warning("output %s: the brokers did not acknowledge everything before the producer closed; "
                        "those records were not committed and will be read again", self.name)
        except (KafkaError, OSError) as e:
            log.warning("output %s: closing the producer: %s", self.name, e)

    def record_fields(self) -> set[str]:
        """The fields a topic or key is named after: the pipeline's projection keeps them."""
        return set(self._record_fields)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        s = super().status()
        o = self.options
        s["brokers"] = list(o.brokers)
        s["tls"] = self.ssl is not None
        s["sasl"] = o.sasl.mechanism if o.sasl else None
        s["topics"] = dict(self.topic_counts)  # records acknowledged per topic
        s["missing_topics"] = sorted(self.missing)
        s["unacknowledged_waiting"] = self.waiting
        return s


def create(cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
    return KafkaOutput(cfg, dead_letters)
