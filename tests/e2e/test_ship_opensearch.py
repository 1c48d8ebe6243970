"""End to end against a real OpenSearch node: every record stored once, wherever it crashes."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ccf_agent.pipeline.native import fast
from ccf_agent.samples import is_payout, lines
from tests.harness import AgentProcess, Engine, KillLedger, agent_config, write_lines

pytestmark = pytest.mark.engine


# A machine without a compiler installs the agent without its C loop (ccf_agent/_native/): the
# Python loop then ships everything, and must ship the same documents under the same ids.
PIPELINES = {"C loop": {}, "pure Python": {"CCF_AGENT_PURE_PYTHON": "1"}}


@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_100k_winston_lines_are_stored_once_and_routed(pipeline: str, tmp_path: Path, engine: Engine,
                                                       agents: list[AgentProcess]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    written = list(lines(100_000))
    write_lines(logs / "combined.log", written[:80_000])
    write_lines(logs / "error.log", written[80_000:])
    agent = AgentProcess(tmp_path, agent_config(engine, [str(logs / "*.log")]), env=PIPELINES[pipeline]).start()
    agents.append(agent)
    native = agent.runs_the_c_loop()
    assert native == (pipeline == "C loop" and fast is not None)
    agent.wait_caught_up()

    assert engine.tally(100_000) == {"written": 100_000, "stored": 100_000, "distinct": 100_000,
                                     "lost": 0, "duplicated": 0}
    payouts = sum(1 for line in written if is_payout(json.loads(line)))
    assert engine.count("payouts") == payouts
    assert engine.count("logs") == 100_000 - payouts
    first = engine.docs("*", ("seq", "@timestamp", "log"))
    by_seq = {d["seq"]: d for d in first}
    assert by_seq[0]["@timestamp"] == "2024-01-15T10:00:00.000Z"
    assert by_seq[61_000]["@timestamp"] == "2024-01-15T10:01:01.000Z"
    assert by_seq[0]["log"] == {"file": {"path": str(logs / "combined.log")}, "offset": 0}
    if native and len(os.sched_getaffinity(0)) > 1:  # agent.read_ahead: auto, on two CPUs
        [tid] = [tid for tid, name in agent.threads().items() if name == "ccf-read-ahead"]  # the 28 MB file's
        assert os.sched_getscheduler(tid) == os.SCHED_BATCH  # its wake-ups leave the event loop's thread be
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=10).read().decode()
        [ahead] = [line for line in metrics.splitlines() if line.startswith("ccf_agent_bytes_read_ahead_total{")]
        # It read some of the 28 MB file; how much depends on the machine: a job its thread has not
        # begun when the loop comes back (no CPU free for it) is taken back and read by the loop.
        assert float(ahead.rsplit(" ", 1)[1]) > 0
    assert agent.stop() == 0


def test_kill_9_mid_shipping_then_restart_stores_each_record_once(tmp_path: Path, engine: Engine,
                                                                   agents: list[AgentProcess]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write_lines(logs / "combined.log", lines(100_000))
    agent = AgentProcess(tmp_path, agent_config(engine, [str(logs / "*.log")], batch_max_docs=500))
    agents.append(agent)
    ledger = KillLedger(agent, engine, logs / "combined.log")
    for _ in range(3):
        agent.start()
        ledger.wait_saved_past_last_kill()
        ledger.kill()
    agent.start()
    agent.wait_caught_up()
    tally = engine.tally(100_000)
    assert (tally["lost"], tally["duplicated"]) == (0, 0), tally
    # Each restart resumed where the registry said: it resent (409) only what was stored past that.
    assert ledger.finish(100_000)["kills"] == 3


def test_rename_rotation_and_truncation_during_shipping_lose_nothing(tmp_path: Path, engine: Engine,
                                                                     agents: list[AgentProcess]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "combined.log"
    agent = AgentProcess(tmp_path, agent_config(engine, [str(logs / "*.log")])).start()
    agents.append(agent)
    seq = 0

    def append(n: int, f: object) -> None:
        nonlocal seq
        for line in lines(n, start=seq):
            f.write(line + "\n")  # type: ignore[attr-defined]
        f.flush()  # type: ignore[attr-defined]
        seq += n

    f = open(live, "a")  # noqa: SIM115
    for _ in range(5):
        append(2_000, f)
        time.sleep(0.05)
    # Rename rotation: the app keeps writing to the old file until it reopens.
    os.rename(live, logs / "combined.log.1")
    append(3_000, f)
    f.close()
    f = open(live, "a")  # noqa: SIM115
    append(5_000, f)
    agent.wait_caught_up()
    # Truncation in place (everything before it was shipped), then more writes.
    os.truncate(live, 0)
    f.seek(0)
    append(4_000, f)
    f.close()
    agent.wait_caught_up()
    assert engine.tally(seq) == {"written": 22_000, "stored": 22_000, "distinct": 22_000, "lost": 0, "duplicated": 0}


def test_writer_racing_a_rename_storm(tmp_path: Path, engine: Engine, agents: list[AgentProcess]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "combined.log"
    agent = AgentProcess(tmp_path, agent_config(engine, [str(logs / "*.log")])).start()
    agents.append(agent)
    total = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal total
        f = open(live, "a")  # noqa: SIM115
        while not stop.is_set():
            for line in lines(200, start=total):
                f.write(line + "\n")
            f.flush()
            total += 200
            if total % 2_000 == 0:  # rotate: rename, keep writing a little, reopen
                os.replace(live, logs / "combined.log.1")
                f.close()
                f = open(live, "a")  # noqa: SIM115
            time.sleep(0.01)
        f.close()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(4)
    stop.set()
    t.join()
    agent.wait_caught_up()
    # combined.log.1 is overwritten by each rotation: every generation must have been read first.
    tally = engine.tally(total)
    assert (tally["lost"], tally["duplicated"]) == (0, 0), tally


def test_invalid_lines_arrive_tagged(tmp_path: Path, engine: Engine, agents: list[AgentProcess]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "combined.log").write_bytes(b'{"seq": 1, "message": "ok"}\nnot json at all\n'
                                        b'{"message": "caf\xe9 \xff"}\n{"seq": 4, "message": "ok"}\n')
    agent = AgentProcess(tmp_path, agent_config(engine, [str(logs / "*.log")])).start()
    agents.append(agent)
    agent.wait_caught_up()
    docs = engine.docs("*", ("seq", "message", "tags"))
    tags = sorted(tuple(d.get("tags", ())) for d in docs)
    assert tags == [(), (), ("invalid_json",), ("invalid_utf8",)]
