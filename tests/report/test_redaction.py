"""Whatever the source holds (records shipped before redaction was on), a report shows no secret."""

from __future__ import annotations

from datetime import date

from ccf_agent.pipeline.redact import RedactConfig, Redactor
from ccf_agent.report.figures import Tally, day_window
from ccf_agent.report.run import redacted


def test_every_string_a_report_shows_goes_through_the_agents_redaction():
    w = day_window(date(2024, 1, 15), "UTC")
    tally = Tally(w)
    tally.add({"level": "error", "message": "Payout failed", "payoutId": "p1", "userId": "u1",
               "amount": 50000, "error": "key sk_live_51HxYzAbCdEfGhIj rejected"}, w.start)
    # As a search engine would hand them back: unredacted.
    f = tally.figures("source")
    f.top_errors = [("Card 4242-4242-4242-4242 declined", 1)]
    f.alerts = [{"rule": "R", "severity": "error", "at": w.start, "value": 1, "paged": True,
                 "resolved_at": None, "token": "abc"}]
    out = redacted(f, Redactor(RedactConfig(fields=("userId", "token"))))
    text = repr(out.to_json())
    assert "4242" not in text and "sk_live_" not in text and "u1" not in text and "abc" not in text
    assert out.top_errors == [("Card [REDACTED] declined", 1)]
    assert (out.high_value[0].userId, out.high_value[0].error) == ("[REDACTED]", "key [REDACTED] rejected")
    assert redacted(f, None) is f  # `redact: false`
