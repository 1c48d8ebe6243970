"""The `kafka` scenario's destination: a real Kafka broker (the tests' launcher, tests/kafka, started
with the full JIT) or `--kafka host:port`, read back with a real consumer (aiokafka, a dependency of
the agent) to check exactly-once by seq and to time the first and last message (their CreateTime,
set by the agent's producer as it batches them)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_SEQ = re.compile(rb'"seq":(\d+)')


class KafkaTarget:
    def __init__(self, bootstrap: str | None) -> None:
        self.broker: Any = None
        if bootstrap is None:
            sys.path.insert(0, str(REPO))
            from tests.kafka import launcher  # stdlib only: builds from Maven Central on first use

            self.broker = launcher.start(full_jit=True)
            bootstrap = self.broker.bootstrap
        self.bootstrap = bootstrap

    def output_keys(self) -> dict[str, Any]:
        return {"type": "kafka", "brokers": [self.bootstrap]}

    def progress(self, topics: tuple[str, ...]) -> tuple[int, int]:
        """Messages in the topics (their end offsets): (docs, docs) like the other targets' progress."""
        n = asyncio.run(self._ends(topics))
        return n, n

    async def _ends(self, topics: tuple[str, ...]) -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - topics made since start
                parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
            return sum((await consumer.end_offsets(parts)).values()) if parts else 0
        finally:
            await consumer.stop()

    def stats(self, topics: tuple[str, ...]) -> dict[str, Any]:
        return asyncio.run(self._stats(topics))

    async def _stats(self, topics: tuple[str, ...]) -> dict[str, Any]:
        """Every message read back: per topic its count, distinct seqs and keys; over all, distinct
        seqs, duplicates and the first and last CreateTime."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        out: dict[str, Any] = {"first_ms": None, "last_ms": None}
        seqs: dict[str, set[int]] = {t: set() for t in topics}
        keys: dict[str, set[bytes]] = {t: set() for t in topics}
        docs = dict.fromkeys(topics, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - topics made since start
            parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
            consumer.assign(parts)  # once: aiokafka 0.14 fails its stop() after a second assign()
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            while parts and any([await consumer.position(tp) < ends[tp] for tp in parts]):
                for tp, batch in (await consumer.getmany(timeout_ms=1000, max_records=20000)).items():
                    for r in batch:
                        if r.offset >= ends[tp]:
                            continue
                        docs[r.topic] += 1
                        keys[r.topic].add(r.key)
                        m = _SEQ.search(r.value)
                        if m:
                            seqs[r.topic].add(int(m.group(1)))
                        first, last = out["first_ms"], out["last_ms"]
                        out["first_ms"] = r.timestamp if first is None else min(first, r.timestamp)
                        out["last_ms"] = r.timestamp if last is None else max(last, r.timestamp)
        finally:
            await consumer.stop()
        every = set().union(*seqs.values())
        total = sum(docs.values())
        out.update(topics={t: {"docs": docs[t], "distinct": len(seqs[t]), "keys": len(keys[t])} for t in topics},
                   docs=total, distinct_seqs=len(every), duplicates=total - len(every),
                   min_seq=min(every) if every else None, max_seq=max(every) if every else None)
        return out

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()
