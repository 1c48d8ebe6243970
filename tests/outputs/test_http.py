"""The plain HTTP output: its config keys and wire formats, then the real daemon against a collector
that fails requests in the ways collectors do."""

from __future__ import annotations

import base64
import email.utils
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from ccf_agent.config import ConfigError, OutputConfig, parse_config
from ccf_agent.httpclient import parse_retry_after
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.http.config import HttpOptions
from ccf_agent.outputs.http.output import HttpOutput
from ccf_agent.samples import lines
from tests.harness import AgentProcess, free_port, wait_until, write_lines
from tests.outputs.collector import Collector
from tests.outputs.helpers import agent_config, one_output_yaml, output_status, sample_events

BASE = one_output_yaml("collector", "http", "hosts: [https://logs.example.org:8080/ingest]")

# ---------------------------------------------------------------------------- config and encoding


def test_defaults_are_ndjson_without_extra_headers() -> None:
    assert parse_config(BASE).outputs["collector"].options == HttpOptions("ndjson", {})


def test_format_and_headers_are_read() -> None:
    opts = parse_config(BASE + "    format: json_array\n    headers: {X-Source: ccf, X-Tenant: 7}\n")
    assert opts.outputs["collector"].options == HttpOptions("json_array", {"X-Source": "ccf", "X-Tenant": "7"})


@pytest.mark.parametrize(("extra", "message"), [
    ("format: xml", "agent.yaml:9: outputs.collector.format: must be one of ndjson, json_array, not 'xml'"),
    ("headers: [a]", "agent.yaml:9: outputs.collector.headers: must be a mapping of header names to values"),
    ("headers: {Content-Encoding: br}",
     "agent.yaml:9: outputs.collector.headers.Content-Encoding: is set by the agent itself"),
])
def test_a_bad_value_is_a_config_error_at_its_line(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "    " + extra + "\n", "agent.yaml")
    assert str(err.value) == message


@pytest.mark.parametrize("other", ["bearer_token: tok", "api_key: key", "username: u", "headers: {Authorization: x}"])
def test_credentials_in_a_url_and_in_a_key_are_a_config_error(other: str) -> None:
    # aiohttp refuses such a request ("Cannot combine AUTHORIZATION header..."): every delivery failed.
    text = BASE.replace("https://logs.example.org", "https://u:PASS55@logs.example.org") + f"    {other}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "agent.yaml")
    assert "agent.yaml:6: outputs.collector: hosts[0] carries user:password@ and" in str(err.value)
    assert "PASS55" not in str(err.value)


def test_a_bad_url_is_not_echoed_with_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.replace("https://logs.example.org:8080", "ftp://u:PASS55@logs.example.org"), "a.yaml")
    assert "a.yaml:8: outputs.collector.hosts[0]: must be a URL" in str(err.value)
    assert "PASS55" not in str(err.value)


def _output(tmp_path: Path, fmt: str) -> HttpOutput:
    cfg = OutputConfig(name="collector", type="http", hosts=("http://127.0.0.1:1/ingest",))
    return HttpOutput(cfg, DeadLetters(tmp_path), HttpOptions(fmt))


@pytest.mark.parametrize("fmt", ["ndjson", "json_array"])
def test_a_request_body_holds_the_records_in_order(tmp_path: Path, fmt: str) -> None:
    events = sample_events(10)[0]
    out = _output(tmp_path, fmt)
    body = out.wire(out.encode(events, [0, 1]) + out.encode(events, [5]))
    if fmt == "json_array":
        records = orjson.loads(body)
    else:
        assert body.endswith(b"\n")
        records = [orjson.loads(x) for x in body.splitlines()]
    assert records == [orjson.loads(events.docs[i]) for i in (0, 1, 5)]


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 58 <= (parse_retry_after(in_a_minute) or 0) <= 60
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# ---------------------------------------------------------------------------- the daemon


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    started: list[Collector] = []
    yield started
    for c in started:
        c.stop()


def _run(tmp_path: Path, agents: list[AgentProcess], collector: Collector, **output: Any) -> AgentProcess:
    config = agent_config(tmp_path / "logs", {"collector": {
        "type": "http", "hosts": [collector.url], "timeout": "5s",
        "backoff_initial": "10ms", "backoff_max": "50ms", **output}})
    agent = AgentProcess(tmp_path, config)
    agents.append(agent)
    return agent.start()


def test_failed_requests_are_retried_until_accepted_and_nothing_is_lost(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], collectors: list[Collector]
) -> None:
    collector = Collector(["500", "429:0", "drop", "503"]).start()
    collectors.append(collector)
    write_lines(logs / "combined.log", lines(5_000))
    agent = _run(tmp_path, agents, collector)
    agent.wait_caught_up()

    assert [s.action for s in collector.seen[:5]] == ["500", "429:0", "drop", "503", "ok"]
    assert set(collector.stored_seqs()) == set(range(5_000))
    out = output_status(agent, "collector")
    assert out["request_errors"] == 4
    # only the dropped request may have been stored twice, and the agent counted exactly it
    copies = sum(c - 1 for c in Counter(collector.stored_seqs()).values())
    assert copies == len(collector.seen[2].records) == out["duplicates"]


def test_retry_after_is_honoured(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], collectors: list[Collector]
) -> None:
    collector = Collector(["429:2"]).start()
    collectors.append(collector)
    write_lines(logs / "combined.log", lines(100))
    _run(tmp_path, agents, collector).wait_caught_up()

    first, second = collector.seen[0], collector.seen[1]
    assert first.action == "429:2" and second.action == "ok"
    assert second.at - first.at >= 1.9  # the backoff alone would be under 50 ms
    assert sorted(collector.stored_seqs()) == list(range(100))


@pytest.mark.parametrize("fmt", ["ndjson", "json_array"])
def test_gzip_headers_and_basic_auth_reach_the_collector(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], collectors: list[Collector], fmt: str
) -> None:
    collector = Collector().start()
    collectors.append(collector)
    write_lines(logs / "combined.log", lines(3_000))
    _run(tmp_path, agents, collector, format=fmt, compression="gzip", username="shipper", password="s3cret",
         headers={"X-Source": "ccf-agent"}).wait_caught_up()

    assert collector.stored_seqs() == list(range(3_000))
    for seen in collector.seen:
        assert seen.headers["Content-Encoding"] == "gzip"
        assert seen.headers["X-Source"] == "ccf-agent"
        assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"shipper:s3cret").decode()
        assert seen.headers["Content-Type"] == ("application/json" if fmt == "json_array"
                                                else "application/x-ndjson")


def test_a_request_too_large_is_split_until_it_fits(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], collectors: list[Collector]
) -> None:
    collector = Collector(rule=lambda records: "413" if len(records) > 100 else None).start()
    collectors.append(collector)
    write_lines(logs / "combined.log", lines(3_000))
    agent = _run(tmp_path, agents, collector)
    agent.wait_caught_up()

    assert sorted(collector.stored_seqs()) == list(range(3_000))
    assert all(len(s.records) <= 100 for s in collector.seen if s.action == "ok")
    assert output_status(agent, "collector")["docs_dead_lettered"] == 0


def test_a_rejected_record_is_dead_lettered_and_shipping_moves_on(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], collectors: list[Collector]
) -> None:
    collector = Collector(rule=lambda records: "400" if any(r.get("poison") for r in records) else None).start()
    collectors.append(collector)
    log = logs / "combined.log"
    write_lines(log, lines(100))
    agent = _run(tmp_path, agents, collector)
    agent.wait_caught_up()
    write_lines(log, [json.dumps({"message": "bad", "poison": True, "seq": -1})])
    agent.wait_caught_up()  # the file offset moved past it: acknowledged
    write_lines(log, lines(100, start=100))
    agent.wait_caught_up()

    assert sorted(collector.stored_seqs()) == list(range(200))
    assert output_status(agent, "collector")["docs_dead_lettered"] == 1
    dead = [json.loads(x) for x in (tmp_path / "state" / "dead_letter" / "collector.ndjson").read_text().splitlines()]
    assert [(d["status"], json.loads(d["document"])["seq"]) for d in dead] == [(400, -1)]


def test_an_unreachable_collector_holds_records_until_it_answers(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], collectors: list[Collector]
) -> None:
    collector = Collector(["500"] * 1000).start()  # down for a while: every answer is a 500
    collectors.append(collector)
    write_lines(logs / "combined.log", lines(500))
    agent = _run(tmp_path, agents, collector)
    wait_until(lambda: output_status(agent, "collector").get("request_errors", 0) >= 20, 30, "20 failed requests")
    assert output_status(agent, "collector")["docs_acked"] == 0
    assert (agent.status() or {})["files"][0]["offset"] == 0
    collector.script.clear()
    agent.wait_caught_up()

    assert sorted(collector.stored_seqs()) == list(range(500))


def test_user_and_password_in_a_url_are_sent_as_basic_auth(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], collectors: list[Collector]
) -> None:
    collector = Collector().start()
    collectors.append(collector)
    write_lines(logs / "combined.log", lines(100))
    _run(tmp_path, agents, collector, hosts=[collector.url.replace("http://", "http://shipper:p%40ss@")]).wait_caught_up()

    assert collector.stored_seqs() == list(range(100))
    assert {s.headers["Authorization"] for s in collector.seen} == {"Basic " + base64.b64encode(b"shipper:p@ss").decode()}


def test_credentials_in_a_url_never_show_in_the_log_status_or_health(
    tmp_path: Path, logs: Path, agents: list[AgentProcess]
) -> None:
    port = free_port()  # nobody listens: every request fails and its error is shown everywhere
    write_lines(logs / "combined.log", lines(10))
    config = agent_config(logs, {"collector": {
        "type": "http", "hosts": [f"http://u:PASS55@127.0.0.1:{port}/ingest?access_token=TOKEN77"],
        "backoff_initial": "10ms", "backoff_max": "50ms"}})
    agent = AgentProcess(tmp_path, config)
    agents.append(agent)
    agent.start()
    wait_until(lambda: output_status(agent, "collector").get("request_errors", 0) >= 2, 30, "failed requests")

    cli = [sys.executable, "-m", "ccf_agent", "status", "-c", str(agent.config_path)]
    text = subprocess.run(cli, capture_output=True, text=True, timeout=30).stdout
    as_json = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=30).stdout
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/health") as r:  # noqa: S310
            health = r.read().decode()
    except urllib.error.HTTPError as e:  # 503: degraded, as it should be
        health = e.read().decode()
    assert "lastError" in health
    assert f"cannot connect to http://127.0.0.1:{port}/ingest?access_token=***" in text
    for shown in (agent.log(), json.dumps(agent.status()), health, text, as_json):
        assert "PASS55" not in shown and "TOKEN77" not in shown
