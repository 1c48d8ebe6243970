"""The status endpoint under hostile local clients: half-sent and malformed requests, floods of
connections up to the descriptor limit. Shipping must not notice: lines still arrive as fast, new
log files are still picked up, and what was refused is logged, not a traceback per request."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import AgentProcess, wait_until

NOFILE = 256  # the agent's descriptor limit in these tests (the setting)


def _config(tmp_path: Path, **input_opts: Any) -> dict[str, Any]:
    (tmp_path / "logs").mkdir(exist_ok=True)
    # scan_interval stays at its 10 s default: a new file must be found through inotify, as it is
    # normally, not by a periodic rescan that would hide a stall.
    return {"inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")], **input_opts}],
            "outputs": {"archive": {"type": "file", "path": str(tmp_path / "out.ndjson")}}}


class Arrivals:
    """Watches the file output and notes when each `seq` arrived (polled every 2 ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        offset, rest = 0, b""
        while not self._stop.is_set():
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            now = time.monotonic()
            offset += len(data)
            *complete, rest = (rest + data).split(b"\n")
            for line in complete:
                self.at[json.loads(line)["doc"]["seq"]] = now
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def write_and_time(log: Path, arrivals: Arrivals, seqs: range, every: float = 0.05,
                   timeout: float = 30) -> list[float]:
    """Write one line per `seq`, `every` seconds apart; the delay of each to the output, in seconds."""
    written = {}
    for seq in seqs:
        with open(log, "a") as f:
            f.write(json.dumps({"level": "info", "message": "tick", "seq": seq}) + "\n")
        written[seq] = time.monotonic()
        time.sleep(every)
    wait_until(lambda: all(s in arrivals.at for s in seqs), timeout, f"lines {seqs} at the output", 0.01)
    return [arrivals.at[s] - written[s] for s in seqs]


class Flood:
    """Hostile clients in threads, until stopped: `holders` connections each holding half a request,
    slow clients sending a byte every half second, malformed requests, and a connect/close storm."""

    def __init__(self, port: int, holders: int = 300) -> None:
        self.port, self.holders = port, holders
        self.stop = threading.Event()
        self.sent = {"half": 0, "slow": 0, "malformed": 0, "storm": 0}
        self.threads = [threading.Thread(target=t, daemon=True)
                        for t in (self._half, self._slow, self._malformed, self._storm)]

    def _connect(self) -> socket.socket | None:
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", self.port))
            return s
        except OSError:
            s.close()
            return None

    def _half(self) -> None:
        held: list[socket.socket] = []
        while not self.stop.is_set():
            held = [s for s in held if _open(s)]
            while len(held) < self.holders and not self.stop.is_set():
                s = self._connect()
                if s is None:
                    break
                try:
                    s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line
                    held.append(s)
                    self.sent["half"] += 1
                except OSError:
                    s.close()
            time.sleep(0.1)
        for s in held:
            s.close()

    def _slow(self) -> None:
        conns = [c for c in (self._connect() for _ in range(20)) if c is not None]
        request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        i = 0
        while not self.stop.is_set() and i < len(request):
            for c in conns:
                try:
                    c.send(request[i:i + 1])
                    self.sent["slow"] += 1
                except OSError:
                    pass
            i += 1
            time.sleep(0.5)
        for c in conns:
            c.close()

    def _malformed(self) -> None:
        garbage = [b"GARBAGE\r\n\r\n", b"GET /status HTTP/9.9\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n\r\n",
                   b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                   b"GET /status HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n",
                   b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)]  # a TLS hello
        k = 0
        while not self.stop.is_set():
            s = self._connect()
            if s is not None:
                try:
                    s.sendall(garbage[k % len(garbage)])
                    s.recv(1024)
                    self.sent["malformed"] += 1
                except OSError:
                    pass
                s.close()
            k += 1
            time.sleep(0.01)

    def _storm(self) -> None:
        while not self.stop.is_set():
            s = self._connect()
            if s is not None:
                s.close()
                self.sent["storm"] += 1

    @contextmanager
    def running(self) -> Iterator[Flood]:
        for t in self.threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(10)


def _open(s: socket.socket) -> bool:
    """Whether the server still holds this connection (it has not closed or reset it)."""
    try:
        s.setblocking(False)
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.settimeout(1)


def metrics(agent: AgentProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith("ccf_agent_status_connections_total")}


def test_shipping_keeps_its_pace_while_the_status_endpoint_is_flooded(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, _config(tmp_path), nofile=NOFILE)
    log = tmp_path / "logs" / "combined.log"
    log.write_text("")
    agent.start()
    arrivals = Arrivals(tmp_path / "out.ndjson")
    try:
        before = write_and_time(log, arrivals, range(0, 40))
        flood = Flood(agent.port)
        with flood.running():
            flood_started = time.monotonic()
            time.sleep(3)  # the flood at full strength: every slot held, the rest refused
            during = write_and_time(log, arrivals, range(100, 140))
            # New files while it lasts: found (inotify) and read at once, not at the next rescan.
            new_files = []
            for k in range(5):
                started = time.monotonic()
                (tmp_path / "logs" / f"new-{k}.log").write_text(
                    json.dumps({"message": "new file", "seq": 1000 + k}) + "\n")
                wait_until(lambda k=k: 1000 + k in arrivals.at, 30, f"new-{k}.log at the output", 0.01)
                new_files.append(arrivals.at[1000 + k] - started)
            time.sleep(max(0.0, 6.5 - (time.monotonic() - flood_started)))  # past the 5 s request deadline
            fds = len(list(Path(f"/proc/{agent.proc.pid}/fd").iterdir())) if agent.proc else 0
        counted = metrics(agent)
    finally:
        arrivals.stop()
        agent.kill()

    print(f"\nline to output, before the flood: median {statistics.median(before) * 1000:.0f} ms, "
          f"max {max(before) * 1000:.0f} ms; during: median {statistics.median(during) * 1000:.0f} ms, "
          f"max {max(during) * 1000:.0f} ms; new files: max {max(new_files) * 1000:.0f} ms; "
          f"agent descriptors during the flood: {fds} of {NOFILE}; clients: {flood.sent}; refused: {counted}")
    assert flood.sent["half"] >= 300 and flood.sent["malformed"] > 0 and flood.sent["storm"] > 0
    assert statistics.median(during) <= statistics.median(before) + 0.1
    assert max(during) < 1.0 and max(new_files) < 1.0
    assert counted['ccf_agent_status_connections_total{outcome="refused"}'] > 0
    assert counted['ccf_agent_status_connections_total{outcome="cut"}'] > 0  # the held half requests
    text = agent.log()
    assert "status endpoint: " in text and "connection(s) refused" in text
    assert "Traceback" not in text and "Error handling request" not in text


@pytest.mark.parametrize("sent", [
    [b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: 1\r\n"],  # trickling does not extend it
    [],  # nothing at all
], ids=["half-sent", "silent"])
def test_a_connection_without_a_complete_request_is_cut_within_seconds(tmp_path: Path, sent: list[bytes]) -> None:
    # It was held for an hour (aiohttp's keepalive_timeout, 3630 s), each holding a descriptor.
    agent = AgentProcess(tmp_path, _config(tmp_path), nofile=NOFILE).start()
    try:
        s = socket.create_connection(("127.0.0.1", agent.port), timeout=30)
        started = time.monotonic()
        for part in sent:
            s.sendall(part)
        try:
            end = s.recv(1)
        except ConnectionResetError:
            end = b""
        held = time.monotonic() - started
        s.close()
    finally:
        agent.kill()
    assert end == b"" and 4.0 < held < 8.0  # REQUEST_WAIT is 5 s


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n", b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /status HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n",
], ids=["bad-method", "bad-length", "huge-header"])
def test_a_malformed_request_gets_400_and_no_traceback_in_the_log(tmp_path: Path, request_bytes: bytes) -> None:
    agent = AgentProcess(tmp_path, _config(tmp_path)).start()
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
                s.sendall(request_bytes)
                answer = s.recv(1024)
            assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer
        counted = metrics(agent)
    finally:
        agent.kill()
    assert "Traceback" not in agent.log() and "Error handling request" not in agent.log()
    assert agent.log().count("malformed request(s)") == 1  # one line a minute, not one per request
    assert counted['ccf_agent_status_connections_total{outcome="malformed"}'] == 3


def test_log_files_leave_descriptors_for_the_rest_and_the_shortage_is_logged(tmp_path: Path) -> None:
    # More log files than descriptors: the agent opens those it can while keeping a reserve, so
    # offsets are still saved and the status endpoint still answers; it says why it does not open
    # the rest, and opens them as soon as descriptors are free again, without waiting for a rescan.
    nofile, files = 64, 80
    logs = tmp_path / "logs"
    logs.mkdir()
    for k in range(files):
        (logs / f"f{k:03d}.log").write_text(json.dumps({"message": "x", "seq": k}) + "\n")
    agent = AgentProcess(tmp_path, _config(tmp_path, rotate_wait="100ms", poll_interval="50ms"), nofile=nofile)
    agent.config["agent"] = {"registry_flush_interval": "100ms"}
    agent.config_path.write_text(yaml.safe_dump(agent.config))
    agent.start()
    arrivals = Arrivals(tmp_path / "out.ndjson")
    try:
        wait_until(lambda: "cannot open" in agent.log(), 30, "the shortage to be logged")
        wait_until(lambda: len(arrivals.at) >= 10, 30, "the files it could open to be shipped")
        assert len(arrivals.at) < files
        assert agent.status() is not None
        def drained() -> bool:  # shipped files go away, freeing their descriptors for the others
            for k in list(arrivals.at):
                (logs / f"f{k:03d}.log").unlink(missing_ok=True)
            return len(arrivals.at) == files

        wait_until(drained, 60, "every file shipped")
    finally:
        arrivals.stop()
        agent.kill()
    text = agent.log()
    assert text.count("cannot open") <= 2  # once per shortage, not per file or per scan
    assert "file descriptors available again" in text
    assert "cannot write registry" not in text  # the reserve kept descriptors for the state files


def test_status_says_running_while_a_client_holds_every_connection(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, _config(tmp_path)).start()
    held = [socket.create_connection(("127.0.0.1", agent.port), timeout=10) for _ in range(16)]
    try:
        for s in held:
            s.sendall(b"GET /status HTTP/1.1\r\n")
        r = subprocess.run([sys.executable, "-m", "ccf_agent", "status", "-c", str(agent.config_path)],
                           capture_output=True, text=True, timeout=30)
    finally:
        for s in held:
            s.close()
        agent.kill()
    assert r.returncode == 0, r.stdout  # it said "not running" and exited 3
    assert "ccf-agent is running (pid" in r.stdout and "did not answer (busy or blocked?)" in r.stdout
