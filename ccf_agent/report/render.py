"""The report as text (the guide's layout first, so mail filters matching its lines still match) and JSON.

The guide's script writes, in this order:

    === Daily Log Analysis Report - 2024-01-15 ===
    Total Errors: 1234
    Successful Payouts: 5678
    Failed Payouts: 981
    === Top Errors ===
       3941 Payout failed                  (`uniq -c`: the count right-aligned in 7 columns)

Everything the guide's report lacks comes after, in sections of the same `=== ... ===` form.
"""

from __future__ import annotations

from typing import Any

import orjson

from ccf_agent.report.figures import Figures


def title(f: Figures) -> str:
    if f.window.day is not None:
        return f"Daily Log Analysis Report - {f.window.day}"
    return f"Log Analysis Report - {f.window.label} ({f.window.tz})"


def subject(f: Figures, template: str = "Daily Log Report - {date}") -> str:
    """The guide's `mail -s "Daily Log Report - $DATE"`."""
    return template.replace("{date}", f.window.day or f.window.label)


def one_line(text: str) -> str:
    return " ".join(text.split()) if any(c in text for c in "\n\r\t") else text


def dollars(cents: float) -> str:
    return f"${cents / 100:,.2f}"


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def uniq_c(count: int, text: str) -> str:
    return f"{count:7d} {one_line(text)}"


def render_text(f: Figures) -> str:
    w = f.window
    lines = [
        f"=== {title(f)} ===",
        f"Total Errors: {f.errors}",
        f"Successful Payouts: {f.processed}",
        f"Failed Payouts: {f.failed}",
        "=== Top Errors ===",
        *(uniq_c(n, m) for m, n in f.top_errors),
        "=== Payout Failure Rate ===",
        f"Failure Rate: {percent(f.failure_rate)} ({f.failed} of {f.processed + f.failed} payouts)",
        "=== Failed Payouts by Error ===",
        *(uniq_c(n, e) for e, n in f.failure_reasons),
        f"=== High-Value Failed Payouts (amount > {f.high_value_cents} cents, over {dollars(f.high_value_cents)}) ===",
        f"Count: {f.high_value_count}",
        *(f"  {w.local(h.at)}  {h.payoutId}  {h.userId}  {dollars(h.amount)}  {one_line(h.error)}" for h in f.high_value),
    ]
    if f.high_value_count > len(f.high_value):
        lines.append(f"  ... and {f.high_value_count - len(f.high_value)} more")
    p = f.processing_ms
    approx = " (estimated)" if p.approximate else ""
    lines += [
        "=== Processing Time (processed payouts) ===",
        f"p50: {ms(p.p50)}  p95: {ms(p.p95)}{approx}  ({p.count} with processingTime)",
        f"=== Per Hour ({w.tz}) ===",
        f"{'hour':<12}{'processed':>10}{'failed':>8}{'auth_failures':>15}{'rate_limited':>14}",
    ]
    hourly = f.hourly
    for i, h in enumerate(w.hours()):
        lines.append(f"{w.hour_label(h):<12}{hourly['processed'][i]:>10}{hourly['failed'][i]:>8}"
                     f"{hourly['auth_failures'][i]:>15}{hourly['rate_limited'][i]:>14}")
    lines.append(f"{'total':<12}{sum(hourly['processed']):>10}{sum(hourly['failed']):>8}"
                 f"{sum(hourly['auth_failures']):>15}{sum(hourly['rate_limited']):>14}")
    lines.append("=== Alerts Fired ===")
    lines += [alert_line(f, a) for a in f.alerts] or ["(none)"]
    lines += ["=== Source ===", f.source, f"Records: {f.records}", *(f"Note: {n}" for n in f.notes)]
    return "\n".join(lines) + "\n"


def alert_line(f: Figures, a: dict[str, Any]) -> str:
    w = f.window
    resolved = f", resolved {w.local(a['resolved_at'])}" if a.get("resolved_at") else ", still firing or unresolved"
    paged = "" if a.get("paged") else " (from a backlog: not paged)"
    value = a.get("value")
    shown = f" value {value:.4g}" if isinstance(value, int | float) else ""
    return f"  {w.local(a['at'])}  {a['rule']} ({a['severity']}){shown}{resolved}{paged}"


def render_json(f: Figures) -> str:
    return orjson.dumps(f.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"


def summary_details(f: Figures) -> dict[str, Any]:
    """The headline figures as the details of the guide's alert object (notifier messages)."""
    p = f.processing_ms
    return {
        "Total Errors": f.errors,
        "Successful Payouts": f.processed,
        "Failed Payouts": f.failed,
        "Failure Rate": percent(f.failure_rate),
        "High-Value Failed Payouts": f.high_value_count,
        "Processing Time p50/p95": f"{ms(p.p50)} / {ms(p.p95)}",
        "Auth Failures": sum(f.hourly.get("auth_failures", ())),
        "Rate-Limit Warnings": sum(f.hourly.get("rate_limited", ())),
        "Alerts Fired": len(f.alerts),
        "Top Error": f"{f.top_errors[0][1]} x {one_line(f.top_errors[0][0])}" if f.top_errors else "-",
    }
