"""Each rule kind on synthetic event times: the state machines alone, clock passed in."""

from __future__ import annotations

from tests.alerts.helpers import FAILED, PAYOUT, rule

T0 = 1_000_000.0


def ratio(**kw):
    spec = {"kind": "ratio", "when": FAILED, "of": PAYOUT, "window": "5m", "threshold": 0.1, "min_count": 10}
    return rule(**{**spec, **kw})


def feed(r, now, when=(), of=None):
    r.feed(list(when), list(of) if of is not None else None, now)
    return r.evaluate(now)


# ---------------------------------------------------------------- ratio


def test_ratio_fires_when_failures_over_payouts_exceed_the_threshold():
    r = ratio()
    assert feed(r, T0, when=[T0] * 3, of=[T0] * 20) == "firing"
    assert r.state == "firing" and r.value == 0.15


def test_ratio_exactly_at_the_threshold_does_not_fire():
    r = ratio()
    assert feed(r, T0, when=[T0] * 2, of=[T0] * 20) is None
    assert r.state == "inactive"


def test_ratio_needs_the_minimum_count_so_one_failure_of_one_is_not_100_percent():
    r = ratio()
    assert feed(r, T0, when=[T0], of=[T0]) is None
    assert r.state == "inactive" and r.value == 1.0
    assert feed(r, T0 + 1, when=[T0 + 1], of=[T0 + 1] * 9) == "firing"  # 2 of 10 now


def test_ratio_window_includes_a_record_until_the_window_has_passed_over_it():
    r = ratio(min_count=1)
    feed(r, T0, when=[T0], of=[T0])
    assert r.evaluate(T0 + 299.99) is None and r.state == "firing"
    assert r.evaluate(T0 + 300.0) == "resolved"
    assert r.value == 0.0


def test_ratio_counts_only_records_inside_the_window():
    r = ratio(min_count=1)
    feed(r, T0, of=[T0] * 10)                               # 10 good payouts
    feed(r, T0 + 301, when=[T0 + 301], of=[T0 + 301] * 5)  # the 10 have slid out
    assert r.value == 0.2 and r.state == "firing"


def test_ratio_resolves_when_the_rate_falls_back():
    r = ratio()
    feed(r, T0, when=[T0] * 5, of=[T0] * 20)
    assert feed(r, T0 + 1, of=[T0 + 1] * 40) == "resolved"
    assert r.state == "inactive"


def test_for_holds_the_alert_pending_until_the_condition_has_held_long_enough():
    r = ratio(for_="2m")
    assert feed(r, T0, when=[T0] * 5, of=[T0] * 20) is None
    assert r.state == "pending" and r.active_at == T0
    assert r.evaluate(T0 + 119) is None and r.state == "pending"
    assert r.evaluate(T0 + 120) == "firing"


def test_for_broken_before_it_is_over_goes_back_to_inactive_without_a_resolve():
    r = ratio(for_="2m")
    feed(r, T0, when=[T0] * 5, of=[T0] * 20)
    assert feed(r, T0 + 60, of=[T0 + 60] * 100) is None
    assert r.state == "inactive"
    # holding again starts `for:` from scratch
    feed(r, T0 + 61, when=[T0 + 61] * 50, of=[T0 + 61] * 50)
    assert r.state == "pending" and r.active_at == T0 + 61
    assert r.evaluate(T0 + 61 + 119) is None


# ---------------------------------------------------------------- count


def count(**kw):
    return rule(**{"kind": "count", "when": FAILED, "window": "1m", "threshold": 3, **kw})


def test_count_fires_at_the_threshold_not_below():
    r = count()
    assert feed(r, T0, when=[T0, T0]) is None
    assert feed(r, T0 + 1, when=[T0 + 1]) == "firing"
    assert r.value == 3


def test_count_late_records_inside_the_window_still_count():
    r = count()
    feed(r, T0 + 30, when=[T0 + 30])
    assert feed(r, T0 + 30, when=[T0 + 5, T0 + 1]) == "firing"  # out of order, still in the last minute


def test_count_records_older_than_the_window_are_ignored():
    r = count()
    feed(r, T0 + 100, when=[T0 + 100, T0 + 100])
    assert feed(r, T0 + 100, when=[T0 + 40, T0 + 10]) is None
    assert r.value == 2


def test_count_future_stamped_records_count_as_now_and_then_slide_out():
    r = count(threshold=1)
    assert feed(r, T0, when=[T0 + 3600]) == "firing"
    assert r.evaluate(T0 + 60) == "resolved"


def test_count_episode_counts_every_match_since_the_alert_began():
    r = count(window="10s")
    feed(r, T0, when=[T0] * 3)
    feed(r, T0 + 20, when=[T0 + 20] * 4)
    assert r.state == "firing" and r.count == 7 and r.value == 4


# ---------------------------------------------------------------- absence


def absence(**kw):
    return rule(**{"kind": "absence", "when": {"field": "service", "equals": "payout-job"}, "window": "1h", **kw})


def test_absence_fires_when_nothing_matched_for_the_window_since_watching_began():
    r = absence()
    assert r.evaluate(T0) is None
    assert r.evaluate(T0 + 3599) is None
    assert r.evaluate(T0 + 3600) == "firing"
    assert r.value == 3600


def test_absence_a_matching_record_resets_and_resolves_it():
    r = absence()
    r.evaluate(T0)
    r.evaluate(T0 + 4000)
    assert feed(r, T0 + 4001, when=[T0 + 4000]) == "resolved"
    assert r.evaluate(T0 + 4000 + 3599) is None


def test_absence_for_counts_from_when_the_silence_crossed_the_window():
    r = absence(for_="5m")
    feed(r, T0, when=[T0])
    assert r.evaluate(T0 + 3600 + 299) is None and r.state == "pending"
    assert r.active_at == T0 + 3600
    assert r.evaluate(T0 + 3600 + 300) == "firing"


def test_absence_an_old_out_of_order_record_does_not_reset_it():
    r = absence()
    feed(r, T0 + 100, when=[T0 + 100])
    feed(r, T0 + 200, when=[T0 + 50])
    assert r.evaluate(T0 + 3700) == "firing"


def test_absence_a_record_stamped_in_the_future_cannot_silence_it():
    r = absence()
    feed(r, T0, when=[T0 + 86_400 * 365])
    assert r.evaluate(T0 + 3600) == "firing"


# ---------------------------------------------------------------- match


def match(**kw):
    return rule(**{"kind": "match", "when": {"field": "amount", "gt": 10000}, **kw})


def test_match_fires_on_one_matching_record():
    r = match()
    assert feed(r, T0, when=[T0]) == "firing"


def test_match_stays_firing_through_a_storm_and_counts_it():
    r = match(window="5m")
    feed(r, T0, when=[T0])
    for i in range(1, 50):
        assert feed(r, T0 + i, when=[T0 + i]) is None
    assert r.state == "firing" and r.count == 50


def test_match_resolves_a_window_after_the_last_match():
    r = match(window="5m")
    feed(r, T0, when=[T0])
    feed(r, T0 + 100, when=[T0 + 100])
    assert r.evaluate(T0 + 399) is None
    assert r.evaluate(T0 + 400) == "resolved"


# ---------------------------------------------------------------- persistence


def test_rule_state_round_trips_through_json():
    r = ratio(for_="2m")
    feed(r, T0, when=[T0] * 5, of=[T0] * 20)
    r2 = ratio(for_="2m")
    r2.load(r.to_json())
    assert (r2.state, r2.active_at, r2.value) == ("pending", T0, 0.25)
    assert r2.evaluate(T0 + 120) == "firing"
