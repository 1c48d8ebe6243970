"""The report's rules and its window, without I/O."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo

from ccf_agent.report.figures import (
    Figures,
    Tally,
    alerts_in,
    day_window,
    is_auth_failure,
    is_rate_limited,
    nearest_rank,
    outcome,
    since_window,
    top,
    yesterday,
)

BERLIN = "Europe/Berlin"


def at(text: str, tz: str = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_a_day_is_midnight_to_midnight_of_the_time_zone_with_23_24_or_25_hours():
    assert [len(day_window(date(2024, m, d), BERLIN).hours()) for m, d in ((3, 31), (6, 1), (10, 27))] == [23, 24, 25]
    w = day_window(date(2024, 6, 1), BERLIN)
    assert (w.start, w.end) == (at("2024-06-01 00:00:00"), at("2024-06-02 00:00:00"))


def test_the_repeated_hour_of_a_dst_day_is_labelled_with_its_offset():
    w = day_window(date(2024, 10, 27), BERLIN)
    labels = [w.hour_label(h) for h in w.hours()]
    assert labels[2:4] == ["02:00 +0200", "02:00 +0100"]
    assert day_window(date(2024, 6, 1), BERLIN).hour_label(at("2024-06-01 13:00:00")) == "13:00"


def test_an_hour_key_is_the_local_hour_start_also_in_half_hour_zones():
    w = day_window(date(2024, 6, 1), "Asia/Kolkata")
    assert w.hour_of(at("2024-06-01 13:59:59", "Asia/Kolkata")) == at("2024-06-01 13:00:00", "Asia/Kolkata")


def test_since_covers_the_last_stretch_with_the_first_hour_partial():
    now = at("2024-06-01 10:30:00")
    w = since_window(now, 86400, BERLIN)
    assert (w.start, w.end, w.day) == (now - 86400, now, None)
    assert w.hours()[0] == at("2024-05-31 10:00:00") and len(w.hours()) == 25
    assert w.label == "2024-05-31 10:30 to 2024-06-01 10:30"


def test_yesterday_is_the_time_zones_yesterday():
    assert yesterday(at("2024-06-01 00:30:00"), BERLIN) == date(2024, 5, 31)
    assert yesterday(at("2024-06-01 00:30:00"), "UTC") == date(2024, 5, 30)  # 22:30 UTC on the 31st


def test_payout_outcomes_need_a_payout_id_and_the_apps_message_in_any_case():
    assert outcome({"payoutId": "p", "message": "Payout processed"}) == "processed"
    assert outcome({"payoutId": "p", "message": "PAYOUT FAILED"}) == "failed"
    assert outcome({"payoutId": None, "message": "Payout failed"}) is None
    assert outcome({"message": "Payout failed"}) is None
    assert outcome({"payoutId": "p", "message": "Payout requested"}) is None
    # The guide's grep counted this line as failed: its errorMessage says "failed", the payout did not.
    assert outcome({"payoutId": "p", "message": "Payout processed", "errorMessage": "retry failed"}) == "processed"


def test_auth_failures_and_rate_limits_are_the_alert_rules_tests():
    assert is_auth_failure("warn", "Login rejected: invalid password")
    assert is_auth_failure("error", "AUTHENTICATION FAILED")
    assert not is_auth_failure("info", "Authentication failed")
    assert not is_auth_failure("warn", "Authentication succeeded")
    assert is_rate_limited("warning", "API rate-limit hit") and is_rate_limited("warn", "Ratelimit")
    assert not is_rate_limited("warn", "rate of payouts limited")


def test_percentiles_are_nearest_rank_over_counted_values():
    pairs = sorted(Counter([100, 200, 200, 300, 400, 500, 600, 700, 800, 900]).items())
    assert (nearest_rank(pairs, 50), nearest_rank(pairs, 95)) == (400, 900)
    assert nearest_rank([], 50) is None and nearest_rank([(7.0, 1)], 95) == 7.0


def test_top_orders_by_count_then_text_and_keeps_n():
    assert top(Counter({"b": 2, "a": 2, "c": 5, "d": 1}), 3) == [("c", 5), ("a", 2), ("b", 2)]


def test_a_tally_counts_what_the_rules_say_and_lists_the_largest_failures_first():
    w = day_window(date(2024, 6, 1), BERLIN)
    t0 = at("2024-06-01 09:15:00")
    tally = Tally(w, top_n=5, high_value_cents=10000, list_max=2)
    for rec in ({"level": "info", "message": "Payout processed", "payoutId": "a", "processingTime": 2340.7},
                {"level": "error", "message": "Payout failed", "payoutId": "b", "userId": "u", "amount": 10000},
                {"level": "error", "message": "Payout failed", "payoutId": "c", "userId": "u", "amount": 20000,
                 "error": "insufficient_funds"},
                {"level": "error", "message": "Payout failed", "payoutId": "d", "userId": "u", "amount": 30000},
                {"level": "error", "message": "Payout failed", "payoutId": "e", "userId": "u", "amount": 10001},
                {"level": "warn", "message": "Authentication failed"}):
        tally.add(rec, t0)
    f = tally.figures("test")
    assert (f.errors, f.processed, f.failed, f.failure_rate) == (4, 1, 4, 0.8)
    assert f.top_errors == [("Payout failed", 4)]
    assert f.failure_reasons == [("(none)", 3), ("insufficient_funds", 1)]
    assert f.high_value_count == 3 and [h.payoutId for h in f.high_value] == ["d", "c"]
    assert (f.processing_ms.count, f.processing_ms.p50) == (1, 2340.0)
    nine = w.hours().index(at("2024-06-01 09:00:00"))
    assert f.hourly["failed"][nine] == 4 and f.hourly["auth_failures"][nine] == 1 and sum(f.hourly["processed"]) == 1


def test_figures_survive_json_and_back():
    tally = Tally(day_window(date(2024, 6, 1), BERLIN))
    tally.add({"level": "error", "message": "Payout failed", "payoutId": "x", "amount": 99999},
              at("2024-06-01 12:00:00"))
    f = tally.figures("src")
    assert Figures.from_json(f.to_json()) == f


def test_alerts_in_the_window_are_those_that_began_firing_in_it():
    w = day_window(date(2024, 6, 1), BERLIN)
    history = [{"rule": "A", "severity": "critical", "at": w.start - 1, "paged": True},
               {"rule": "B", "severity": "warning", "at": w.start, "paged": False, "resolved_at": w.start + 60},
               {"rule": "C", "severity": "error", "at": w.end}]
    assert [a["rule"] for a in alerts_in(history, w)] == ["B"]
