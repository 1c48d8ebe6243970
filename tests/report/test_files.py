"""The report from the local log files: every generation of combined.log, compressed or not."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.report.helpers import files_config, report, report_json, write_config
from tests.report.workload import CARD, DAY, STRIPE_KEY, TZ, expected, figures_part, generate, write_logs


def test_figures_from_rotated_and_compressed_files_equal_the_counts_of_the_generated_day(tmp_path: Path) -> None:
    day = generate()
    write_logs(day, tmp_path / "logs", rotated=True)
    config = write_config(tmp_path, files_config(tmp_path / "logs", TZ))
    got = report_json(config, "--date", DAY.isoformat())
    assert figures_part(got) == expected(day)
    assert got["source"].startswith("local files (") and "combined.log.2.gz" in got["source"]
    assert len(got["window"]["hours"]) == 23  # Berlin springs forward that day


def test_no_card_number_or_key_from_the_logs_appears_in_any_format(tmp_path: Path) -> None:
    day = generate(2000)
    write_logs(day, tmp_path / "logs", rotated=False)
    config = write_config(tmp_path, {**files_config(tmp_path / "logs", TZ), "report": {"top": 10}})
    for fmt in ("text", "html", "json"):
        out = report(config, "--date", DAY.isoformat(), "--format", fmt).stdout
        assert "Card [REDACTED] declined" in out
        for secret in (CARD, CARD.replace(" ", ""), STRIPE_KEY, "pm_0000"):
            assert secret not in out, (fmt, secret)


def test_a_field_the_config_redacts_by_name_is_masked_in_the_listing(tmp_path: Path) -> None:
    day = generate(2000)
    write_logs(day, tmp_path / "logs", rotated=False)
    cfg = files_config(tmp_path / "logs", TZ)
    cfg["processors"] = {"redact": {"fields": ["userId"]}}
    got = report_json(write_config(tmp_path, cfg), "--date", DAY.isoformat())
    assert got["high_value"] and {h["userId"] for h in got["high_value"]} == {"[REDACTED]"}


def test_a_file_last_written_before_the_day_is_not_read(tmp_path: Path) -> None:
    import os

    day = generate(2000)
    write_logs(day, tmp_path / "logs", rotated=True)
    old = tmp_path / "logs" / "combined.log.3.gz"
    with gzip.open(old, "wt") as f:  # a day's worth of records stamped inside the window, written long ago
        f.write(open(tmp_path / "logs" / "combined.log").read())
    os.utime(old, (day.start - 86400, day.start - 86400))
    got = report_json(write_config(tmp_path, files_config(tmp_path / "logs", TZ)), "--date", DAY.isoformat())
    assert figures_part(got) == expected(day)
