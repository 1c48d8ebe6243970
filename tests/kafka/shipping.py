"""The agent shipping to Kafka, as the tests see it: its config, and what a topic holds counted the
way a downstream consumer deduplicates (by message key)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord

from tests.kafka.client import Connection, read_topic

PAYOUTS_ROUTE = {"name": "payouts", "output": "payouts",
                 "when": {"any": [{"field": "message", "icontains": "payout"},
                                  {"field": "service", "equals": "payout-job"}]}}


def kafka_output(bootstrap: str, topic: str, **opts: Any) -> dict[str, Any]:
    return {"type": "kafka", "brokers": [bootstrap], "topic": topic, **opts}


def agent_config(logs: Path, outputs: dict[str, dict[str, Any]], routes: bool = True,
                 **agent: Any) -> dict[str, Any]:
    """The example config's shape: the app's log directory, payouts routed to their own output."""
    cfg: dict[str, Any] = {
        "inputs": [{"id": "app", "paths": [str(logs / "*.log")], "exclude": ["*.gz"], "scan_interval": "200ms"}],
        "outputs": outputs,
        "agent": {"registry_flush_interval": "200ms", **agent},
    }
    if routes:
        cfg["routes"] = [PAYOUTS_ROUTE]
    return cfg


@dataclass
class Tally:
    """What a topic holds: each message's seq (from its value) and key."""

    messages: list[ConsumerRecord]

    @property
    def seqs(self) -> list[int]:
        return [json.loads(m.value)["seq"] for m in self.messages]

    @property
    def distinct_keys(self) -> int:
        return len({m.key for m in self.messages})

    @property
    def duplicates(self) -> int:
        """Messages beyond the first of their key: what a consumer keyed on the id drops."""
        return len(self.messages) - self.distinct_keys

    def keys_by_seq(self) -> dict[int, set[bytes]]:
        out: dict[int, set[bytes]] = {}
        for m in self.messages:
            out.setdefault(json.loads(m.value)["seq"], set()).add(m.key)
        return out

    def copies(self) -> Counter[int]:
        return Counter(self.seqs)


def tally(conn: Connection, topic: str, within: float = 120.0) -> Tally:
    return Tally(asyncio.run(read_topic(conn, topic, within)))
