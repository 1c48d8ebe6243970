"""`ccf-agent top`: a live view of the running daemon, in a real terminal (tmux) and as plain lines
when stdout is not one."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccf_agent.samples import lines
from tests.harness import ROOT, AgentProcess, wait_until


class Writer(threading.Thread):
    """The app writing its log steadily (500 lines a second) while `top` watches."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.stop = path, threading.Event()

    def run(self) -> None:
        source = lines(10_000_000)
        with open(self.path, "a") as f:
            while not self.stop.wait(0.1):
                f.write("".join(next(source) + "\n" for _ in range(50)))
                f.flush()


@pytest.fixture
def busy_agent(tmp_path: Path) -> Iterator[AgentProcess]:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "combined.log"
    log.touch()
    agent = AgentProcess(tmp_path, {
        "inputs": [{"id": "app", "paths": [str(log)], "scan_interval": "200ms"}],
        "outputs": {"logs": {"type": "file", "path": str(tmp_path / "logs.ndjson")},
                    "payouts": {"type": "file", "path": str(tmp_path / "payouts.ndjson")}},
        "routes": [{"name": "payouts", "output": "payouts", "when": {"field": "message", "icontains": "payout"}}],
    }).start()
    writer = Writer(log)
    writer.start()
    try:
        yield agent
    finally:
        writer.stop.set()
        writer.join()
        agent.kill()


class Tmux:
    """A tmux server of the test's own: a real pseudo-terminal, 80 by 24 like a plain SSH session."""

    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]

    def run(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=30).stdout

    def start(self, command: list[str]) -> None:
        # Not the size pytest's terminal exports: the program must find the terminal's own.
        env = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", *command])
        subprocess.run([*self.base, "new-session", "-d", "-x", "80", "-y", "24", "-c", str(ROOT), env],
                       check=True, timeout=30)
        self.run("set-option", "-g", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.run("capture-pane", "-p")

    def dead(self) -> bool:
        return self.run("display-message", "-p", "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        self.run("kill-server")


def rows(screen: str) -> dict[str, list[str]]:
    """A table's rows by their first cell (the columns are apart by two spaces or more)."""
    out = {}
    for line in screen.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) > 2:
            out[cells[0]] = cells[1:]
    return out


def test_top_in_a_terminal_shows_the_files_the_outputs_and_their_rates(busy_agent: AgentProcess) -> None:
    tmux = Tmux(f"ccf-top-{busy_agent.port}")
    try:
        tmux.start([sys.executable, "-m", "ccf_agent", "top", "-c", str(busy_agent.config_path)])
        log = "…" + str(busy_agent.workdir / "logs" / "combined.log")[-37:]  # 80 columns: the path's end

        def shows_rates() -> bool:
            table = rows(tmux.screen())
            return (log in table and all(name in table and float(table[name][1].replace(",", "")) > 0
                                         for name in ("logs", "payouts")))

        try:
            wait_until(shows_rates, 30, "top to show both outputs shipping")
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{tmux.screen()}") from None
        table = rows(tmux.screen())
        state, read, lag, lag_s = table[log]
        assert re.fullmatch(r"[\d.]+ (B|KiB|MiB)/s", read) and float(read.split()[0]) > 0, table[log]
        health, _, in_flight, queued, retries, errors, latency = table["logs"]
        assert (health, retries, errors, latency) == ("ok", "0", "0", "-")  # a file output times no requests
        assert in_flight.isdigit() and queued.isdigit()
        screen = tmux.screen()
        assert "Alerts firing: none" in screen and "Dead letters: 0" in screen
        tmux.run("send-keys", "C-c")
        wait_until(tmux.dead, 10, "top to quit on Ctrl-C")
    finally:
        tmux.kill()


def test_top_without_a_terminal_prints_plain_lines(busy_agent: AgentProcess) -> None:
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ccf_agent", "top", "-c", str(busy_agent.config_path),
                        "--iterations", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout  # no escape codes in a pipe
    log = busy_agent.workdir / "logs" / "combined.log"
    readings = r.stdout.strip().split("\n\n")
    assert len(readings) == 2 and time.monotonic() - started >= 2  # one a second, rates from the second on
    for reading in readings:
        assert re.search(rf"^  file {re.escape(str(log))}  \w+  read [\d.]+ (B|KiB|MiB)/s  lag ", reading, re.M)
        docs = re.search(r"^  output logs \(file\)  healthy  ([\d,.]+) docs/s  in flight \d+", reading, re.M)
        assert docs is not None and float(docs.group(1).replace(",", "")) > 0, reading
        assert "Dead letters: 0" in reading


def test_top_without_a_daemon_exits_3(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    agent = AgentProcess(tmp_path, {"inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
                                    "outputs": {"archive": {"type": "file", "path": str(tmp_path / "o.ndjson")}}})
    r = subprocess.run([sys.executable, "-m", "ccf_agent", "top", "-c", str(agent.config_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "no daemon answers" in r.stderr
