"""The engine: records in through observe/tick, notices out into the outbox (no delivery here)."""

from __future__ import annotations

import json
import logging

import orjson

from ccf_agent.alerts.engine import AlertEngine, format_status
from tests.alerts.helpers import FAILED, PAYOUT, Clock, alerts, make_engine, payout

HOOK = {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}}
AM = {"am": {"type": "alertmanager", "url": "http://127.0.0.1:9", "resend_interval": "1m"}}


def high_value(**kw):
    return {"name": "HighValuePayoutFailed", "kind": "match", "window": "5m", "severity": "error",
            "when": {"all": [PAYOUT, FAILED, {"field": "amount", "gt": 10000}]},
            "annotations": {"summary": "Payout of {{ amount }} cents failed",
                            "description": "{{ count }} so far; last {{ payoutId }} for {{ userId }}"}, **kw}


def failure_rate(**kw):
    return {"name": "HighPayoutFailureRate", "kind": "ratio", "when": {"all": [PAYOUT, FAILED]}, "of": PAYOUT,
            "window": "5m", "threshold": 0.1, "min_count": 10, "severity": "critical", **kw}


def engine(tmp_path, rules, notifiers=HOOK, clock=None, **kw):
    return make_engine(tmp_path, {"notifiers": notifiers, "rules": rules, "backlog_max_age": "5m"}, clock, **kw)


def observe(e, clock, records, at=None):
    e.observe(records, [clock.t if at is None else at] * len(records))


def statuses(e, notifier="hook"):
    return [(n["rule"], n["status"], n["repeat"]) for n in e.queued(notifier)]


def test_a_storm_of_matches_in_one_batch_sends_one_notice_with_the_count(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value()], clock=clock)
    observe(e, clock, [payout("failed", 20000)] * 40 + [payout()] * 100)
    [notice] = e.queued()
    assert notice["status"] == "firing" and notice["count"] == 40
    assert notice["annotations"]["description"].startswith("40 so far")


def test_matches_while_firing_add_to_the_count_without_new_notices(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value()], clock=clock)
    observe(e, clock, [payout("failed", 20000)])
    for _ in range(10):
        clock.t += 1
        observe(e, clock, [payout("failed", 20000)])
    assert statuses(e) == [("HighValuePayoutFailed", "firing", False)]
    clock.t += 300
    e.tick(clock.t)
    firing, resolved = e.queued()
    assert resolved["status"] == "resolved" and resolved["count"] == 11
    assert resolved["ends_at"] == clock.t


def test_group_wait_gathers_a_storm_across_batches_into_the_first_notice(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value(group_wait="2s")], clock=clock)
    observe(e, clock, [payout("failed", 20000)])
    assert e.queued() == []
    clock.t += 1
    observe(e, clock, [payout("failed", 20000)] * 5)
    clock.t += 1
    e.tick(clock.t)
    [notice] = e.queued()
    assert notice["count"] == 6


def test_annotations_render_record_fields_after_redaction(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value()], clock=clock, redact=lambda r: {**r, "userId": "[redacted]"})
    observe(e, clock, [payout("failed", 25000, payoutId="payout_9")])
    [notice] = e.queued()
    assert notice["annotations"] == {"summary": "Payout of 25000 cents failed",
                                     "description": "1 so far; last payout_9 for [redacted]"}
    assert notice["labels"] == {"alertname": "HighValuePayoutFailed", "severity": "error"}


def test_with_projected_records_annotations_render_the_matching_document(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value()], clock=clock, redact=lambda r: {**r, "userId": "[redacted]"})
    full = [payout("failed", 25000, payoutId="payout_7"), payout("failed", 30000, payoutId="payout_9")]
    projected = [{k: r[k] for k in ("message", "status", "amount")} for r in full]  # what conditions read
    e.observe(projected, [clock.t] * 2, [orjson.dumps({**r, "host": {"name": "h"}}) for r in full])
    [notice] = e.queued()
    assert notice["annotations"] == {"summary": "Payout of 30000 cents failed",
                                     "description": "2 so far; last payout_9 for [redacted]"}


def test_a_sample_document_that_is_not_an_object_renders_fields_empty(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value()], clock=clock)
    e.observe([payout("failed", 25000)], [clock.t], [b"not json"])
    [notice] = e.queued()
    assert notice["annotations"]["summary"] == "Payout of  cents failed"


def test_for_delays_the_notice_until_the_condition_has_held(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate(**{"for": "2m"})], clock=clock)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    assert e.status()["rules"][0]["state"] == "pending" and e.queued() == []
    clock.t += 119.9
    e.tick(clock.t)
    assert e.queued() == []
    clock.t += 0.1
    e.tick(clock.t)
    assert statuses(e) == [("HighPayoutFailureRate", "firing", False)]


def test_ticks_slide_the_window_so_an_alert_resolves_when_records_stop(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate()], clock=clock)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    clock.t += 300
    e.tick(clock.t)
    assert statuses(e) == [("HighPayoutFailureRate", "firing", False), ("HighPayoutFailureRate", "resolved", False)]


def test_backlog_records_update_state_but_do_not_page(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value(window="1m")], clock=clock)
    observe(e, clock, [payout("failed", 20000)], at=clock.t - 3600)   # an hour-old backlog
    assert e.status()["rules"][0]["state"] == "firing"
    assert e.status()["backlog"] is True
    observe(e, clock, [payout()], at=clock.t - 3500)                  # still catching up: resolves
    assert e.status()["rules"][0]["state"] == "inactive"
    assert e.queued() == []                                           # nothing paged, nothing resolved


def test_an_alert_firing_from_the_backlog_pages_once_the_stream_has_caught_up(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate()], clock=clock)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15, at=clock.t - 400)
    assert e.queued() == []
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15, at=clock.t - 1)
    [notice] = e.queued()
    assert notice["status"] == "firing" and notice["starts_at"] == clock.t - 400


def test_a_stalled_backlog_follows_the_wall_clock_once_idle(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [high_value(window="1m")], clock=clock)
    observe(e, clock, [payout("failed", 20000)], at=clock.t - 3600)
    clock.t += 5
    e.tick(clock.t)
    assert e.status()["rules"][0]["state"] == "firing"   # still catching up, maybe
    clock.t += 10
    e.tick(clock.t)                                      # no batch for 15 s: the backlog is done
    assert e.status()["rules"][0]["state"] == "inactive" and e.queued() == []


def test_repeat_interval_reminds_of_an_alert_that_stays_on(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate(repeat_interval="1h")], clock=clock)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    for _ in range(15):  # 3750 s of failures
        clock.t += 250
        observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    assert statuses(e) == [("HighPayoutFailureRate", "firing", False), ("HighPayoutFailureRate", "firing", True)]


def test_alertmanager_gets_refreshes_and_an_undelivered_refresh_is_superseded(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate()], notifiers=AM, clock=clock)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    for _ in range(5):
        clock.t += 61
        observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    assert statuses(e, "am") == [("HighPayoutFailureRate", "firing", False), ("HighPayoutFailureRate", "firing", True)]


def test_a_restart_neither_forgets_a_firing_alert_nor_pages_again(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate()], clock=clock)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    e.close()

    clock.t += 10
    e2 = engine(tmp_path, [failure_rate()], clock=clock)
    assert e2.status()["rules"][0]["state"] == "firing"
    assert statuses(e2) == [("HighPayoutFailureRate", "firing", False)]  # the undelivered one, kept
    e2._outbox.done("hook", e2.queued()[0]["id"])                       # as if delivered
    observe(e2, clock, [payout("failed")] * 5)
    assert e2.queued() == []                                             # no second page
    clock.t += 300
    e2.tick(clock.t)
    assert statuses(e2) == [("HighPayoutFailureRate", "resolved", False)]


def test_a_condition_that_raises_on_odd_data_does_not_break_observe(tmp_path):
    clock = Clock()
    rules = [{"name": "Odd", "kind": "count", "window": "1m", "threshold": 1,
              "when": {"field": "status", "in": ["failed"]}}]
    e = engine(tmp_path, rules, clock=clock)
    observe(e, clock, [{"status": ["a", "list"]}, {"status": "failed"}])
    assert e.status()["rules"][0]["value"] == 1


def test_a_broken_batch_is_logged_and_never_raises_into_shipping(tmp_path, caplog):
    clock = Clock()
    e = engine(tmp_path, [failure_rate()], clock=clock)
    e.observe([payout()], [None])  # a time the pipeline should never hand over
    assert e.status()["errors"] == 1 and "observe failed" in caplog.text
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    assert e.status()["rules"][0]["state"] == "firing"


def test_rules_sharing_leading_conditions_each_see_their_own_matches(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate(), high_value()], clock=clock)
    observe(e, clock, [payout("failed", 500)] * 3 + [payout("failed", 20000)] + [payout()] * 16)
    rate, high = e.status()["rules"]
    assert rate["value"] == 0.2 and high["value"] == 1


def test_status_lists_rules_notifiers_and_is_json(tmp_path):
    clock = Clock()
    e = engine(tmp_path, [failure_rate(), high_value()], clock=clock)
    observe(e, clock, [payout("failed", 20000)])
    st = json.loads(json.dumps(e.status()))
    assert [(r["name"], r["state"]) for r in st["rules"]] == [
        ("HighPayoutFailureRate", "inactive"), ("HighValuePayoutFailed", "firing")]
    assert st["notifiers"]["hook"]["outbox"] == 1 and st["outbox_depth"] == 1
    assert "HighValuePayoutFailed" in format_status(st)


def test_no_rules_means_observe_does_nothing(tmp_path):
    e = AlertEngine(alerts({}), tmp_path, log=logging.getLogger("t"))
    e.observe([payout("failed", 20000)], [1.0])
    e.tick(2.0)
    assert e.status()["rules"] == [] and e.queued() == []


def test_an_unreadable_state_file_is_set_aside_and_the_engine_starts_fresh(tmp_path):
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "state.json").write_text("{not json")
    e = engine(tmp_path, [failure_rate()])
    assert e.status()["rules"][0]["state"] == "inactive"
    assert (tmp_path / "alerts" / "state.json.corrupt").exists()



def test_each_firing_episode_is_kept_with_its_event_time_and_resolve_across_a_restart(tmp_path):
    from ccf_agent.alerts.engine import read_history

    clock = Clock()
    e = engine(tmp_path, [failure_rate()], clock=clock)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15, at=clock.t - 3600)  # from a backlog: no page
    observe(e, clock, [payout()] * 100, at=clock.t - 3000)
    observe(e, clock, [payout("failed")] * 5 + [payout()] * 15)
    e.close()
    clock.t += 300
    e2 = engine(tmp_path, [failure_rate()], clock=clock)
    e2.tick(clock.t)
    e2.close()
    assert [(h["rule"], h["at"], h["paged"], h["resolved_at"]) for h in read_history(tmp_path)] == [
        ("HighPayoutFailureRate", clock.t - 300 - 3600, False, clock.t - 300 - 3000),
        ("HighPayoutFailureRate", clock.t - 300, True, clock.t)]


def test_the_history_forgets_episodes_older_than_its_age(tmp_path):
    from ccf_agent.alerts.engine import HISTORY_AGE, read_history

    clock = Clock()
    e = engine(tmp_path, [high_value(window="1m")], clock=clock)
    observe(e, clock, [payout("failed", 20000)])
    clock.t += HISTORY_AGE + 120
    e.tick(clock.t)
    observe(e, clock, [payout("failed", 20000)])
    e.close()
    assert [h["at"] for h in read_history(tmp_path)] == [clock.t]
