"""Text keeps the guide's layout, HTML stands alone, JSON is the figures."""

from __future__ import annotations

import json
import re
from datetime import date

from ccf_agent.report.figures import Figures, Tally, day_window
from ccf_agent.report.html import bar_chart, nice_ceiling, render_html
from ccf_agent.report.render import render_json, render_text, subject

W = day_window(date(2024, 1, 15), "UTC")


def figures() -> Figures:
    tally = Tally(W)
    t = W.start + 10 * 3600
    for i in range(3):
        tally.add({"level": "error", "message": "Payout failed", "payoutId": f"p{i}", "userId": "u", "amount": 25000,
                   "error": "insufficient_funds"}, t + i)
    tally.add({"level": "info", "message": "Payout processed", "payoutId": "p9", "processingTime": 2340}, t)
    tally.add({"level": "error", "message": "Unhandled error\nin /api/balance"}, t)
    f = tally.figures("local files (combined.log)")
    f.alerts = [{"rule": "HighPayoutFailureRate", "severity": "critical", "at": t, "value": 0.75, "paged": True,
                 "resolved_at": t + 600}]
    return f


def test_text_starts_with_the_guides_lines_so_its_mail_filters_still_match():
    lines = render_text(figures()).splitlines()
    assert lines[:8] == [
        "=== Daily Log Analysis Report - 2024-01-15 ===",
        "Total Errors: 4",
        "Successful Payouts: 1",
        "Failed Payouts: 3",
        "=== Top Errors ===",
        "      3 Payout failed",            # `uniq -c`: the count in 7 columns
        "      1 Unhandled error in /api/balance",  # one line per message
        "=== Payout Failure Rate ===",
    ]


def test_text_lists_the_rest_in_sections_of_the_same_form():
    text = render_text(figures())
    assert "Failure Rate: 75.00% (3 of 4 payouts)" in text
    assert "  2024-01-15 10:00:00  p0  u  $250.00  insufficient_funds" in text
    assert "p50: 2340 ms  p95: 2340 ms  (1 with processingTime)" in text
    assert re.search(r"^10:00 +1 +3 +0 +0$", text, re.M)
    assert "  2024-01-15 10:00:00  HighPayoutFailureRate (critical) value 0.75, resolved 2024-01-15 10:10:00" in text
    assert subject(figures()) == "Daily Log Report - 2024-01-15"


def test_html_is_one_page_with_no_external_asset_and_no_script():
    page = render_html(figures())
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert not re.search(r"(?i)<script|<link|<img|src=|href=|url\(|@import", page)


def test_html_escapes_what_came_from_the_logs():
    tally = Tally(W)
    tally.add({"level": "error", "message": "<script>alert(1)</script>"}, W.start)
    page = render_html(tally.figures("x"))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_json_is_the_figures():
    f = figures()
    data = json.loads(render_json(f))
    assert data["failure_rate"] == 0.75 and data["top_errors"][0] == {"message": "Payout failed", "count": 3}
    assert len(data["window"]["hours"]) == 24 and data["window"]["hours"][0] == "2024-01-15T00:00:00+0000"
    assert Figures.from_json(data) == f


def test_chart_axes_end_on_a_round_number_above_the_peak():
    assert [nice_ceiling(v) for v in (0, 7, 36, 980, 3006)] == [(1.0, 1.0), (8.0, 2.0), (40.0, 10.0),
                                                                (1000.0, 200.0), (4000.0, 1000.0)]
    svg = bar_chart(["00:00", "01:00"], [("processed", [3, 0], "#00f"), ("failed", [1, 2], "#f00")], "t")
    assert svg.count("<rect") == 4 + 2 and "<title>00:00 processed: 3</title>" in svg
