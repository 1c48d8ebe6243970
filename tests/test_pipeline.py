"""Parse and enrich: every line becomes one document, nothing is dropped."""

from __future__ import annotations

import orjson
import pytest

from ccf_agent.acks import Flow, Ledger
from ccf_agent.batch import Batch, Events
from ccf_agent.config import InputConfig
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.registry import Entry, Registry

WINSTON = (b'{"level":"info","message":"Payout processed","payoutId":"payout_123","amount":1000,'
           b'"currency":"usd","service":"click-clack-cashflow","timestamp":"2024-01-15 10:30:00"}')


def run(lines: list[bytes], tmp_path: object = None, **cfg: object) -> Events:
    entry = Entry("s" * 16, "fp", "app", "/var/log/ccf/combined.log", 1, 2)
    pipeline = Pipeline(InputConfig(id="app", paths=("/x/*.log",), **cfg), hostname="web-1")  # type: ignore[arg-type]
    batch = Batch(entry, entry.path, 100, 100 + sum(len(x) + 1 for x in lines), lines)
    return pipeline.process(batch)


def doc(events: Events, i: int = 0) -> dict[str, object]:
    return orjson.loads(events.docs[i])


def test_winston_line_keeps_every_field_and_gains_enrichment() -> None:
    d = doc(run([WINSTON], fields={"environment": "production"}))
    original = orjson.loads(WINSTON)
    assert {k: d[k] for k in original} == original
    assert d["@timestamp"] == "2024-01-15T10:30:00.000Z"
    assert d["host"] == {"name": "web-1"}
    assert d["agent"]["name"] == "ccf-agent"
    assert d["log"] == {"file": {"path": "/var/log/ccf/combined.log"}, "offset": 100}
    assert d["environment"] == "production"


def test_local_time_zone_is_converted_to_utc() -> None:
    d = doc(run([WINSTON], timezone="Europe/Berlin"))
    assert d["@timestamp"] == "2024-01-15T09:30:00.000Z"


def test_iso_timestamps_of_the_payouts_transport_are_kept_exact() -> None:
    line = b'{"message":"payout x","timestamp":"2024-01-15T10:30:00.123Z"}'
    assert doc(run([line]))["@timestamp"] == "2024-01-15T10:30:00.123Z"


def test_offsets_and_ids_follow_the_lines() -> None:
    ev = run([WINSTON, WINSTON])
    assert [doc(ev, i)["log"]["offset"] for i in range(2)] == [100, 100 + len(WINSTON) + 1]
    assert ev.ids[0] != ev.ids[1]
    assert ev.ids == run([WINSTON, WINSTON]).ids  # deterministic: a resend is the same document


@pytest.mark.parametrize(("line", "tag"), [
    (b"this is not json", "invalid_json"),
    (b'{"message": "cut off', "invalid_json"),
    (b'{"message":"\xff\xfe"}', "invalid_utf8"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"message":"a\x00b"}', "invalid_json"),
])
def test_bad_lines_are_shipped_tagged(line: bytes, tag: str) -> None:
    d = doc(run([line]))
    assert tag in d["tags"]
    assert isinstance(d["message"], str) and d["message"]
    assert "@timestamp" in d


def test_blank_lines_are_not_records() -> None:
    assert len(run([b"", WINSTON, b"   "])) == 1


def test_colliding_keys_keep_the_records_own_value() -> None:
    d = doc(run([b'{"message":"m","host":"db-7","log":{"level":"x"},"timestamp":"2024-01-15 10:30:00"}']))
    assert d["host"] == {"name": "web-1"} and d["host_original"] == "db-7"
    assert d["log"]["level"] == "x" and d["log"]["offset"] == 100


def test_unparseable_timestamp_is_tagged_and_replaced() -> None:
    d = doc(run([b'{"message":"m","timestamp":"yesterday"}']))
    assert "invalid_timestamp" in d["tags"] and d["timestamp"] == "yesterday"


def test_text_format_puts_the_line_in_message() -> None:
    d = doc(run([b"Jan 15 10:30:00 web-1 sshd[42]: Accepted key"], format="text"))
    assert d["message"] == "Jan 15 10:30:00 web-1 sshd[42]: Accepted key" and "tags" not in d


def test_truncated_batches_are_tagged(tmp_path: object) -> None:
    entry = Entry("s" * 16, "fp", "app", "/x.log", 1, 2)
    ledger = Ledger(entry, Registry("/nonexistent"), Flow(1 << 20))
    batch = Batch(entry, "/x.log", 0, 10, [b'{"message":"aaaa'], ledger.issue(10, 10), truncated=True)
    d = orjson.loads(Pipeline(InputConfig(id="a", paths=("/x",))).process(batch).docs[0])
    assert d["tags"] == ["invalid_json", "truncated"]
