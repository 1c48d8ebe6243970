"""The `report:` section: where the daily report reads, whom it goes to.

    report:
      timezone: Europe/Berlin          # the day's bounds and hours; default: the first input's zone
      top: 5                           # top errors and failure reasons (the guide's `head -5`)
      high_value_cents: 10000          # the guide's jq filter: amount > 10000 (more than $100)
      sources: ["combined*.log*"]      # files holding every record once (error.log repeats them)
      outputs: [logs, payouts]         # Elasticsearch outputs to read; default: chosen from the routes
      url: "https://reports.example.internal/ccf/{date}.html"   # the link notifications carry
      notifiers: [slack, teams]        # alerts.notifiers to post to; default: all but alertmanager
      smtp:
        host: smtp.example.internal
        port: 587
        starttls: true                 # required to log in: a password never crosses in clear
        username: ccf-reports
        password: ${SMTP_PASSWORD}     # ${ENV_VAR} or ${file:/path}, like every secret
        from: ccf-agent@example.internal
        to: [admin@yourdomain.com]

Names of outputs and notifiers are checked against their sections by `check` (the config loader
calls it once every section is parsed), so a typo is a file:line error at `ccf-agent check`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ccf_agent.config.alerts import AlertsConfig
from ccf_agent.config.outputs import OutputConfig, TlsConfig
from ccf_agent.config.reader import Reader
from ccf_agent.config.values import Where

# The files that hold every record once (Winston writes a record to combined.log and again to
# error.log or payouts.log): combined.log, combined.log.1, combined.log-20240115, combined1.log.
# The business metrics count these too.
SOURCES = ("combined*.log*",)
_EMAIL = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    tls: TlsConfig = field(default_factory=TlsConfig)
    subject: str = "Daily Log Report - {date}"  # the guide's `mail -s`


@dataclass(frozen=True)
class ReportConfig:
    timezone: str | None = None
    top: int = 5
    high_value_cents: int = 10000
    list_max: int = 20  # high-value failed payouts listed (all are counted)
    sources: tuple[str, ...] = SOURCES
    outputs: tuple[str, ...] = ()
    url: str | None = None
    notifiers: tuple[str, ...] | None = None
    smtp: SmtpConfig | None = None
    where: Where | None = field(default=None, repr=False, compare=False)

    def check(self, outputs: Mapping[str, OutputConfig], alerts: AlertsConfig | None) -> None:
        """Cross-section names: each output an Elasticsearch one, each notifier one of alerts.notifiers
        (a notifier switched off there by an empty URL is skipped here too)."""
        where = self.where or (lambda path, message: ValueError(f"{path}: {message}"))
        for i, name in enumerate(self.outputs):
            out = outputs.get(name)
            if out is None or out.type != "elasticsearch":
                known = ", ".join(n for n, o in outputs.items() if o.type == "elasticsearch") or "none"
                raise where(("outputs", i), f"no elasticsearch output named '{name}' (elasticsearch outputs: {known})")
        defined = dict(alerts.notifiers) if alerts is not None else {}
        off = set(alerts.notifiers_off) if alerts is not None else set()
        for i, name in enumerate(self.notifiers or ()):
            if name in off:
                continue
            if name not in defined:
                raise where(("notifiers", i), f"no notifier named '{name}' in alerts.notifiers "
                            f"(notifiers: {', '.join(sorted(defined | dict.fromkeys(off))) or 'none'})")
            if defined[name].type == "alertmanager":
                raise where(("notifiers", i), f"'{name}' is an alertmanager notifier: it takes alerts, not reports")

    def notifier_names(self, alerts: AlertsConfig | None) -> list[str]:
        defined = dict(alerts.notifiers) if alerts is not None else {}
        if self.notifiers is None:
            return [n for n, c in defined.items() if c.type != "alertmanager"]
        return [n for n in self.notifiers if n in defined]


def parse_report(raw: dict[str, Any] | None, where: Where) -> ReportConfig:
    if raw is None:
        return ReportConfig(where=where)
    s = Reader(where, (), raw)
    tz = s.get("timezone", str)
    if tz is not None:
        try:
            ZoneInfo(tz)
        except Exception as e:
            raise s.error("timezone", f"unknown time zone '{tz}'") from e
    top = s.get("top", int, 5)
    if not 1 <= top <= 100:
        raise s.error("top", "must be from 1 to 100")
    cents = s.get("high_value_cents", int, 10000)
    if cents < 0:
        raise s.error("high_value_cents", "must be 0 or more (cents: 10000 is $100)")
    list_max = s.get("list_max", int, 20)
    if not 1 <= list_max <= 100:
        raise s.error("list_max", "must be from 1 to 100")
    sources = s.strings("sources", SOURCES)
    for i, pattern in enumerate(sources):
        if "/" in pattern or not pattern.strip():
            raise s.error(("sources", i), f"must be a file name pattern like combined*.log*, not {pattern!r}")
        fnmatch.translate(pattern)
    outputs = s.strings("outputs")
    url = s.get("url", str)
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise s.error("url", "must be an http:// or https:// URL; {date} stands for the report's date")
    notifiers = s.strings("notifiers", None)
    smtp_raw = s.get("smtp", dict)
    smtp = _smtp(Reader(where, ("smtp",), smtp_raw)) if smtp_raw is not None else None
    s.done()
    return ReportConfig(tz, top, cents, list_max, sources, outputs, url, notifiers, smtp, where)


def _smtp(s: Reader) -> SmtpConfig:
    host = s.get("host", str, required=True)
    port = s.get("port", int, 587)
    if not 0 < port < 65536:
        raise s.error("port", "must be a TCP port (587 for STARTTLS submission, 25 for a local relay)")
    starttls = s.get("starttls", bool, True)
    username = s.get("username", str)
    password = s.get("password", str)
    if password and not username:
        raise s.error("password", "password needs username")
    if username and not starttls:
        # Secure by default: a login over plain SMTP hands the password to the network.
        raise s.error("starttls", "must be true to log in (username is set): the password would cross in clear")
    sender = s.get("from", str, required=True)
    if not _EMAIL.match(sender):
        raise s.error("from", f"must be an e-mail address, not {sender!r}")
    to = s.strings("to", None)
    if not to:
        raise s.error("to" if "to" in s.value else None, "needs at least one address in 'to'")
    for i, addr in enumerate(to):
        if not _EMAIL.match(addr):
            raise s.error(("to", i), f"must be an e-mail address, not {addr!r}")
    timeout = s.duration("timeout", 30.0)
    if timeout <= 0:
        raise s.error("timeout", "must be greater than 0")
    subject = s.get("subject", str, "Daily Log Report - {date}")
    tls = _tls(Reader(s.where, (*s.path, "tls"), s.get("tls", dict, {})))
    s.done()
    return SmtpConfig(host, sender, to, port, starttls, username, password, timeout, tls, subject)


def _tls(s: Reader) -> TlsConfig:
    # No server_name: smtplib checks the certificate against `host` itself.
    tls = TlsConfig(verify=s.get("verify", bool, True), ca_file=s.get("ca_file", str),
                    cert_file=s.get("cert_file", str), key_file=s.get("key_file", str))
    s.done()
    if tls.key_file and not tls.cert_file:
        raise s.error("key_file", "key_file needs cert_file")
    for key in ("ca_file", "cert_file", "key_file"):
        f = getattr(tls, key)
        if f and not os.access(f, os.R_OK):
            raise s.error(key, f"cannot read {f}")
    return tls
