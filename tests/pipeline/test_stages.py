"""Parsing text and time, encodings, enrichment, ECS, drop and sample rules: one behaviour each."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ccf_agent.pipeline.timestamps import TimestampParser
from tests.pipeline.helpers import docs, make, one, run

WINSTON = b'{"level":"info","message":"HTTP request","service":"click-clack-cashflow","timestamp":"2024-01-15 10:30:00"}'


# ---------------------------------------------------------------- text formats


def test_nginx_combined_lines_become_ecs_fields() -> None:
    line = (b'203.0.113.9 - alice [15/Jan/2024:10:30:00 +0100] "GET /api/balance?x=1 HTTP/1.1" 200 512 '
            b'"https://app.example.com/" "Mozilla/5.0 (X11; Linux x86_64)"')
    doc, rec = one(make(format="text", parser="nginx_combined"), line)
    assert doc["@timestamp"] == "2024-01-15T09:30:00.000Z"
    assert doc["message"] == line.decode()
    assert doc["source"] == {"address": "203.0.113.9"} and doc["user"] == {"name": "alice"}
    assert doc["http"] == {"request": {"method": "GET", "referrer": "https://app.example.com/"}, "version": "1.1",
                           "response": {"status_code": 200, "body": {"bytes": 512}}}
    assert doc["url"] == {"original": "/api/balance?x=1"}
    assert doc["user_agent"] == {"original": "Mozilla/5.0 (X11; Linux x86_64)"}
    assert rec["http"]["response"]["status_code"] == 200


def test_apache_common_lines_without_referrer_parse_and_dashes_are_absent() -> None:
    doc, _ = one(make(format="text", parser="apache_combined"),
                 b'10.0.0.1 - - [15/Jan/2024:10:30:00 -0500] "POST /login HTTP/1.0" 302 -')
    assert doc["@timestamp"] == "2024-01-15T15:30:00.000Z"
    assert "user" not in doc and "body" not in doc["http"]["response"]
    assert doc["http"]["response"]["status_code"] == 302


def test_a_garbled_request_line_is_kept_raw() -> None:
    doc, _ = one(make(format="text", parser="nginx_combined"),
                 b'10.0.0.1 - - [15/Jan/2024:10:30:00 +0000] "\\x16\\x03\\x01" 400 157 "-" "-"')
    assert doc["http"]["request"]["raw"] == "\\x16\\x03\\x01" and "tags" not in doc


def test_classic_syslog_lines_parse_with_the_input_time_zone() -> None:
    doc, _ = one(make(format="text", parser="syslog", timezone="Europe/Berlin"),
                 b"Jan 15 10:30:00 web-1 sshd[4242]: Accepted publickey for deploy from 203.0.113.9")
    assert doc["message"] == "Accepted publickey for deploy from 203.0.113.9"
    assert doc["process"] == {"name": "sshd", "pid": 4242}
    assert doc["log"]["syslog"] == {"hostname": "web-1"} and doc["log"]["offset"] == 0
    assert doc["@timestamp"].endswith("-01-15T09:30:00.000Z")


def test_syslog_with_priority_and_iso_time() -> None:
    doc, _ = one(make(format="text", parser="syslog"), b"<34>2024-01-15T10:30:00.123+01:00 web-1 cron: job ok")
    assert doc["@timestamp"] == "2024-01-15T09:30:00.123Z"
    assert doc["log"]["syslog"]["priority"] == 34 and doc["process"] == {"name": "cron"}


def test_a_custom_regex_names_fields_and_nests_on_double_underscores() -> None:
    p = make(format="text", parser={"pattern": r"^(?P<ts>\S+ \S+) \[(?P<log__level>\w+)\] (?P<message>.*?)"
                                               r"(?: took=(?P<event__duration>\d+)ms)?$",
                                    "timestamp_field": "ts", "types": {"event__duration": "int"}})
    doc, _ = one(p, b"2024-01-15 10:30:00 [WARN] payout slow took=812ms")
    assert doc["message"] == "payout slow" and doc["event"] == {"duration": 812}
    assert doc["log"]["level"] == "WARN" and doc["@timestamp"] == "2024-01-15T10:30:00.000Z"


def test_lines_no_pattern_matches_are_shipped_whole_and_tagged() -> None:
    p = make(format="text", parser="syslog")
    doc, _ = one(p, b"not a syslog line")
    assert doc["message"] == "not a syslog line" and doc["tags"] == ["parse_failure"]
    assert p.counters["parse_failure"] == 1


def test_several_patterns_are_tried_in_order() -> None:
    p = make(format="text", parser={"pattern": ["nginx_combined", r"^(?P<level>[A-Z]+): (?P<message>.*)$"]})
    assert one(p, b"ERROR: disk full")[0]["level"] == "ERROR"


def test_a_pretty_printed_json_event_from_multiline_parses_whole() -> None:
    doc, _ = one(make(), b'{\n  "level": "error",\n  "message": "x",\n  "timestamp": "2024-01-15 10:30:00"\n}')
    assert doc["level"] == "error" and doc["@timestamp"] == "2024-01-15T10:30:00.000Z"


def test_a_multiline_text_event_keeps_its_newlines_and_offsets() -> None:
    event = b"Error: boom\n    at f (/app/x.js:1:2)"
    ev = run(make(format="text"), [event, b"next"], start=10)
    assert [d["message"] for d in docs(ev)] == [event.decode(), "next"]
    assert [d["log"]["offset"] for d in docs(ev)] == [10, 10 + len(event) + 1]


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-01-15 10:30:00", "2024-01-15T10:30:00.000Z"),
    ("2024-01-15T10:30:00.123Z", "2024-01-15T10:30:00.123Z"),
    ("2024-01-15T11:30:00+01:00", "2024-01-15T10:30:00.000Z"),
    ("2024-01-15 10:30:00,250", "2024-01-15T10:30:00.250Z"),
    ("15/Jan/2024:11:30:00 +0100", "2024-01-15T10:30:00.000Z"),
    ("Mon Jan 15 2024 05:30:00 GMT-0500 (Eastern Standard Time)", "2024-01-15T10:30:00.000Z"),
    ("Mon, 15 Jan 2024 10:30:00 +0000", "2024-01-15T10:30:00.000Z"),
    ("1705314600", "2024-01-15T10:30:00.000Z"),
    ("1705314600250", "2024-01-15T10:30:00.250Z"),
])
def test_common_timestamp_formats_with_zones(value: str, expected: str) -> None:
    parsed = TimestampParser("UTC").parse(value)
    assert parsed is not None and parsed[0].decode() == expected


def test_syslog_time_without_a_year_takes_the_latest_year_not_in_the_future() -> None:
    p = TimestampParser("UTC")
    p.now = 1705314600.0  # 2024-01-15 10:30 UTC
    assert p.parse("Jan 15 10:00:00")[0] == b"2024-01-15T10:00:00.000Z"  # type: ignore[index]
    assert p.parse("Dec 31 23:59:59")[0] == b"2023-12-31T23:59:59.000Z"  # type: ignore[index]


def test_configured_formats_come_first() -> None:
    p = make(parser={"timestamp_formats": ["%d.%m.%Y %H:%M"]}, timezone="Europe/Berlin")
    doc, _ = one(p, b'{"message":"m","timestamp":"15.01.2024 11:30"}')
    assert doc["@timestamp"] == "2024-01-15T10:30:00.000Z"


def test_a_json_input_may_name_another_timestamp_field() -> None:
    doc, _ = one(make(parser={"timestamp_field": "time"}), b'{"message":"m","time":1705314600}')
    assert doc["@timestamp"] == "2024-01-15T10:30:00.000Z" and doc["time"] == 1705314600


def test_unreadable_times_are_tagged_and_kept() -> None:
    doc, _ = one(make(format="text", parser="nginx_combined"),
                 b'1.2.3.4 - - [sometime] "GET / HTTP/1.1" 200 1 "-" "-"')
    assert doc["tags"] == ["invalid_timestamp"] and doc["timestamp"] == "sometime"


# ---------------------------------------------------------------- encodings


def test_latin1_input_is_decoded_to_utf8() -> None:
    doc, _ = one(make(encoding="latin-1"), '{"message":"café"}'.encode("latin-1"))
    assert doc["message"] == "café" and "tags" not in doc


def test_undecodable_bytes_are_replaced_and_tagged() -> None:
    p = make(encoding="cp1252")
    doc, _ = one(p, b'{"message":"a\x81b"}')
    assert doc["message"] == "a\ufffdb" and doc["tags"] == ["invalid_encoding"]
    assert p.counters["invalid_encoding"] == 1


def test_invalid_utf8_in_json_keeps_the_fields() -> None:
    doc, _ = one(make(), b'{"message":"caf\xe9","level":"warn"}')
    assert doc["message"] == "caf\ufffd" and doc["level"] == "warn" and doc["tags"] == ["invalid_utf8"]


# ---------------------------------------------------------------- enrichment


def test_static_fields_and_environment_are_spliced_into_every_document() -> None:
    raw = run(make({"enrich": {"fields": {"team": "payments"}, "environment": "production"}}), [WINSTON]).docs[0]
    assert raw.startswith(WINSTON[:-1])  # the record's own bytes, untouched
    d = orjson.loads(raw)
    assert d["team"] == "payments" and d["environment"] == "production"


def test_the_inputs_own_fields_win_over_global_ones() -> None:
    doc, _ = one(make({"enrich": {"fields": {"team": "payments", "dc": "fra"}}}, fields={"team": "web"}), WINSTON)
    assert doc["team"] == "web" and doc["dc"] == "fra"


def test_the_records_own_value_wins_over_enrichment() -> None:
    doc, _ = one(make({"enrich": {"environment": "production"}}), b'{"message":"m","environment":"staging"}')
    assert doc["environment"] == "staging"


def test_host_metadata_adds_hostname_ips_and_os() -> None:
    doc, _ = one(make({"enrich": {"host": True}}), WINSTON)
    host = doc["host"]
    assert host["name"] == "web-1" and host["hostname"] and host["os"]["type"] == "linux"
    assert host["architecture"] and all(isinstance(ip, str) for ip in host.get("ip", []))


def test_host_metadata_parts_can_be_chosen() -> None:
    doc, _ = one(make({"enrich": {"host": {"ip": False, "os": True}}}), WINSTON)
    assert "ip" not in doc["host"] and "os" in doc["host"]


def test_a_lookup_table_adds_fields_by_matching_value() -> None:
    p = make({"enrich": {"lookup": [{"field": "userId", "target": "user",
                                     "table": {"user_7": {"tier": "gold"}, "42": {"tier": "silver"}}}]}})
    ev = run(p, [b'{"message":"m","userId":"user_7"}', b'{"message":"m","userId":42}', b'{"message":"m","userId":"x"}'])
    assert [d.get("user") for d in docs(ev)] == [{"tier": "gold"}, {"tier": "silver"}, None]
    assert "user" not in ev.records[0]  # routes and alerts see the app's own fields


def test_a_lookup_reads_nested_fields_and_tables_from_files(tmp_path: Path) -> None:
    table = tmp_path / "codes.csv"
    table.write_text("code,category,retry\ninsufficient_funds,balance,yes\n")
    p = make({"enrich": {"lookup": [{"field": "error.code", "target": "error_info", "file": str(table)}]}})
    doc, _ = one(p, b'{"message":"Payout failed","error":{"code":"insufficient_funds"}}')
    assert doc["error_info"] == {"category": "balance", "retry": "yes"}


# ---------------------------------------------------------------- ECS


def test_ecs_is_off_by_default() -> None:
    doc, _ = one(make(), WINSTON)
    assert doc["service"] == "click-clack-cashflow" and "level" not in doc["log"]


def test_ecs_adds_fields_beside_the_originals_and_moves_strings_into_objects() -> None:
    line = (b'{"level":"error","message":"Payout failed","error":"insufficient_funds","stack":"Error: x\\n    at y",'
            b'"service":"click-clack-cashflow","version":"1.0.0","timestamp":"2024-01-15 10:30:00"}')
    doc, rec = one(make({"enrich": {"environment": "production"}}, ecs=True), line)
    assert doc["level"] == "error" and doc["log"]["level"] == "error"
    assert doc["error"] == {"message": "insufficient_funds", "stack_trace": "Error: x\n    at y"}
    assert doc["stack"] == "Error: x\n    at y" and doc["version"] == "1.0.0"
    assert doc["service"] == {"name": "click-clack-cashflow", "version": "1.0.0", "environment": "production"}
    assert rec["service"] == "click-clack-cashflow"  # routes keep matching `service: payout-job`


def test_ecs_fields_are_configurable() -> None:
    doc, _ = one(make(ecs={"fields": {"level": "log.level", "requestId": "http.request.id"}}),
                 b'{"level":"info","requestId":"req_1","service":"s"}')
    assert doc["http"] == {"request": {"id": "req_1"}} and doc["service"] == "s" and doc["log"]["level"] == "info"


def test_exception_records_keep_the_thrown_object_out_of_error_without_ecs() -> None:
    line = (b'{"error":{"code":"ECONNREFUSED"},"level":"error","message":"uncaughtException: x","exception":true,'
            b'"timestamp":"2024-01-15 10:30:00"}')
    doc, rec = one(make(), line)
    assert "error" not in doc and doc["error_original"] == {"code": "ECONNREFUSED"}
    assert rec["error"] == {"code": "ECONNREFUSED"}


# ---------------------------------------------------------------- drop and sample


def test_drop_rules_leave_no_event_and_count() -> None:
    p = make({"drop": [{"name": "debug", "when": {"field": "level", "equals": "debug"}}]})
    ev = run(p, [b'{"level":"debug","message":"a"}', WINSTON, b'{"level":"debug","message":"b"}'])
    assert [d["level"] for d in docs(ev)] == ["info"]
    assert p.counters == {"dropped:debug": 2}


def test_dropped_lines_still_count_for_offsets() -> None:
    p = make({"drop": [{"when": {"field": "level", "equals": "debug"}}]})
    debug = b'{"level":"debug","message":"a"}'
    ev = run(p, [debug, WINSTON], start=5)
    assert docs(ev)[0]["log"]["offset"] == 5 + len(debug) + 1


def test_sample_rules_keep_one_in_n() -> None:
    p = make({"sample": [{"name": "health", "when": {"field": "path", "equals": "/health"}, "keep": 3}]})
    health = b'{"message":"HTTP request","path":"/health"}'
    ev = run(p, [health] * 7 + [WINSTON])
    assert len(ev) == 3 + 1 and p.counters == {"sampled_out:health": 4}


def test_rules_apply_to_text_records_too() -> None:
    p = make({"drop": [{"when": {"field": "process.name", "equals": "CRON"}}]}, format="text", parser="syslog")
    ev = run(p, [b"Jan 15 10:30:00 web-1 CRON[1]: run", b"Jan 15 10:30:01 web-1 sshd[2]: ok"])
    assert [d["process"]["name"] for d in docs(ev)] == ["sshd"]


def test_a_rule_that_cannot_apply_to_a_record_keeps_it() -> None:
    p = make({"drop": [{"when": {"field": "tags", "in": ["x"]}}]})
    assert len(run(p, [b'{"message":"m","tags":["a"]}'])) == 1
