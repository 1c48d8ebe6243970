"""What the supervisor hands the ops surface: one frozen reading of its parts' counters.

The agent builds a `Snapshot` on request (`Agent.snapshot`): for `/status`, `/health`,
`/metrics` and systemd's STATUS= line, each of which renders it and never reaches into the
agent. Building one reads counters the parts keep anyway (plus an fstat per open file for its
size), so a scrape every few seconds costs nothing on the hot path. Every field has a default,
so a test can build the snapshot it needs without an agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ccf_agent import __version__


@dataclass(frozen=True, slots=True)
class FileState:
    """One file an input holds open."""

    input: str = ""
    path: str = ""
    stream: str = ""
    dev: int = 0
    inode: int = 0
    offset: int = 0  # committed: every output acknowledged everything before it
    read_offset: int = 0
    size: int = 0
    lag_bytes: int = 0  # size - offset
    lag_seconds: float = 0.0  # how long the newest unshipped write has waited
    state: str = "idle"  # reading | idle | rotated | deleted
    unacked_batches: int = 0


@dataclass(frozen=True, slots=True)
class InputState:
    """One input: its tail's counters and its pipeline's."""

    id: str
    bytes_read: int = 0
    bytes_read_ahead: int = 0
    lost_bytes: int = 0  # unread bytes of files given up (deleted, or gone before read to their end)
    lost_files: int = 0  # files gone or undecompressable before they were read to their end
    open_files: int = 0
    malformed: int = 0  # lines shipped tagged (not JSON, not UTF-8, not an object)
    # What the pipeline did besides shipping: dropped:<rule>, sampled_out:<rule>, redacted:<kind>, records_redacted
    counters: Mapping[str, int] = field(default_factory=dict)
    files: tuple[FileState, ...] = ()

    @property
    def lag_bytes(self) -> int:
        return sum(f.lag_bytes for f in self.files)


@dataclass(frozen=True, slots=True)
class OutputState:
    """One output: queue, requests, outcomes, latency."""

    name: str
    type: str
    healthy: bool = True
    queued_docs: int = 0
    queued_bytes: int = 0
    in_flight: int = 0
    docs_acked: int = 0
    docs_retried: int = 0
    docs_dead: int = 0
    duplicates: int = 0
    requests: int = 0
    request_errors: int = 0
    docs_per_second_1m: float = 0.0
    last_error: str | None = None  # credentials already hidden
    last_error_at: float | None = None
    last_ok_at: float | None = None
    latency_buckets: tuple[int, ...] = ()  # cumulative, per LATENCY_BUCKETS (ending with +Inf)
    latency_sum: float = 0.0
    # The output type's own status (an Elasticsearch output's hosts and engine, a Logstash one's
    # connections): shown by /status and `ccf-agent status` as the output reports it.
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndpointState:
    """Connections to the status endpoint not served."""

    refused: int = 0
    cut: int = 0
    malformed: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float = 0.0  # time.time()
    version: str = __version__
    pid: int = 0
    config_path: str = ""
    started: float = 0.0  # time.time() at start
    state_dir: str = ""
    environment: str | None = None  # the `environment` field the inputs add (the app's health-check shape)
    records_in: int = 0
    inflight_bytes: int = 0
    backpressure_pauses: int = 0
    dead_letters: int = 0
    registry_error: str | None = None  # the last failed save of the offsets, None when the last one worked
    reloads: int = 0
    last_reload_error: str | None = None
    inputs: tuple[InputState, ...] = ()
    outputs: tuple[OutputState, ...] = ()
    routes: tuple[tuple[str, int], ...] = ()  # (route, records assigned), the default route last
    endpoint: EndpointState | None = None  # None while the endpoint is off
    alerts: Mapping[str, Any] | None = None  # the alert engine's state; None without an `alerts:` section

    @property
    def files(self) -> tuple[FileState, ...]:
        return tuple(f for i in self.inputs for f in i.files)

    @property
    def uptime(self) -> float:
        return self.taken_at - self.started

    def to_json(self) -> dict[str, Any]:
        """The `/status` document (`ccf-agent status` reads it; its keys are an interface)."""
        return {
            "version": self.version, "pid": self.pid, "config": self.config_path,
            "uptime_seconds": round(self.uptime, 1), "records_in": self.records_in,
            "inflight_bytes": self.inflight_bytes, "files": [_file_json(f) for f in self.files],
            "outputs": [_output_json(o) for o in self.outputs],
            "dead_letters": self.dead_letters, "registry_error": self.registry_error,
            "alerts": self.alerts, "reloads": self.reloads, "last_reload_error": self.last_reload_error,
        }


def _file_json(f: FileState) -> dict[str, Any]:
    return {"input": f.input, "path": f.path, "stream": f.stream, "dev": f.dev, "inode": f.inode,
            "offset": f.offset, "read_offset": f.read_offset, "size": f.size, "lag_bytes": f.lag_bytes,
            "lag_seconds": f.lag_seconds, "state": f.state, "unacked_batches": f.unacked_batches}


# The keys every output's status() has (outputs/base.py); the rest are the output type's own `details`.
COMMON_OUTPUT_KEYS = frozenset((
    "name", "type", "healthy", "queued_docs", "queued_bytes", "in_flight", "docs_acked", "docs_retried",
    "docs_dead_lettered", "duplicates", "requests", "request_errors", "docs_per_second_1m", "last_error",
    "last_error_at", "last_ok_at"))


def _output_json(o: OutputState) -> dict[str, Any]:
    return {
        "name": o.name, "type": o.type, "healthy": o.healthy,
        "queued_docs": o.queued_docs, "queued_bytes": o.queued_bytes, "in_flight": o.in_flight,
        "docs_acked": o.docs_acked, "docs_retried": o.docs_retried, "docs_dead_lettered": o.docs_dead,
        "duplicates": o.duplicates, "requests": o.requests, "request_errors": o.request_errors,
        "docs_per_second_1m": o.docs_per_second_1m,
        "last_error": o.last_error, "last_error_at": o.last_error_at, "last_ok_at": o.last_ok_at,
        **o.details,
    }
