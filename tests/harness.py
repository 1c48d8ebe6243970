"""Test harness: run the real daemon as a subprocess and count what reached the engine."""

from __future__ import annotations

import json
import os
import re
import resource
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

    def count_from(self, seq: int, name: str = "*") -> int:
        """Stored documents whose `seq` is `seq` or later."""
        self.refresh()
        r = self.request("POST", f"/{self.prefix}-{name}/_count?ignore_unavailable=true&allow_no_indices=true",
                         {"query": {"range": {"seq": {"gte": seq}}}})
        return int(r["count"])

    def settle(self, timeout: float = 60) -> None:
        """Until no bulk request into this test's indices runs on the node: a client killed
        mid-request does not stop the node from storing what it sent."""
        def idle() -> bool:
            r = self.request("GET", "/_tasks?actions=indices:data/write/bulk*&detailed=true")
            return not any(self.prefix in t.get("description", "")
                           for n in r.get("nodes", {}).values() for t in n.get("tasks", {}).values())
        wait_until(idle, timeout, "the node to finish the bulk requests in flight")
        self.refresh()

    def cleanup(self) -> None:
        try:
            self.request("DELETE", f"/{self.prefix}-*?ignore_unavailable=true&allow_no_indices=true")
        except AssertionError:
            pass


class AgentProcess:
    """`ccf-agent run` as its own process, the way an operator runs it."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                 nofile: int | None = None) -> None:
        self.workdir = workdir
        self.nofile = nofile  # RLIMIT_NOFILE of the agent process (soft and hard), or inherited
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
        nofile = self.nofile

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen([sys.executable, "-m", "ccf_agent", "run", "-c", str(self.config_path)],
                                     stdout=log, stderr=log, cwd=ROOT, env=self.env, preexec_fn=limit)
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

    def runs_the_c_loop(self) -> bool:
        """Whether the daemon loaded the pipeline's C extension (not under CCF_AGENT_PURE_PYTHON)."""
        assert self.proc is not None
        return "ccf_agent/_native/_fast" in Path(f"/proc/{self.proc.pid}/maps").read_text()

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


def saved_offsets(state_dir: Path) -> dict[str, int]:
    """path -> offset in the registry file a restart would load (the newest readable version;
    the file format is version, written_at, checksum, entries)."""
    best: dict[str, Any] | None = None
    for name in ("registry.json", "registry.json.tmp", "registry.json.prev"):
        try:
            doc = json.loads((state_dir / name).read_bytes())
        except (OSError, ValueError):
            continue
        if best is None or doc["written_at"] > best["written_at"]:
            best = doc
    return {e["path"]: e["offset"] for e in best["entries"]} if best else {}


def seq_at(path: Path, offset: int) -> int | None:
    """The `seq` of the record that starts at `offset` (None: the file ends there)."""
    with open(path, "rb") as f:
        f.seek(offset)
        line = f.readline()
    return int(json.loads(line)["seq"]) if line.endswith(b"\n") else None


def duplicates(status: dict[str, Any] | None) -> int:
    """Documents the agent's outputs sent again and found stored (409), since this process started."""
    return sum(o["duplicates"] for o in status["outputs"]) if status else 0


class KillLedger:
    """Bounds what `kill -9` may resend, for one log file written in `seq` order.

    At each kill: the offset saved in the registry (what the restart resumes from) and how many
    documents the engine holds from that record on. Only those may come back as 409s from the
    process started next; deterministic ids hide any other resend from the engine's count, so
    the 409s are what shows a restart that did not resume where it had saved. And each kill's
    saved offset is past the previous one: offsets are saved while shipping, not only at a
    clean stop."""

    def __init__(self, agent: AgentProcess, engine: Engine, path: Path) -> None:
        self.agent, self.engine, self.path = agent, engine, path
        self.state_dir = Path(agent.config["state_dir"])
        self.kills: list[dict[str, int]] = []  # saved_offset, stored_beyond, then duplicates_after

    def saved(self) -> int:
        return saved_offsets(self.state_dir).get(str(self.path), 0)

    def wait_saved_past_last_kill(self, timeout: float = 60) -> None:
        last = self.kills[-1]["saved_offset"] if self.kills else 0
        wait_until(lambda: self.saved() > last, timeout, f"the registry to save an offset past {last} "
                   "(it saves while shipping, every registry_flush_interval)")

    def kill(self) -> None:
        """SIGKILL the agent, after noting the 409s of the process that ran since the last kill."""
        before = duplicates(self.agent.status())
        self.agent.kill()
        self._after_last(before)
        offset = self.saved()
        self.engine.settle()
        first = seq_at(self.path, offset)
        self.kills.append({"saved_offset": offset,
                           "stored_beyond": 0 if first is None else self.engine.count_from(first)})

    def finish(self, written: int) -> dict[str, Any]:
        """Once the last process caught up with the file's `written` records: the bounds held at
        every kill (returns a summary, for the record)."""
        status = self.agent.status()
        self._after_last(duplicates(status))
        offsets = [0, *(k["saved_offset"] for k in self.kills)]
        assert all(a < b for a, b in zip(offsets, offsets[1:], strict=False)), (
            f"a kill's saved offset is not past the previous one's: {self.kills}")
        for k in self.kills:
            assert k["duplicates_after"] <= k["stored_beyond"], (
                f"the restart resent documents from before the offset it had saved: {self.kills}")
        if self.kills:  # and the last process read exactly from there to the end
            first = seq_at(self.path, self.kills[-1]["saved_offset"])
            assert status is not None and status["records_in"] == written - (written if first is None else first), (
                f"the last restart read {status and status['records_in']} records, not those from its saved "
                f"offset on: {self.kills}")
        return {"kills": len(self.kills), "resent_409": sum(k["duplicates_after"] for k in self.kills),
                "stored_beyond_saved": sum(k["stored_beyond"] for k in self.kills)}

    def _after_last(self, dup: int) -> None:
        if self.kills and "duplicates_after" not in self.kills[-1]:
            self.kills[-1]["duplicates_after"] = dup


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
