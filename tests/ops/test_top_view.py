"""`ccf-agent top`'s rates: differences between two /status readings, without I/O."""

from __future__ import annotations

from typing import Any

from ccf_agent.ops.top import FileRow, OutputRow, output_cells, plain_lines, short_path, view


def reading(t: float, read: int, acked: int, retried: int = 0, errors: int = 0, latency: tuple[float, int] = (0, 0),
            stream: str = "s1", state: str = "firing") -> dict[str, Any]:
    return {
        "version": "0.1.0", "pid": 7, "config": "/etc/ccf-agent/config.yaml", "time": t, "uptime_seconds": t - 1000,
        "records_in": acked, "dead_letters": 2, "tap": {"clients": 1},
        "files": [{"path": "/var/log/app/combined.log", "stream": stream, "state": "reading", "read_offset": read,
                   "lag_bytes": 4096, "lag_seconds": 1.5}],
        "outputs": [{"name": "logs", "type": "elasticsearch", "healthy": True, "docs_acked": acked, "in_flight": 2,
                     "queued_docs": 10, "docs_retried": retried, "request_errors": errors,
                     "latency_seconds_sum": latency[0], "latency_count": latency[1], "last_error": None}],
        "alerts": {"rules": [{"name": "payout-failures", "severity": "critical", "state": state, "since": 900.0},
                             {"name": "quiet", "severity": "warning", "state": "inactive", "since": None}]},
    }


def test_rates_are_the_differences_over_the_seconds_between_readings() -> None:
    v = view(reading(1000, 0, 100, latency=(1.0, 10)), reading(1002, 4 << 20, 700, retried=6, errors=2,
                                                                 latency=(1.5, 20)))
    assert v.seconds == 2
    assert v.files == (FileRow("/var/log/app/combined.log", "reading", 2 << 20, 4096, 1.5),)
    [o] = v.outputs
    assert (o.docs_per_second, o.retries, o.retries_per_second, o.errors, o.errors_per_second) == (300, 6, 3, 2, 1)
    assert o.latency_ms == 50.0  # 0.5 s over 10 requests
    assert (o.in_flight, o.queued) == (2, 10)


def test_the_first_reading_has_no_rates() -> None:
    v = view(None, reading(1000, 500, 100))
    assert v.files[0].read_per_second is None and v.outputs[0].docs_per_second is None
    assert v.outputs[0].latency_ms is None


def test_no_request_in_between_has_no_latency() -> None:
    assert view(reading(1000, 0, 100, latency=(1.0, 10)), reading(1001, 0, 100, latency=(1.0, 10))).outputs[0] \
        .latency_ms is None


def test_a_new_stream_or_a_counter_that_went_back_has_no_rate() -> None:
    v = view(reading(1000, 9000, 500), reading(1001, 100, 10, stream="s2"))
    assert v.files[0].read_per_second is None and v.outputs[0].docs_per_second is None


def test_firing_alerts_and_dead_letters_are_shown() -> None:
    v = view(reading(1000, 0, 0), reading(1001, 0, 0))
    assert [a.name for a in v.firing] == ["payout-failures"] and v.dead_letters == 2 and v.tap_clients == 1
    assert "  Alerts firing: payout-failures (critical)" in plain_lines(v, 1001)


def test_retries_and_errors_show_the_new_ones_per_second() -> None:
    row = OutputRow("logs", "elasticsearch", False, 12.5, 1, 0, 40, 4.0, 3, None, 12.25, "503")
    assert output_cells(row) == ("logs", "DOWN", "12.5", "1", "0", "40 (+4/s)", "3", "12.2 ms")


def test_a_long_path_keeps_its_end() -> None:
    assert short_path("/var/log/click-clack-cashflow/combined.log", 20) == "…shflow/combined.log"
    assert short_path("/var/log/a.log", 20) == "/var/log/a.log"
