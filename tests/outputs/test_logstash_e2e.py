"""The real daemon shipping sample Winston logs to Elastic's go-lumber server (tests/lumber)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ccf_agent import __version__
from ccf_agent.samples import is_payout, lines
from tests.harness import AgentProcess, wait_until, write_lines
from tests.lumber.server import LumberServer
from tests.outputs.conftest import StartLumber
from tests.outputs.helpers import (
    agent_config,
    copies_outside_unacked_windows,
    extra_copies,
    logstash_output,
    output_status,
    seqs_by_file,
)


def _start(tmp_path: Path, logs: Path, agents: list[AgentProcess], **output: object) -> AgentProcess:
    agent = AgentProcess(tmp_path, agent_config(logs, {"beats": output}))  # type: ignore[dict-item]
    agents.append(agent)
    return agent.start()


def test_records_arrive_complete_in_order_per_file_each_once(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    srv = start_lumber()
    write_lines(logs / "combined.log", lines(20_000))
    write_lines(logs / "error.log", lines(10_000, start=20_000))
    agent = _start(tmp_path, logs, agents, **logstash_output(srv.port))
    agent.wait_caught_up()

    assert seqs_by_file(srv) == {str(logs / "combined.log"): list(range(20_000)),
                                 str(logs / "error.log"): list(range(20_000, 30_000))}
    out = output_status(agent, "beats")
    assert (out["docs_acked"], out["duplicates"], out["request_errors"]) == (30_000, 0, 0)
    assert agent.stop() == 0


def test_events_carry_beats_metadata_and_the_original_record(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    srv = start_lumber()
    written = list(lines(10))
    write_lines(logs / "combined.log", written)
    _start(tmp_path, logs, agents, **logstash_output(srv.port)).wait_caught_up()

    first = srv.events()[0]["event"]
    assert first["@metadata"] == {"beat": "ccf-agent", "type": "_doc", "version": __version__}
    assert first["@timestamp"] == "2024-01-15T10:00:00.000Z"
    assert {k: first[k] for k in json.loads(written[0])} == json.loads(written[0])
    assert first["log"] == {"file": {"path": str(logs / "combined.log")}, "offset": 0}


def test_window_starts_small_and_grows_to_window_max(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    srv = start_lumber()
    write_lines(logs / "combined.log", lines(20_000))
    agent = _start(tmp_path, logs, agents, **logstash_output(srv.port, window_max=700))
    agent.wait_caught_up()

    sizes = list(Counter((e["conn"], e["batch"]) for e in srv.events()).values())
    assert sizes[0] == 10
    assert max(sizes) == 700
    grown = [b for a, b in zip(sizes, sizes[1:], strict=False) if b > a]
    assert all(b <= -(-a * 3 // 2) for a, b in zip(sizes, sizes[1:], strict=False) if b > a), sizes
    assert len(grown) >= 5  # 10 -> 15 -> 23 -> 35 -> 53 -> ... -> 700
    assert output_status(agent, "beats")["connections"][0]["window"] == 700


def test_stalled_server_with_keepalives_delays_without_errors(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    """The server holds batches far longer than the agent's 1 s timeout; go-lumber's keepalive
    ACK 0 every 0.2 s says "still working", so the agent waits instead of resending."""
    srv = start_lumber(mode="stall", keepalive=0.2)
    write_lines(logs / "combined.log", lines(5_000))
    agent = _start(tmp_path, logs, agents, **logstash_output(srv.port, timeout="1s"))
    wait_until(lambda: output_status(agent, "beats").get("progress_acks", 0) >= 15, 30,
               "15 keepalive ACKs (3 s of stall)")
    assert output_status(agent, "beats")["docs_acked"] == 0  # nothing acknowledged while held
    srv.set_mode("ack")
    agent.wait_caught_up()

    assert seqs_by_file(srv) == {str(logs / "combined.log"): list(range(5_000))}
    out = output_status(agent, "beats")
    assert (out["request_errors"], out["duplicates"]) == (0, 0)


def test_stall_past_the_timeout_resends_and_counts_exactly_the_copies(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    """Without keepalives the agent gives up after its timeout and resends the batches in flight.
    The stalled server had received (and written out) all of them, so every resent event is a
    copy at the server: the agent's count must be exactly the server's."""
    srv = start_lumber(mode="stall", keepalive=0)
    write_lines(logs / "combined.log", lines(5_000))
    agent = _start(tmp_path, logs, agents, **logstash_output(srv.port, timeout="700ms"))
    wait_until(lambda: output_status(agent, "beats").get("request_errors", 0) >= 3, 30, "3 ACK timeouts")
    srv.set_mode("ack")
    agent.wait_caught_up()

    assert set(seqs_by_file(srv)[str(logs / "combined.log")]) == set(range(5_000))
    out = output_status(agent, "beats")
    assert out["duplicates"] > 0
    assert extra_copies(srv) == out["duplicates"]
    assert copies_outside_unacked_windows(srv, depth=2) == []


def _ship_through_fault(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], srv: LumberServer, fault: str, **options: object
) -> AgentProcess:
    """Ship 10k records in ack mode (the window grows), then 10k more while the server is in
    `fault` until the agent has seen 3 failures, then everything in ack mode."""
    write_lines(logs / "combined.log", lines(10_000))
    agent = _start(tmp_path, logs, agents, **logstash_output(srv.port, **options))
    agent.wait_caught_up()
    srv.set_mode(fault)
    write_lines(logs / "combined.log", lines(10_000, start=10_000))
    wait_until(lambda: output_status(agent, "beats").get("request_errors", 0) >= 3, 60, f"3 failures in {fault}")
    srv.set_mode("ack")
    agent.wait_caught_up()
    return agent


def test_connection_dropped_mid_batch_loses_nothing_and_copies_stay_in_the_unacked_window(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    srv = start_lumber()
    agent = _ship_through_fault(tmp_path, logs, agents, srv, "drop-after 37")

    assert set(seqs_by_file(srv)[str(logs / "combined.log")]) == set(range(20_000))
    out = output_status(agent, "beats")
    assert out["docs_acked"] == 20_000
    assert 0 < extra_copies(srv) <= out["duplicates"]
    assert copies_outside_unacked_windows(srv, depth=2) == []
    assert agent.stop() == 0


def test_connection_dropped_after_whole_batch_counts_exactly_the_copies(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    """With one batch in flight and a server that takes every event of a batch before hanging up
    without an ACK, every event the agent resends is a copy: both counts must agree."""
    srv = start_lumber()
    agent = _ship_through_fault(tmp_path, logs, agents, srv, "drop-after 1000000", pipelining=1)

    assert set(seqs_by_file(srv)[str(logs / "combined.log")]) == set(range(20_000))
    out = output_status(agent, "beats")
    assert out["duplicates"] > 0
    assert extra_copies(srv) == out["duplicates"]
    assert copies_outside_unacked_windows(srv, depth=1) == []


def test_partial_ack_then_drop_resends_only_the_unacknowledged_rest(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    """`partial 40`: the server takes 40 events, ACKs 40 and hangs up. With one batch in flight
    the agent resends only events[40:], which the server never took: no copy at all."""
    srv = start_lumber()
    agent = _ship_through_fault(tmp_path, logs, agents, srv, "partial 40", pipelining=1)

    assert seqs_by_file(srv)[str(logs / "combined.log")] == list(range(20_000))
    out = output_status(agent, "beats")
    assert out["duplicates"] > 0  # resent: the agent cannot know the server had not kept them
    assert extra_copies(srv) == 0


def test_partial_ack_with_pipelining_loses_nothing(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    srv = start_lumber()
    agent = _ship_through_fault(tmp_path, logs, agents, srv, "partial 40")

    assert set(seqs_by_file(srv)[str(logs / "combined.log")]) == set(range(20_000))
    assert extra_copies(srv) <= output_status(agent, "beats")["duplicates"]
    assert copies_outside_unacked_windows(srv, depth=2) == []


def test_payouts_go_to_logstash_and_the_rest_to_a_file(
    tmp_path: Path, logs: Path, agents: list[AgentProcess], start_lumber: StartLumber
) -> None:
    srv = start_lumber()
    written = list(lines(10_000))
    write_lines(logs / "combined.log", written)
    archive = tmp_path / "archive" / "rest.ndjson"
    config = agent_config(
        logs,
        {"payouts": logstash_output(srv.port), "default": {"type": "file", "path": str(archive)}},
        routes=[{"name": "payouts", "output": "payouts",
                 "when": {"any": [{"field": "message", "icontains": "payout"},
                                  {"field": "service", "equals": "payout-job"}]}}],
    )
    agent = AgentProcess(tmp_path, config)
    agents.append(agent)
    agent.start().wait_caught_up()

    payouts = [json.loads(x)["seq"] for x in written if is_payout(json.loads(x))]
    rest = [json.loads(x)["seq"] for x in written if not is_payout(json.loads(x))]
    assert payouts and rest
    assert seqs_by_file(srv) == {str(logs / "combined.log"): payouts}
    stored = [json.loads(x)["doc"]["seq"] for x in archive.read_text().splitlines()]
    assert stored == rest
