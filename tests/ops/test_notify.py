"""systemd's notify protocol, received on a datagram socket the test opens."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccf_agent.ops import notify
from ccf_agent.ops.snapshot import FileState, InputState, OutputState, Snapshot
from tests import virtual_time
from tests.harness import AgentProcess, wait_until, write_lines
from tests.ops.helpers import file_outputs_config, stamp


class NotifySocket:
    """What systemd listens on: a Unix datagram socket, one message per datagram."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.address = path if not path.startswith("\0") else "@" + path[1:]

    def receive(self, timeout: float = 10.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def receive_until(self, key: str, timeout: float = 30.0) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The first message carrying `key`, and every message received before it."""
        deadline = time.monotonic() + timeout
        before: list[dict[str, str]] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key} within {timeout:g}s; received {before[-5:]}")
            try:
                msg = self.receive(remaining)
            except TimeoutError:
                continue
            if key in msg:
                return msg, before
            before.append(msg)

    def drain(self) -> list[dict[str, str]]:
        """Every message already received, without waiting."""
        out: list[dict[str, str]] = []
        while True:
            try:
                out.append(self.receive(timeout=0))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    s = NotifySocket(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", s.address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield s
    s.close()


def test_notify_sends_the_state_as_one_datagram(listener: NotifySocket) -> None:
    assert notify.notify("READY=1\nSTATUS=up")
    assert listener.receive() == {"READY": "1", "STATUS": "up"}


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    s = NotifySocket(f"\0ccf-agent-test-{uuid.uuid4().hex}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", s.address)
        assert s.address.startswith("@")
        assert notify.notify("WATCHDOG=1")
        assert s.receive() == {"WATCHDOG": "1"}
    finally:
        s.close()


def test_notify_is_a_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False


def test_notify_reports_a_socket_nobody_listens_on_without_raising(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify.notify("READY=1") is False


def test_watchdog_period_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_period() == 15.0


def test_watchdog_meant_for_another_process_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert notify.watchdog_period() is None


def test_no_watchdog_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify.watchdog_period() is None


def test_stopping_and_reloading_carry_their_states(listener: NotifySocket) -> None:
    notify.stopping()
    assert listener.receive()["STOPPING"] == "1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.reloading()
    msg = listener.receive()
    assert msg["RELOADING"] == "1" and int(msg["MONOTONIC_USEC"]) >= before


def test_status_summarises_files_throughput_lag_and_outputs() -> None:
    snap = Snapshot(inputs=(InputState("app", files=(FileState(state="reading", lag_bytes=3 << 20, lag_seconds=12.0),
                                                     FileState(state="idle"))),),
                    outputs=(OutputState("logs", "file"), OutputState("es", "elasticsearch", healthy=False)))
    assert notify.summary(snap, 1520.4) == ("2 files (1 reading), 1520 records/s, lag 3.0 MiB / 12s; "
                                            "outputs 1/2 healthy")


def test_status_is_always_one_line() -> None:
    assert "\n" not in notify.summary(Snapshot(dead_letters=3), 0)


class Counting:
    """What the supervisor hands the loop: a snapshot of a growing records counter."""

    def __init__(self) -> None:
        self.records_in = 0

    def __call__(self) -> Snapshot:
        return Snapshot(records_in=self.records_in, inputs=(InputState("app", files=(FileState(),)),),
                        outputs=(OutputState("logs", "file"),))


def test_loop_sends_ready_then_watchdog_pings_then_a_status_with_throughput(
        listener: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> None:
    # On the virtual clock: a ping every 62.5 ms, a status every 500 ms, exactly (binary fractions).
    monkeypatch.setenv("WATCHDOG_USEC", "125000")
    agent = Counting()

    async def scenario() -> None:
        task = asyncio.create_task(notify.notify_loop(agent, status_every=0.5))
        await asyncio.sleep(0)  # READY=1 is out
        agent.records_in = 400
        await asyncio.sleep(0.6)
        task.cancel()

    virtual_time.run(scenario())
    messages = listener.drain()
    # READY at 0, pings at 62.5, 125, ... 437.5 ms, the status with a ping at 500, a ping at 562.5.
    assert [sorted(m) for m in messages] == [["READY", "STATUS"], *[["WATCHDOG"]] * 7, ["STATUS", "WATCHDOG"],
                                             ["WATCHDOG"]]
    assert all(m.get("WATCHDOG", "1") == "1" for m in messages)
    assert messages[0]["STATUS"].startswith("1 files (0 reading), 0 records/s")
    assert messages[-2]["STATUS"].startswith("1 files (0 reading), 800 records/s")  # 400 records in 0.5 s


def test_loop_waits_for_the_agent_to_be_up_before_ready(listener: NotifySocket) -> None:
    async def scenario() -> tuple[bool, dict[str, str]]:
        up = asyncio.Event()
        task = asyncio.create_task(notify.notify_loop(Counting(), up=up))
        try:
            listener.sock.setblocking(False)
            await asyncio.sleep(0.2)
            try:
                listener.sock.recv(4096)
                early = True
            except BlockingIOError:
                early = False
            up.set()
            return early, await asyncio.to_thread(listener.receive)
        finally:
            task.cancel()

    early, ready = asyncio.run(scenario())
    assert not early and ready["READY"] == "1"


def test_loop_ends_at_once_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    asyncio.run(asyncio.wait_for(notify.notify_loop(Counting()), 1))


def test_the_daemon_is_ready_when_up_pings_the_watchdog_reports_status_and_says_stopping(
        tmp_path: Path, listener: NotifySocket) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    agent = AgentProcess(tmp_path, file_outputs_config(tmp_path),
                         env={"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"})
    agent.start()
    try:
        ready, _ = listener.receive_until("READY")
        assert agent.status() is not None  # the endpoint, the outputs and the inputs came first
        assert "outputs 2/2 healthy" in ready["STATUS"]
        write_lines(logs / "combined.log", (f'{{"level":"info","message":"m{i}","timestamp":"{stamp(time.time())}"}}'
                                            for i in range(5000)))
        pings = [listener.receive_until("WATCHDOG", 5)[0] for _ in range(3)]
        assert all(p["WATCHDOG"] == "1" for p in pings)
        status, _ = listener.receive_until("STATUS", 30)  # the periodic one, after the lines were read
        assert "1 files" in status["STATUS"] and "records/s" in status["STATUS"]
        wait_until(lambda: agent.status()["records_in"] == 5000, 30, "the lines to be read")  # type: ignore[index]
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGTERM)
        stopping, _ = listener.receive_until("STOPPING", 15)
        assert stopping["STOPPING"] == "1"
        assert agent.proc.wait(30) == 0
    finally:
        agent.kill()


def test_sighup_reports_reloading_then_ready_again(tmp_path: Path, listener: NotifySocket) -> None:
    (tmp_path / "logs").mkdir()
    agent = AgentProcess(tmp_path, file_outputs_config(tmp_path), env={"NOTIFY_SOCKET": listener.address})
    agent.start()
    try:
        listener.receive_until("READY")
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        reloading, _ = listener.receive_until("RELOADING", 15)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        ready, _ = listener.receive_until("READY", 30)
        assert ready["READY"] == "1"
        assert agent.stop() == 0
    finally:
        agent.kill()
