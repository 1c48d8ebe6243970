"""Hostile lines: none stops the pipeline, holds back the lines around it, or carries a secret out.

Each test runs the line through the C loop, the C loop with a projection and the Python loop
(tests/pipeline/test_native.py holds the three equal on these lines too).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import pytest

from ccf_agent.batch import Batch
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.pipeline.rawjson import MAX_DEPTH
from ccf_agent.registry import Entry
from tests.pipeline.helpers import PATH, make, run

CARD = "4111111111111111"
M = "[REDACTED]"
SPELLED = re.compile(r"\\+u([0-9a-fA-F]{4})")


def loops(processors: dict[str, Any] | None = None, **kw: Any) -> dict[str, Pipeline]:
    native, projected, python = make(processors, **kw), make(processors, **kw), make(processors, **kw)
    projected.project(("message", "level", "a", "x", "service"))
    python.native = False
    if python.redactor is not None:
        python.redactor._native = False
    return {"C": native, "C projected": projected, "Python": python}


def shipped(line: bytes, processors: dict[str, Any] | None = None, **kw: Any) -> list[tuple[str, bytes, Any]]:
    """(loop, document, record) of one line through each loop, with the line before and after it
    shipped as they are."""
    before, after = b'{"message":"before"}', b'{"message":"after"}'
    out = []
    for name, pipeline in loops(processors, **kw).items():
        ev = run(pipeline, [before, line, after])
        assert len(ev) == 3, name
        assert [orjson.loads(ev.docs[i])["message"] for i in (0, 2)] == ["before", "after"], name
        out.append((name, ev.docs[1], ev.records[1]))
    return out


def leaks(secret: str, doc: bytes, rec: Any) -> bool:
    """The secret in the document or record: as written, or spelled with \\uXXXX escapes in text
    that was shipped as it was (what JSON would read there)."""
    shown = [orjson.loads(doc).__repr__(), repr(rec), doc.decode("utf-8", "replace")]
    return any(secret in s or secret in SPELLED.sub(lambda m: chr(int(m.group(1), 16)), s) for s in shown)


def nested(depth: int, inner: str) -> bytes:
    """The issue's line: `depth` objects around `inner`, under "x"."""
    return ('{"x":' + '{"a":' * depth + inner + "}" * depth + "}").encode()


# ---------------------------------------------------------------- depth


@pytest.mark.parametrize("depth", [254, 300, 600, 990, 1100])
def test_a_deeply_nested_card_is_shipped_as_tagged_text_with_the_card_masked(depth: int) -> None:
    for loop, doc, rec in shipped(nested(depth, f'"{CARD}"')):
        d = orjson.loads(doc)
        assert d["tags"] == ["too_deep"] and d["message"].startswith('{"x":{"a":{"a":'), loop
        assert not leaks(CARD, doc, rec), loop


@pytest.mark.parametrize("depth", [300, 1100])
def test_a_sensitive_key_in_a_deeply_nested_line_has_its_value_masked_in_the_text(depth: int) -> None:
    for loop, doc, rec in shipped(nested(depth, '{"Password":"s3cret-pw","n":1}')):
        message = orjson.loads(doc)["message"]
        assert '"Password":"[REDACTED]","n":1' in message, loop
        assert not leaks("s3cret-pw", doc, rec), loop


@pytest.mark.parametrize("extra", [b',"timestamp":"not a time"', b',"host":"h"', b',"@timestamp":1',
                                   b',"exception":true', b""])
def test_a_deeply_nested_line_the_pipeline_would_rewrite_is_shipped_as_text(extra: bytes) -> None:
    line = nested(300, '"x"')[:-1] + extra + b"}"
    for config in ({}, {"redact": {"enabled": False}}, {"redact": {"fields": []}}):
        for loop, doc, _ in shipped(line, config):
            assert orjson.loads(doc)["tags"] == ["too_deep"], (loop, config)
    for loop, doc, _ in shipped(line, ecs=True):
        assert orjson.loads(doc)["tags"] == ["too_deep"], loop


def test_a_line_at_the_depth_limit_is_still_a_record_and_one_past_it_is_not() -> None:
    for depth, deep in ((MAX_DEPTH, False), (MAX_DEPTH + 1, True)):
        line = ('{"x":' + "[" * (depth - 1) + '"a{b["' + "]" * (depth - 1) + "}").encode()
        for loop, doc, rec in shipped(line):
            assert ("tags" in orjson.loads(doc)) is deep, (loop, depth)
            assert ("x" in rec) is not deep or loop == "C projected", (loop, depth)


def test_a_line_with_many_objects_side_by_side_is_a_record() -> None:
    line = orjson.dumps({"message": "m", "items": [{"a": {"b": [i]}} for i in range(MAX_DEPTH)]})
    for loop, doc, _ in shipped(line):
        assert "tags" not in orjson.loads(doc) and doc.startswith(line[:-1]), loop


# ---------------------------------------------------------------- keys written twice


@pytest.mark.parametrize(("line", "secret"), [
    (b'{"level":"info","x":{"y":1},"message":"card 4277700000000003","message":"ok"}', "4277700000000003"),
    (b'{"a":{"card":"4111111111111111"},"a":{}}', CARD),
    (b'{"a":{"b":{"n":"4111 1111 1111 1111"},"b":1}}', "4111 1111 1111 1111"),
    (b'{"x":{"y":1},"message":"sk_live_abcdefgh12345678","message":"ok"}', "sk_live_abcdefgh12345678"),
    (b'{"x":{"y":1},"auth":"Bearer abcdefghijkl123","auth":"none"}', "abcdefghijkl123"),
    (b'{"m":"a\\tb","message":"4111111111111111","message":"ok"}', CARD),
    (b'{"x":{"password":"s3cret-pw"},"x":{}}', "s3cret-pw"),
    (b'{"x":[{"cvv":"9731"}],"x":[]}', "9731"),
])
def test_a_secret_in_the_first_copy_of_a_duplicated_key_is_not_shipped(line: bytes, secret: str) -> None:
    for loop, doc, rec in shipped(line):
        assert not leaks(secret, doc, rec), loop


def test_a_duplicated_key_line_ships_what_the_record_holds() -> None:
    for loop, doc, rec in shipped(b'{"x":{"y":1},"message":"card 4277700000000003","message":"ok"}'):
        d = orjson.loads(doc)
        assert (d["x"], d["message"], rec["message"]) == ({"y": 1}, "ok", "ok"), loop
        assert doc.count(b'"message"') == 1, loop


def test_a_nested_record_without_duplicates_keeps_its_bytes() -> None:
    line = b'{"level":"info","x":{"y":1, "z":"a:b"},"message":"ok"}'
    for loop, doc, _ in shipped(line):
        assert doc.startswith(line[:-1]), loop


@pytest.mark.parametrize("line", [
    b'{"level":"info","body":"{\\"password\\":\\"s3cret-pw\\",\\"user\\":\\"bob\\"}"}',
    b'{"a":["x",{"b":"[{\\"Token\\": \\"s3cret-pw\\"}]"}]}',
    b'{"message":"{\\"password\\" :\\"s3cret-pw\\"}"}',
])
def test_a_sensitive_key_in_json_held_by_a_string_value_is_masked(line: bytes) -> None:
    for loop, doc, rec in shipped(line):
        assert not leaks("s3cret-pw", doc, rec) and M in doc.decode(), loop


def test_a_pattern_behind_an_escape_of_json_held_by_a_string_value_is_masked() -> None:
    line = b'{"req":{"headers":"{\\"x-auth\\":\\"Bearer\\\\u0009s3cret-pw\\"}"}}'
    for loop, doc, rec in shipped(line):
        assert "s3cret-pw" not in doc.decode() and "s3cret-pw" not in repr(rec), loop


# ---------------------------------------------------------------- lines that are not records


@pytest.mark.parametrize("line", [
    b'[{"password":"s3cret-pw"}]',
    b'{"password":"s3cret-pw", broken',
    b'{"a":1} {"token":"s3cret-pw"}',
    b'"{\\"password\\":\\"s3cret-pw\\"}"',
    b'{"x":1,"p\\u0061ssword":"s3cret-pw",}',
    b'{"apiKey": {"live": "s3cret-pw"}, "n": [',
    b'{"cvv":s3cret-pw}',
])
def test_a_sensitive_key_in_a_line_that_is_not_a_json_object_is_masked_in_its_text(line: bytes) -> None:
    for loop, doc, rec in shipped(line):
        assert not leaks("s3cret-pw", doc, rec), loop
        assert M in orjson.loads(doc)["message"], loop


@pytest.mark.parametrize(("line", "secret"), [
    (b'{"m":"BEARER\\u0009tok3n-Secret1", broken', "tok3n-Secret1"),
    (b'{"m":"Bearer\\ttok3n-Secret1"} trailing', "tok3n-Secret1"),
    (b'["card 4\\u0031\\u00311 1111 1111 1111"]', "4111 1111 1111 1111"),
    (b'{"password":\xff"s3cret-pw","n":1}', "s3cret-pw"),
    (b'{"token": junk "s3cret-pw" more, "n":1', "s3cret-pw"),
    (b'{"a":[null],\n  "password":}"s3cret-pw"}', "s3cret-pw"),
    (b'{"password":{}"s3cret-pw","n":1', "s3cret-pw"),
    (b'{"password":}{"live":"s3cret-pw"},\n  "password":1}', "s3cret-pw"),
    (b'x "password": ]{"live": "s3cret-pw"} y', "s3cret-pw"),
    (b'{"password":{}"live":"s3cret-pw"}}', "s3cret-pw"),
    (b'{"password":{"a":1,}"live":"s3cret-pw"},"n":2}', "s3cret-pw"),
])
def test_a_secret_behind_an_escape_or_junk_in_a_line_that_is_no_record_is_masked(line: bytes, secret: str) -> None:
    # (found by tests/pipeline/test_fuzz.py)
    for loop, doc, rec in shipped(line):
        assert not leaks(secret, doc, rec), loop


def test_a_card_cut_by_max_line_bytes_leaves_no_more_than_its_first_six_digits() -> None:
    entry = Entry("s" * 16, "fp", "app", PATH, 1, 2)
    cut = b'{"message":"charge to card 4111 1111 1111 111'
    for loop, pipeline in loops().items():
        for text in (cut, b"card 4111111111111", b"n=41111", b'{"m":"card 41\\u003111\\u00311', b'{"m":"4111111\\u00'):
            ev = pipeline.process(Batch(entry, PATH, 0, 10_000, [text], truncated=True))
            d = orjson.loads(ev.docs[0])
            assert "truncated" in d["tags"], loop
            if text.endswith(b"41111"):
                assert d["message"].endswith("41111"), loop  # no more than a BIN: kept
            else:
                assert "4111 1111" not in d["message"] and "41111111" not in d["message"], loop
                assert d["message"].endswith(M), loop


def test_a_basic_token_cut_by_max_line_bytes_is_masked() -> None:
    entry = Entry("s" * 16, "fp", "app", PATH, 1, 2)
    for loop, pipeline in loops().items():
        for cut in (b'{"m":"Authorization: Basic dXNlcjpwYXNzd', b"curl -H 'Authorization: basic dXNlcjpwYXN"):
            ev = pipeline.process(Batch(entry, PATH, 0, 10_000, [cut], truncated=True))
            assert "dXNlcjpw" not in orjson.loads(ev.docs[0])["message"], (loop, cut)


# ---------------------------------------------------------------- credentials in free text


@pytest.mark.parametrize(("text", "secret"), [
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("authorization: basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("GET /oauth/callback?access_token=abcdef123456&state=x", "abcdef123456"),
    ("GET /v1/x?api_key=AIzaSyA1234&q=1", "AIzaSyA1234"),
    ("POST /login user=bob&password=hunter2&remember=1", "hunter2"),
    ("DB_PASSWORD=hunter2 DB_USER=app", "hunter2"),
    ("client_secret=s3cretvalue", "s3cretvalue"),
    ("https://x.s3.amazonaws.com/f?X-Amz-Signature=abcdef0123", "abcdef0123"),
])
def test_credentials_in_free_text_are_masked(text: str, secret: str) -> None:
    for line in (orjson.dumps({"level": "info", "message": text}),
                 orjson.dumps({"level": "info", "req": {"line": text}}), text.encode()):
        for loop, doc, rec in shipped(line):
            assert not leaks(secret, doc, rec), (loop, line)


@pytest.mark.parametrize("text", ["a basic plan", "Basic auth is off", "basic=1", "sort=asc&page=2",
                                  "GET /x?token_type=bearer", "tokens = 3", "Basic dGVzdA=="])
def test_words_near_credentials_that_are_none_stay(text: str) -> None:
    for loop, doc, _ in shipped(orjson.dumps({"message": text})):
        assert orjson.loads(doc)["message"] == text, loop


@pytest.mark.parametrize("key", ["payment_method_id", "payment_method", "paymentMethod", "PAYMENT_METHOD_ID"])
def test_payment_method_keys_are_masked_by_default(key: str) -> None:
    for loop, doc, rec in shipped(orjson.dumps({"message": "m", key: "pm_1Nabc", "n": {key: "pm_1Nabc"}})):
        assert not leaks("pm_1Nabc", doc, rec), loop


# ---------------------------------------------------------------- a stage that fails


def test_a_line_a_stage_fails_on_is_shipped_without_its_content_and_the_batch_around_it_intact(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    lines = [b'{"message":"before","timestamp":"2024-01-15 10:30:00"}',
             b'{"message":"boom 4111111111111111","timestamp":"2024-01-15 10:30:01"}',
             b'{"message":"after","timestamp":"2024-01-15 10:30:02"}']
    for loop, pipeline in loops().items():
        real = pipeline.timestamps.parse

        def parse(value: str, real: Any = real) -> Any:
            if value.endswith(":01"):
                raise RuntimeError("a bug the fuzzers missed: 4111111111111111")
            return real(value)

        monkeypatch.setattr(pipeline.timestamps, "parse", parse)
        pipeline.timestamps.cache.clear()
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="ccf_agent.pipeline"):
            ev = run(pipeline, lines, start=100)
        assert len(ev) == 3, loop
        d = [orjson.loads(x) for x in ev.docs]
        assert [x["message"] for x in (d[0], d[2])] == ["before", "after"], loop
        assert [x["log"]["offset"] for x in d] == [100, 100 + len(lines[0]) + 1,
                                                   100 + len(lines[0]) + len(lines[1]) + 2], loop
        assert d[1]["tags"] == ["pipeline_error"] and CARD not in ev.docs[1].decode(), loop
        assert CARD not in repr(ev.records[1]), loop
        assert len(ev.ids) == len(set(ev.ids)) == 3, loop
        [record] = caplog.records
        text = record.getMessage()
        assert "app" in text and PATH in text and f"offset {100 + len(lines[0]) + 1}" in text, (loop, text)
        assert CARD not in text and "boom" not in text and record.exc_info is None, (loop, text)
        assert pipeline.counters["pipeline_errors"] == 1, loop


@pytest.mark.parametrize("value", ["[1,2]", '{"a":1}', "true"])
def test_a_timestamp_that_is_no_string_is_kept_aside_so_it_cannot_fix_the_index_mapping(value: str) -> None:
    line = b'{"message":"m","timestamp":' + value.encode() + b"}"
    for name, doc, _ in shipped(line):
        d = orjson.loads(doc)
        assert "timestamp" not in d and d["timestamp_original"] == orjson.loads(value), name
        assert d["tags"] == ["invalid_timestamp"], name


def test_a_timestamp_string_that_does_not_parse_stays_where_it_was() -> None:
    for name, doc, _ in shipped(b'{"message":"m","timestamp":"yesterday"}'):
        d = orjson.loads(doc)
        assert d["timestamp"] == "yesterday" and "timestamp_original" not in d, name


def test_a_record_with_its_own_log_original_keeps_it_when_its_log_is_set_aside() -> None:
    for name, doc, _ in shipped(b'{"message":"m","log":[1],"log_original":"mine"}'):
        d = orjson.loads(doc)
        assert d["log_original"] == "mine" and d["log_original_2"] == [1], name
        assert d["log"]["offset"] > 0, name
