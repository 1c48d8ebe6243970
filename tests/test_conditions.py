"""The condition language shared by routes, drop rules and alerts."""

from __future__ import annotations

import pytest

from ccf_agent.conditions import ConditionError, compile_condition

PAYOUT = {"any": [{"field": "message", "icontains": "payout"}, {"field": "service", "equals": "payout-job"}]}


@pytest.mark.parametrize(("record", "expected"), [
    ({"message": "Payout processed"}, True),
    ({"message": "payout failed"}, True),
    ({"message": "HTTP request", "service": "payout-job"}, True),
    ({"message": "HTTP request", "service": "click-clack-cashflow"}, False),
    ({"message": 42}, False),
    ({}, False),
])
def test_payout_route_condition(record: dict[str, object], expected: bool) -> None:
    assert compile_condition(PAYOUT)(record) is expected


def test_numeric_comparison_ignores_non_numbers() -> None:
    c = compile_condition({"all": [{"field": "status", "equals": "failed"}, {"field": "amount", "gt": 10000}]})
    assert c({"status": "failed", "amount": 10001})
    assert not c({"status": "failed", "amount": 10000})
    assert not c({"status": "failed", "amount": "lots"})
    assert not c({"status": "failed", "amount": True})


def test_dotted_fields_reach_into_objects() -> None:
    c = compile_condition({"field": "error.code", "regex": "^E[0-9]+$"})
    assert c({"error": {"code": "E42"}})
    assert not c({"error": "E42"})


def test_not_in_and_exists() -> None:
    c = compile_condition({"not": {"field": "level", "in": ["debug", "silly"]}})
    assert c({"level": "info"}) and not c({"level": "debug"})
    assert compile_condition({"field": "stack", "exists": True})({"stack": "x"})


@pytest.mark.parametrize(("spec", "path", "words"), [
    ({"field": "a", "approx": 1}, ("approx",), "unknown operator"),
    ({"field": "a"}, (), "exactly one operator"),
    ({"equals": 1}, (), "needs 'field'"),
    ({"field": "a", "regex": "("}, ("regex",), "invalid regular expression"),
    ({"any": []}, ("any",), "non-empty list"),
    ({"field": "a", "gt": "ten"}, ("gt",), "must be a number"),
])
def test_errors_name_the_key_path(spec: dict[str, object], path: tuple[str, ...], words: str) -> None:
    with pytest.raises(ConditionError) as e:
        compile_condition(spec)
    assert e.value.path == path and words in e.value.message


def test_string_values_cannot_inject_code() -> None:
    c = compile_condition({"field": "message", "equals": "') or True or ('"})
    assert not c({"message": "anything"})
