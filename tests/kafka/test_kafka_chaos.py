"""The Kafka output under the chaos suite's troubles: the agent killed with SIGKILL again and again,
and the broker stopped for half a minute mid-stream. Counted by message key with a real consumer:
nothing lost; every duplicate is a resend (the same key as its first copy), bounded by what was in
flight at each kill."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.scenarios import RssSampler, Writer
from tests.chaos.test_chaos import record
from tests.harness import AgentProcess, wait_until
from tests.kafka.client import connect, create_topic
from tests.kafka.launcher import Broker
from tests.kafka.shipping import agent_config, kafka_output, tally

pytestmark = pytest.mark.kafka

SECONDS = float(os.environ.get("CCF_CHAOS_SECONDS", "10"))
DOWN = float(os.environ.get("CCF_KAFKA_DOWN_SECONDS", "30"))
RATE = int(os.environ.get("CCF_CHAOS_RATE", "1000"))
INFLIGHT = 256 << 10  # the agent's max_inflight_bytes: what a kill can leave unacknowledged, per output
MIN_LINE = 150  # bytes: the shortest line samples.lines writes is longer


def _outputs(bootstrap: str, topic: str, **opts: Any) -> dict[str, dict[str, Any]]:
    return {"logs": kafka_output(bootstrap, f"{topic}-logs", **opts),
            "payouts": kafka_output(bootstrap, f"{topic}-payouts", **opts)}


def test_kill_9_every_few_seconds_loses_nothing_and_resends_only_what_was_in_flight(
    tmp_path: Path, agents: list[AgentProcess], kafka_bootstrap: str, kafka_topic: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    agent = AgentProcess(tmp_path, agent_config(logs, _outputs(kafka_bootstrap, kafka_topic),
                                                max_inflight_bytes=INFLIGHT))
    agents.append(agent)
    agent.start()
    writer = Writer(logs / "app.log", RATE)
    in_flight: list[int] = []  # bytes read and not yet committed, just before each kill
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        time.sleep(2.5)
        status = agent.status() or {"files": []}
        in_flight.append(sum(f["read_offset"] - f["offset"] for f in status["files"]))
        agent.kill()
        agent.start()
    written = writer.stop()
    agent.wait_caught_up(timeout=120)

    conn = connect(kafka_bootstrap)
    got = [tally(conn, f"{kafka_topic}-{name}") for name in ("logs", "payouts")]
    copies = got[0].copies() + got[1].copies()
    duplicates = got[0].duplicates + got[1].duplicates
    # Per kill: what the flow lets in flight for each output, and what the registry's last save
    # (every 200 ms) may not hold yet at the writer's rate.
    bound = len(in_flight) * (2 * INFLIGHT // MIN_LINE + RATE // 2)
    row = {"scenario": "kafka kill -9", "written": written, "kills": len(in_flight),
           "lost": written - len(copies), "duplicates": duplicates,
           "duplicates_per_kill": round(duplicates / len(in_flight), 1),
           "uncommitted_bytes_before_kills": in_flight, "bound": bound}
    record(row)
    assert set(copies) == set(range(written)), row
    assert all(len(keys) == 1 for t in got for keys in t.keys_by_seq().values())
    keys = {s: k for t in got for s, k in t.keys_by_seq().items()}
    assert len(set(map(frozenset, keys.values()))) == written  # one key per record, its own
    assert duplicates <= bound, row


def test_the_broker_stopped_for_half_a_minute_loses_nothing_and_memory_stays_bounded(
    tmp_path: Path, agents: list[AgentProcess], start_kafka: Any, kafka_topic: str
) -> None:
    broker: Broker = start_kafka()
    logs = tmp_path / "logs"
    logs.mkdir()
    queued = 1 << 20
    agent = AgentProcess(tmp_path, agent_config(
        logs, _outputs(broker.bootstrap, kafka_topic, timeout="5s", max_queued_bytes=queued),
        max_inflight_bytes=INFLIGHT))
    agents.append(agent)
    agent.start()
    rss = RssSampler(agent)
    writer = Writer(logs / "app.log", RATE)
    try:
        time.sleep(3)
        rss.sample()
        before = rss.peak_kib / 1024
        broker.stop()
        time.sleep(DOWN)
        status = agent.status()
        assert status is not None
        outputs = {o["name"]: o for o in status["outputs"]}
        assert not outputs["logs"]["healthy"]
        assert status["files"][0]["lag_bytes"] > RATE * DOWN * MIN_LINE / 2  # reading paused: the file buffers
        assert status["inflight_bytes"] <= 2 * INFLIGHT + 128 << 10
        broker.start()
        wait_until(lambda: all(o["healthy"] for o in (agent.status() or {"outputs": [{}]})["outputs"]), 60,
                   "the outputs to deliver again")
        time.sleep(2)
        written = writer.stop()
        agent.wait_caught_up(timeout=120)
    finally:
        peak = rss.stop()

    conn = connect(broker.bootstrap)
    got = [tally(conn, f"{kafka_topic}-{name}") for name in ("logs", "payouts")]
    copies = got[0].copies() + got[1].copies()
    # The configured bound: what the agent holds for the outputs (read and unacknowledged, queued)
    # twice over, on top of what it used before the outage.
    bound = before + 2 * (2 * INFLIGHT + 2 * queued) / (1 << 20) + 16
    row = {"scenario": f"kafka broker down {DOWN:g}s", "written": written, "lost": written - len(copies),
           "duplicates": got[0].duplicates + got[1].duplicates, "rss_before_mib": round(before, 1),
           "peak_rss_mib": round(peak, 1), "rss_bound_mib": round(bound, 1)}
    record(row)
    assert set(copies) == set(range(written)), row
    assert peak <= bound, row


def test_a_replica_lost_below_min_insync_holds_records_until_it_is_back_and_loses_nothing(
    tmp_path: Path, agents: list[AgentProcess], start_kafka: Any, kafka_topic: str
) -> None:
    """Two nodes, every partition on both, min.insync.replicas=2: node 2 killed means
    NOT_ENOUGH_REPLICAS on node 1's partitions and a leader election for node 2's."""
    first: Broker = start_kafka(settings={"auto.create.topics.enable": False})
    second: Broker = start_kafka(join=first)
    conn = connect(first)
    asyncio.run(create_topic(conn, kafka_topic, assignment={0: [1, 2], 1: [2, 1], 2: [1, 2]},
                             config={"min.insync.replicas": 2}))
    logs = tmp_path / "logs"
    logs.mkdir()
    output = kafka_output(first.bootstrap, kafka_topic, timeout="3s")
    output["brokers"].append(second.bootstrap)
    agent = AgentProcess(tmp_path, agent_config(logs, {"events": output}, routes=False))
    agents.append(agent)
    agent.start()
    writer = Writer(logs / "app.log", RATE)
    try:
        time.sleep(2)
        second.kill()

        def held() -> bool:
            out = (agent.status() or {"outputs": [{}]})["outputs"][0]
            return out.get("problem") == "unacknowledged"
        wait_until(held, 60, "the output to report records the brokers do not acknowledge")
        problem = (agent.status() or {})["outputs"][0]["last_error"]
        second.start()
        time.sleep(2)
    finally:
        written = writer.stop()
    agent.wait_caught_up(timeout=120)

    got = tally(conn, kafka_topic)
    row = {"scenario": "kafka replica down (NOT_ENOUGH_REPLICAS, election)", "written": written,
           "lost": written - len(got.copies()), "duplicates": got.duplicates, "status": problem}
    record(row)
    assert set(got.copies()) == set(range(written)), row
    assert (agent.status() or {})["outputs"][0]["healthy"]
