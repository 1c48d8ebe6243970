"""The Kafka broker the suite runs, proven with a real client (aiokafka): every listener, the
faults the Kafka output must meet (auth, TLS, too large, unknown topic, NOT_ENOUGH_REPLICAS),
and a broker stopped, killed and started again."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    SaslAuthenticationFailed,
    UnknownTopicOrPartitionError,
)
from aiokafka.structs import RecordMetadata

from tests.kafka import launcher
from tests.kafka.client import (
    Connection,
    connect,
    create_topic,
    in_sync_replicas,
    read_topic,
    refusal,
    wait_for,
)
from tests.kafka.launcher import Broker

pytestmark = pytest.mark.kafka

Record = tuple[bytes, bytes]  # key, value


def records(n: int, start: int = 0) -> list[Record]:
    return [(f"id-{i}".encode(), b'{"seq":%d,"message":"payout"}' % i) for i in range(start, start + n)]


async def produce(
    conn: Connection, topic: str, batch: Sequence[Record], **options: Any
) -> list[RecordMetadata]:
    """Send every record (headers as the output will set them) and wait for every acknowledgement."""
    options = {"enable_idempotence": True, "acks": "all", **options}
    producer = AIOKafkaProducer(**conn, **options)
    try:
        await producer.start()
        futures = [
            await producer.send(topic, v, key=k, partition=0, headers=[("stream", b"app"), ("offset", k)])
            for k, v in batch
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


def assert_round_trip(conn: Connection, topic: str, batch: Sequence[Record]) -> None:
    asyncio.run(create_topic(conn, topic))
    acks = asyncio.run(produce(conn, topic, batch))
    assert [a.offset for a in acks] == list(range(len(batch)))
    got = asyncio.run(read_topic(conn, topic))
    assert [(r.key, r.value) for r in got] == list(batch)
    assert [dict(r.headers)["offset"] for r in got] == [key for key, _ in batch]


def test_records_sent_on_plaintext_come_back_in_order_with_keys_and_headers(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    assert_round_trip(connect(kafka_bootstrap), kafka_topic, records(5))


def test_a_scram_user_produces_and_consumes_over_sasl_plaintext(
    kafka_broker: Broker, kafka_topic: str
) -> None:
    assert_round_trip(connect(kafka_broker, "SASL_PLAINTEXT"), kafka_topic, records(5))


def test_a_wrong_scram_password_is_an_authentication_failure(kafka_broker: Broker) -> None:
    started, cause = asyncio.run(refusal(connect(kafka_broker, "SASL_PLAINTEXT", password="not-the-password")))
    assert "Unable to bootstrap" in str(started)
    assert isinstance(cause, SaslAuthenticationFailed)
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in str(cause)


def test_tls_verified_against_the_test_ca_produces_and_consumes(
    kafka_broker: Broker, kafka_topic: str
) -> None:
    assert_round_trip(connect(kafka_broker, "SSL"), kafka_topic, records(5))


def test_scram_over_tls_produces_and_consumes(kafka_broker: Broker, kafka_topic: str) -> None:
    conn = connect(kafka_broker, "SASL_SSL", username="ccf-other", mechanism="SCRAM-SHA-256")
    assert_round_trip(conn, kafka_topic, records(5))


def test_a_broker_certificate_from_an_unknown_ca_is_refused(kafka_broker: Broker, tmp_path: Path) -> None:
    other_ca = launcher.make_ca(tmp_path, subject="/CN=some other CA")
    started, cause = asyncio.run(refusal(connect(kafka_broker, "SSL", ca_file=str(other_ca))))
    assert "Unable to bootstrap" in str(started)
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(cause)


def test_a_record_over_the_topic_limit_fails_its_whole_batch(kafka_bootstrap: str, kafka_topic: str) -> None:
    """aiokafka does not split a batch the broker refused as too large (the Java producer does):
    every record in it fails, the small ones too."""
    conn = connect(kafka_bootstrap)
    asyncio.run(create_topic(conn, kafka_topic, config={"max.message.bytes": 1000}))
    small = records(3)
    big = (b"id-big", b"x" * 2000)

    async def attempt() -> list[BaseException | RecordMetadata]:
        producer = AIOKafkaProducer(**conn, enable_idempotence=True, linger_ms=200)  # one batch for all
        await producer.start()
        try:
            futures = [await producer.send(kafka_topic, v, key=k, partition=0) for k, v in [*small, big]]
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            await producer.stop()

    results = asyncio.run(attempt())
    assert [type(r) for r in results] == [MessageSizeTooLargeError] * 4
    # Alone, the small records are accepted.
    assert len(asyncio.run(produce(conn, kafka_topic, small))) == 3


def test_a_dedicated_broker_keeps_what_it_acknowledged_through_a_stop_and_a_kill(
    start_kafka: Callable[..., Broker], kafka_topic: str
) -> None:
    broker = start_kafka()
    conn = connect(broker)
    ports = broker.ports
    asyncio.run(create_topic(conn, kafka_topic, partitions=3))
    asyncio.run(produce(conn, kafka_topic, records(5)))

    broker.stop()  # SIGTERM: a clean shutdown
    assert not broker.running()
    broker.start()
    asyncio.run(produce(conn, kafka_topic, records(5, start=5)))

    broker.kill()  # SIGKILL: the log is recovered at the next start
    assert broker.proc is not None and broker.proc.returncode == -9
    broker.start()

    assert broker.ports == ports
    got = asyncio.run(read_topic(conn, kafka_topic))
    assert [(r.key, r.value) for r in got] == records(10)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Broker, Broker]]:
    """Two brokers (node 1 is also the controller), topics not created on first use."""
    first = launcher.start(settings={"auto.create.topics.enable": False})
    try:
        second = launcher.start(join=first)
        yield first, second
    finally:
        first.close()  # and the second before it


def test_a_missing_topic_is_unknown_when_auto_create_is_off(
    cluster: tuple[Broker, Broker], kafka_topic: str
) -> None:
    conn = connect(cluster[0])
    with pytest.raises(UnknownTopicOrPartitionError):
        asyncio.run(produce(conn, kafka_topic, records(1), request_timeout_ms=2000))


@pytest.fixture
def replica_down(cluster: tuple[Broker, Broker], kafka_topic: str) -> Iterator[Connection]:
    """A topic on both brokers, led by node 1, that needs 2 in-sync replicas for acks=all; node 2
    killed and out of the ISR. Node 2 is started again at teardown if the test did not."""
    first, second = cluster
    conn = connect(first)
    asyncio.run(create_topic(conn, kafka_topic, assignment={0: [1, 2]}, config={"min.insync.replicas": 2}))
    second.kill()

    async def shrunk() -> bool:
        return await in_sync_replicas(conn, kafka_topic) == [1]

    asyncio.run(wait_for(shrunk, 60, "node 2 to leave the ISR"))
    try:
        yield conn
    finally:
        if not second.running():
            second.start()


def test_acks_all_below_min_insync_replicas_fails_with_not_enough_replicas(
    replica_down: Connection, kafka_topic: str
) -> None:
    with pytest.raises(NotEnoughReplicasError):
        asyncio.run(produce(replica_down, kafka_topic, records(1), enable_idempotence=False,
                            request_timeout_ms=2000))


def test_an_idempotent_producer_holds_a_record_below_min_isr_until_the_replica_is_back(
    cluster: tuple[Broker, Broker], replica_down: Connection, kafka_topic: str
) -> None:
    """With enable_idempotence, aiokafka never expires a batch: it retries NOT_ENOUGH_REPLICAS
    for as long as it lasts and the record is stored once."""
    second = cluster[1]

    async def scenario() -> RecordMetadata:
        producer = AIOKafkaProducer(**replica_down, enable_idempotence=True, acks="all",
                                    request_timeout_ms=1000)
        await producer.start()
        try:
            future = await producer.send(kafka_topic, b"held", key=b"id-held")
            # Three times the request timeout after which a producer without idempotence gives up.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), 3)
            await asyncio.to_thread(second.start)
            return await asyncio.wait_for(future, 60)
        finally:
            await producer.stop()

    assert asyncio.run(scenario()).offset == 0
    assert [r.key for r in asyncio.run(read_topic(replica_down, kafka_topic))] == [b"id-held"]
