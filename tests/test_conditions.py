"""The condition language shared by routes, drop rules and alerts."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccf_agent._native import _fast
from ccf_agent.conditions import ConditionError, compile_condition, program
from ccf_agent.config import RouteConfig
from ccf_agent.router import Router

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


# ---------------------------------------------------------------- the C router's programs

values = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.sampled_from(
    ["Payout processed", "PAYOUT", "payout-job", "x", "", "İstanbul payout", "ǅ", "straße", "SS", "ß"])
fields = st.sampled_from(["message", "service", "amount", "error.code", "error", "missing.deep"])
leaves = st.one_of(
    st.builds(lambda f, v: {"field": f, "equals": v}, fields, values),
    st.builds(lambda f, v: {"field": f, "not_equals": v}, fields, values),
    st.builds(lambda f, v: {"field": f, "exists": v}, fields, st.booleans()),
    st.builds(lambda f, v: {"field": f, "icontains": v}, fields,
              st.sampled_from(["payout", "PAY", "", "i̇", "ss", "SS", "ß", "job", "straSSe"])),
    st.builds(lambda f, v: {"field": f, "in": v}, fields, st.lists(values, max_size=3)),
    st.builds(lambda f, v: {"field": f, "gt": v}, fields, st.integers(-2, 2)),
    st.builds(lambda f: {"field": f, "regex": "^P"}, fields),
)
conditions = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: {"not": c}, inner)), max_leaves=6)
records = st.dictionaries(fields.filter(lambda f: "." not in f), values | st.dictionaries(
    st.sampled_from(["code", "deep"]), values, max_size=2), max_size=4)


@settings(max_examples=400, deadline=None)
@given(st.lists(conditions, min_size=1, max_size=3), st.lists(records, max_size=8))
def test_a_route_program_decides_as_its_condition_does(specs: list[dict[str, Any]],
                                                       recs: list[dict[str, Any]]) -> None:
    tests = [compile_condition(s).test for s in specs]
    expected: list[list[int]] = [[] for _ in range(len(specs) + 1)]
    for i, rec in enumerate(recs):
        k = next((k for k, test in enumerate(tests) if test(rec)), len(specs))
        expected[k].append(i)
    assert _fast.assign(recs, tuple(program(s) for s in specs)) == expected
    # select: each condition on its own, not the first match
    assert _fast.select(recs, tuple(program(s) for s in specs)) == [
        [i for i, rec in enumerate(recs) if test(rec)] for test in tests]


def test_the_router_takes_the_c_loop_when_there_is_one() -> None:
    route = RouteConfig(name="payouts", outputs=("payouts",), when=compile_condition(PAYOUT))
    router = Router([route], "logs")
    assert router._programs is not None
    recs = [{"message": "Payout processed"}, {"message": "HTTP request"}, {"service": "payout-job"}]
    assert router.assign(recs) == [[0, 2], [1]]
    assert router.matched == [2, 1]


def test_a_condition_that_fails_on_a_record_does_not_hold_and_the_rest_are_routed(
        caplog: pytest.LogCaptureFixture) -> None:
    class Boom:  # no JSON value fails a comparison: a stand-in for one that would
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("4111111111111111")

        __hash__ = object.__hash__

    routes = [RouteConfig(name="odd", outputs=("odd",), when=compile_condition({"field": "kind", "equals": "x"})),
              RouteConfig(name="payouts", outputs=("payouts",), when=compile_condition(PAYOUT))]
    router = Router(routes, "logs")
    recs = [{"message": "Payout processed"}, {"kind": Boom(), "message": "payout"}, {"message": "HTTP request"}]
    with caplog.at_level(logging.ERROR, logger="ccf_agent.router"):
        assert router.assign(recs) == [[], [0, 1], [2]]
    [record] = caplog.records
    assert "route odd: RuntimeError" in record.getMessage() and "4111" not in record.getMessage()
    assert router.matched == [0, 2, 1]
