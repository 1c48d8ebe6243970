"""The C loop (pipeline/_fast.c) is the Python loop: same events, same counters, same prefilter.

Each property builds two identical pipelines, one with the C loop and prefilter switched off,
and holds their output equal on the corpus, the sample records and generated lines.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any
from unittest.mock import patch

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccf_agent.pipeline import _fast
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


def pair(processors: dict[str, Any], **kw: Any) -> tuple[Pipeline, Pipeline]:
    native, python = make(processors, **kw), make(processors, **kw)
    assert native.native, "the C loop should cover this configuration"
    python.native = False
    if python.redactor is not None:
        python.redactor._native = False
    return native, python


def same(lines: list[bytes], processors: dict[str, Any], start: int = 0, **kw: Any) -> None:
    native, python = pair(processors, **kw)
    with patch("time.time", return_value=1_700_000_000.25):  # records without a timestamp get "now"
        a, b = run(native, lines, start), run(python, lines, start)
    assert a.docs == b.docs
    assert a.ids == b.ids
    assert a.records == b.records
    assert a.stamps == b.stamps and a.times == b.times
    assert native.counters == python.counters
    assert native.malformed == python.malformed


json_scalars = st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1) | st.text(max_size=24)
keys = st.sampled_from(["timestamp", "level", "message", "service", "paymentMethodId", "password", "amount",
                        "host", "log", "@timestamp", "exception", "meta", "Token", "stack"]) | st.text(max_size=8)
secrets = st.sampled_from(["4242 4242 4242 4242", "sk_live_abcdefgh12345678", "Bearer abc.def-123",
                           "a.b@example.com", "\\u0073k_live_x", "2024-01-15 10:30:45", "5555-5555-5555-4444"])
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
        same(lines, config, start=123_456_789_012)


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


@SETTINGS
@given(st.lists(st.binary(max_size=80) | st.text(" \t\r-0123456789kwbB_\\hsecu@", max_size=80).map(str.encode)
                | secrets.map(str.encode), max_size=12), st.sampled_from(sorted(CONFIGS)))
def test_the_vector_prefilter_finds_the_lines_the_scalar_one_does(lines: list[bytes], config: str) -> None:
    native, python = pair(CONFIGS[config])
    if native.redactor is None:
        return
    r = native.redactor
    args = (lines, r._fold, _DROP, 13 if r._cards else 0, 3 if r.cfg.emails else -1, r._suffixes)
    assert _fast.prefilter(*args) == _fast.prefilter(*args, False)
    assert set(_fast.prefilter(*args)) == python.redactor.scan(lines)


@given(st.binary(max_size=300))
def test_crc32_is_zlibs(data: bytes) -> None:
    assert _fast.crc32(data) == zlib.crc32(data)
