"""`ccf-agent report`: pick the window and the source, count, redact, render, write, send.

Exit status: 0 when the report was written (and, with --send, delivered everywhere); 1 when the
source could not give figures or a delivery failed (the others are still tried); 2 for a bad
config or arguments.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ccf_agent.alerts.engine import read_history
from ccf_agent.config import Config, parse_duration
from ccf_agent.config.alerts import AlertsConfig
from ccf_agent.config.report import ReportConfig
from ccf_agent.fsutil import atomic_write
from ccf_agent.pipeline.redact import Redactor
from ccf_agent.report import deliver
from ccf_agent.report.figures import Figures, Tally, Window, alerts_in, day_window, since_window, yesterday
from ccf_agent.report.files import figures_from_files
from ccf_agent.report.html import render_html
from ccf_agent.report.render import render_json, render_text, subject
from ccf_agent.report.search import SearchError, choose_outputs, figures_from_search

FORMATS = ("text", "html", "json")
SOURCES = ("auto", "search", "files")


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Request:
    day: str | None = None  # YYYY-MM-DD
    since: str | None = None  # a duration: 24h
    format: str = "text"
    out: str | None = None  # a path; {date} stands for the report's date
    send: bool = False
    source: str = "auto"


def report_timezone(config: Config, rc: ReportConfig) -> str:
    if rc.timezone:
        return rc.timezone
    json_inputs = [i for i in config.inputs if i.format == "json"] or list(config.inputs)
    return json_inputs[0].timezone


def window_for(req: Request, tz: str, now: float) -> Window:
    if req.day and req.since:
        raise UsageError("--date and --since exclude each other")
    if req.since:
        seconds = parse_duration(req.since)
        if seconds is None or seconds <= 0 or seconds > 31 * 86400:
            raise UsageError(f"--since must be a duration up to 31 days like 24h or 90m, not {req.since!r}")
        return since_window(now, seconds, tz)
    try:
        day = date.fromisoformat(req.day) if req.day else yesterday(now, tz)
    except ValueError:
        raise UsageError(f"--date must be YYYY-MM-DD, not {req.day!r}") from None
    return day_window(day, tz)


def redactor_of(config: Config) -> Redactor | None:
    redact = config.processors.redact
    return Redactor(redact) if redact.enabled else None


def redacted(figures: Figures, redactor: Redactor | None) -> Figures:
    """The figures with every shown string through the agent's redaction: whatever the source
    holds (records shipped before redaction was configured, say), no secret reaches a report."""
    if redactor is None:
        return figures
    data = figures.to_json()
    redactor.walk(data)
    return Figures.from_json(data)


def collect(config: Config, req: Request, now: float) -> Figures:
    rc = config.report
    window = window_for(req, report_timezone(config, rc), now)
    redactor = redactor_of(config)
    outputs, notes = choose_outputs(config, rc.outputs)
    use_search = req.source == "search" or (req.source == "auto" and bool(outputs))
    if use_search:
        if not outputs:
            raise SearchError("the config has no elasticsearch output to read")
        figures = asyncio.run(figures_from_search(outputs, window, rc.sources, rc.top, rc.high_value_cents,
                                                  rc.list_max))
        figures.notes[:0] = notes
    else:
        tally = Tally(window, rc.top, rc.high_value_cents, rc.list_max)
        figures = figures_from_files(config, tally, rc.sources, redactor)
    figures.alerts = alerts_in(read_history(config.state_dir), window)
    figures.generated_at = now
    return redacted(figures, redactor)


def render(figures: Figures, fmt: str) -> str:
    return {"text": render_text, "html": render_html, "json": render_json}[fmt](figures)


def date_of(figures: Figures) -> str:
    return figures.window.day or figures.window.local(figures.window.end, "%Y-%m-%d")


def write(text: str, out: str | None, figures: Figures) -> str | None:
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    path = Path(out.replace("{date}", date_of(figures)))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode(), 0o640)
    return str(path)


def send(config: Config, figures: Figures) -> list[str]:
    """Deliver to every named notifier and the SMTP recipients; the failures, as lines to print."""
    rc = config.report
    alerts = config.alerts or AlertsConfig()
    failures: list[str] = []
    names = rc.notifier_names(alerts)
    smtp = rc.smtp
    if not names and smtp is None:
        return ["--send: the config names no notifier (alerts.notifiers, report.notifiers) and no report.smtp"]
    title = subject(figures, smtp.subject if smtp else "Daily Log Report - {date}")
    html = render_html(figures)
    link = rc.url.replace("{date}", date_of(figures)) if rc.url else None
    if names:
        alert = deliver.report_alert(figures, title, alerts.service, alerts.environment)
        results = asyncio.run(deliver.send_to_notifiers(
            names, alerts, alert, link, figures.to_json(), html, f"ccf-report-{date_of(figures)}.html"))
        failures += [f"notifier {n} ({alerts.notifiers[n].type}): {err}" for n, err in results.items() if err]
    if smtp is not None:
        try:
            deliver.send_mail(smtp, deliver.mail_message(smtp, title, render_text(figures), html))
        except (deliver.MailError, ValueError) as e:
            failures.append(f"mail: {e}")
    return failures


def run_report(config: Config, req: Request) -> int:
    if req.format not in FORMATS or req.source not in SOURCES:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; --source one of {', '.join(SOURCES)}")
    try:
        figures = collect(config, req, time.time())
    except SearchError as e:
        print(f"ccf-agent report: {e}", file=sys.stderr)
        return 1
    written = write(render(figures, req.format), req.out, figures)
    if written:
        print(f"ccf-agent report: wrote {written}", file=sys.stderr)
    for note in figures.notes:
        print(f"ccf-agent report: note: {note}", file=sys.stderr)
    if req.send:
        failures = send(config, figures)
        for line in failures:
            print(f"ccf-agent report: {line}", file=sys.stderr)
        if failures:
            return 1
    return 0

