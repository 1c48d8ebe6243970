"""The HTML report in a real headless browser: it renders, logs no error and fetches nothing else.

The screenshot is kept in build/test-artifacts/ (the README's picture is one of these)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.alerts.helpers import Clock, make_engine, payout
from tests.harness import ROOT
from tests.report.browser import CHROMIUM, open_page
from tests.report.helpers import files_config, report, write_config
from tests.report.workload import DAY, TZ, generate, write_logs

ARTIFACTS = ROOT / "build" / "test-artifacts"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/run.sh installs it)")


def fire_an_alert_that_day(state_dir: Path, at: float) -> None:
    """The agent's alert engine, fed records of that day: it keeps the episode in its state."""
    rule = {"name": "HighValuePayoutFailed", "kind": "match", "window": "15m", "severity": "error",
            "when": {"all": [{"field": "message", "icontains": "payout"}, {"field": "amount", "gt": 10000}]}}
    engine = make_engine(state_dir, {"rules": [rule]}, Clock(at + 60))
    engine.observe([payout("failed", 25000)], [at])
    engine.close()


def test_the_html_report_renders_in_chromium_with_no_console_error_and_no_request_but_itself(tmp_path: Path):
    day = generate()
    write_logs(day, tmp_path / "logs", rotated=True)
    fire_an_alert_that_day(tmp_path / "state", day.start + 14.5 * 3600)
    config = write_config(tmp_path, files_config(tmp_path / "logs", TZ))
    page = tmp_path / "report.html"
    r = report(config, "--date", DAY.isoformat(), "--format", "html", "--out", str(page))
    assert f"wrote {page}" in r.stderr and "HighValuePayoutFailed" in page.read_text()

    shot = ARTIFACTS / "report-html.png"
    run = asyncio.run(open_page(page.as_uri(), shot))
    assert (run.console, run.exceptions, run.log_errors) == ([], [], [])
    assert run.requests == [page.as_uri()]
    assert shot.stat().st_size > 20_000 and run.size[1] > 1500  # cards, two charts and the tables laid out
