"""Notifier payloads and delivery: one formatter per notifier type behind `deliver()`.

The shapes follow the app's monitoring guide (webhook-alerts.js): a generic webhook receives the
guide's alert object {timestamp, level, service, message, details, environment}; Slack gets its
`attachments` with the guide's colour per level; Teams a MessageCard and Discord `embeds` carrying
the same fields. Alertmanager gets its v2 API body, so silences, inhibition and routing apply.

Formatting happens at delivery time from the stored notice, because Alertmanager's `endsAt`
for a firing alert must be relative to the moment it is sent, not the moment it was queued.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from ccf_agent.alerts.outbox import Notice
from ccf_agent.config.alerts import NotifierConfig
from ccf_agent.httpclient import HttpClient, TransportError

# Slack's named attachment colours, and the same colours as hex for Teams / Discord.
SLACK_COLORS = {"info": "good", "warning": "warning", "error": "danger", "critical": "danger"}
HEX_COLORS = {"good": "2EB886", "warning": "DAA038", "danger": "A30200"}


class DeliveryError(Exception):
    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def level_of(notice: Notice) -> str:
    # A resolve is good news whatever the rule's severity: it should look like it.
    return notice["severity"] if notice["status"] == "firing" else "info"


def alert_object(notice: Notice) -> dict[str, Any]:
    """The guide's `alert` object, as the generic webhook receives it."""
    ann = notice["annotations"]
    summary = ann.get("summary") or notice["rule"]
    details: dict[str, Any] = {
        "alert": notice["rule"],
        "status": notice["status"],
        "severity": notice["severity"],
        "value": round(notice["value"], 4),
        "count": notice["count"],
        "startsAt": iso(notice["starts_at"]),
    }
    if notice.get("ends_at") is not None:
        details["endsAt"] = iso(notice["ends_at"])
    if notice.get("repeat"):
        details["repeat"] = True
    details.update((k, v) for k, v in ann.items() if k != "summary")
    extra = {k: v for k, v in notice["labels"].items() if k not in ("alertname", "severity")}
    if extra:
        details["labels"] = extra
    return {
        "timestamp": iso(notice["created"]),
        "level": level_of(notice),
        "service": notice["service"],
        "message": summary if notice["status"] == "firing" else f"[RESOLVED] {summary}",
        "details": details,
        "environment": notice["environment"],
    }


def _fields(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, value) pairs exactly as the guide's formatSlackMessage builds them."""
    return [("Service", alert["service"]), ("Environment", alert["environment"]), ("Time", alert["timestamp"]),
            *((k, orjson.dumps(v).decode()) for k, v in alert["details"].items())]


def _title(alert: dict[str, Any]) -> str:
    return f"{alert['level'].upper()}: {alert['message']}"


def format_webhook(notice: Notice, cfg: NotifierConfig, now: float) -> Any:
    return alert_object(notice)


def format_slack(notice: Notice, cfg: NotifierConfig, now: float) -> Any:
    return slack_payload(alert_object(notice))


def format_teams(notice: Notice, cfg: NotifierConfig, now: float) -> Any:
    return teams_payload(alert_object(notice))


def format_discord(notice: Notice, cfg: NotifierConfig, now: float) -> Any:
    return discord_payload(alert_object(notice))


# The guide's alert object in each service's shape: for alert notices and for anything else the
# agent posts the guide's way (the daily report). `link`: a page the message points to.

def slack_payload(alert: dict[str, Any], link: str | None = None) -> dict[str, Any]:
    attachment = {
        "color": SLACK_COLORS[alert["level"]],
        "title": _title(alert),
        "fields": [{"title": t, "value": v, "short": True} for t, v in _fields(alert)],
    }
    if link:
        attachment["title_link"] = link
    return {"attachments": [attachment]}


def teams_payload(alert: dict[str, Any], link: str | None = None) -> dict[str, Any]:
    title = _title(alert)
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "themeColor": HEX_COLORS[SLACK_COLORS[alert["level"]]],
        "summary": title,
        "title": title,
        "sections": [{"facts": [{"name": t, "value": v} for t, v in _fields(alert)], "markdown": False}],
    }
    if link:
        card["potentialAction"] = [{"@type": "OpenUri", "name": "Open", "targets": [{"os": "default", "uri": link}]}]
    return card


def discord_payload(alert: dict[str, Any], link: str | None = None) -> dict[str, Any]:
    # Discord rejects embeds over its limits (25 fields, 256-char titles, 1024-char values).
    fields = [{"name": t[:256], "value": (v or "-")[:1024], "inline": True} for t, v in _fields(alert)][:25]
    embed: dict[str, Any] = {
        "title": _title(alert)[:256],
        "color": int(HEX_COLORS[SLACK_COLORS[alert["level"]]], 16),
        "timestamp": alert["timestamp"],
        "fields": fields,
    }
    if link:
        embed["url"] = link
    return {"embeds": [embed]}


def format_alertmanager(notice: Notice, cfg: NotifierConfig, now: float) -> Any:
    if notice["status"] == "resolved":
        # Alertmanager refuses (400) an alert that ends at the instant it starts.
        ends = max(notice["ends_at"], notice["starts_at"] + 0.001)
    else:
        # Like Prometheus: a firing alert expires unless refreshed, so if the agent dies the
        # alert resolves by itself instead of firing forever.
        ends = now + 4 * (cfg.resend_interval or 60.0)
    return [{
        "labels": dict(notice["labels"]),
        "annotations": dict(notice["annotations"]),
        "startsAt": iso(notice["starts_at"]),
        "endsAt": iso(ends),
        "generatorURL": notice["generator_url"],
    }]


FORMATTERS: dict[str, Callable[[Notice, NotifierConfig, float], Any]] = {
    "webhook": format_webhook,
    "slack": format_slack,
    "teams": format_teams,
    "discord": format_discord,
    "alertmanager": format_alertmanager,
}


def endpoint(cfg: NotifierConfig) -> str:
    if cfg.type == "alertmanager" and not cfg.url.rstrip("/").endswith("/api/v2/alerts"):
        return cfg.url.rstrip("/") + "/api/v2/alerts"
    return cfg.url


async def deliver(client: HttpClient, cfg: NotifierConfig, notice: Notice, now: float) -> None:
    """POST one notice; raises DeliveryError (permanent for 4xx other than 408/429)."""
    body = orjson.dumps(FORMATTERS[cfg.type](notice, cfg, now))
    await post(client, cfg, body, {"Content-Type": "application/json", "Idempotency-Key": notice["id"]})


async def post(client: HttpClient, cfg: NotifierConfig, body: bytes | aiohttp.FormData,
               headers: dict[str, str]) -> None:
    """POST to a notifier's endpoint (with its own headers): every notifier request goes through here.
    Raises DeliveryError, permanent for 4xx other than 408/429; never shows the URL (a secret)."""
    try:
        # shown=None: the URL is the secret, so the HTTP layer's messages do not name it.
        resp = await client.request("POST", endpoint(cfg), data=body, headers={**headers, **cfg.headers},
                                    seconds=cfg.timeout, shown=None, proxy=cfg.proxy)
    except TransportError as e:
        raise DeliveryError(str(e)) from e
    if resp.ok:
        return
    text = resp.text(200)
    permanent = 400 <= resp.status < 500 and resp.status not in (408, 429)
    raise DeliveryError(f"HTTP {resp.status}" + (f": {text}" if text else ""), permanent)
