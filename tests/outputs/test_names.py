"""Names from the record (outputs.names): the renderer alone, no engine."""

from __future__ import annotations

import re

import pytest

from ccf_agent.outputs.names import (
    INDEX_RULES,
    Fallback,
    NamePattern,
    Namer,
    NameRules,
    PatternError,
    Refused,
    group,
)

STAMP = b"2024-01-15T10:42:00.000Z"


def render(pattern: str, record: dict[str, object], stamp: bytes = STAMP,
           rules: NameRules = INDEX_RULES) -> str | Fallback | Refused:
    p = NamePattern(pattern, rules)
    return p.render(p.values(record), stamp)


def test_a_field_and_the_events_day_fill_the_name_lower_cased() -> None:
    assert render("ccf-%{[service]}-%{+yyyy.MM.dd}", {"service": "Payout-Job"}) == "ccf-payout-job-2024.01.15"


def test_nested_fields_are_reached_by_brackets_or_dots() -> None:
    rec = {"error": {"code": "E42"}}
    assert render("ccf-%{[error][code]}", rec) == render("ccf-%{[error.code]}", rec) == "ccf-e42"


def test_numbers_and_booleans_are_written_as_text() -> None:
    assert render("ccf-%{[shard]}-%{[ok]}", {"shard": 3, "ok": True}) == "ccf-3-true"


def test_a_missing_field_takes_its_default() -> None:
    assert render("ccf-%{[service]:unknown}-%{+yyyy.MM}", {}) == "ccf-unknown-2024.01"


def test_a_missing_field_without_default_is_refused_with_the_reason() -> None:
    got = render("ccf-%{[service]}", {"message": "x"})
    assert isinstance(got, Refused)
    assert "[service] is missing" in got.reason and "no default" in got.reason


@pytest.mark.parametrize("value", ["../x", "_all", "*", "a,b", "x y", ".security", "..", "-x", "+x", "a/b",
                                   'a"b', "a|b", "a#b", "a:b", "a\\b", "a?b", "a<b", "a\nb"])
def test_a_value_that_would_change_the_names_shape_is_refused(value: str) -> None:
    got = render("ccf-%{[service]}-%{+yyyy.MM.dd}", {"service": value})
    assert isinstance(got, Refused), got
    assert repr(value[:20])[1:-1].split("\\")[0] in got.reason


@pytest.mark.parametrize("value", ["../x", "_all", "*", "a" * 300])
def test_a_refused_value_falls_back_to_its_default_and_says_why(value: str) -> None:
    got = render("ccf-%{[service]:unknown}-%{+yyyy.MM.dd}", {"service": value})
    assert isinstance(got, Fallback)
    assert got.name == "ccf-unknown-2024.01.15"
    assert "[service]" in got.reason


def test_a_whole_name_over_255_bytes_falls_back_to_every_default() -> None:
    rec = {"a": "x" * 200, "b": "y" * 200}
    got = render("ccf-%{[a]:na}-%{[b]:nb}", rec)
    assert got == Fallback("ccf-na-nb", got.reason if isinstance(got, Fallback) else "")
    assert isinstance(got, Fallback) and "longer than 255 bytes" in got.reason


def test_a_whole_name_over_255_bytes_without_defaults_is_refused() -> None:
    got = render("ccf-%{[a]}-%{[b]}", {"a": "x" * 200, "b": "y" * 200})
    assert isinstance(got, Refused) and "longer than 255 bytes" in got.reason


def test_no_value_can_leave_the_literal_prefix_of_the_pattern() -> None:
    prefix = re.compile(r"^ccf-[^._+\\/*?\"<>|,#: -][^\\/*?\"<>|,#: ]*-2024\.01\.15$")
    hostile = ["../../etc", "_all", "*", "", " ", "%{[x]}", "ccf-*", ",other", "a" * 254, "\u00e9T\u00c9", "a..b"]
    for value in hostile:
        got = render("ccf-%{[service]:unknown}-%{+yyyy.MM.dd}", {"service": value})
        name = got.name if isinstance(got, Fallback) else got
        assert isinstance(name, str) and prefix.match(name), (value, got)
        assert len(name.encode()) <= 255


@pytest.mark.parametrize("fmt, expected", [
    ("yyyy.MM.dd", "2024.01.15"), ("yy.MM", "24.01"), ("yyyy.MM.dd.HH", "2024.01.15.10"),
    ("xxxx.ww", "2024.03"),
])
def test_date_parts_come_from_the_events_timestamp(fmt: str, expected: str) -> None:
    assert render(f"ccf-%{{+{fmt}}}", {}) == f"ccf-{expected}"


def test_the_iso_week_year_differs_from_the_calendar_year_around_new_year() -> None:
    assert render("ccf-%{+xxxx.ww}", {}, b"2024-12-30T00:00:00.000Z") == "ccf-2025.01"


@pytest.mark.parametrize("pattern, says", [
    ("ccf-%{service}", "%{[field]}"),
    ("ccf-%{+YYYY.MM.dd}", "week-year"),
    ("ccf-%{+yyyy.Mm}", "'Mm'"),
    ("ccf-%{[service]", "never closed"),
    ("ccf-%{[]}", "written"),
])
def test_a_malformed_pattern_is_a_pattern_error_saying_what_to_write(pattern: str, says: str) -> None:
    with pytest.raises(PatternError, match=re.escape(says)):
        NamePattern(pattern, INDEX_RULES)


@pytest.mark.parametrize("pattern, says", [
    ("CCF-%{[service]}", "upper-case"),
    ("_ccf-%{[service]}", "starts with '_'"),
    ("ccf logs-%{[service]}", "' '"),
    ("ccf-%{[service]:_all}", "default of [service]"),
    ("ccf-%{[service]:a*}", "default of [service]"),
    ("x" * 250 + "-%{[a]:" + "y" * 10 + "}", "longer than 255"),
])
def test_check_refuses_literal_parts_and_defaults_the_engine_forbids(pattern: str, says: str) -> None:
    problem = NamePattern(pattern, INDEX_RULES).problem()
    assert problem is not None and says in problem


def test_check_accepts_the_issues_example() -> None:
    assert NamePattern("ccf-%{[service]}-%{+yyyy.MM.dd}", INDEX_RULES).problem() is None


def test_the_glob_covers_every_name_for_templates() -> None:
    p = NamePattern("ccf-%{[service]:x}-%{+yyyy.MM.dd}", INDEX_RULES)
    assert p.glob() == "ccf-*-*"
    assert p.wildcards(b"2024-01-15") == "ccf-*-2024.01.15"
    assert p.top_fields == {"service"}


def test_a_topic_uses_the_same_renderer_with_its_own_rules() -> None:
    # Kafka: [a-zA-Z0-9._-], at most 249 bytes, case kept.
    topic = NameRules("topic name", 249, False, "", re.compile(r"[a-zA-Z0-9._-]+"), lead_forbidden="")
    assert render("logs.%{[service]}", {"service": "Payouts"}, rules=topic) == "logs.Payouts"
    assert isinstance(render("logs.%{[service]}", {"service": "a/b"}, rules=topic), Refused)
    assert isinstance(render("logs.%{[service]}", {"service": "x" * 250}, rules=topic), Refused)


def test_the_namer_renders_once_per_distinct_value_and_day() -> None:
    made: list[str] = []
    namer = Namer(NamePattern("ccf-%{[service]}-%{+yyyy.MM.dd}", INDEX_RULES), lambda n: made.append(n) or n)
    for k in range(1000):
        namer.for_record({"service": "api" if k % 2 else "web"}, b"2024-01-15T%02d:00:00.000Z" % (k % 24))
    assert sorted(made) == ["ccf-api-2024.01.15", "ccf-web-2024.01.15"]


def test_the_namer_counts_fallbacks_and_keeps_the_latest_reason() -> None:
    namer = Namer(NamePattern("ccf-%{[service]:unknown}", INDEX_RULES), lambda n: n)
    assert namer.for_record({"service": "_all"}, STAMP) == "ccf-unknown"
    assert namer.fallbacks == 1 and namer.last_fallback is not None and "'_all'" in namer.last_fallback


def test_a_batch_is_grouped_by_name_in_order_with_the_refused_apart() -> None:
    namer = Namer(NamePattern("logs.%{[service]}", INDEX_RULES), lambda n: n)
    records = [{"service": "api"}, {"service": "web"}, {"service": "*"}, {"service": "api"}, {}]
    groups, refused = group(namer, records, [STAMP] * 5, range(5))
    assert groups == {"logs.api": [0, 3], "logs.web": [1]}
    assert [i for i, _ in refused] == [2, 4]
