"""Properties: no input bytes crash the pipeline, and no secret gets past redaction.

A secret is a card number (13-19 digits, first digit 2-6, Luhn-valid; plain or grouped by
spaces or dashes), a Stripe secret (sk_/rk_ live/test keys, whsec_ webhook secrets), a bearer
token, or the value of a sensitive field. It may sit in any string value or key, at any
depth, in a JSON line however encoded (compact, ASCII-escaped, pretty-printed over several
lines, \\uXXXX escapes inside the secret itself), or anywhere in a text line, with arbitrary
text around it: it never reaches the document shipped or the record routes and alerts see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ccf_agent.pipeline.process import ENRICHED_KEYS
from ccf_agent.pipeline.redact import DEFAULT_FIELDS
from tests.pipeline.helpers import make, run

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PIPELINES = {
    "json": make(),
    "json, everything on": make({"redact": {"patterns": {"emails": True},
                                            "custom": [{"name": "ssn", "regex": r"\d{3}-\d{2}-\d{4}"}]},
                                 "enrich": {"environment": "production", "host": True,
                                            "lookup": [{"field": "userId", "target": "user", "table": {"1": {"a": 1}}}]},
                                 "sample": [{"when": {"field": "x", "exists": True}, "keep": 1}]},
                                ecs=True),
    "text": make(format="text"),
    "nginx": make(format="text", parser="nginx_combined"),
    "syslog": make(format="text", parser="syslog"),
    "regex": make(format="text", parser={"pattern": r"^(?P<level>\w+) (?P<a__b>\d+)? ?(?P<message>.*)$",
                                         "types": {"a__b": "int"}}),
    "latin-1": make(encoding="latin-1"),
    "cp1252 text": make(format="text", encoding="cp1252"),
}


def is_blank(line: bytes) -> bool:
    return not line or line.isspace()


def check_docs(lines: list[bytes], docs: list[bytes], records: list[dict[str, Any]]) -> None:
    assert len(docs) == len(records) == sum(not is_blank(x) for x in lines)
    for doc in docs:
        d = orjson.loads(doc)
        assert isinstance(d, dict) and "@timestamp" in d and isinstance(d["log"]["offset"], int)


@SETTINGS
@given(st.lists(st.binary(max_size=400), max_size=12))
def test_no_input_bytes_crash_any_pipeline(lines: list[bytes]) -> None:
    for p in PIPELINES.values():
        ev = run(p, lines)
        check_docs(lines, ev.docs, ev.records)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)


# What redaction acts on: sensitive fields at any depth, and in any string a card number's digits,
# a Stripe key or a bearer token.
SENSITIVE = {f.lower() for f in DEFAULT_FIELDS}
SECRET_SHAPE = re.compile(r"[0-9](?:[ -]?[0-9]){12,}|k_(?:live|test)_|whsec_|bearer\s", re.IGNORECASE)


def texts(value: Any) -> Iterator[tuple[str, bool]]:
    """Every key (True) and string value (False) in a JSON value, at any depth."""
    if isinstance(value, str):
        yield value, False
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k, True
            yield from texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from texts(v)


# Keys the pipeline answers for itself: what it adds (a record's own `log` moves to `log_original`),
# and the tags it may add (an unreadable `timestamp`).
ADDED = {*ENRICHED_KEYS, "tags"}
OWN_KEYS = {*ADDED, *(f"{k}_original" for k in ADDED), "@timestamp_original"}


@SETTINGS
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=8))
def test_any_json_object_is_shipped_with_its_fields(obj: dict[str, Any]) -> None:
    assume(not OWN_KEYS & obj.keys())
    assume(not any((is_key and text.lower() in SENSITIVE) or SECRET_SHAPE.search(text) for text, is_key in texts(obj)))
    line = orjson.dumps(obj)
    ev = run(PIPELINES["json"], [line])
    check_docs([line], ev.docs, ev.records)
    doc = orjson.loads(ev.docs[0])
    # Every field with its value as written (as JSON, so true is not 1 and 1.0 is not 1), and
    # the same object for routes and alerts.
    assert same_json({k: v for k, v in doc.items() if k not in ADDED}, obj)
    assert same_json(ev.records[0], obj)
    assert doc.get("tags", ["invalid_timestamp"]) == ["invalid_timestamp"]


def same_json(a: Any, b: Any) -> bool:
    return bool(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS))


# ---------------------------------------------------------------- secrets


def luhn_complete(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body + "0")):
        n = int(c)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return body + str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str]:
    """(as written, its digits)."""
    length = draw(st.integers(13, 19))
    digits = luhn_complete(draw(st.sampled_from("23456")) + draw(st.text("0123456789", min_size=length - 2,
                                                                        max_size=length - 2)))
    style = draw(st.sampled_from(["plain", "groups", "mixed"]))
    if style == "plain":
        return digits, digits
    groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    seps = [draw(st.sampled_from(" -")) for _ in groups[1:]] if style == "mixed" else [draw(st.sampled_from(" -"))] * 8
    written = groups[0] + "".join(s + g for s, g in zip(seps, groups[1:], strict=False))
    return written, digits


KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
stripe_keys = st.builds(lambda p, k: p + k, st.sampled_from(["sk_live_", "sk_test_", "rk_live_", "rk_test_"]),
                        st.text(KEY_CHARS, min_size=8, max_size=40)) | \
    st.builds(lambda k: "whsec_" + k, st.text(KEY_CHARS + "+/=", min_size=8, max_size=40))
bearer_tokens = st.builds(lambda scheme, ws, tok: (f"{scheme}{ws}{tok}", tok),
                          st.sampled_from(["Bearer", "bearer", "BEARER", "BeArEr"]),
                          st.sampled_from([" ", "  ", "\t"]),
                          st.text(KEY_CHARS + "-._~+/", min_size=8, max_size=40))
# Between a secret and the text around it: not a character that could continue it.
delimiters = st.sampled_from(list(" ,;:!?()[]{}<>'\"|\t\n"))


@st.composite
def secrets(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(the secret as it appears in text, the strings that must never be seen in output)."""
    kind = draw(st.sampled_from(["card", "stripe", "bearer"]))
    if kind == "card":
        written, digits = draw(cards())
        return written, [digits]
    if kind == "stripe":
        key = draw(stripe_keys)
        return key, [key]
    text, token = draw(bearer_tokens)
    return text, [token]


@st.composite
def embedded(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """(text holding a secret, the secret as written in it, what must never be seen)."""
    secret, forbidden = draw(secrets())
    before, after = draw(st.text(max_size=30)), draw(st.text(max_size=30))
    for f in forbidden:
        assume(f not in before and f not in after)
    return before + draw(delimiters) + secret + draw(delimiters) + after, secret, forbidden


def strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings_of(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


def seen(value: Any, forbidden: list[str]) -> str | None:
    for s in strings_of(value):
        joined = re.sub(r"(?<=[0-9])[ -](?=[0-9])", "", s)  # grouped digits read as one number
        for f in forbidden:
            if f in s or f in joined:
                return f"{f!r} in {s!r}"
    return None


def place(draw: st.DrawFn, text: str) -> dict[str, Any]:
    where = draw(st.sampled_from(["value", "key", "nested value", "nested key", "list"]))
    filler = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    if where == "value":
        return {"level": "info", "message": "m", **filler, "note": text}
    if where == "key":
        return {"level": "info", text: 1, **filler}
    if where == "nested value":
        return {"message": "m", "req": {"body": {"x": text}, **filler}}
    if where == "nested key":
        return {"message": "m", "req": {text: filler}}
    return {"message": "m", "items": [1, {"a": [text]}, filler]}


def escape_some(data: bytes, secret: str, draw: st.DrawFn) -> bytes:
    """\\uXXXX-escape some characters of the secret inside the JSON text."""
    raw = secret.encode()
    if raw not in data or not secret:
        return data
    picks = draw(st.sets(st.integers(0, len(secret) - 1), min_size=1, max_size=4))
    esc = "".join(f"\\u{ord(c):04x}" if i in picks else c for i, c in enumerate(secret))
    return data.replace(raw, esc.encode(), 1)


@SETTINGS
@given(st.data())
def test_no_secret_in_a_json_line_reaches_a_document_or_record(data: st.DataObject) -> None:
    text, secret, forbidden = data.draw(embedded())
    obj = place(data.draw, text)
    encoding = data.draw(st.sampled_from(["orjson", "ascii", "pretty", "escaped"]))
    if encoding == "orjson":
        line = orjson.dumps(obj)
    elif encoding == "ascii":
        line = json.dumps(obj, separators=(",", ":")).encode()
    elif encoding == "pretty":
        line = json.dumps(obj, indent=1, ensure_ascii=False).encode()
    else:
        line = escape_some(orjson.dumps(obj), secret, data.draw)
    for name in ("json", "json, everything on"):
        ev = run(PIPELINES[name], [line])
        assert len(ev) == 1
        for what, value in (("document", orjson.loads(ev.docs[0])), ("record", ev.records[0])):
            leak = seen(value, forbidden)
            assert leak is None, f"{name} pipeline, {encoding} line {line!r}: {what} has {leak}"


@SETTINGS
@given(embedded(), st.binary(max_size=8), st.sampled_from(["json", "text", "nginx", "syslog", "regex", "latin-1",
                                                             "cp1252 text"]))
def test_no_secret_in_a_text_line_reaches_a_document_or_record(secret: tuple[str, str, list[str]], junk: bytes,
                                                               pipeline: str) -> None:
    text, _, forbidden = secret
    line = junk.replace(b"\n", b"") + text.replace("\n", " ").encode()
    if pipeline.startswith(("latin-1", "cp1252")):
        line = text.replace("\n", " ").encode("latin-1", "replace")
        assume(all(f.encode("latin-1", "replace").decode("latin-1") == f for f in forbidden))
    ev = run(PIPELINES[pipeline], [line])
    for value in (*(orjson.loads(d) for d in ev.docs), *ev.records):
        leak = seen(value, forbidden)
        assert leak is None, f"{pipeline} pipeline, line {line!r}: {leak}"


@SETTINGS
@given(st.sampled_from(DEFAULT_FIELDS), st.data(), st.text(KEY_CHARS, min_size=6, max_size=20),
       st.sampled_from(["top", "nested", "list"]))
def test_no_sensitive_field_value_reaches_a_document_or_record(name: str, data: st.DataObject, value: str,
                                                               where: str) -> None:
    cased = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in name)
    secret = f"v4lue{value}"
    filler = data.draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    assume(secret not in orjson.dumps(filler).decode())
    obj = {"top": {**filler, cased: secret},
           "nested": {"message": "m", "a": {"b": {cased: secret}}, **filler},
           "list": {"message": "m", "a": [filler, {cased: secret}]}}[where]
    line = orjson.dumps(obj)
    ev = run(PIPELINES["json"], [line])
    for value_ in (orjson.loads(ev.docs[0]), ev.records[0]):
        assert seen(value_, [secret]) is None, f"{cased!r} leaked from {line!r}"
