"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no script, no external asset.

It opens from a mail attachment, a Discord upload or a file share with no network, and shows
the same figures as the text report: headline cards, the hourly series as bar charts (each bar
carries its count as a tooltip), then the tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from ccf_agent.report.figures import Figures
from ccf_agent.report.render import alert_line, dollars, ms, one_line, percent, title

BLUE, RED, AMBER, PURPLE, GREY = "#2b6cb0", "#c53030", "#b7791f", "#6b46c1", "#718096"

CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#1a202c;margin:0;background:#f7fafc}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}
.sub{color:#4a5568;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:10px 12px}
.card b{display:block;font-size:22px}.card span{color:#4a5568;font-size:12px}
.card.bad b{color:#c53030}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e2e8f0}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #edf2f7;vertical-align:top}
td.n,th.n{width:1%;white-space:nowrap}
th{background:#edf2f7;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.chart{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:8px}
svg text{font:11px "DejaVu Sans",Arial,sans-serif;fill:#4a5568}
.notes{color:#744210;background:#fffff0;border:1px solid #faf089;padding:8px 12px;border-radius:6px}
footer{color:#718096;font-size:12px;margin-top:28px}
"""


def nice_ceiling(value: float) -> tuple[float, float]:
    """(top of the axis, tick step): 1, 2 or 5 times a power of ten, about five ticks."""
    if value <= 0:
        return 1.0, 1.0
    raw = value / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(step, 1.0)
    return math.ceil(value / step) * step, step


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[int], str]], title_text: str,
              width: int = 940, height: int = 240) -> str:
    """Grouped bars, one group per label (hour); an SVG element as a string."""
    left, right, top, bottom = 48, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for _, values, _ in series for v in values), default=0)
    ceiling, step = nice_ceiling(peak)
    n = max(len(labels), 1)
    group = plot_w / n
    bar = max(1.0, group * 0.8 / max(len(series), 1))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
           f'width="100%" aria-label="{escape(title_text)}">',
           f'<text x="{left}" y="16" style="font-weight:600;fill:#1a202c">{escape(title_text)}</text>']
    tick = 0.0
    while tick <= ceiling + 1e-9:
        y = top + plot_h - plot_h * tick / ceiling
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
        tick += step
    every = max(1, math.ceil(n / 12))
    for i, label in enumerate(labels):
        x0 = left + i * group + group * 0.1
        for k, (name, values, color) in enumerate(series):
            v = values[i]
            h = plot_h * v / ceiling
            out.append(f'<rect x="{x0 + k * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{color}"><title>{escape(label)} {escape(name)}: {v}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{left + i * group + group / 2:.1f}" y="{top + plot_h + 16}" '
                       f'text-anchor="middle">{escape(label.split(" ")[0])}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#a0aec0"/>')
    x = width - right
    for name, _, color in reversed(series):
        x -= 8 + 7 * len(name) + 16
        out.append(f'<rect x="{x}" y="7" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14}" y="16">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return '<p class="sub">(none)</p>'
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{escape(str(c))}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card(label: str, value: object, bad: bool = False) -> str:
    return f'<div class="card{" bad" if bad else ""}"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'


def render_html(f: Figures) -> str:
    w = f.window
    hours = w.hours()
    labels = [w.hour_label(h) for h in hours]
    p = f.processing_ms
    rate = f.failure_rate
    cards = "".join((
        _card("Total Errors", f.errors, f.errors > 0),
        _card("Successful Payouts", f.processed),
        _card("Failed Payouts", f.failed, f.failed > 0),
        _card("Failure Rate", percent(rate), rate is not None and rate > 0.1),
        _card(f"High-Value Failed (> {dollars(f.high_value_cents)})", f.high_value_count, f.high_value_count > 0),
        _card("Processing p50" + (" (est.)" if p.approximate else ""), ms(p.p50)),
        _card("Processing p95" + (" (est.)" if p.approximate else ""), ms(p.p95)),
        _card("Alerts Fired", len(f.alerts), bool(f.alerts)),
    ))
    payouts = bar_chart(labels, [("processed", f.hourly["processed"], BLUE), ("failed", f.hourly["failed"], RED)],
                        f"Payouts per hour ({w.tz})")
    security = bar_chart(labels, [("auth failures", f.hourly["auth_failures"], AMBER),
                                  ("rate-limit warnings", f.hourly["rate_limited"], PURPLE)],
                         f"Authentication failures and rate-limit warnings per hour ({w.tz})")
    more = f.high_value_count - len(f.high_value)
    high = _table(["time", "payoutId", "userId", "amount", "error"],
                  [(w.local(h.at), h.payoutId, h.userId, dollars(h.amount), one_line(h.error)) for h in f.high_value],
                  numeric=(3,)) + (f'<p class="sub">… and {more} more</p>' if more > 0 else "")
    hourly_rows = [(labels[i], *(f.hourly[s][i] for s in ("processed", "failed", "auth_failures", "rate_limited")))
                   for i in range(len(hours))]
    notes = "".join(f"<li>{escape(n)}</li>" for n in f.notes)
    generated = datetime.fromtimestamp(f.generated_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if f.generated_at else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title(f))}</title><style>{CSS}</style></head>
<body><main>
<h1>{escape(title(f))}</h1>
<p class="sub">{escape(w.local(w.start, "%Y-%m-%d %H:%M"))} to {escape(w.local(w.end, "%Y-%m-%d %H:%M"))} ({escape(w.tz)})
 · {f.records} records · {escape(f.source)}</p>
<div class="cards">{cards}</div>
{f'<h2>Notes</h2><ul class="notes">{notes}</ul>' if notes else ""}
<h2>Payouts per hour</h2><div class="chart">{payouts}</div>
<h2>Top errors</h2>{_table(["count", "message"], [(n, one_line(m)) for m, n in f.top_errors], numeric=(0,))}
<h2>Failed payouts by error</h2>{_table(["count", "error"], [(n, one_line(e)) for e, n in f.failure_reasons], numeric=(0,))}
<h2>High-value failed payouts (amount &gt; {f.high_value_cents} cents)</h2>{high}
<h2>Security</h2><div class="chart">{security}</div>
<h2>Alerts fired</h2>{_table(["alert"], [(alert_line(f, a).strip(),) for a in f.alerts])}
<h2>Per hour</h2>{_table(["hour", "processed", "failed", "auth failures", "rate-limit warnings"], hourly_rows,
                         numeric=(1, 2, 3, 4))}
<footer>ccf-agent report · generated {escape(generated)} · {f.processed + f.failed} payouts, p50/p95 over {p.count}
 processed payouts with a processingTime</footer>
</main></body></html>
"""
