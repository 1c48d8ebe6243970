"""The C loop (_native/py_loop.c) is the Python loop: same events, same counters, same prefilter.

Each property builds two identical pipelines, one with the C loop and prefilter switched off,
and holds their output equal on the corpus, the sample records and generated lines.
"""

from __future__ import annotations

import gc
import random
import weakref
import zlib
from collections import Counter
from pathlib import Path
from typing import Any
from unittest.mock import patch

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccf_agent._native import _fast
from ccf_agent.pipeline import rawjson
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.pipeline.redact import _DROP
from ccf_agent.samples import lines as sample_lines
from tests.pipeline.helpers import make, run

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CORPUS = Path(__file__).parent / "corpus"

CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "redaction off": {"redact": {"enabled": False}},
    "emails and drop_fields": {"redact": {"patterns": {"emails": True}, "drop_fields": ["userId"]}},
    "cards off": {"redact": {"patterns": {"card_numbers": False, "bearer_tokens": False}}},
    "static fields": {"enrich": {"fields": {"team": "payments"}, "environment": "production"}},
}


# The fields a projection keeps: what the example routes and business metrics read, plus some the
# generated records use (a sensitive one among them).
PROJECT = ("message", "service", "payoutId", "status", "amount", "paymentMethodId", "meta", "level")


def pair(processors: dict[str, Any], **kw: Any) -> tuple[Pipeline, Pipeline]:
    native, python = make(processors, **kw), make(processors, **kw)
    assert native.native, "the C loop should cover this configuration"
    python.native = False
    if python.redactor is not None:
        python.redactor._native = False
    return native, python


def same(lines: list[bytes], processors: dict[str, Any], start: int = 0, **kw: Any) -> list[dict[str, Any]]:
    """Holds the C loop, the C loop with a projection and the Python loop equal, each given the
    lines as a list and (the C loops, when no line holds a newline) as the reader's one bytes
    object; returns the projected records."""
    native, python = pair(processors, **kw)
    projected = make(processors, **kw)
    projected.project(PROJECT)
    as_data = bool(lines) and not any(b"\n" in x for x in lines)
    native_data, projected_data = make(processors, **kw), make(processors, **kw)
    projected_data.project(PROJECT)
    native_ahead, projected_ahead = make(processors, **kw), make(processors, **kw)
    projected_ahead.project(PROJECT)
    with patch("time.time", return_value=1_700_000_000.25):  # records without a timestamp get "now"
        a, b, c = run(native, lines, start), run(python, lines, start), run(projected, lines, start)
        d, e = (run(native_data, lines, start, as_data=True), run(projected_data, lines, start, as_data=True)
                ) if as_data else (a, c)
        f, g = (run(native_ahead, lines, start, read_ahead=True), run(projected_ahead, lines, start, read_ahead=True)
                ) if as_data else (a, c)
    assert a.docs == b.docs == c.docs == d.docs == e.docs == f.docs == g.docs
    assert a.ids == b.ids == c.ids == d.ids == e.ids == f.ids == g.ids
    assert a.records == b.records == d.records == f.records
    assert ([project(r) for r in c.records] == [project(r) for r in b.records] == [project(r) for r in e.records]
            == [project(r) for r in g.records])
    assert [typed(project(r)) for r in c.records] == [typed(project(r)) for r in b.records]  # 0 == 0.0 == False
    assert [typed(project(r)) for r in g.records] == [typed(project(r)) for r in b.records]
    assert a.stamps == b.stamps == c.stamps == d.stamps == e.stamps == f.stamps == g.stamps
    assert a.times == b.times == c.times == e.times == f.times == g.times
    assert native.counters == python.counters == projected.counters
    assert not as_data or (native_data.counters == projected_data.counters == native_ahead.counters
                           == projected_ahead.counters == python.counters)
    assert native.malformed == python.malformed == projected.malformed
    assert not as_data or (native_data.malformed == projected_data.malformed == native_ahead.malformed
                           == projected_ahead.malformed == python.malformed)
    return c.records


def project(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in PROJECT if k in rec}


def typed(rec: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    return {k: (type(v), v) for k, v in rec.items()}


json_scalars = st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1) | st.text(max_size=24)
keys = st.sampled_from(["timestamp", "level", "message", "service", "paymentMethodId", "password", "amount",
                        "host", "log", "@timestamp", "exception", "meta", "Token", "stack"]) | st.text(max_size=8)
secrets = st.sampled_from(["4242 4242 4242 4242", "sk_live_abcdefgh12345678", "Bearer abc.def-123",
                           "a.b@example.com", "\\u0073k_live_x", "2024-01-15 10:30:45", "5555-5555-5555-4444",
                           "Basic dXNlcjpwYXNz", "BASIC dXNlcjpwYXNz", "basic plan", "?access_token=abc",
                           "a=1&Password=x", "api_key=", "=", "4111 1111 1111 111"])
records = st.dictionaries(keys, json_scalars | secrets | st.dictionaries(keys, json_scalars | secrets, max_size=3),
                          max_size=8)


def encode(rec: dict[str, Any], style: int) -> bytes:
    raw = orjson.dumps(rec)
    return raw.replace(b",", b", ") if style == 1 else raw.replace(b"s", b"\\u0073") if style == 2 else raw


@SETTINGS
@given(st.lists(st.tuples(records, st.integers(0, 2)), max_size=10), st.sampled_from(sorted(CONFIGS)))
def test_generated_records_give_the_same_events(recs: list[tuple[dict[str, Any], int]], config: str) -> None:
    same([encode(r, s) for r, s in recs], CONFIGS[config], start=7)


flat_records = st.dictionaries(st.sampled_from(["paymentMethodId", "password", "Token", "cvv", "message", "amount",
                                                "timestamp", "userId", "x"]),
                               json_scalars | st.text("abc_\"\\é\x01", max_size=6) | st.just("[REDACTED]"),
                               max_size=6)


@SETTINGS
@given(st.lists(flat_records, max_size=10), st.sampled_from(sorted(CONFIGS)))
def test_flat_records_with_sensitive_fields_give_the_same_events(recs: list[dict[str, Any]], config: str) -> None:
    lines = [orjson.dumps(r) for r in recs]
    lines += [line.replace(b'"x":', b'"paymentMethodId":') for line in lines]  # a key written twice
    same(lines, CONFIGS[config])


JSON_BYTES = [b'"', b"\\", b"{", b"}", b"[", b"]", b":", b",", b" ", b"\t", b"\n", b"0", b"-", b".", b"e", b"E",
              b"+", b"u", b"\x00", b"\x1f", b"\x7f", b"\xc3", b"\xa9", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
              b"\xef\xbb\xbf", b"true", b"nul", b"1e400", b"01", b"1.", b"\\u00e9", b"\\ud800"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid record's bytes with a few JSON-significant bytes inserted, replaced or removed."""
    line = bytearray(encode(draw(records), draw(st.integers(0, 2))))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(line)))
        what = draw(st.sampled_from(["insert", "replace", "delete"]))
        piece = draw(st.sampled_from(JSON_BYTES))
        if what == "insert":
            line[at:at] = piece
        elif what == "replace":
            line[at:at + 1] = piece
        else:
            del line[at:at + 1]
    return bytes(line)


TS = b'"timestamp":"2024-01-15 10:30:00"'


def nested(depth: int, inner: bytes, extra: bytes = b"") -> bytes:
    return b'{"x":' + b'{"a":' * depth + inner + b"}" * depth + extra + b"}"


# Issue 19's lines and their relatives: deep nesting, keys written twice, text that is no record.
HOSTILE = [
    nested(300, b'"4111111111111111"'), nested(254, b'"x"', b',' + TS), nested(1100, b'{"password":"pw1"}'),
    nested(300, b'"x"', b',"timestamp":"nope"'), nested(300, b'"x"', b',"host":1'), nested(199, b'"x"'),
    nested(200, b'"x"'), b'{"x":' + b"[" * 300 + b"]" * 300 + b"}", b"[" * 300 + b"]" * 300,
    b'{"a":' + b'"{[",' * 300 + b'1}', b'{"items":[' + b",".join([b'{"a":[{}]}'] * 300) + b'],' + TS + b'}',
    b'{"level":"info","x":{"y":1},"message":"card 4277700000000003","message":"ok"}',
    b'{"a":{"card":"4111111111111111"},"a":{}}', b'{"x":{"password":"pw1"},"x":{}}',
    b'{"x":{"y":1},"m":"Bearer abcdefghijkl123","m":"none",' + TS + b'}',
    b'{"m":"a\\tb","message":"4111111111111111","message":"ok"}', b'{"x":[{"cvv":"9731"}],"x":[]}',
    b'[{"password":"pw1"}]', b'{"password":"pw1", broken', b'"{\\"token\\":\\"pw1\\"}"',
    b'{"x":1,"p\\u0061ssword":"pw1",}', b'{"message":"Authorization: Basic dXNlcjpwYXNz",' + TS + b'}',
    b'{"url":"/cb?access_token=abc123&x=1",' + TS + b'}', b'{"body":"user=bob&password=hunter2"}',
    b'{"n":{"q":"?api_key=k1"},' + TS + b'}', b'{"payment_method_id":"pm_1","payment_method":"pm_2",' + TS + b'}',
    b'{"message":"a=b",' + TS + b'}', b'{"message":"x\\u003dy token\\u003dabc",' + TS + b'}',
]
TRICKY = [
    b'{"message":"a\x00b",' + TS + b'}', b'{"message":"a\x1fb",' + TS + b'}', b'{"message":"a\x7fb",' + TS + b'}',
    b'{"amount":1e400,' + TS + b'}', b'{"amount":1.5e3,' + TS + b'}', b'{"amount":18446744073709551616,' + TS + b'}',
    b'{"amount":-0,' + TS + b'}', b'{"amount":999999999999999999,' + TS + b'}',
    b'{"amount":-999999999999999999,' + TS + b'}', b'{"amount":1000000000000000000,' + TS + b'}',
    b'{"amount":-9223372036854775808,' + TS + b'}', b'{"amount":9999999999999999999,' + TS + b'}',
    b'{"amount":0.0,' + TS + b'}',
    b'{"amount":-0.0,' + TS + b'}', b'{"amount":01,' + TS + b'}', b'{"amount":1.,' + TS + b'}', b'{"amount":-,' + TS + b'}',
    b'{"message":"\\u00e9",' + TS + b'}', b'{"message":"\\ud800",' + TS + b'}', b'{"message":"\\n\\"x",' + TS + b'}',
    b'{"message":"\xc3\xa9",' + TS + b'}', b'{"message":"\xc3",' + TS + b'}', b'{"message":"\xed\xa0\x80",' + TS + b'}',
    b'{"message":"\xf4\x90\x80\x80",' + TS + b'}', b'{"message":"\xe0\x80\x80",' + TS + b'}',
    b'\xef\xbb\xbf{"message":"x",' + TS + b'}', b'{"message":"x",' + TS + b'}x', b'{"message":"x",' + TS + b'} ',
    b' {"message":"x",' + TS + b'}', b'{"message":"x","message":"y",' + TS + b'}', b'{}', b'{"a":{}}', b'{"a":[]}',
    b'{"m\\u0065ssage":"x",' + TS + b'}', b'{"\xc3\xa9":"x",' + TS + b'}', b'{"tok\xe2\x84\xaaen":"x",' + TS + b'}',
    b'{"paymentMethodId": "pm_1",' + TS + b'}', b'{"paymentMethodId":"pm_1" ,' + TS + b'}',
    b'{"paymentMethodId":"p\xc3\xa9",' + TS + b'}', b'{"paymentMethodId":"[REDACTED]",' + TS + b'}',
    b'{"paymentMethodId":7,' + TS + b'}', b'{"paymentMethodId":"pm_1","password":"x",' + TS + b'}',
    b'{"paymentMethodId":"pm_1","paymentMethodId":"pm_2",' + TS + b'}',
    b'{"a":' + b"[" * 70 + b"]" * 70 + b',' + TS + b'}', b'{"a":' + b"[" * 30 + b"]" * 30 + b',' + TS + b'}',
    b'{"a":[1,2,],' + TS + b'}', b'{"a":{"b":1,},' + TS + b'}', b'{"a":tru,' + TS + b'}', b'{"a":nulls,' + TS + b'}',
    b'{"timestamp":null,"message":"x"}', b'{"timestamp":1700000000,"message":"x"}', b'{"timestamp":"nope"}',
    b'{"timestamp":"2024-01-15 10:30:00\\u0000"}', b'{"@timestamp":"2024-01-15T10:30:00Z","message":"x"}',
    b'{"message":"x","timestamp":"2024-01-15 10:30:00"}\r', b'{"message" : "x" , ' + TS + b' }',
    b'{"meta":{"paymentMethodId":"pm_1"},' + TS + b'}', b'{"message":"card 4242 4242 4242 4242",' + TS + b'}',
    *HOSTILE,
]


STAMPS = ["2024-02-29 10:00:00", "2023-02-29 10:00:00", "2024-01-15T10:30:00.123Z", "2024-01-15 10:30:00.123z",
          "2024-01-15T10:30:00.12Z", "0001-01-01 00:00:00", "9999-12-31 23:59:59", "0000-01-01 00:00:00",
          "2024-13-01 00:00:00", "2024-01-15 24:00:00", "2024-01-15 10:60:00", "2024-01-15 10:30:60",
          "2024-01-15X10:30:00", "2024-01-15 10:30:0a", "2024-04-31 10:00:00", "1900-02-29 10:00:00",
          "2000-02-29 10:00:00", "2024-01-15T10:30:00.999Z", " 2024-01-15 10:30:00", "2024-01-15 10:30:00+01:00",
          "6326-01-01T00:00:00.011Z", "1684-06-01 00:00:00"]  # past 2^53 us: the C reading would round twice


def test_tricky_lines_give_the_same_events() -> None:
    for config in CONFIGS.values():
        for line in TRICKY:
            same([line], config)


def test_a_sensitive_key_written_twice_ships_neither_copy_when_the_last_is_already_the_mask() -> None:
    # orjson keeps the last of duplicate keys: "already masked" must not leave the first copy in the
    # line, whichever way the line is redacted (top-level splice, a prefilter hit, a nested object).
    lines = [b'{"paymentMethodId":"pm_1Nsecret","paymentMethodId":"[REDACTED]","message":"Payout processed"}',
             b'{"message":"x","password":"pm_1Nsecret","password":"[REDACTED]","timestamp":"2024-01-15 10:00:00"}',
             b'{"paymentMethodId":"pm_1Nsecret","n":"4242 4242 4242 4241","paymentMethodId":"[REDACTED]"}',
             b'{"paymentMethodId":"pm_1Nsecret","k":"a\\u0041b","paymentMethodId":"[REDACTED]"}',
             b'{"paymentMethodId":"pm_1Nsecret","meta":{"a":1},"paymentMethodId":"[REDACTED]"}',
             b'{"meta":{"cvv":"pm_1Nsecret","cvv":"[REDACTED]"},"message":"nested"}']
    for config in ("defaults", "static fields"):
        same(lines, CONFIGS[config])
        native, python = pair(CONFIGS[config])
        projected = make(CONFIGS[config])
        projected.project(PROJECT)
        for pipeline in (native, python, projected):
            docs = run(pipeline, lines).docs
            assert len(docs) == len(lines) and not any(b"pm_1Nsecret" in d for d in docs), docs


def test_timestamps_read_in_c_are_those_python_reads() -> None:
    lines = [orjson.dumps({"message": "x", "timestamp": ts}) for ts in STAMPS]
    lines += lines[::-1]  # each after another one: the last-value cache
    for timezone in ("UTC", "Europe/Paris"):
        same(lines, {}, timezone=timezone)


@SETTINGS
@given(st.lists(mutated(), max_size=8), st.sampled_from(sorted(CONFIGS)))
def test_mutated_records_give_the_same_events(lines: list[bytes], config: str) -> None:
    same(lines, CONFIGS[config])


@SETTINGS
@given(st.lists(st.binary(max_size=200) | st.sampled_from([b"", b"  ", b"{}", b"[]", b"null", b'{"a":1} ',
                                                            b'{"timestamp":"nope"}', b'{"timestamp":17e8}']),
                max_size=10), st.sampled_from(sorted(CONFIGS)))
def test_arbitrary_bytes_give_the_same_events(lines: list[bytes], config: str) -> None:
    same(lines, CONFIGS[config])


def test_the_corpus_gives_the_same_events() -> None:
    for log in sorted(CORPUS.glob("*.log")):
        lines = log.read_bytes().split(b"\n")
        for config in CONFIGS.values():
            same(lines, config)


def test_the_sample_records_give_the_same_events() -> None:
    spaced = [line.encode() for line in sample_lines(3000, seed=5)]
    lines = spaced + [orjson.dumps(orjson.loads(line)) for line in spaced]  # as Winston writes them: compact
    for config in CONFIGS.values():
        records = same(lines, config, start=123_456_789_012)
        assert sum(set(r) <= set(PROJECT) for r in records) > len(lines) // 2  # most took the projection


def test_the_loop_stays_in_python_when_a_stage_needs_it() -> None:
    assert not make({"drop": [{"name": "x", "when": {"field": "level", "equals": "debug"}}]}).native
    assert not make(ecs=True).native
    assert not make(encoding="latin-1").native
    assert not make(format="text").native


@SETTINGS
@given(st.lists(st.text(max_size=120).map(str.encode) | secrets.map(str.encode), max_size=12),
       st.sampled_from(sorted(CONFIGS)))
def test_the_prefilter_finds_the_same_lines(lines: list[bytes], config: str) -> None:
    native, python = pair(CONFIGS[config])
    if native.redactor is None:
        return
    assert native.redactor.scan(lines) == python.redactor.scan(lines)
    if lines and not any(b"\n" in x for x in lines):  # the reader's form: one bytes object
        data = b"".join(x + b"\n" for x in lines)
        assert native.redactor.scan(data) == python.redactor.scan(data) == python.redactor.scan(lines)


@SETTINGS
@given(st.lists(st.binary(max_size=80) | st.lists(  # secrets at any offset, so across the 16/32-byte blocks
    st.text(" \t\r-0123456789kwbB_\\hsecu@\"", max_size=40) | secrets, max_size=6).map("".join).map(str.encode),
    max_size=12), st.sampled_from(sorted(CONFIGS)))
def test_the_vector_prefilter_finds_the_lines_the_scalar_one_does(lines: list[bytes], config: str) -> None:
    native, python = pair(CONFIGS[config])
    if native.redactor is None:
        return
    r = native.redactor
    args = (lines, r._fold, _DROP, 13 if r._cards else 0, 3 if r.cfg.emails else -1, r._suffixes)
    # 1: the CPU's best (AVX2 here), 2: SSE2, 0: scalar
    assert _fast.prefilter(*args) == _fast.prefilter(*args, 2) == _fast.prefilter(*args, 0)
    assert set(_fast.prefilter(*args)) == python.redactor._scan_python(lines)  # (credentials: in Python alone)
    as_json = _fast.prefilter(*args, 1, True)
    assert as_json == _fast.prefilter(*args, 2, True) == _fast.prefilter(*args, 0, True)
    assert set(as_json) <= set(_fast.prefilter(*args))


def test_a_json_number_is_no_card_but_a_card_in_a_string_or_in_a_line_that_is_not_json_is() -> None:
    pipeline = make({})
    epoch = b'{"wt":1795765044730948450,"n":4242424242424242,"message":"ok"}'
    in_string = b'{"wt":1795765044730948450,"message":"card 4242 4242 4242 4242","q":"a\\"b"}'
    in_key = b'{"4242424242424242":1}'
    after_escaped_quote = b'{"message":"x\\" 4242424242424242 \\""}'
    assert pipeline.redactor.scan([epoch, in_string, in_key, after_escaped_quote], json=True) == {1, 2, 3}
    broken = b'{"message": "card", 4242424242424242'
    events = run(pipeline, [epoch, in_string, broken])
    assert b"4242424242424242" in events.docs[0]  # a number: not redacted, as before
    assert b"4242 4242 4242 4242" not in events.docs[1]
    assert b"4242424242424242" not in events.docs[2] and events.records[2]["tags"] == ["invalid_json"]


JSONISH = st.lists(st.sampled_from([b'"', b"\\", b"{", b"}", b"[", b"]", b":", b",", b"a", b"1", b" ", b"\\u00"]),
                   max_size=60).map(b"".join)


@given(st.lists(JSONISH, max_size=3).map(b"".join), st.integers(0, 3), st.integers(0, 450))
def test_raw_json_scans_in_c_are_those_in_python(piece: bytes, where: int, depth: int) -> None:
    # Around the depth limit and the gates before its exact scan (length, bracket count).
    line = (b"{" * depth + piece + b"}" * depth) if where == 0 else (b"[" * depth + piece) if where == 1 else (
        piece + b"x" * depth) if where == 2 else piece * (depth // 10 + 1)
    assert _fast.too_deep(line) is rawjson._too_deep(line)
    assert _fast.members(line) == rawjson._members(line)
    assert _fast.RECORD_DEPTH_MAX == rawjson.MAX_DEPTH


@given(st.binary(max_size=300))
def test_crc32_is_zlibs(data: bytes) -> None:
    assert _fast.crc32(data) == zlib.crc32(data)


def test_crc32_is_zlibs_at_every_length_either_side_of_the_folding_path() -> None:
    # From 64 bytes the CPU's carry-less multiply (when it has one) folds 16-byte blocks; the rest
    # goes through the table. Every length, so every split between the two.
    data = bytes(random.Random(7).getrandbits(8) for _ in range(4096 + 15))
    for n in [*range(300), 4096, 4096 + 15]:
        assert _fast.crc32(data[:n]) == zlib.crc32(data[:n]), n
        assert _fast.crc32(data[n:]) == zlib.crc32(data[n:]), n


# ------------------------------------------------------------------ fields of picked records (business metrics)

FIELD_NAMES = ["message", "status", "method", "processingTime"]
field_values = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=3)
                | st.lists(st.integers(), max_size=1))
field_records = st.lists(st.dictionaries(st.sampled_from(FIELD_NAMES), field_values, max_size=4), max_size=12)


def python_tally(records: list[dict[str, Any]], indices: list[int], fields: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
    picked = [records[i] for i in indices]
    return dict(Counter(zip(*([rec.get(f) for rec in picked] for f in fields), strict=True)))


@SETTINGS
@given(field_records, st.data())
def test_tally_and_column_read_the_picked_records_as_dict_get_does(records: list[dict[str, Any]], data: st.DataObject) -> None:
    indices = data.draw(st.lists(st.integers(0, max(len(records) - 1, 0)), max_size=15)) if records else []
    fields = tuple(data.draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=4)))
    for field in fields:
        assert _fast.column(records, indices, field) == [records[i].get(field) for i in indices]
    try:
        expected = python_tally(records, indices, fields)
    except TypeError:  # an unhashable value among the picked: C says so too
        with pytest.raises(TypeError):
            _fast.tally(records, indices, fields)
        return
    got = _fast.tally(records, indices, fields)
    assert list(got.items()) == list(expected.items())  # the same counts, in the order first seen


def test_tally_and_column_refuse_a_record_that_is_not_a_dict_and_an_index_out_of_range() -> None:
    records: list[Any] = [{"message": "x"}, ["message"]]
    for call in (lambda: _fast.tally(records, [1], ("message",)), lambda: _fast.column(records, [1], "message")):
        with pytest.raises(TypeError):
            call()
    for call in (lambda: _fast.tally(records, [2], ("message",)), lambda: _fast.column(records, [-1], "message")):
        with pytest.raises(IndexError):
            call()


def test_the_bulk_body_refuses_an_index_that_is_no_int_or_out_of_range_and_a_record_that_is_no_bytes() -> None:
    class Index(int):  # an __index__ could run Python between the C function's two passes
        pass

    ids, docs = [b"a", b"b"], [b"{}", b"{}"]
    for indices in ([Index(0)], [0.0]):
        with pytest.raises(TypeError):
            _fast.bulk_body(b"A", ids, docs, indices)  # type: ignore[arg-type]
    for indices in ([2], [-1]):
        with pytest.raises(IndexError):
            _fast.bulk_body(b"A", ids, docs, indices)
    with pytest.raises(TypeError):
        _fast.bulk_body(b"A", ids, [b"{}", "{}"], None)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        _fast.bulk_body([b"A"], ids, docs, None)  # one action line per record, or one for all
    assert _fast.bulk_body(b"A", ids, docs, [1]) == b'Ab"}}\n{}\n'


# ------------------------------------------------------------------ what a projection must keep


def test_business_metrics_from_projected_records_are_those_from_full_records() -> None:
    from ccf_agent.ops.business import FIELDS, BusinessMetrics
    from ccf_agent.ops.metrics import fmt

    lines = [line.encode() for line in sample_lines(5000, seed=9)]
    full, projected = make({}), make({})
    projected.project(FIELDS)
    rendered = []
    for pipeline in (full, projected):
        metrics = BusinessMetrics()
        events = run(pipeline, lines, path="/var/log/ccf/combined.log")
        metrics.observe(events.records, events.times, "/var/log/ccf/combined.log")
        out: list[str] = []
        metrics.render(out, fmt)
        rendered.append(out)
    assert rendered[0] == rendered[1]
    assert any("ccf_payouts_total" in line and not line.endswith(" 0") for line in rendered[0] if line[0] != "#")


def test_the_agent_projects_what_routes_business_metrics_and_alert_conditions_read(tmp_path: Path) -> None:
    from ccf_agent.agent import Agent
    from ccf_agent.config import parse_config

    text = f"""
state_dir: {tmp_path}/state
inputs: [{{id: app, paths: ["{tmp_path}/*.log"]}}]
outputs:
  logs: {{type: file, path: {tmp_path}/logs.ndjson}}
  payouts: {{type: file, path: {tmp_path}/payouts.ndjson}}
routes:
  - name: payouts
    output: payouts
    when: {{any: [{{field: message, icontains: payout}}, {{not: {{field: meta.kind, equals: x}}}}]}}
"""
    agent = Agent(parse_config(text))
    assert agent._projection() == ("message", "meta", "method", "payoutId", "processingTime", "service", "status")
    with_alerts = text + """alerts:
  rules:
    - {name: r, kind: match, when: {field: level, equals: error}}
    - {name: q, kind: ratio, window: 5m, threshold: 0.5, when: {field: code, exists: true}, of: {field: http.method, exists: true}}
"""
    assert set(Agent(parse_config(with_alerts))._projection()) == {
        "message", "meta", "method", "payoutId", "processingTime", "service", "status", "level", "code", "http"}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_a_number_that_looks_like_a_card_makes_neither_loop_take_the_line_apart(config: str) -> None:
    # Found by hypothesis: the Python prefilter flagged the number (outside every string, so never a
    # card) and re-serialised the record, while C spliced the line's own bytes.
    same([b'{"level":"\\r", "paymentMethodId":-100000000000}', b'{"n":4242424242424242, "m":"a"}'], CONFIGS[config])


def test_the_pipeline_makes_its_c_loop_once_and_runs_it_per_batch() -> None:
    pipeline = make()
    first = run(pipeline, [b'{"message":"a"}'])
    loop = pipeline._loop
    assert loop is not None and len(first) == 1
    run(pipeline, [b'{"message":"b"}', b"not json"])
    assert pipeline._loop is loop
    pipeline.project(PROJECT)  # a new projection: a new loop, made at the next batch
    assert pipeline._loop is None
    run(pipeline, [b'{"message":"c"}'])
    assert pipeline._loop is not None and pipeline._loop is not loop


def test_a_pipeline_and_its_c_loop_are_collected_together() -> None:
    """The loop holds the pipeline's bound methods and the pipeline the loop: a cycle only the GC
    can break, which it sees through the loop's traverse."""
    pipeline = make()
    run(pipeline, [b'{"message":"a"}'])
    assert pipeline._loop is not None
    gone = weakref.ref(pipeline)
    del pipeline
    gc.collect()
    assert gone() is None


def test_the_c_loop_refuses_constants_of_the_wrong_type_when_made() -> None:
    pipeline = make()
    run(pipeline, [b'{"message":"a"}'])
    good = {"shapes": {}, "new_shape": pipeline._shape, "reserved": frozenset(), "ts_field": "timestamp",
            "ts_cache": {}, "parse_ts": pipeline.timestamps.parse, "parse_any": pipeline.timestamps.parse_any,
            "redact": None, "mask_top": None, "names": False, "mask": None, "mask_json": None, "end": b"}}",
            "dict_doc": pipeline._native_dict_doc, "bad_ts": pipeline._native_bad_ts, "odd": pipeline._native_odd,
            "loads": orjson.loads, "decode_error": orjson.JSONDecodeError, "cache": None}
    _fast.Loop(**good)
    for key, bad in [("shapes", []), ("reserved", ()), ("ts_field", b"ts"), ("end", "}}"), ("odd", None),
                     ("decode_error", "error"), ("cache", object())]:
        with pytest.raises((TypeError, ValueError)):
            _fast.Loop(**{**good, key: bad})
    with pytest.raises(TypeError, match="missing argument cache"):
        _fast.Loop(**{k: v for k, v in good.items() if k != "cache"})
