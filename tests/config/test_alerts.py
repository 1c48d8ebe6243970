"""The `alerts:` section: the example parses, and every mistake is reported at its key."""

from __future__ import annotations

import pytest

from tests.alerts.helpers import FAILED, ConfigProblem, alerts, example_config

RATE = {"name": "R", "kind": "ratio", "when": FAILED, "of": {"field": "message", "icontains": "payout"},
        "window": "5m", "threshold": 0.1}


def problem(raw):
    with pytest.raises(ConfigProblem) as e:
        alerts(raw)
    return e.value.path, e.value.message


def test_the_example_carries_the_seeds_rules():
    cfg = example_config()
    by_name = {r.name: r for r in cfg.rules}
    assert set(by_name) == {"HighPayoutFailureRate", "PayoutJobNotRunning", "HighValuePayoutFailed",
                            "FailedAuthenticationAttempts", "RateLimitViolations", "WebhookFailures"}
    rate = by_name["HighPayoutFailureRate"]
    assert (rate.kind, rate.window, rate.threshold, rate.for_, rate.severity) == ("ratio", 300, 0.1, 120, "critical")
    job = by_name["PayoutJobNotRunning"]
    assert (job.kind, job.window, job.severity) == ("absence", 3600, "critical")
    assert by_name["HighValuePayoutFailed"].when.test({"message": "Payout failed", "status": "failed", "amount": 10001})
    assert not by_name["HighValuePayoutFailed"].when.test({"message": "Payout failed", "status": "failed", "amount": 10000})


def test_the_example_notifiers_are_off_until_their_url_is_set():
    assert example_config({"SLACK_WEBHOOK_URL": "", "ALERTMANAGER_URL": ""}).notifiers == {}
    cfg = example_config({"SLACK_WEBHOOK_URL": "https://hooks.example/x", "ALERTMANAGER_URL": "http://am:9093"})
    assert {n: c.type for n, c in cfg.notifiers.items()} == {"slack": "slack", "alertmanager": "alertmanager"}
    assert cfg.notifiers["alertmanager"].resend_interval == 60
    assert all(r.notifiers == ("slack", "alertmanager") for r in cfg.rules)


def test_durations_accept_the_usual_units():
    cfg = alerts({"backlog_max_age": "250ms", "rules": [{**RATE, "window": "1h", "for": "2m"}]})
    assert cfg.backlog_max_age == 0.25 and cfg.rules[0].window == 3600 and cfg.rules[0].for_ == 120


def test_no_section_means_no_rules():
    assert alerts({}).rules == ()
    from ccf_agent.config import parse_alerts
    assert parse_alerts(None, lambda p, m: ValueError(m)).rules == ()


@pytest.mark.parametrize("raw, path, words", [
    ({"rules": [{**RATE, "kind": "rate"}]}, ("rules", 0, "kind"), "unknown rule kind 'rate'"),
    ({"rules": [{**RATE, "when": {"field": "status", "equal": "x"}}]}, ("rules", 0, "when", "equal"),
     "unknown operator 'equal'"),
    ({"rules": [{**RATE, "of": {"all": [{"field": "a", "regex": "("}]}}]}, ("rules", 0, "of", "all", 0, "regex"),
     "invalid regular expression"),
    ({"rules": [{k: v for k, v in RATE.items() if k != "threshold"}]}, ("rules", 0), "'threshold'"),
    ({"rules": [{k: v for k, v in RATE.items() if k != "of"}]}, ("rules", 0), "'of'"),
    ({"rules": [{**RATE, "window": "5 minutes"}]}, ("rules", 0, "window"), "duration"),
    ({"rules": [{**RATE, "severity": "page"}]}, ("rules", 0, "severity"), "one of info, warning, error, critical"),
    ({"rules": [{**RATE, "notifiers": ["pager"]}]}, ("rules", 0, "notifiers", 0), "no notifier named 'pager'"),
    ({"rules": [{**RATE, "annotations": {"summary": "rate {{ value }"}}]}, ("rules", 0, "annotations", "summary"),
     "malformed placeholder"),
    ({"rules": [{**RATE, "labels": {"bad-name": "x"}}]}, ("rules", 0, "labels"), "label name 'bad-name'"),
    ({"rules": [RATE, RATE]}, ("rules", 1, "name"), "duplicate rule name 'R'"),
    ({"rules": [{**RATE, "kind": "absence", "of": None, "threshold": None, "min_count": 3}]},
     ("rules", 0, "min_count"), "only a ratio rule"),
    ({"rules": [{"name": "M", "kind": "match", "when": FAILED, "threshold": 2}]}, ("rules", 0, "threshold"),
     "no threshold"),
    ({"notifiers": {"s": {"type": "pagerduty", "url": "https://x"}}}, ("notifiers", "s", "type"),
     "unknown notifier type"),
    ({"rules": [{**RATE, "fro": "2m"}]}, ("rules", 0, "fro"), "unknown key"),
    ({"rules": [{**RATE, "threshold": 10}]}, ("rules", 0, "threshold"), "a fraction"),
    ({"rules": [{**RATE, "kind": "count", "of": None, "threshold": 0}]}, ("rules", 0, "threshold"), "greater than 0"),
    ({"rules": "HighPayoutFailureRate"}, ("rules",), "must be a list, not a string"),
])
def test_a_mistake_is_reported_at_its_key(raw, path, words):
    where, message = problem(raw)
    assert where == path
    assert words in message


def test_a_bad_url_is_rejected_without_echoing_it():
    where, message = problem({"notifiers": {"s": {"type": "slack", "url": "hooks.slack.com/services/T0/B0/SECRET"}}})
    assert where == ("notifiers", "s", "url") and "SECRET" not in message


def test_bearer_token_becomes_an_authorization_header():
    cfg = alerts({"notifiers": {"am": {"type": "alertmanager", "url": "http://am:9093", "bearer_token": "tok"}}})
    assert cfg.notifiers["am"].headers == {"Authorization": "Bearer tok"}
