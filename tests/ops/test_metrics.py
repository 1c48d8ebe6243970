"""`GET /metrics`: the agent's own counters, the process, and the app's business metrics."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccf_agent.ops.metrics import fmt, render_metrics
from ccf_agent.ops.snapshot import EndpointState, FileState, InputState, OutputState, Snapshot
from tests.harness import AgentProcess
from tests.ops.helpers import (
    AppLogs,
    file_outputs_config,
    get,
    labels,
    samples,
    scrape,
    shipped_app_logs,
    write_app_logs,
)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentProcess, AppLogs]]:
    yield from shipped_app_logs(tmp_path_factory.mktemp("metrics"))


def test_promtool_check_metrics_is_clean(shipped: tuple[AgentProcess, AppLogs]) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    text = scrape(shipped[0])
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_every_record_read_is_counted_and_shipped_by_the_output_it_was_routed_to(
        shipped: tuple[AgentProcess, AppLogs]) -> None:
    agent, expected = shipped
    text = scrape(agent)
    assert samples(text, "ccf_agent_records_read_total") == {labels(): expected.lines}
    shipped_by = samples(text, "ccf_agent_records_shipped_total")
    assert sum(shipped_by.values()) == expected.lines
    payout_lines = sum(1 for _ in open(agent.workdir / "out" / "payouts.ndjson"))
    assert shipped_by[labels(output="payouts")] == payout_lines > 0
    assert samples(text, "ccf_agent_output_healthy") == {labels(output="logs"): 1, labels(output="payouts"): 1}
    assert samples(text, "ccf_agent_lag_bytes") == {labels(input="app"): 0}


def test_process_metrics_describe_this_process(shipped: tuple[AgentProcess, AppLogs]) -> None:
    agent, _ = shipped
    text = scrape(agent)
    assert agent.proc is not None
    (rss,) = samples(text, "process_resident_memory_bytes").values()
    assert 10 << 20 < rss < 2 << 30
    (started,) = samples(text, "process_start_time_seconds").values()
    assert abs(started - Path(f"/proc/{agent.proc.pid}").stat().st_mtime) < 120
    (fds,) = samples(text, "process_open_fds").values()
    assert fds >= 3


def test_business_metrics_count_each_payout_once_although_winston_wrote_it_to_several_files(
        shipped: tuple[AgentProcess, AppLogs]) -> None:
    agent, expected = shipped
    text = scrape(agent)
    counted = {k: v for k, v in samples(text, "ccf_payouts_total").items() if v}
    assert counted == {labels(status=s, method=m): n for (s, m), n in expected.payouts.items()}
    assert samples(text, "ccf_payout_duration_seconds_count") == {labels(): len(expected.durations)}
    assert samples(text, "ccf_payout_duration_seconds_bucket")[labels(le="0.1")] == 1
    assert samples(text, "ccf_last_payout_job_timestamp") == {labels(): expected.last_job}


def test_large_counters_and_unix_times_are_exact() -> None:
    assert fmt(1234567) == "1234567"
    assert fmt(1705312860.5) == "1705312860.5"
    assert fmt(1705312860.0) == "1705312860"
    assert fmt(0.1 + 0.2) == "0.30000000000000004"
    assert (fmt(float("inf")), fmt(float("nan"))) == ("+Inf", "NaN")


def test_metrics_content_type_is_the_text_exposition_format(shipped: tuple[AgentProcess, AppLogs]) -> None:
    status, _, content_type = get(f"http://127.0.0.1:{shipped[0].port}/metrics")
    assert status == 200 and content_type.startswith("text/plain")


def test_the_payout_job_timestamp_survives_an_agent_restart(tmp_path: Path) -> None:
    expected = write_app_logs(tmp_path / "logs", time.time())
    agent = AgentProcess(tmp_path, file_outputs_config(tmp_path)).start()
    try:
        agent.wait_caught_up(60)
        assert agent.stop() == 0
        agent.start()  # nothing left to read: the gauge can only come from the state directory
        text = scrape(agent)
        assert samples(text, "ccf_last_payout_job_timestamp") == {labels(): expected.last_job}
        assert not any(samples(text, "ccf_payouts_total").values())  # counters restart, as rate() expects
    finally:
        agent.kill()


def test_the_agents_metrics_are_rendered_from_a_snapshot_alone() -> None:
    snap = Snapshot(
        records_in=7, inflight_bytes=512, backpressure_pauses=2, registry_error="disk full",
        inputs=(InputState("app", bytes_read=900, malformed=1, open_files=2,
                           counters={"redacted:card_number": 3, "records_redacted": 2, "dropped:debug": 4},
                           files=(FileState(lag_bytes=100), FileState(lag_bytes=20))),),
        outputs=(OutputState("logs", "elasticsearch", healthy=False, docs_acked=5, last_ok_at=1700000000.5,
                             latency_buckets=(1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2), latency_sum=0.012),),
        routes=(("payouts", 3), ("default", 4)), endpoint=EndpointState(refused=1))
    text = render_metrics(snap)
    assert samples(text, "ccf_agent_records_read_total") == {labels(): 7}
    assert samples(text, "ccf_agent_lag_bytes") == {labels(input="app"): 120}
    assert samples(text, "ccf_agent_redactions_total") == {labels(input="app", kind="card_number"): 3}
    assert samples(text, "ccf_agent_records_dropped_total") == {labels(input="app", reason="dropped", rule="debug"): 4}
    assert samples(text, "ccf_agent_route_records_total") == {labels(route="payouts"): 3, labels(route="default"): 4}
    assert samples(text, "ccf_agent_records_shipped_total") == {labels(output="logs"): 5}
    assert samples(text, "ccf_agent_output_healthy") == {labels(output="logs"): 0}
    assert samples(text, "ccf_agent_output_last_success_timestamp_seconds") == {labels(output="logs"): 1700000000.5}
    assert samples(text, "ccf_agent_bulk_latency_seconds_count") == {labels(output="logs"): 2}
    assert samples(text, "ccf_agent_status_connections_total")[labels(outcome="refused")] == 1
    assert samples(text, "ccf_agent_registry_healthy") == {labels(): 0}
