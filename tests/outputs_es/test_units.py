"""The Elasticsearch output's pure parts: its config keys, the bulk body, per-item verdicts,
Retry-After, discovered addresses, TLS defaults, and what never shows in a message."""

from __future__ import annotations

import logging
import ssl
import textwrap
from pathlib import Path
from unittest.mock import patch

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccf_agent.config import ConfigError, OutputConfig, TlsConfig, parse_config
from ccf_agent.credentials import output_secrets
from ccf_agent.httpclient import client_ssl_context, parse_retry_after
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.delivery import linger
from ccf_agent.outputs.elasticsearch import encoding
from ccf_agent.outputs.elasticsearch.bulk import settle_items
from ccf_agent.outputs.elasticsearch.client import discovered_urls
from ccf_agent.outputs.elasticsearch.config import EsOptions
from ccf_agent.outputs.elasticsearch.indices import IndexNamer, index_pattern
from ccf_agent.outputs.elasticsearch.output import ElasticsearchOutput
from tests.outputs_es.fakes import events


def config(extra: str) -> str:
    return textwrap.dedent("""\
        state_dir: /tmp/ccf-state
        inputs:
          - id: app
            paths: [/var/log/app/*.log]
        outputs:
          logs:
            type: elasticsearch
            hosts: ["https://es1:9200"]
        """) + textwrap.indent(textwrap.dedent(extra), "    ")


# ------------------------------------------------------------------------------ options


def test_options_default_to_file_dead_letters_no_discovery_and_30_days_retention() -> None:
    opts = parse_config(config("")).outputs["logs"].options
    assert opts == EsOptions(dead_letter_index=None, discovery=False, data_stream=False, pipeline=None,
                             retention=30 * 86400.0)


def test_options_are_read_from_the_outputs_section() -> None:
    opts = parse_config(config("""\
        dead_letter_index: ccf-dead-letters
        discovery: {enabled: true, interval: 2m}
        data_stream: true
        pipeline: payouts
        retention: 14d
        template: ccf-logs
        """)).outputs["logs"].options
    assert opts == EsOptions("ccf-dead-letters", True, 120.0, True, "payouts", 14 * 86400.0, "ccf-logs")


def test_retention_off_means_no_policy() -> None:
    assert parse_config(config("retention: off\n")).outputs["logs"].options.retention is None


@pytest.mark.parametrize("line, key, message", [
    ("dead_letter_index: Dead-Letters", "outputs.logs.dead_letter_index", "lowercase index name"),
    ("discovery: sometimes", "outputs.logs.discovery", "true, false or a mapping"),
    ("discovery: {interval: soon}", "outputs.logs.discovery.interval", "duration"),
    ("discovery: {every: 5m}", "outputs.logs.discovery.every", "unknown key"),
    ("data_stream: yes please", "outputs.logs.data_stream", "true or false"),
    ("retention: 90m", "outputs.logs.retention", "whole number of hours or days"),
])
def test_a_bad_option_names_its_file_line_and_key(line: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(config(line + "\n"), "agent.yaml")
    assert (e.value.file, e.value.line, e.value.key) == ("agent.yaml", 9, key)
    assert message in e.value.message


def test_a_data_stream_with_a_date_pattern_is_refused(tmp_path: Path) -> None:
    cfg = OutputConfig(name="logs", type="elasticsearch", hosts=("http://es:9200",),
                       index="ccf-%{+yyyy.MM.dd}", options=EsOptions(data_stream=True))
    with pytest.raises(ValueError, match="a data stream is one name"):
        ElasticsearchOutput(cfg, DeadLetters(tmp_path))


# ------------------------------------------------------------------------------ the bulk body


def out(index: str, tmp_path: Path) -> ElasticsearchOutput:
    return ElasticsearchOutput(OutputConfig(name="o", type="elasticsearch", hosts=("http://es:9200",),
                                            index=index), DeadLetters(tmp_path))


def test_encode_writes_a_create_action_with_the_records_id_before_each_document(tmp_path: Path) -> None:
    body = out("ccf-logs", tmp_path).encode(events(4), [1, 3])
    assert body == (b'{"create":{"_index":"ccf-logs","_id":"s-1"}}\n'
                    b'{"seq":1,"message":"Payout processed","amount":1000}\n'
                    b'{"create":{"_index":"ccf-logs","_id":"s-3"}}\n'
                    b'{"seq":3,"message":"Payout processed","amount":1000}\n')


def test_encode_of_every_record_equals_encode_record_by_record(tmp_path: Path) -> None:
    o = out("ccf-logs", tmp_path)
    ev = events(50)
    assert o.encode(ev, list(range(50))) == b"".join(o.encode(ev, [i]) for i in range(50))


def test_daily_indices_come_from_each_records_event_time(tmp_path: Path) -> None:
    ev = events(2, day="2023-12-31")
    later = events(1, start=2, day="2024-01-01")
    ev.docs += later.docs
    ev.ids += later.ids
    ev.stamps += later.stamps
    lines = out("ccf-logs-%{+yyyy.MM.dd}", tmp_path).encode(ev, [0, 1, 2]).splitlines()
    assert [orjson.loads(a)["create"]["_index"] for a in lines[0::2]] == [
        "ccf-logs-2023.12.31", "ccf-logs-2023.12.31", "ccf-logs-2024.01.01"]


@pytest.mark.parametrize("native", [True, False], ids=["C", "Python"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ")),
                          st.sampled_from(["2023-12-31", "2024-01-01", "2024-02-29"])), max_size=12),
       st.data(), st.sampled_from(["ccf-logs", "ccf-logs-%{+yyyy.MM.dd}"]))
def test_encode_writes_each_picked_record_after_its_action_line(tmp_path: Path, native: bool,
                                                                 recs: list[tuple[bytes, str]], data: st.DataObject,
                                                                 index: str) -> None:
    if native and encoding._fast is None:
        pytest.skip("the C extension is not built")
    with patch.object(encoding, "_fast", encoding._fast if native else None):
        encoded_after_action_lines(tmp_path, recs, data, index)


def encoded_after_action_lines(tmp_path: Path, recs: list[tuple[bytes, str]], data: st.DataObject, index: str) -> None:
    ev = events(0)
    for k, (doc, day) in enumerate(recs):
        ev.docs.append(doc)
        ev.ids.append(b"id-%d" % k)
        ev.stamps.append(f"{day}T10:00:00.000Z".encode())
    indices = sorted(data.draw(st.sets(st.integers(0, max(len(recs) - 1, 0)))) if recs else set())
    o = out(index, tmp_path)
    body = o.encode(ev, indices)
    lines = body.split(b"\n")
    assert lines.pop() == b""  # every line ends with a newline, the last one too
    assert len(lines) == 2 * len(indices)
    for k, i in enumerate(indices):
        day = recs[i][1].replace("-", ".")
        assert orjson.loads(lines[2 * k]) == {"create": {"_index": "ccf-logs" if index == "ccf-logs"
                                                         else f"ccf-logs-{day}", "_id": f"id-{i}"}}
        assert lines[2 * k + 1] == recs[i][0]
    assert o.encode(ev, range(len(recs))) == o.encode(ev, list(range(len(recs))))  # any sequence of indices


def test_index_names_support_joda_style_year_month_day() -> None:
    assert IndexNamer("app-%{+yy.MM}-x").name(b"2024-01-15") == "app-24.01-x"
    assert index_pattern("ccf-logs-%{+yyyy.MM.dd}") == "ccf-logs-*"


# ------------------------------------------------------------------------------ per-item verdicts


@pytest.mark.parametrize("status, error, verdict", [
    (201, None, "ok"),
    (409, {"type": "version_conflict_engine_exception"}, "duplicate"),
    (429, {"type": "rejected_execution_exception"}, "retry"),
    (429, {"type": "es_rejected_execution_exception"}, "retry"),
    (503, {"type": "unavailable_shards_exception"}, "retry"),
    (400, {"type": "mapper_parsing_exception"}, "dead"),
    (400, {"type": "document_parsing_exception"}, "dead"),
    (400, {"type": "illegal_argument_exception", "reason": "field [x] too long"}, "dead"),
    (403, {"type": "cluster_block_exception", "reason": "index [x] blocked by: [FORBIDDEN/8/index write (api)];"},
     "retry"),
    (404, {"type": "index_not_found_exception"}, "retry"),
    (400, {"type": "illegal_argument_exception", "reason": "pipeline with id [p] does not exist"}, "retry"),
])
def test_each_item_status_gets_its_verdict(status: int, error: dict[str, str] | None, verdict: str) -> None:
    s = settle_items([{"create": {"status": status, **({"error": error} if error else {})}}])
    got = "retry" if s.retry else "dead" if s.dead else "duplicate" if s.duplicates else "ok"
    assert got == verdict


def test_items_of_an_unexpected_shape_are_retried_as_a_protocol_problem() -> None:
    s = settle_items([{"create": "odd"}, "odd", {}, {"create": {"status": "201"}}])
    assert s.retry == [0, 1, 2, 3] and not s.dead
    assert s.problem is not None and s.problem[0] == "protocol"


def test_only_429_items_close_the_throttle_gate() -> None:
    s = settle_items([{"create": {"status": 429}}, {"create": {"status": 503}}, {"create": {"status": 201}}])
    assert (s.retry, s.throttled) == ([0, 1], 1)


# ------------------------------------------------------------------------------ Retry-After, discovery


def test_retry_after_in_seconds_or_as_a_date_is_capped_at_five_minutes() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("86400") == 300.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_discovered_addresses_become_urls_with_the_seeds_scheme() -> None:
    info = {"nodes": {
        "a": {"roles": ["data"], "http": {"publish_address": "10.0.0.5:9200"}},
        "b": {"roles": ["data", "ingest"], "http": {"publish_address": "es2.example/10.0.0.6:9200"}},
        "c": {"roles": ["cluster_manager"], "http": {"publish_address": "10.0.0.7:9200"}},
        "d": {"roles": ["data"]},
    }}
    assert discovered_urls(info, "https") == ["https://10.0.0.5:9200", "https://es2.example:9200"]


# ------------------------------------------------------------------------------ TLS and secrets


def test_tls_is_verified_by_default() -> None:
    ctx = client_ssl_context(TlsConfig(), "logs")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_turning_verification_off_logs_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ctx = client_ssl_context(TlsConfig(verify=False), "logs")
    assert ctx.verify_mode == ssl.CERT_NONE
    assert "TLS CERTIFICATE VERIFICATION IS OFF" in caplog.text


def test_error_messages_never_carry_a_secret(tmp_path: Path) -> None:
    cfg = OutputConfig(name="o", type="elasticsearch", hosts=("https://u:url-pass@es:9200",), index="x",
                       api_key="the-api-key")
    o = ElasticsearchOutput(cfg, DeadLetters(tmp_path))
    assert {"url-pass", "the-api-key"} <= set(output_secrets(cfg))
    o.health.report("auth", "echoed the-api-key and url-pass back")
    assert o.status()["last_error"] == "echoed *** and *** back"
    assert o.status()["hosts"] == [{"url": "https://es:9200", "alive": True}]


# ------------------------------------------------------------------ adaptive batching


LINGER_CFG = OutputConfig(name="o", type="elasticsearch", hosts=("http://es:9200",), index="x")  # 5 ms, 5000 docs


def arrivals(burst: int, every_ms: float, until_ms: float) -> tuple[float, float, int, int, int, int]:
    """half_full_in's first look, for bursts of 345-byte lines: (age, span, docs after the first
    burst, their bytes, docs, bytes)."""
    n = int(until_ms // every_ms) + 1
    return until_ms / 1000, until_ms / 1000, (n - 1) * burst, (n - 1) * burst * 345, n * burst, n * burst * 345


def test_a_steady_ten_thousand_lines_a_second_in_writer_bursts_is_sent_without_lingering() -> None:
    for until in (5, 6, 9.9, 10, 12, 20):
        assert linger.half_full_in(*arrivals(100, 10, until), LINGER_CFG) is None, until


def test_a_backlog_read_in_chunks_lingers_until_half_a_batch_is_due() -> None:
    wait = linger.half_full_in(*arrivals(370, 1.5, 5), LINGER_CFG)
    assert wait is not None and 0.004 < wait < 0.006  # 1,020 more docs at 222 a ms


def test_a_burst_alone_is_no_rate_to_linger_for() -> None:
    assert linger.half_full_in(0.005, 0.005, 0, 0, 1500, 1500 * 345, LINGER_CFG) is None


def test_a_catch_up_burst_followed_by_the_steady_rate_stops_lingering_at_the_next_look() -> None:
    # A stall's backlog read at once: 1,400 docs within 5 ms look like a fast stream...
    assert linger.half_full_in(0.005, 0.005, 1400, 1400 * 345, 1500, 1500 * 345, LINGER_CFG) is not None
    # ...but the next 5 ms bring the writer's 50: not worth holding the batch for.
    assert linger.half_full_in(0.010, 0.005, 50, 50 * 345, 1550, 1550 * 345, LINGER_CFG) is None


def test_a_batch_already_half_full_by_bytes_does_not_linger() -> None:
    assert linger.half_full_in(0.005, 0.005, 100, 3 << 20, 200, 3 << 20, LINGER_CFG) is None


def test_no_linger_ends_later_than_the_longest_allowed() -> None:
    longest = LINGER_CFG.flush_interval * linger.LINGER_FACTOR
    for age in (0.005, 0.02, 0.05, 0.09):
        wait = linger.half_full_in(age, 0.005, 100, 100 * 345, 500, 500 * 345, LINGER_CFG)
        assert wait is None or age + wait <= longest


def test_the_fields_an_index_name_reads_are_kept_in_the_pipelines_projection(tmp_path: Path) -> None:
    from ccf_agent.agent import Agent
    from ccf_agent.config import parse_config

    config = parse_config(f"""
state_dir: {tmp_path / "state"}
inputs: [{{id: app, paths: ["{tmp_path}/*.log"]}}]
outputs:
  logs: {{type: elasticsearch, hosts: ["http://127.0.0.1:9200"], index: "ccf-%{{[team][name]:none}}-%{{+yyyy.MM}}"}}
""")
    assert "team" in Agent(config)._projection()
