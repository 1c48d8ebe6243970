"""The Kafka output against a real broker's refusals: a record over the topic's max.message.bytes, a
topic that does not exist, credentials and certificates; SCRAM and TLS that work."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ccf_agent.samples import lines
from tests.harness import AgentProcess, wait_until, write_lines
from tests.kafka.client import connect, create_topic
from tests.kafka.launcher import USERS, Broker
from tests.kafka.shipping import agent_config, kafka_output, tally

pytestmark = pytest.mark.kafka


def _start(tmp_path: Path, output: dict[str, Any], env: dict[str, str] | None = None) -> tuple[AgentProcess, Path]:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    agent = AgentProcess(tmp_path, agent_config(logs, {"events": output}, routes=False), env=env)
    return agent, logs


def _output(agent: AgentProcess) -> dict[str, Any]:
    status = agent.status()
    assert status is not None
    out: dict[str, Any] = status["outputs"][0]
    return out


def test_a_record_over_the_topics_max_message_bytes_is_dead_lettered_and_the_file_goes_on(
    tmp_path: Path, agents: list[AgentProcess], kafka_bootstrap: str, kafka_topic: str
) -> None:
    conn = connect(kafka_bootstrap)
    asyncio.run(create_topic(conn, kafka_topic, partitions=1, config={"max.message.bytes": 4000}))
    agent, logs = _start(tmp_path, kafka_output(kafka_bootstrap, kafka_topic))
    agents.append(agent)
    big = json.dumps({"message": "x" * 6000, "seq": 500})
    write_lines(logs / "app.log", [*lines(500), big, *lines(500, start=501)])
    agent.start().wait_caught_up()

    assert sorted(tally(conn, kafka_topic).seqs) == [s for s in range(1001) if s != 500]
    (dead,) = (tmp_path / "state" / "dead_letter" / "events.ndjson").read_text().splitlines()
    letter = json.loads(dead)
    assert letter["error"]["type"] == "MESSAGE_TOO_LARGE"
    assert json.loads(letter["document"])["seq"] == 500
    assert letter["action"]["topic"] == kafka_topic
    out = _output(agent)
    assert (out["docs_dead_lettered"], out["docs_acked"], out["healthy"]) == (1, 1001, True)


def test_a_missing_topic_marks_the_output_down_and_loses_nothing_once_created(
    tmp_path: Path, agents: list[AgentProcess], start_kafka: Any, kafka_topic: str
) -> None:
    broker: Broker = start_kafka(settings={"auto.create.topics.enable": False})
    agent, logs = _start(tmp_path, kafka_output(broker.bootstrap, kafka_topic, timeout="2s", backoff_max="1s"))
    agents.append(agent)
    write_lines(logs / "app.log", lines(2000))
    agent.start()

    wait_until(lambda: _output(agent)["problem"] == "topic", 30, "the output to report the missing topic")
    out = _output(agent)
    assert out["missing_topics"] == [kafka_topic]
    assert "does not exist" in out["last_error"] and kafka_topic in out["last_error"]
    assert not out["healthy"] and agent.alive
    status = agent.status()
    assert status is not None and status["files"][0]["offset"] == 0  # nothing committed, nothing dropped

    asyncio.run(create_topic(connect(broker.bootstrap), kafka_topic, partitions=3))
    agent.wait_caught_up(timeout=60)
    got = tally(connect(broker.bootstrap), kafka_topic)
    assert sorted(got.seqs) == list(range(2000))
    assert _output(agent)["healthy"]


def test_scram_over_tls_ships_with_the_password_from_the_environment(
    tmp_path: Path, agents: list[AgentProcess], kafka_broker: Broker, kafka_topic: str
) -> None:
    sasl = {"mechanism": "SCRAM-SHA-512", "username": "ccf", "password": "${KAFKA_PASSWORD}"}
    output = kafka_output(kafka_broker.address("SASL_SSL"), kafka_topic, sasl=sasl,
                          tls={"ca_file": str(kafka_broker.ca_file)})
    agent, logs = _start(tmp_path, output, env={"KAFKA_PASSWORD": USERS["ccf"]})
    agents.append(agent)
    write_lines(logs / "app.log", lines(300))
    agent.start().wait_caught_up()

    assert sorted(tally(connect(kafka_broker, "SASL_SSL"), kafka_topic).seqs) == list(range(300))
    out = _output(agent)
    assert (out["tls"], out["sasl"]) == (True, "SCRAM-SHA-512")


def test_scram_sha_256_ships_over_sasl_plaintext(
    tmp_path: Path, agents: list[AgentProcess], kafka_broker: Broker, kafka_topic: str
) -> None:
    sasl = {"mechanism": "SCRAM-SHA-256", "username": "ccf-other", "password": USERS["ccf-other"]}
    agent, logs = _start(tmp_path, kafka_output(kafka_broker.address("SASL_PLAINTEXT"), kafka_topic, sasl=sasl))
    agents.append(agent)
    write_lines(logs / "app.log", lines(100))
    agent.start().wait_caught_up()

    assert sorted(tally(connect(kafka_broker), kafka_topic).seqs) == list(range(100))


def test_a_wrong_password_is_a_clear_status_and_the_agent_stays_up_without_showing_it(
    tmp_path: Path, agents: list[AgentProcess], kafka_broker: Broker, kafka_topic: str
) -> None:
    wrong = "not-the-password-4711"
    sasl = {"mechanism": "SCRAM-SHA-512", "username": "ccf", "password": "${KAFKA_PASSWORD}"}
    agent, logs = _start(tmp_path, kafka_output(kafka_broker.address("SASL_PLAINTEXT"), kafka_topic, sasl=sasl),
                         env={"KAFKA_PASSWORD": wrong})
    agents.append(agent)
    write_lines(logs / "app.log", lines(100))
    agent.start()

    wait_until(lambda: _output(agent)["problem"] == "auth", 30, "the output to report the refused credentials")
    out = _output(agent)
    assert "refused SASL SCRAM-SHA-512 authentication as 'ccf'" in out["last_error"]
    assert "sasl.password" in out["last_error"]
    restarts_before = agent.log().count("connected to")
    wait_until(lambda: out["request_errors"] < _output(agent)["request_errors"], 30, "another attempt")
    assert agent.alive and agent.log().count("connected to") == restarts_before
    assert wrong not in json.dumps(agent.status()) and wrong not in agent.log_path.read_text()


def test_a_broker_certificate_from_another_ca_is_refused_with_the_reason(
    tmp_path: Path, agents: list[AgentProcess], kafka_broker: Broker, kafka_topic: str
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(Path(os.path.realpath("/etc/ssl/certs/ca-certificates.crt")).read_bytes())
    output = kafka_output(kafka_broker.address("SSL"), kafka_topic, tls={"ca_file": str(other_ca)})
    agent, logs = _start(tmp_path, output)
    agents.append(agent)
    write_lines(logs / "app.log", lines(10))
    agent.start()

    wait_until(lambda: _output(agent)["problem"] == "tls", 30, "the output to report the certificate")
    assert "TLS verification of" in _output(agent)["last_error"] and "tls.ca_file" in _output(agent)["last_error"]
    assert agent.alive
