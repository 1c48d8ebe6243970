"""Helpers shared by the output tests: agent configs and reading what a go-lumber server received."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ccf_agent.batch import Batch, Events
from ccf_agent.config import InputConfig
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.registry import Entry
from ccf_agent.samples import lines
from tests.harness import AgentProcess
from tests.lumber.server import LumberServer


def one_output_yaml(name: str, type_: str, first_key: str) -> str:
    """A config with one input and one output of `type_` whose first key is `first_key`: an output
    type's config tests append their keys to it, indented four spaces."""
    return (f"state_dir: /tmp/ccf-test-state\ninputs:\n  - id: app\n    paths: [/var/log/app/*.log]\n"
            f"outputs:\n  {name}:\n    type: {type_}\n    {first_key}\n")


def agent_config(logs: Path, outputs: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One input over logs/*.log, the given outputs, fast scans and registry flushes."""
    return {
        "inputs": [{"id": "app", "paths": [str(logs / "*.log")], "scan_interval": "200ms"}],
        "outputs": outputs,
        "agent": {"registry_flush_interval": "200ms"},
        **extra,
    }


def logstash_output(*ports: int, **options: Any) -> dict[str, Any]:
    """A logstash output with short timeouts and backoff, so fault tests run in seconds."""
    return {"type": "logstash", "hosts": [f"127.0.0.1:{p}" for p in ports], "timeout": "5s",
            "backoff_initial": "50ms", "backoff_max": "500ms", **options}


def output_status(agent: AgentProcess, name: str) -> dict[str, Any]:
    status = agent.status() or {"outputs": []}
    return next((o for o in status["outputs"] if o["name"] == name), {})


def seqs_by_file(srv: LumberServer) -> dict[str, list[int]]:
    """Arrival order of `seq` per source file, every copy included."""
    out: dict[str, list[int]] = defaultdict(list)
    for e in srv.events():
        out[e["event"]["log"]["file"]["path"]].append(e["event"]["seq"])
    return dict(out)


def extra_copies(srv: LumberServer) -> int:
    """How many events the server received more than once (copies beyond the first)."""
    counts = Counter(e["event"]["seq"] for e in srv.events())
    return sum(c - 1 for c in counts.values())


def copies_outside_unacked_windows(srv: LumberServer, depth: int) -> list[int]:
    """Seqs received more than once where an earlier copy did not sit in one of the last `depth`
    batches of its connection: only those batches can have been left unacknowledged when the
    connection ended, so only they may legitimately be sent again."""
    events = srv.events()
    last_batch: dict[int, int] = defaultdict(int)
    for e in events:
        last_batch[e["conn"]] = max(last_batch[e["conn"]], e["batch"])
    copies: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for e in events:
        copies[e["event"]["seq"]].append((e["conn"], e["batch"]))
    bad = []
    for seq, where in copies.items():
        # A copy is sent on a later connection than the one it repeats (the agent resends only after
        # a connection ended), so order by connection, not by when the server got to log it: on a
        # loaded machine the server can still be reading a dead connection's last batch after the
        # agent has resent it on the next one.
        for conn, batch in sorted(where)[:-1]:
            if batch <= last_batch[conn] - depth:
                bad.append(seq)
    return bad


def sample_events(n: int, start: int = 0, per_batch: int = 1000, path: str = "/var/log/app/combined.log") -> list[Events]:
    """Sample Winston lines run through the real pipeline, as the daemon would hand them to outputs."""
    pipeline = Pipeline(InputConfig(id="app", paths=(str(Path(path).parent / "*.log"),)), "test-host")
    entry = Entry("stream-1", "fingerprint", "app", path, 1, 1)
    raw = [line.encode() for line in lines(n, start)]
    out, offset = [], 0
    for i in range(0, n, per_batch):
        chunk = raw[i : i + per_batch]
        end = offset + sum(len(x) + 1 for x in chunk)
        out.append(pipeline.process(Batch(entry, path, offset, end, chunk)))
        offset = end
    return out


class CountingToken:
    """Stands in for the registry's AckToken: counts the shares taken and released."""

    nbytes = 0  # the read bytes an output holds while it holds the token (its budget)

    def __init__(self) -> None:
        self.held = 0
        self.released = 0

    def hold(self, n: int = 1) -> None:
        self.held += n

    def done(self) -> None:
        self.released += 1
