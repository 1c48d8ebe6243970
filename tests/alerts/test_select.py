"""The batch selector gives exactly the compiled conditions' answers, however it shares work."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from ccf_agent.alerts.select import Columns, Selector, step
from ccf_agent.conditions import compile_condition
from ccf_agent.pipeline.native import fast as _fast

VALUES = st.one_of(st.none(), st.text(alphabet="aAbBİı ", max_size=6), st.integers(-2, 2), st.booleans(),
                   st.floats(allow_nan=False, width=16), st.lists(st.integers(0, 2), max_size=2))
RECORDS = st.lists(st.dictionaries(st.sampled_from(["level", "message", "n"]), VALUES), max_size=12)

LEAVES = [
    {"field": "level", "equals": "a"}, {"field": "level", "equals": 1}, {"field": "level", "equals": True},
    {"field": "level", "not_equals": "a"}, {"field": "n", "in": ["a", 1, [1]]}, {"field": "n", "exists": True},
    {"field": "n", "exists": False}, {"field": "message", "icontains": "Ab"}, {"field": "message", "icontains": "i"},
    {"field": "message", "regex": "^a"}, {"field": "message", "regex": "^$"}, {"field": "n", "regex": "(?i)b"},
    {"field": "n", "gt": 0}, {"field": "message", "contains": "a"},
]
COMBINED = [
    {"any": [LEAVES[0], LEAVES[7]]}, {"any": [LEAVES[3], LEAVES[9], LEAVES[4]]}, {"not": LEAVES[1]},
    {"not": {"any": [LEAVES[5], LEAVES[10]]}}, {"any": [LEAVES[0], {"all": [LEAVES[8], LEAVES[11]]}]},
    {"any": [LEAVES[0], LEAVES[12]]},
]
CONDITIONS = [
    *LEAVES, *COMBINED,
    {"all": [LEAVES[7], LEAVES[0]]}, {"all": [LEAVES[7], LEAVES[0], LEAVES[12]]}, {"all": [LEAVES[7], LEAVES[4]]},
    {"all": [LEAVES[7], {"all": [LEAVES[0], LEAVES[5]]}]}, {"all": [LEAVES[8], COMBINED[0]]},
]


def expected(spec, records):
    test = compile_condition(spec).test
    out = []
    for r in records:
        try:
            out.append(bool(test(r)))
        except Exception:  # e.g. `in` against a list value: the engine counts it as no match
            out.append(False)
    return out


@settings(max_examples=300)
@given(st.sampled_from(LEAVES + COMBINED), RECORDS, st.data())
def test_a_step_answers_exactly_like_the_compiled_condition(spec, records, data):
    within = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(range(len(records))), unique=True).map(sorted))
                       if records else st.none())
    got = [bool(x) for x in step(spec)(Columns(records), within)]
    want = expected(spec, records)
    assert got == (want if within is None else [want[i] for i in within])


@settings(max_examples=300)
@given(st.lists(st.sampled_from(CONDITIONS), min_size=1, max_size=6), RECORDS, st.booleans())
def test_conditions_sharing_leading_conjuncts_each_get_their_own_matches(conditions, records, native):
    sel = Selector(native=native)  # the C programs, or the shared steps
    paths = [sel.add(compile_condition(c)) for c in conditions]
    got = sel.select(records)
    for spec, path in zip(conditions, paths, strict=True):
        want = [i for i, hit in enumerate(expected(spec, records)) if hit]
        assert got[path] == want, spec


def test_the_c_programs_run_when_the_extension_is_there():
    sel = Selector()
    sel.add(compile_condition({"field": "message", "icontains": "payout"}))
    assert (sel._programs is not None) == (_fast is not None)


def test_records_that_are_mappings_but_not_dicts_still_match():
    sel = Selector()
    path = sel.add(compile_condition({"field": "message", "icontains": "payout"}))
    records = [MappingProxyType({"message": "Payout failed"}), {"message": "HTTP request"}]
    assert sel.select(records)[path] == [0]


def test_a_shared_leading_conjunct_is_one_step():
    sel = Selector()
    payout = {"field": "message", "icontains": "payout"}
    sel.add(compile_condition({"all": [payout, {"field": "status", "equals": "failed"}]}))
    sel.add(compile_condition({"all": [payout, {"field": "status", "in": ["completed", "failed"]}]}))
    assert len(sel._steps) == 3
