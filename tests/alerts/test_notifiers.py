"""Payload shapes: the monitoring guide's webhook formats, Teams, Discord, Alertmanager v2."""

from __future__ import annotations

from ccf_agent.alerts.notifiers import FORMATTERS, endpoint, iso
from ccf_agent.config.alerts import NotifierConfig

T = 1_700_000_000.0


def notice(status="firing", severity="critical", **kw):
    return {
        "id": "abc", "notifier": "n", "rule": "HighPayoutFailureRate", "status": status, "repeat": False,
        "created": T + 60, "severity": severity,
        "labels": {"alertname": "HighPayoutFailureRate", "severity": severity, "team": "payments"},
        "annotations": {"summary": "High payout failure rate detected",
                        "description": "Payout failure rate is 15% over the last 5 minutes"},
        "value": 0.15, "count": 3, "starts_at": T, "ends_at": T + 600 if status == "resolved" else None,
        "service": "click-clack-cashflow", "environment": "production",
        "generator_url": "http://agent:5066/status#alert=HighPayoutFailureRate", **kw}


def fmt(kind, n, now=T + 60, **cfg):
    return FORMATTERS[kind](n, NotifierConfig(name="n", type=kind, url="http://x", **cfg), now)


def test_webhook_posts_the_guides_alert_object():
    body = fmt("webhook", notice())
    assert body == {
        "timestamp": iso(T + 60), "level": "critical", "service": "click-clack-cashflow",
        "message": "High payout failure rate detected", "environment": "production",
        "details": {"alert": "HighPayoutFailureRate", "status": "firing", "severity": "critical", "value": 0.15,
                    "count": 3, "startsAt": iso(T),
                    "description": "Payout failure rate is 15% over the last 5 minutes",
                    "labels": {"team": "payments"}},
    }


def test_a_resolve_is_an_info_level_message_marked_resolved_with_its_end():
    body = fmt("webhook", notice("resolved"))
    assert body["level"] == "info"
    assert body["message"] == "[RESOLVED] High payout failure rate detected"
    assert body["details"]["endsAt"] == iso(T + 600)


def test_slack_attachment_colour_follows_the_level_as_in_the_guide():
    colours = {sev: fmt("slack", notice(severity=sev))["attachments"][0]["color"]
               for sev in ("info", "warning", "error", "critical")}
    assert colours == {"info": "good", "warning": "warning", "error": "danger", "critical": "danger"}
    assert fmt("slack", notice("resolved"))["attachments"][0]["color"] == "good"


def test_slack_attachment_has_the_guides_title_and_fields():
    [att] = fmt("slack", notice())["attachments"]
    assert att["title"] == "CRITICAL: High payout failure rate detected"
    assert att["fields"][:3] == [
        {"title": "Service", "value": "click-clack-cashflow", "short": True},
        {"title": "Environment", "value": "production", "short": True},
        {"title": "Time", "value": iso(T + 60), "short": True}]
    # details as in the guide: one field each, the value JSON.stringify'd
    assert {"title": "value", "value": "0.15", "short": True} in att["fields"]
    assert {"title": "alert", "value": '"HighPayoutFailureRate"', "short": True} in att["fields"]


def test_teams_gets_a_message_card_with_the_same_fields():
    card = fmt("teams", notice())
    assert card["@type"] == "MessageCard" and card["themeColor"] == "A30200"
    assert card["title"] == card["summary"] == "CRITICAL: High payout failure rate detected"
    facts = card["sections"][0]["facts"]
    assert facts[0] == {"name": "Service", "value": "click-clack-cashflow"}
    assert {"name": "count", "value": "3"} in facts


def test_discord_gets_an_embed_with_the_same_fields_and_colour():
    [embed] = fmt("discord", notice(severity="warning"))["embeds"]
    assert embed["title"] == "WARNING: High payout failure rate detected"
    assert embed["color"] == 0xDAA038 and embed["timestamp"] == iso(T + 60)
    assert embed["fields"][1] == {"name": "Environment", "value": "production", "inline": True}


def test_discord_embed_stays_within_discords_limits():
    long = notice(annotations={f"a{i}": "x" * 5000 for i in range(40)})
    [embed] = fmt("discord", long)["embeds"]
    assert len(embed["fields"]) == 25 and max(len(f["value"]) for f in embed["fields"]) <= 1024


def test_alertmanager_v2_body_for_a_firing_alert_expires_unless_refreshed():
    [alert] = fmt("alertmanager", notice(), now=T + 60, resend_interval=60.0)
    assert alert == {
        "labels": {"alertname": "HighPayoutFailureRate", "severity": "critical", "team": "payments"},
        "annotations": {"summary": "High payout failure rate detected",
                        "description": "Payout failure rate is 15% over the last 5 minutes"},
        "startsAt": iso(T), "endsAt": iso(T + 60 + 240),
        "generatorURL": "http://agent:5066/status#alert=HighPayoutFailureRate",
    }


def test_alertmanager_v2_body_for_a_resolve_ends_when_it_resolved():
    [alert] = fmt("alertmanager", notice("resolved"), now=T + 9999)
    assert alert["endsAt"] == iso(T + 600)


def test_alertmanager_url_is_the_v2_alerts_endpoint():
    cfg = NotifierConfig(name="am", type="alertmanager", url="http://am:9093/")
    assert endpoint(cfg) == "http://am:9093/api/v2/alerts"


def test_notifier_config_repr_hides_the_url_and_headers():
    cfg = NotifierConfig(name="s", type="slack", url="https://hooks.example/T000/SECRET",
                         headers={"Authorization": "Bearer SECRET"})
    assert "SECRET" not in repr(cfg)
