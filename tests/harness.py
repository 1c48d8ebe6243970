"""Test harness: run the real daemon as a subprocess and count what reached the engine."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Engine:
    """A tiny synchronous client for the test's own indices (unique per test)."""

    def __init__(self, url: str, test_name: str) -> None:
        self.url = url.rstrip("/")
        slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40]
        self.prefix = f"ccft-{slug}-{uuid.uuid4().hex[:6]}"

    def index(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read()[:500]!r}") from e

    def refresh(self) -> None:
        self.request("POST", f"/{self.prefix}-*/_refresh?ignore_unavailable=true&allow_no_indices=true")

    def count(self, name: str = "*") -> int:
        self.refresh()
        r = self.request("GET", f"/{self.prefix}-{name}/_count?ignore_unavailable=true&allow_no_indices=true")
        return int(r["count"])

    def docs(self, name: str = "*", fields: tuple[str, ...] = ("seq",)) -> list[dict[str, Any]]:
        """Every stored document (the listed fields), exactly, through the scroll API."""
        self.refresh()
        out: list[dict[str, Any]] = []
        r = self.request("POST", f"/{self.prefix}-{name}/_search?scroll=1m&ignore_unavailable=true"
                         "&allow_no_indices=true",
                         {"size": 10000, "_source": list(fields), "sort": ["_doc"]})
        while r["hits"]["hits"]:
            out.extend({**h["_source"], "_index": h["_index"], "_id": h["_id"]} for h in r["hits"]["hits"])
            r = self.request("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": r["_scroll_id"]})
        return out

    def tally(self, written: int | set[int], name: str = "*") -> dict[str, int]:
        """lost = written - distinct, duplicated = stored - distinct (the chaos suite's measure).

        `written` is a count of records numbered from 0, or the exact set of numbers expected."""
        seqs = [d["seq"] for d in self.docs(name) if "seq" in d]
        found = set(seqs)
        expected = written if isinstance(written, set) else set(range(written))
        return {"written": len(expected), "stored": len(seqs), "distinct": len(found),
                "lost": len(expected - found), "duplicated": len(seqs) - len(found)}

    def cleanup(self) -> None:
        try:
            self.request("DELETE", f"/{self.prefix}-*?ignore_unavailable=true&allow_no_indices=true")
        except AssertionError:
            pass


class AgentProcess:
    """`ccf-agent run` as its own process, the way an operator runs it."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        config = {**config, "status": {"listen": f"127.0.0.1:{self.port}"}}
        config.setdefault("state_dir", str(workdir / "state"))
        self.config = config
        self.config_path = workdir / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "agent.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> AgentProcess:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([sys.executable, "-m", "ccf_agent", "run", "-c", str(self.config_path)],
                                     stdout=log, stderr=log, cwd=ROOT, env=self.env)
        log.close()
        wait_until(lambda: self.status() is not None or not self.alive, 30, "the agent's status endpoint")
        assert self.alive, f"agent exited at start:\n{self.log()}"
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def threads(self) -> dict[int, str]:
        """The daemon's threads: id -> name."""
        assert self.proc is not None
        tasks = Path(f"/proc/{self.proc.pid}/task")
        return {int(t.name): (t / "comm").read_text().strip() for t in tasks.iterdir()}

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as r:  # noqa: S310
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def wait_caught_up(self, timeout: float = 120) -> None:
        """Every file read to its end and every output idle with nothing queued."""
        def caught_up() -> bool:
            s = self.status()
            if s is None:
                return False
            files_done = all(f["offset"] >= f["size"] for f in s["files"])
            outputs_idle = all(o["queued_docs"] == 0 and o["in_flight"] == 0 for o in s["outputs"])
            return files_done and outputs_idle and s["inflight_bytes"] == 0
        try:
            wait_until(caught_up, timeout, "the agent to catch up", interval=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status: {json.dumps(self.status())[:3000]}") from None

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def agent_config(engine: Engine, paths: list[str], routes: bool = True, **output_opts: Any) -> dict[str, Any]:
    """The example config's shape pointed at the test engine: payouts to their own index."""
    out = {"type": "elasticsearch", "hosts": [engine.url], **output_opts}
    cfg: dict[str, Any] = {
        "inputs": [{"id": "app", "paths": paths, "scan_interval": "200ms"}],
        "outputs": {"logs": {**out, "index": engine.index("logs")},
                    "payouts": {**out, "index": engine.index("payouts")}},
        "agent": {"registry_flush_interval": "200ms"},
    }
    if routes:
        cfg["routes"] = [{"name": "payouts", "output": "payouts",
                          "when": {"any": [{"field": "message", "icontains": "payout"},
                                           {"field": "service", "equals": "payout-job"}]}}]
    return cfg


def write_lines(path: Path, lines: Any, mode: str = "a") -> int:
    n = 0
    with open(path, mode) as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    return n
