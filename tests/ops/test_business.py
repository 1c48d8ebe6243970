"""The seed's business metrics, derived from the app's log records."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ccf_agent.ops import business
from ccf_agent.ops.business import DURATION_BUCKETS, BusinessMetrics
from ccf_agent.ops.metrics import fmt
from tests.ops.helpers import labels, samples

COMBINED = "/var/log/click-clack-cashflow/combined.log"


def processed(method: str | None = "standard", ms: Any = 1200, **extra: Any) -> dict[str, Any]:
    rec = {"level": "info", "message": "Payout processed", "payoutId": "payout_1", "status": "completed",
           "processingTime": ms, **extra}
    if method is not None:
        rec["method"] = method
    return rec


def failed(**extra: Any) -> dict[str, Any]:
    return {"level": "error", "message": "Payout failed", "payoutId": "payout_2", "error": "insufficient_funds",
            **extra}


def observe(m: BusinessMetrics, records: list[dict[str, Any]], path: str = COMBINED,
            times: list[float] | None = None) -> None:
    m.observe(records, times or [1.7e9 + i for i in range(len(records))], path)


def rendered(m: BusinessMetrics) -> str:
    out: list[str] = []
    m.render(out, fmt)
    return "\n".join(out) + "\n"


def test_each_payout_outcome_counts_once_under_its_status_and_method() -> None:
    m = BusinessMetrics()
    observe(m, [processed("standard"), processed("instant"), processed("standard"), failed(method="standard"),
                {"message": "HTTP request", "method": "GET"}])
    assert m.payouts == {("completed", "standard"): 2, ("failed", "standard"): 1,
                         ("completed", "instant"): 1, ("failed", "instant"): 0}


def test_a_payouts_other_lines_are_not_attempts() -> None:
    m = BusinessMetrics()
    observe(m, [{"message": "Payout requested", "payoutId": "p"}, {"message": "Payout processed"},
                {"message": "payout PROCESSED", "payoutId": "p"}])
    assert m.payouts == {("completed", "unknown"): 1, ("failed", "unknown"): 0}


def test_label_values_never_come_unbounded_from_the_logs() -> None:
    m = BusinessMetrics()
    observe(m, [processed(method="pm_card_4242"), processed(method=None, status="refunded_weirdly"),
                processed(method=["x"], status={"nested": 1}), processed(status="pending")])
    assert m.payouts == {("completed", "other"): 1, ("failed", "other"): 0, ("other", "other"): 1,
                         ("completed", "unknown"): 0, ("failed", "unknown"): 0, ("other", "unknown"): 1,
                         ("pending", "standard"): 1, ("completed", "standard"): 0, ("failed", "standard"): 0}


def test_first_failure_of_a_method_is_an_increase_from_a_zero_already_exposed() -> None:
    m = BusinessMetrics()
    observe(m, [processed("standard")])
    assert samples(rendered(m), "ccf_payouts_total")[labels(status="failed", method="standard")] == 0


def test_processing_time_in_ms_fills_the_seed_buckets_in_seconds() -> None:
    m = BusinessMetrics()
    observe(m, [processed(ms=50), processed(ms=100), processed(ms=2500), processed(ms=45000),
                processed(ms="fast"), processed(ms=True), processed(ms=-1), failed(processingTime=700)])
    buckets = samples(rendered(m), "ccf_payout_duration_seconds_bucket")
    assert [buckets[labels(le=f"{b:g}")] for b in DURATION_BUCKETS] == [2, 2, 3, 3, 4, 4, 4]
    assert buckets[labels(le="+Inf")] == 5
    assert samples(rendered(m), "ccf_payout_duration_seconds_count")[labels()] == 5
    assert samples(rendered(m), "ccf_payout_duration_seconds_sum")[labels()] == pytest.approx(48.35)


@pytest.mark.parametrize("ms", [0, 0.0, -0.0])
def test_a_processing_time_of_zero_counts_in_the_first_bucket(ms: float) -> None:
    m = BusinessMetrics()
    observe(m, [processed(ms=ms), processed(ms=float("nan")), processed(ms=float("inf"))])
    assert (m.duration_count, m.duration_buckets[0], m.payouts[("completed", "standard")]) == (1, 1, 3)


def test_the_payout_job_timestamp_is_the_newest_event_time_of_its_records() -> None:
    m = BusinessMetrics()
    job = {"message": "Payout job run finished", "service": "payout-job"}
    observe(m, [job, {"message": "x"}, job], times=[1_705_312_800.0, 1_705_312_900.0, 1_705_312_860.5])
    observe(m, [job], times=[1_705_000_000.0])  # an older generation read late: never goes back
    assert samples(rendered(m), "ccf_last_payout_job_timestamp")[labels()] == 1_705_312_860.5


def test_the_job_timestamp_is_absent_rather_than_zero_until_known() -> None:
    text = rendered(BusinessMetrics())
    assert "# TYPE ccf_last_payout_job_timestamp gauge" in text
    assert samples(text, "ccf_last_payout_job_timestamp") == {}


@pytest.mark.parametrize("path", ["/logs/combined.log", "/logs/combined.log.1", "/logs/combined.log-20240115",
                                  "/logs/combined1.log"])
def test_combined_log_and_its_rotated_generations_count(path: str) -> None:
    m = BusinessMetrics()
    observe(m, [failed()], path=path)
    assert m.payouts[("failed", "unknown")] == 1


@pytest.mark.parametrize("path", ["/logs/error.log", "/logs/payouts.log", "/logs/payouts.log.1"])
def test_the_files_that_copy_combined_log_records_do_not_count(path: str) -> None:
    m = BusinessMetrics()
    job = {"message": "Payout job run finished", "service": "payout-job"}
    observe(m, [failed(), processed(), job], path=path)
    assert m.payouts == {} and m.last_job is None


def test_without_source_patterns_every_file_counts() -> None:
    m = BusinessMetrics(sources=None)
    observe(m, [failed()], path="/srv/app/payouts.log")
    assert m.payouts[("failed", "unknown")] == 1


def test_the_job_timestamp_survives_a_restart_through_the_state_dir(tmp_path: Path) -> None:
    before = BusinessMetrics()
    observe(before, [{"service": "payout-job", "message": "done"}], times=[1_705_312_800.25])
    assert before.save_if_dirty(tmp_path)
    after = BusinessMetrics()
    after.load(tmp_path)
    assert after.last_job == 1_705_312_800.25


def test_a_corrupt_state_file_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / business.STATE_FILE).write_text("{not json")
    m = BusinessMetrics()
    with caplog.at_level(logging.WARNING):
        m.load(tmp_path)
    assert m.last_job is None and "ignoring" in caplog.text


def test_the_module_observe_never_raises_into_shipping(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = BusinessMetrics()
    monkeypatch.setattr(broken, "observe", lambda *a: 1 / 0)
    monkeypatch.setattr(business, "METRICS", broken)
    business.observe([processed()], [1.0], COMBINED)  # logged, not raised


values = st.none() | st.booleans() | st.integers(-5, 40_000) | st.sampled_from([100, 500, 30_000, 100.0, 0.0, -0.0, -(2 ** 70), 2 ** 70]) | st.floats(allow_nan=True) | st.sampled_from(
    ["Payout processed", "payout FAILED ", "Payout requested", "payout-job", "completed", "paid", "instant",
     "standard", "x"])
payout_records = st.dictionaries(
    st.sampled_from(["payoutId", "message", "status", "method", "processingTime", "service", "level"]),
    values | st.lists(values, max_size=2), max_size=7)


# Payout records as the app writes them and as it might: the fields `_payouts` reads, each from
# its likely values (bucket bounds exactly included) or any, and sometimes absent.
def payout_field(likely: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return likely | likely | likely | values | st.lists(values, max_size=1)


payouts_only = st.fixed_dictionaries({"payoutId": st.just("payout_1")}, optional={
    "message": payout_field(st.sampled_from(["Payout processed", "Payout failed", " PAYOUT failed", "Payout requested"])),
    "status": payout_field(st.sampled_from(["completed", "paid", "pending", "weird"])),
    "method": payout_field(st.sampled_from(["standard", "instant", "sepa"])),
    "processingTime": payout_field(st.sampled_from([0, -0.0, -1, 99, 100, 101, 500, 2000.0, 30_000, 30_001, 10 ** 6, math.inf, math.nan]))})


@settings(max_examples=300, deadline=None)
@given(st.lists(payouts_only, max_size=30))
@example([processed(ms=ms) for ms in (100, 500, 30_000, 5, math.nan, 2000.0)])  # each bound; NaN where min/max miss it
@example([processed(ms=-1), processed(ms=math.inf), processed(ms=50), {"payoutId": "p", "message": "Payout failed"},
          {"payoutId": "p", "message": "Payout requested", "processingTime": 7}])
def test_a_batch_of_payouts_is_counted_as_its_records_are_one_at_a_time(records: list[dict[str, Any]]) -> None:
    batch, one_by_one = BusinessMetrics(), BusinessMetrics()
    batch.observe(records, [1.7e9] * len(records), COMBINED)
    for rec in records:
        if "payoutId" in rec:
            one_by_one._payout(rec)
    assert list(batch.payouts.items()) == list(one_by_one.payouts.items())  # in the same order, too
    assert (batch.duration_buckets, batch.duration_count, batch.duration_sum) == (
        one_by_one.duration_buckets, one_by_one.duration_count, one_by_one.duration_sum)


@settings(max_examples=300, deadline=None)
@given(st.lists(payout_records, max_size=30))
def test_payouts_counted_in_c_are_those_the_python_loop_counts(records: list[dict[str, Any]]) -> None:
    fast, python = BusinessMetrics(), BusinessMetrics()
    times = [1.7e9 + i for i in range(len(records))]
    fast.observe(records, times, COMBINED)
    with patch.object(business, "_fast", None):
        python.observe(records, times, COMBINED)
    assert rendered(fast) == rendered(python)
    assert list(fast.payouts.items()) == list(python.payouts.items())  # in the same order, too
    assert (fast.duration_buckets, fast.duration_count, fast.duration_sum) == (
        python.duration_buckets, python.duration_count, python.duration_sum)
    assert fast.last_job == python.last_job
