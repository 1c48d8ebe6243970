"""Sending the report: the alert notifiers the config names, and e-mail over SMTP.

Notifiers get the guide's alert object (`sendAlert('info', 'Daily Log Report - DATE', details)`)
in their own shape (alerts/notifiers.py builds it and posts it): the headline figures as fields,
`report.url` as the link where the service has one (Slack's title link, a Teams button, Discord's
embed URL), and the whole page where the service takes files (Discord, as an attachment). A
generic webhook gets the alert object with the report's JSON beside it.

E-mail is the guide's `mail -s "Daily Log Report - $DATE"`: the text report as the body (so
filters on its lines still match) with the HTML page as the alternative part. STARTTLS is
verified like every TLS connection of the agent; a server that does not offer it is an error,
never a reason to go on in clear.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiohttp
import orjson

from ccf_agent.alerts.notifiers import (
    DeliveryError,
    discord_payload,
    iso,
    post,
    slack_payload,
    teams_payload,
)
from ccf_agent.config.alerts import AlertsConfig, NotifierConfig
from ccf_agent.config.report import SmtpConfig
from ccf_agent.httpclient import HttpClient, client_ssl_context
from ccf_agent.report.figures import Figures
from ccf_agent.report.render import summary_details

WARN_RATE = 0.1  # the guide's HighPayoutFailureRate threshold: a day above it is a warning


class MailError(Exception):
    pass


def report_alert(f: Figures, subject: str, service: str, environment: str) -> dict[str, Any]:
    """The guide's alert object for the report."""
    rate = f.failure_rate
    level = "warning" if (rate is not None and rate > WARN_RATE) or f.high_value_count else "info"
    return {"timestamp": iso(f.generated_at), "level": level, "service": service, "message": subject,
            "details": summary_details(f), "environment": environment}


def request_for(cfg: NotifierConfig, alert: dict[str, Any], link: str | None, figures: dict[str, Any],
                html: str, filename: str) -> tuple[bytes | aiohttp.FormData, dict[str, str]]:
    """One notifier's request body and headers (pure, but for the multipart form object)."""
    json_headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
    if cfg.type == "slack":
        return orjson.dumps(slack_payload(alert, link)), json_headers
    if cfg.type == "teams":
        return orjson.dumps(teams_payload(alert, link)), json_headers
    if cfg.type == "discord":
        form = aiohttp.FormData()
        form.add_field("payload_json", orjson.dumps(discord_payload(alert, link)).decode(),
                       content_type="application/json")
        form.add_field("files[0]", html.encode(), filename=filename, content_type="text/html")
        return form, {}
    return orjson.dumps({**alert, "link": link, "report": figures}), json_headers


async def send_to_notifiers(names: Sequence[str], alerts: AlertsConfig, alert: dict[str, Any], link: str | None,
                            figures: dict[str, Any], html: str, filename: str) -> dict[str, str | None]:
    """Post to each notifier at once; name -> None when delivered, else the error (no URL in it)."""
    async def one(client: HttpClient, cfg: NotifierConfig) -> str | None:
        body, headers = request_for(cfg, alert, link, figures, html, filename)
        try:
            await post(client, cfg, body, headers)
        except DeliveryError as e:
            return str(e)
        return None

    async with HttpClient() as client:
        configs = [alerts.notifiers[n] for n in names]
        results = await asyncio.gather(*(one(client, c) for c in configs))
    return dict(zip(names, results, strict=True))


def mail_message(cfg: SmtpConfig, subject: str, text: str, html: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=cfg.sender.rsplit("@", 1)[1])
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def send_mail(cfg: SmtpConfig, msg: EmailMessage) -> None:
    """Deliver over SMTP (blocking: the command's own thread). Raises MailError, never with the password."""
    context = client_ssl_context(cfg.tls, "report.smtp") if cfg.starttls else None
    try:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout) as smtp:
            smtp.ehlo()
            if context is not None:
                if not smtp.has_extn("starttls"):
                    raise MailError(f"{cfg.host}:{cfg.port} does not offer STARTTLS (report.smtp.starttls is true)")
                smtp.starttls(context=context)
                smtp.ehlo()
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
            refused = smtp.send_message(msg)
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as e:
        raise MailError(f"{cfg.host}:{cfg.port} refused the login of {cfg.username} ({e.smtp_code})") from e
    except smtplib.SMTPRecipientsRefused as e:
        raise MailError(f"{cfg.host}:{cfg.port} refused every recipient: {', '.join(e.recipients)}") from e
    except smtplib.SMTPResponseException as e:
        raise MailError(f"{cfg.host}:{cfg.port}: {e.smtp_code} {_text(e.smtp_error)[:200]}") from e
    except ssl.SSLError as e:
        raise MailError(f"TLS with {cfg.host}:{cfg.port} failed: {e.reason or e}") from e
    except (smtplib.SMTPException, OSError) as e:
        raise MailError(f"cannot deliver through {cfg.host}:{cfg.port}: {e}") from e
    if refused:
        raise MailError(f"{cfg.host}:{cfg.port} refused {', '.join(sorted(refused))} (the others got it)")


def _text(reply: bytes | str) -> str:
    """An SMTP server's reply text (smtplib hands bytes, or str for errors it makes itself)."""
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply
