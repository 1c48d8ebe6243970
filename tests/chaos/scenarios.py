"""Chaos scenarios: the real daemon, a real OpenSearch node, a writer, and one kind of trouble.

Each scenario runs a writer appending uniquely numbered records at a steady rate, injects its
fault for `seconds`, stops the writer, lets the agent catch up, and counts in the engine:
lost = written - distinct, duplicated = stored - distinct.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import ROOT, AgentProcess, Engine, KillLedger, agent_config

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


class Writer:
    running: set[Writer] = set()  # until stop(): what a failed scenario leaves behind (see conftest.py)

    def __init__(self, path: Path, rate: int) -> None:
        self.path = path
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.writer", str(path), "--rate", str(rate)],
                                     stdout=subprocess.PIPE, cwd=ROOT, text=True)
        Writer.running.add(self)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "WRITER_READY"

    def reopen(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "PAUSED"

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)

    def stop(self) -> int:
        Writer.running.discard(self)
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return int(json.loads(out.strip().splitlines()[-1])["written"])

    def kill(self) -> None:
        Writer.running.discard(self)
        self.proc.kill()
        self.proc.wait()


class RssSampler:
    """Peak RSS of the agent across all its restarts (VmHWM of each process)."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.peak_kib = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        proc = self.agent.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))
        except OSError:
            pass

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return self.peak_kib / 1024


@dataclass
class Run:
    name: str
    tmp: Path
    engine: Engine
    seconds: float
    rate: int
    output_url: str | None = None  # e.g. a fault proxy in front of the engine
    agent_opts: dict[str, Any] = field(default_factory=dict)
    input_opts: dict[str, Any] = field(default_factory=dict)
    agent_section: dict[str, Any] = field(default_factory=dict)  # the config's `agent:` keys
    notes: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # the agent's, e.g. CCF_AGENT_PURE_PYTHON

    def __post_init__(self) -> None:
        self.logs = self.tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.live = self.logs / "app.log"
        cfg = agent_config(self.engine, [str(self.logs / "*.log")], **self.agent_opts)
        cfg["inputs"][0].update(self.input_opts)
        cfg["agent"].update(self.agent_section)
        if self.output_url:
            for out in cfg["outputs"].values():
                out["hosts"] = [self.output_url]
        self.agent = AgentProcess(self.tmp, cfg, env=self.env)

    def result(self, written: int | set[int]) -> dict[str, Any]:
        """Counted once the agent caught up; catch_up_s is how long that took after the writer stopped."""
        started = time.monotonic()
        self.agent.wait_caught_up(timeout=300)
        caught_up = round(time.monotonic() - started, 1)
        tally = self.engine.tally(written)
        return {"scenario": self.name, **tally, "catch_up_s": caught_up, **self.notes}


def _every(seconds: float, period: float, action: Callable[[], None]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(period)
        action()


# ---------------------------------------------------------------- file scenarios


def logrotate_conf(run: Run, mode: str, writer: Writer, *extra: str) -> Path:
    """The operations guide's block (daily, rotate 30, compress, delaycompress, notifempty, create,
    postrotate reload), or with copytruncate; `extra` lines added (dateext)."""
    body = [f"{run.logs}/*.log {{", "    daily", "    missingok", "    rotate 30", "    compress",
            "    delaycompress", "    notifempty", *(f"    {x}" for x in extra)]
    if mode == "copytruncate":
        body.append("    copytruncate")
    else:
        body += ["    create 0644", "    sharedscripts", "    postrotate",
                 f"        kill -HUP {writer.proc.pid}", "    endscript"]
    conf = run.tmp / "logrotate.conf"
    conf.write_text("\n".join([*body, "}", ""]))
    return conf


def on_disk_seqs(logs: Path) -> set[int]:
    """Records that survived on disk: live file, rotated copies, compressed generations."""
    seqs: set[int] = set()
    for p in logs.iterdir():
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt") as f:  # type: ignore[operator]
            for line in f:
                try:
                    seqs.add(json.loads(line)["seq"])
                except (ValueError, KeyError):
                    pass
    return seqs


def scenario_logrotate(run: Run, mode: str) -> dict[str, Any]:
    run.agent.start()
    writer = Writer(run.live, run.rate)
    conf = logrotate_conf(run, mode, writer)
    state = run.tmp / "logrotate.state"
    rotations = 0

    def rotate() -> None:
        nonlocal rotations
        subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], check=True, capture_output=True)
        rotations += 1

    _every(run.seconds, 1.5, rotate)
    written = writer.stop()
    run.notes["rotations"] = rotations
    if mode == "copytruncate":
        # logrotate itself drops what lands between its copy and its truncate: count that apart;
        # what survived on disk is what must arrive (lines read before the truncate may arrive too).
        survived = on_disk_seqs(run.logs)
        dropped = set(range(written)) - survived
        run.notes["dropped_by_logrotate"] = len(dropped)
        # One run of consecutive records per rotation: the writes of its copy-to-truncate window.
        run.notes["dropped_runs"] = sum(1 for s in dropped if s - 1 not in dropped)
        result = run.result(survived)
        stored = {d["seq"] for d in run.engine.docs() if "seq" in d}
        result["dropped_but_shipped"] = len(dropped & stored)  # read before logrotate truncated them
        return result
    return run.result(written)


# dateext with a name per second: forced rotations a second apart do not collide
DATEEXT = ("dateext", "dateformat -%Y%m%d-%s")


def finish_order(run: Run) -> list[str]:
    """The rotated generations the agent read to their end, in that order (from its log)."""
    return [line.split(" read to its end", 1)[0].rsplit("/", 1)[-1]
            for line in run.agent.log_path.read_text().splitlines() if " read to its end " in line]


def generation_age(name: str) -> tuple[int, str]:
    """Older first: app.log.3.gz before app.log.2.gz before app.log.1; dateext names by their date."""
    parts = name.split(".")
    return (-int(parts[2]), name) if len(parts) > 2 and parts[2].isdigit() else (0, name)


def scenario_long_outage(run: Run, fault: str, dateext: bool, proxy: Any = None,
                         rotations: int = 3) -> dict[str, Any]:
    """The output down (`fault="output down"`, through the proxy) or the agent stopped
    (`"agent stopped"`) across `rotations` forced rotations with the guide's compress +
    delaycompress, while the writer appends: the unshipped generations end up compressed."""
    run.agent.start()
    writer = Writer(run.live, run.rate)
    conf = logrotate_conf(run, "create", writer, *(DATEEXT if dateext else ()))
    state = run.tmp / "logrotate.state"
    time.sleep(min(2.0, run.seconds / 4))
    if fault == "output down":
        proxy.set("reset", paths="all")
    else:
        assert run.agent.stop() == 0
    gap = max(1.1, run.seconds / (rotations + 1))  # dateext names have a second's resolution
    for _ in range(rotations):
        time.sleep(gap)
        subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], check=True, capture_output=True)
    time.sleep(gap)
    if fault == "output down":
        proxy.set("pass")
    else:
        run.agent.start()
    time.sleep(min(2.0, run.seconds / 4))
    written = writer.stop()
    result = run.result(written)
    compressed = sorted(p.name for p in run.logs.iterdir() if p.suffix == ".gz")
    order = [n for n in finish_order(run) if n.endswith(".gz")]
    result.update(rotations=rotations, compressed=len(compressed),
                  in_order=order == sorted(order, key=generation_age) and len(order) >= 2)
    return result


def scenario_rename_storm(run: Run, period: float = 0.2) -> dict[str, Any]:
    run.agent.start()
    writer = Writer(run.live, run.rate)
    rotations = 0

    def rotate() -> None:
        nonlocal rotations
        os.replace(run.live, run.logs / "app.log.1")
        writer.reopen()
        rotations += 1

    _every(run.seconds, period, rotate)
    written = writer.stop()
    run.notes["rotations"] = rotations
    return run.result(written)


def scenario_truncate(run: Run) -> dict[str, Any]:
    run.agent.start()
    writer = Writer(run.live, run.rate)
    truncations = 0

    def truncate() -> None:
        nonlocal truncations
        # Truncating unread lines destroys them for any reader: truncate once the agent caught up.
        writer.pause()
        run.agent.wait_caught_up()
        os.truncate(run.live, 0)
        writer.resume()
        truncations += 1

    _every(run.seconds, 1.5, truncate)
    written = writer.stop()
    run.notes["truncations"] = truncations
    return run.result(written)


def scenario_delete_while_open(run: Run) -> dict[str, Any]:
    run.agent.start()
    writer = Writer(run.live, run.rate)
    deletions = 0

    def delete() -> None:
        nonlocal deletions
        os.unlink(run.live)
        time.sleep(0.3)  # the app writes on into the deleted file before it reopens
        writer.reopen()
        deletions += 1

    _every(run.seconds, 1.5, delete)
    written = writer.stop()
    run.notes["deletions"] = deletions
    return run.result(written)


def scenario_inode_reuse(run: Run) -> dict[str, Any]:
    run.agent.start()
    writer = Writer(run.live, run.rate)
    reuses = 0
    inodes: list[int] = []

    def recreate() -> None:
        nonlocal reuses
        writer.pause()
        run.agent.wait_caught_up()
        assert run.agent.stop() == 0
        inodes.append(os.stat(run.live).st_ino)
        os.unlink(run.live)
        writer.reopen()  # a new file, often on the inode just freed
        writer.resume()
        time.sleep(0.2)
        run.agent.start()
        reuses += 1

    _every(run.seconds, 2.0, recreate)
    written = writer.stop()
    run.notes["recreations"] = reuses
    run.notes["inode_reused"] = sum(1 for a, b in zip(inodes, inodes[1:], strict=False) if a == b)
    return run.result(written)


def scenario_kill9(run: Run, period: float = 2.5) -> dict[str, Any]:
    run.agent.start()
    writer = Writer(run.live, run.rate)
    ledger = KillLedger(run.agent, run.engine, run.live)

    def kill() -> None:
        ledger.wait_saved_past_last_kill()  # so that each kill has something saved to resume from
        ledger.kill()
        run.agent.start()

    _every(run.seconds, period, kill)
    written = writer.stop()
    result = run.result(written)
    result.update(ledger.finish(written))  # each restart resent (409) only what was stored past its saved offset
    return result


# ---------------------------------------------------------------- output scenarios (through FaultProxy)


def scenario_output_down(run: Run, proxy: Any, down: float) -> dict[str, Any]:
    """The destination unreachable for `down` seconds mid-run: reading pauses, nothing is lost."""
    run.agent.start()
    writer = Writer(run.live, run.rate)
    time.sleep(min(2.0, run.seconds / 4))
    proxy.set("reset", paths="all")  # every connection cut: as good as down
    time.sleep(down)
    proxy.set("pass")
    time.sleep(min(2.0, run.seconds / 4))
    written = writer.stop()
    run.notes["down_s"] = down
    return run.result(written)


def scenario_429_storm(run: Run, proxy: Any) -> dict[str, Any]:
    """Most requests answered 429: whole requests (with Retry-After), then per item."""
    run.agent.start()
    writer = Writer(run.live, run.rate)
    half = run.seconds / 2
    proxy.set("reject", status=429, fraction=0.8, retry_after=1)
    time.sleep(half)
    proxy.set("items", fraction=0.6)
    time.sleep(half)
    proxy.set("pass")
    written = writer.stop()
    run.notes["proxy"] = proxy.counters()
    return run.result(written)


def scenario_connection_resets(run: Run, proxy: Any) -> dict[str, Any]:
    """Connections cut mid-request, before and after the node stored the batch."""
    run.agent.start()
    writer = Writer(run.live, run.rate)
    half = run.seconds / 2
    proxy.set("reset", fraction=0.4)
    time.sleep(half)
    proxy.set("reset", fraction=0.4, after_forward=True)  # stored, then the answer lost: resent
    time.sleep(half)
    proxy.set("pass")
    written = writer.stop()
    run.notes["proxy"] = proxy.counters()
    return run.result(written)


def scenario_reload(run: Run, period: float = 1.0) -> dict[str, Any]:
    """SIGHUP under load, alternating two valid configs and, once, an invalid one."""
    import yaml

    run.agent.start()
    writer = Writer(run.live, run.rate)
    good = run.agent.config_path.read_text()
    variant = yaml.safe_load(good)
    variant["outputs"]["logs"]["batch_max_docs"] = 777
    variants = [yaml.safe_dump(variant, sort_keys=False), good]
    reloads = 0

    def reload() -> None:
        nonlocal reloads
        text = variants[reloads % 2] if reloads != 2 else good + "\nbogus_key: 1\n"
        run.agent.config_path.write_text(text)
        assert run.agent.proc is not None
        run.agent.proc.send_signal(signal.SIGHUP)
        reloads += 1

    _every(run.seconds, period, reload)
    written = writer.stop()
    run.agent.config_path.write_text(good)
    result = run.result(written)
    log = run.agent.log_path.read_text()
    result["sighups"] = reloads
    result["reloaded"] = log.count("INFO ccf_agent: reloaded ")  # signals during a reload coalesce
    result["rejected"] = log.count("reload rejected")
    return result
