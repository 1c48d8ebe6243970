"""Fuzz: generated hostile JSON through the C loop and the Python loop (issue 19).

Lines nest deep (past orjson's 1,024 levels too), write keys twice at any depth, escape
characters (inside secrets too), carry huge numbers, NULs, lone surrogates, invalid UTF-8,
keys that collide with the enrichment and timestamps of any type, and may be cut at
max_line_bytes or pretty-printed over lines (a multiline event). Through every loop (C, C with
a projection and the read-ahead thread, Python, ECS, lookups): processing never fails (no line
falls back to pipeline_error), every non-blank line yields one event at its offset, and no
generated secret (a card number, a Stripe key, a bearer or Basic token, a query-string
credential, a sensitive field's value) reaches a document, a record, or what conditions,
business metrics and an alert notice make of them.

    CCF_FUZZ_EXAMPLES=3000 python -m pytest tests/pipeline/test_fuzz.py    # longer than CI's
"""

from __future__ import annotations

import base64
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccf_agent.alerts.template import compile_template
from ccf_agent.batch import Batch
from ccf_agent.conditions import compile_condition, program
from ccf_agent.ops.business import BusinessMetrics
from ccf_agent.pipeline.native import fast as _fast
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.pipeline.redact import RedactConfig, Redactor
from ccf_agent.registry import Entry
from tests.pipeline.helpers import PATH, make, scanned
from tests.pipeline.test_properties import cards

SETTINGS = settings(max_examples=int(os.environ.get("CCF_FUZZ_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SENSITIVE = ["password", "Password", "authorization", "paymentMethodId", "payment_method_id", "CVV", "token",
             "apiKey", "client_secret", "stripeKeys"]
KEYS = ["message", "level", "timestamp", "@timestamp", "host", "log", "agent", "tags", "exception", "error",
        "service", "amount", "processingTime", "status", "method", "payoutId", "a", "b", "", "kéy", "x y"]
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Text around a secret: no digit (it would join a card's run), no '=' (it would make a name=value).
FILLER = st.text("abcdefghij KLMNOP.,;:!?()/-_'", max_size=12)
SCALARS = ["null", "true", "false", "0", "-0", "-0.0", "1e308", "1.5e-300", "18446744073709551616",
           "123456789012345678901234567890", "-9223372036854775809", "1e400", "01", "-", "NaN",
           '"2024-01-15 10:30:00"', '"2024-01-15T10:30:00.123Z"', '"not a time"', '"' + "9" * 40 + '"',
           '"\\u0000"', '"a\x00b"', '"\\ud800"', '"\\ud83d\\ude00"', '"Payout processed"', '"payout-job"',
           '"completed"', '"instant"', "[]", "{}", '"\\\\u0034"']
CONDITIONS = [{"field": f, op: v} for f in ("message", "amount", "status", "processingTime", "a.b", "timestamp",
                                           "@timestamp", "tags", "host.name", "")
              for op, v in (("equals", "x"), ("not_equals", 1), ("contains", "a"), ("icontains", "PAY"),
                            ("regex", "^[0-9]+$"), ("gt", 10), ("gte", 0.5), ("lt", -1), ("lte", 1e18),
                            ("in", ["a", 1, None, True]), ("exists", True)) if f]
TEMPLATE = compile_template("{{ message }} {{ amount }} {{ a.b }} {{ password }} {{ tags }} {{ log.offset }}")


@dataclass
class Planted:
    """What a line must never ship: whole secrets, and (when the line was cut) what may be left
    of one at the cut longer than its masking allows."""
    forbidden: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)


def encode_string(s: str, rng: random.Random, escape: float) -> str:
    """s as a JSON string, some of its letters and digits written as \\uXXXX escapes."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c < " ":
            out.append(f"\\u{ord(c):04x}")
        elif c in ALNUM and rng.random() < escape:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


@st.composite
def secret(draw: st.DrawFn, planted: Planted, control: bool = True) -> str:
    """Text holding one secret, recorded in `planted`. `control`: it may hold a control character
    (JSON escapes it: inside JSON held by a string, that is two levels of escaping, which the text
    of a line that cannot be parsed is not read through)."""
    kind = draw(st.sampled_from(["card", "stripe", "bearer", "basic", "query"]))
    if kind == "card":
        written, digits = draw(cards())
        planted.forbidden.append(digits)
        planted.prefixes.append(digits[:7])  # a cut card keeps at most six digits
        text = written
    elif kind == "stripe":
        text = draw(st.sampled_from(["sk_live_", "sk_test_", "rk_live_", "whsec_"])) + draw(
            st.text(ALNUM, min_size=10, max_size=30))
        planted.forbidden.append(text)
        planted.prefixes.append(text[:text.index("_", 3) + 2])  # the marker and one more character
    elif kind == "bearer":
        token = "tk" + draw(st.text(ALNUM + "-._~+/", min_size=8, max_size=28))  # (no word the agent adds)
        planted.forbidden.append(token)
        planted.prefixes.append(token[:8])
        text = draw(st.sampled_from(["Bearer ", "bearer  ", "BEARER\t"] if control else ["Bearer ", "bearer  "])) + token
    elif kind == "basic":
        user = draw(st.text(ALNUM, min_size=1, max_size=2))
        token = base64.b64encode(f"{user}:{draw(st.text(ALNUM, min_size=8, max_size=20))}".encode()).decode()
        planted.forbidden.append(token)
        planted.prefixes.append(token[:8])
        text = draw(st.sampled_from(["Authorization: Basic ", "basic "])) + token
    else:
        value = "qv" + draw(st.text(ALNUM, min_size=6, max_size=18))  # (never the name, nor a word the agent adds)
        planted.forbidden.append(value)
        planted.prefixes.append(value[:8])
        name = draw(st.sampled_from(["access_token", "api_key", "password", "client_secret", "paymentMethodId"]))
        text = f"/cb?{name}={value}&x=1"
    return draw(FILLER) + " " + text + " " + draw(FILLER)


@st.composite
def value(draw: st.DrawFn, planted: Planted, rng: random.Random, escape: float, depth: int,
          sensitive: bool = False, stringify: bool = True) -> str:
    """A JSON value as text. Under a sensitive key, what it holds is a marker never to ship.
    `stringify`: it may be a string holding JSON (JSON.stringify), once."""
    if sensitive and draw(st.booleans()):
        marker = "v4lue" + draw(st.text(ALNUM, min_size=8, max_size=16))
        planted.forbidden.append(marker)
        planted.prefixes.append(marker[:6])
        inner = encode_string(marker, rng, escape)
        return draw(st.sampled_from([inner, "[" + inner + "]", '{"live":' + inner + "}"]))
    kind = draw(st.sampled_from(["scalar", "scalar", "string", "secret", "object", "array"]
                                + (["json string"] if stringify else []) if depth < 4 else ["scalar", "secret", "string"]))
    if kind == "json string":
        return encode_string(draw(obj(planted, rng, 0.0, depth + 1, stringify=False)), rng, escape)
    if kind == "scalar":
        return draw(st.sampled_from(SCALARS))
    if kind == "string":  # (no ASCII letter or digit: it could pass for a secret's beginning)
        return encode_string(draw(st.text(st.characters(blacklist_characters=ALNUM, blacklist_categories=("Cs",)), max_size=16)), rng, escape)
    if kind == "secret":
        return encode_string(draw(secret(planted, stringify)), rng, escape)
    if kind == "array":
        return "[" + ",".join(draw(value(planted, rng, escape, depth + 1, stringify=stringify))
                              for _ in range(draw(st.integers(0, 3)))) + "]"
    return draw(obj(planted, rng, escape, depth + 1, stringify))


@st.composite
def obj(draw: st.DrawFn, planted: Planted, rng: random.Random, escape: float, depth: int,
        stringify: bool = True) -> str:
    """A JSON object as text, maybe writing some keys twice (the first copy holding a secret)."""
    members: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 5))):
        where = draw(st.sampled_from(["plain", "plain", "sensitive", "secret key"]))
        if where == "secret key":
            key = encode_string(draw(secret(planted, stringify)), rng, escape)
            members.append((key, draw(value(planted, rng, escape, depth, stringify=stringify))))
            continue
        name = draw(st.sampled_from(SENSITIVE if where == "sensitive" else KEYS))
        key = encode_string(name, rng, escape)
        members.append((key, draw(value(planted, rng, escape, depth, sensitive=where == "sensitive",
                                        stringify=stringify))))
        if draw(st.integers(0, 3)) == 0:  # the key again, later: orjson keeps this copy
            members.append((key, draw(st.sampled_from(["1", '"ok"', "{}", "[]", "null"]))))
    sep, colon = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :")]))
    return "{" + sep.join(k + colon + v for k, v in members) + "}"


@st.composite
def hostile_line(draw: st.DrawFn) -> tuple[bytes, Planted, bool]:
    """(line, what it must not ship, whether it was cut at max_line_bytes)."""
    planted = Planted()
    rng = random.Random(draw(st.integers(0, 2 ** 32)))
    escape = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    text = draw(obj(planted, rng, escape, 0))
    depth = draw(st.sampled_from([0, 0, 0, 3, 199, 200, 201, 260, 1030]))
    if depth:
        opener = draw(st.sampled_from(['{"w":', "[", '{"w":[']))
        closer = {"{": "}", "[": "]"}
        text = opener * depth + text + "".join(closer[c] for c in reversed(opener) if c in closer) * depth
    line = text.encode()
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        # A stray byte, where it splits no secret (a secret split by one is no longer that secret).
        at = draw(st.sampled_from([0, len(line), *(i + 1 for i, c in enumerate(line) if c in b",{[:")]))
        line = line[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9", b"\x00", b"\xef\xbb\xbf", b"}"])) + line[at:]
    cut = len(line) > 2 and draw(st.integers(0, 4)) == 0
    if cut:
        line = line[:draw(st.integers(1, len(line) - 1))]
    line = line.replace(b"\n", b" ")
    if not cut and draw(st.integers(0, 5)) == 0:  # pretty-printed over lines: a multiline input's event
        line = line.replace(b',"', b',\n  "')
    return line, planted, cut


PROJECT = ("message", "amount", "status", "processingTime", "payoutId", "service", "method", "a", "tags",
           "timestamp", "@timestamp", "host")


def loops() -> dict[str, Pipeline]:
    native, projected, python, ecs = make(), make(), make(), make(ecs=True)
    projected.project(PROJECT)
    python.native = False
    python.redactor._native = False
    lookups = make({"enrich": {"fields": {"team": "payments"}, "environment": "production",
                               "lookup": [{"field": "status", "target": "state", "table": {"completed": {"ok": 1}}},
                                          {"field": "a.b", "target": "ab", "table": {"1": {"one": True}}}]}})
    return {"C": native, "C projected, read ahead": projected, "Python": python, "ECS": ecs,
            "Python, lookups and static fields": lookups}


PIPELINES = loops()
ENTRY = Entry("s" * 16, "fp", "app", PATH, 1, 2)
GUARD = Redactor(RedactConfig())  # the agent's, for alert notices
JOINED = re.compile(r"(?<=[0-9])[ -](?=[0-9])")


def strings_of(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v, JOINED.sub("", v)]
    if isinstance(v, dict):
        return [s for k, x in v.items() for s in (*strings_of(k), *strings_of(x))]
    if isinstance(v, list):
        return [s for x in v for s in strings_of(x)]
    return []


def leak(what: Any, raw: bytes, planted: Planted, cut: bool) -> str | None:
    strings = strings_of(what)
    for secret_ in [*planted.forbidden, *(planted.prefixes if cut else ())]:
        if secret_.encode() in raw or any(secret_ in s for s in strings):
            return secret_
    return None


def events_of(pipeline: Pipeline, name: str, lines: list[bytes], cut: bool) -> Any:
    if cut:  # the reader hands a cut line over alone, tagged
        return pipeline.process(Batch(ENTRY, PATH, 0, len(lines[0]) + 1, lines, truncated=True))
    if any(b"\n" in x for x in lines):  # multiline events come as a list
        return pipeline.process(Batch(ENTRY, PATH, 0, sum(len(x) + 1 for x in lines), lines))
    data = b"".join(x + b"\n" for x in lines)
    batch = Batch(ENTRY, PATH, 0, len(data), data=data)
    if name.startswith("C projected") and pipeline.native:  # (not with CCF_AGENT_PURE_PYTHON=1)
        block, scan = scanned(pipeline, data)
        batch = Batch(ENTRY, PATH, 0, len(data), data=block)
        batch.scan = scan
    return pipeline.process(batch)


@SETTINGS
@given(st.lists(hostile_line(), min_size=1, max_size=4), st.booleans())
def test_no_hostile_line_fails_a_stage_loses_an_event_or_ships_a_secret(
        generated: list[tuple[bytes, Planted, bool]], blank: bool) -> None:
    cut = [g for g in generated if g[2]][:1]
    batch = cut if cut else [g for g in generated if not g[2]]
    lines = [g[0] for g in batch] + ([b"  "] if blank and not cut else [])
    offsets, at = [], 0
    for line in lines:
        if line.strip():
            offsets.append(at)
        at += len(line) + 1
    with patch.object(Pipeline, "_salvage", side_effect=AssertionError("a stage failed on a generated line")):
        for name, pipeline in PIPELINES.items():
            events = events_of(pipeline, name, lines, bool(cut))
            assert len(events) == len(offsets), name
            docs = [orjson.loads(d) for d in events.docs]
            assert [d["log"]["offset"] for d in docs] == offsets, name
            assert len(set(events.ids)) == len(offsets), name
            for i, (doc, raw, rec) in enumerate(zip(docs, events.docs, events.records, strict=True)):
                _, planted, was_cut = batch[i]
                found = leak(doc, raw, planted, was_cut) or leak(rec, repr(rec).encode(), planted, was_cut)
                assert found is None, f"{name}: {found!r} shipped from {batch[i][0][:300]!r}"
                notice = TEMPLATE.render({}, GUARD.redact_record(doc))
                assert leak(notice, notice.encode(), planted, was_cut) is None, name
            downstream(events.records, events.times)


def downstream(records: list[dict[str, Any]], times: list[float]) -> None:
    """What reads the records after the pipeline, in Python and in C: none may fail on them."""
    for spec in CONDITIONS:
        test = compile_condition(spec).test
        for rec in records:
            test(rec)
    if _fast is not None:
        _fast.select(records, tuple(program(spec) for spec in CONDITIONS))
    metrics = BusinessMetrics(sources=None)
    metrics.observe(records, times, PATH)
    for rec in records:
        if "payoutId" in rec:
            metrics._payout(rec)  # the Python loop, besides the C one observe took
