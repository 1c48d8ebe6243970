"""aiokafka helpers for tests that talk to the Kafka broker: how to reach a listener, a topic made
to measure, and everything a topic holds, read back with a real consumer."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from tests.kafka.launcher import USERS, Broker

Connection = dict[str, Any]


def connect(
    target: Broker | str,
    listener: str = "PLAINTEXT",
    *,
    username: str = "ccf",
    password: str | None = None,
    mechanism: str = "SCRAM-SHA-512",
    ca_file: str | None = None,
) -> Connection:
    """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient to reach `listener` of a test
    broker (or PLAINTEXT at a host:port): SASL with a test user (its own password unless given),
    TLS verified against the broker's CA unless `ca_file` names another."""
    if isinstance(target, str):
        if listener != "PLAINTEXT":
            raise ValueError(f"only PLAINTEXT is known for {target}")
        return {"bootstrap_servers": target}
    conn: Connection = {"bootstrap_servers": target.address(listener), "security_protocol": listener}
    if listener.startswith("SASL_"):
        conn.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=username,
            sasl_plain_password=USERS[username] if password is None else password,
        )
    if listener in ("SSL", "SASL_SSL"):
        conn["ssl_context"] = create_ssl_context(cafile=ca_file or str(target.ca_file))
    return conn


async def refusal(conn: Connection) -> tuple[KafkaConnectionError, BaseException]:
    """How a broker refuses a producer with these settings: what AIOKafkaProducer.start() raises
    (it only says it could not bootstrap, and logs the cause), and what one connection of its own
    (aiokafka.conn.create_conn, with the same settings) raises: the cause."""
    producer = AIOKafkaProducer(**conn)
    try:
        await producer.start()
    except KafkaConnectionError as e:
        started: KafkaConnectionError = e
    else:
        raise AssertionError(f"the producer started with {conn}")
    finally:
        await producer.stop()
    host, port = conn["bootstrap_servers"].rsplit(":", 1)
    options = {k: v for k, v in conn.items() if k != "bootstrap_servers"}
    try:
        probe = await create_conn(host, int(port), **options)
    except Exception as cause:  # whatever it is, the test asserts it
        return started, cause
    probe.close()
    raise AssertionError(f"a connection with {conn} was accepted")


def topic_name(test_name: str) -> str:
    """A topic of the test's own: legal characters only, unique per call."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:60]
    return f"ccft-{slug}-{uuid.uuid4().hex[:6]}"


async def create_topic(
    conn: Connection,
    name: str,
    partitions: int = 1,
    config: Mapping[str, object] | None = None,
    assignment: Mapping[int, list[int]] | None = None,
) -> None:
    """Create a topic, e.g. config={"max.message.bytes": 1000}; `assignment` (partition -> node ids,
    leader first) replaces `partitions` and the replication factor."""
    configs = {k: str(v) for k, v in (config or {}).items()}
    if assignment:
        topic = NewTopic(name, -1, -1, replica_assignments=dict(assignment), topic_configs=configs)
    else:
        topic = NewTopic(name, partitions, 1, topic_configs=configs)
    admin = AIOKafkaAdminClient(**conn)
    await admin.start()
    try:
        response = await admin.create_topics([topic])
    finally:
        await admin.close()
    # (topic, error_code[, error_message]) per topic, by protocol version
    errors = [e for e in response.topic_errors if e[1]]  # type: ignore[attr-defined]
    if errors:
        raise AssertionError(f"create_topics({name}): {errors}")


async def describe_partitions(conn: Connection, topic: str) -> dict[int, dict[str, Any]]:
    """partition -> {"leader": node id, "replicas": [...], "isr": [...], ...} from the cluster's metadata."""
    admin = AIOKafkaAdminClient(**conn)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise AssertionError(f"describe_topics({topic}): error {described['error_code']}")
    return {p["partition"]: p for p in described["partitions"]}


async def in_sync_replicas(conn: Connection, topic: str, partition: int = 0) -> list[int]:
    return sorted((await describe_partitions(conn, topic))[partition]["isr"])


async def wait_for(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll `check` until it is true; a Kafka error in it counts as not yet (a node may be away)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if await check():
                return
        except KafkaError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.2)


async def read_topic(conn: Connection, topic: str, within: float = 60.0) -> list[ConsumerRecord]:
    """Every record the topic holds now, partition by partition in offset order: reads each
    partition from the beginning up to the end offset it had when the read began."""
    partitions = [TopicPartition(topic, p) for p in sorted(await describe_partitions(conn, topic))]
    consumer = AIOKafkaConsumer(**conn, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in partitions}
        deadline = time.monotonic() + within
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                got = {tp.partition: len(r) for tp, r in records.items()}
                raise AssertionError(f"read {got} of {topic}, ends {ends}, after {within:g}s")
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                records[tp].extend(r for r in batch if r.offset < ends[tp])
    finally:
        await consumer.stop()
    return [r for tp in partitions for r in records[tp]]

