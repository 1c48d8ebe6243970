"""The command line: which window, which errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.report.helpers import files_config, report, write_config


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def test_since_reports_the_last_stretch_up_to_now(tmp_path: Path) -> None:
    now = time.time()
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [{"level": "error", "message": "Payout failed", "payoutId": f"p{i}", "amount": 500,
              "timestamp": stamp(now - ago)} for i, ago in enumerate((90000, 80000, 3600, 60))]
    (logs / "combined.log").write_text("".join(json.dumps(r) + "\n" for r in lines))
    got = json.loads(report(write_config(tmp_path, files_config(logs, "UTC")), "--since", "24h", "--format",
                            "json").stdout)
    assert (got["failed"], got["window"]["day"], len(got["window"]["hours"])) == (3, None, 25)


def test_the_default_day_is_yesterday_and_a_report_of_no_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    got = json.loads(report(write_config(tmp_path, files_config(tmp_path / "logs", "UTC")), "--format",
                            "json").stdout)
    assert got["window"]["day"] == time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    assert got["notes"] == ["no file of the inputs matches combined*.log* (report.sources)"]


def test_bad_arguments_exit_2_with_what_is_wrong(tmp_path: Path) -> None:
    config = write_config(tmp_path, files_config(tmp_path / "logs", "UTC"))
    for args, what in ((["--date", "15/01/2024"], "--date must be YYYY-MM-DD"),
                       (["--since", "forever"], "--since must be a duration"),
                       (["--date", "2024-01-15", "--since", "24h"], "not allowed with argument")):
        r = report(config, *args, check=False)
        assert r.returncode == 2 and what in r.stderr, r.stderr
