"""The real daemon shipping the app's records to a real Kafka broker, read back with a real consumer
and counted by message key (what a downstream consumer deduplicates on)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ccf_agent.samples import is_payout, lines
from tests.harness import AgentProcess, Engine, write_lines
from tests.kafka.client import connect
from tests.kafka.shipping import agent_config, kafka_output, tally

pytestmark = pytest.mark.kafka


def output_status(agent: AgentProcess, name: str) -> dict:
    status = agent.status()
    assert status is not None
    return next(o for o in status["outputs"] if o["name"] == name)


def test_100k_records_through_the_example_routes_each_in_its_topic_once(
    tmp_path: Path, agents: list[AgentProcess], kafka_bootstrap: str, kafka_topic: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    combined, payouts_log = list(lines(60_000)), list(lines(40_000, start=60_000))
    write_lines(logs / "combined.log", combined)
    write_lines(logs / "payouts.log", payouts_log)
    written = [json.loads(line) for line in combined + payouts_log]
    outputs = {"logs": kafka_output(kafka_bootstrap, f"{kafka_topic}-logs", compression="zstd"),
               "payouts": kafka_output(kafka_bootstrap, f"{kafka_topic}-payouts")}
    agent = AgentProcess(tmp_path, agent_config(logs, outputs))
    agents.append(agent)
    agent.start().wait_caught_up(timeout=180)

    conn = connect(kafka_bootstrap)
    got_logs, got_payouts = tally(conn, f"{kafka_topic}-logs"), tally(conn, f"{kafka_topic}-payouts")
    payouts = {r["seq"] for r in written if is_payout(r)}
    assert sorted(got_payouts.seqs) == sorted(payouts)
    assert sorted(got_logs.seqs) == sorted({r["seq"] for r in written} - payouts)
    assert got_logs.distinct_keys + got_payouts.distinct_keys == 100_000
    assert (got_logs.duplicates, got_payouts.duplicates) == (0, 0)
    status = {o["name"]: o for o in agent.status()["outputs"]}  # type: ignore[index]
    assert status["payouts"]["topics"] == {f"{kafka_topic}-payouts": len(payouts)}
    assert status["logs"]["docs_acked"] + status["payouts"]["docs_acked"] == 100_000
    assert agent.stop() == 0


def test_a_files_records_keep_their_order_on_one_partition_with_stream_path_and_offset_headers(
    tmp_path: Path, agents: list[AgentProcess], kafka_bootstrap: str, kafka_topic: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    files = {"combined.log": list(lines(3000)), "error.log": list(lines(2000, start=3000))}
    for name, batch in files.items():
        write_lines(logs / name, batch)
    agent = AgentProcess(tmp_path, agent_config(logs, {"events": kafka_output(kafka_bootstrap, kafka_topic)},
                                                routes=False))
    agents.append(agent)
    agent.start().wait_caught_up()

    got = tally(connect(kafka_bootstrap), kafka_topic).messages
    for name, batch in files.items():
        mine = [m for m in got if dict(m.headers)["path"] == str(logs / name).encode()]
        assert len({m.partition for m in mine}) == 1
        assert [json.loads(m.value)["seq"] for m in mine] == [json.loads(line)["seq"] for line in batch]
        offsets = [int(dict(m.headers)["offset"]) for m in mine]
        assert offsets[0] == 0 and offsets == sorted(offsets)
        assert offsets[1] == len(batch[0]) + 1
        assert len({dict(m.headers)["stream"] for m in mine}) == 1
        assert all(m.key.startswith(dict(m.headers)["stream"]) for m in mine)  # the record's id


def test_a_topic_from_a_record_field_is_lower_cased_sanitised_and_defaulted(
    tmp_path: Path, agents: list[AgentProcess], kafka_bootstrap: str, kafka_topic: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write_lines(logs / "app.log", [json.dumps({"message": "a", "team": "Pay Outs", "seq": 0}),
                                   json.dumps({"message": "b", "seq": 1})])
    out = kafka_output(kafka_bootstrap, f"{kafka_topic}-%{{[team]:none}}")
    agent = AgentProcess(tmp_path, agent_config(logs, {"events": out}, routes=False))
    agents.append(agent)
    agent.start().wait_caught_up()

    conn = connect(kafka_bootstrap)
    assert tally(conn, f"{kafka_topic}-pay_outs").seqs == [0]
    assert tally(conn, f"{kafka_topic}-none").seqs == [1]


@pytest.mark.engine
def test_payouts_fan_out_to_a_kafka_topic_and_opensearch_each_acknowledged_on_its_own(
    tmp_path: Path, agents: list[AgentProcess], kafka_bootstrap: str, kafka_topic: str, engine: Engine
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    written = list(lines(5000))
    write_lines(logs / "combined.log", written)
    es = {"type": "elasticsearch", "hosts": [engine.url]}
    cfg = agent_config(logs, {"logs": {**es, "index": engine.index("logs")},
                              "payouts": {**es, "index": engine.index("payouts")},
                              "payouts_kafka": kafka_output(kafka_bootstrap, kafka_topic)})
    cfg["routes"][0]["output"] = ["payouts", "payouts_kafka"]
    agent = AgentProcess(tmp_path, cfg)
    agents.append(agent)
    agent.start().wait_caught_up()

    payouts = sorted(r["seq"] for r in map(json.loads, written) if is_payout(r))
    assert sorted(tally(connect(kafka_bootstrap), kafka_topic).seqs) == payouts
    assert engine.tally(set(payouts), "payouts") == {"written": len(payouts), "stored": len(payouts),
                                                     "distinct": len(payouts), "lost": 0, "duplicated": 0}
    assert engine.count("logs") == 5000 - len(payouts)
    status = {o["name"]: o for o in agent.status()["outputs"]}  # type: ignore[index]
    assert status["payouts_kafka"]["docs_acked"] == status["payouts"]["docs_acked"] == len(payouts)

    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert (f'ccf_agent_output_topic_records_total{{output="payouts_kafka",topic="{kafka_topic}"}} '
            f'{len(payouts)}') in metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/health", timeout=5) as r:
        health = json.loads(r.read())
    assert health["checks"]["output:payouts_kafka"]["status"] == "healthy"
    text = subprocess.run([sys.executable, "-m", "ccf_agent", "status", "-c", str(agent.config_path)],
                          capture_output=True, text=True, timeout=30).stdout
    assert "payouts_kafka (kafka, PLAINTEXT)  healthy" in text
    assert f"topics: {kafka_topic} {len(payouts)}" in text
