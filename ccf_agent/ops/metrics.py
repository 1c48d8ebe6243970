"""Prometheus text exposition (format 0.0.4) of the agent's counters, the process and the app's business metrics.

Built on request from counters the parts keep: nothing here runs on the hot path.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Iterable

from ccf_agent.ops import business
from ccf_agent.ops.snapshot import Snapshot
from ccf_agent.outputs.base import LATENCY_BUCKETS

Sample = tuple[dict[str, str], float]

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fmt(value: float) -> str:
    """Exact: integers in full, floats in their shortest round-trip form (`%g` would print
    1234567 as 1.23457e+06 and a Unix time to the nearest 100 seconds)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_: str, samples: Iterable[Sample]) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {fmt(value)}")

    def histogram(self, name: str, help_: str, series: Iterable[tuple[dict[str, str], list[int], float]],
                  bounds: Iterable[float]) -> None:
        """`series`: (labels, cumulative bucket counts ending with +Inf, sum)."""
        bounds = list(bounds)
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} histogram")
        for labels, buckets, total in series:
            for b, n in zip(bounds, buckets, strict=True):
                le = "+Inf" if b == math.inf else f"{b:g}"
                self.lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {n}")
            self.lines.append(f"{name}_sum{_labels(labels)} {fmt(total)}")
            self.lines.append(f"{name}_count{_labels(labels)} {buckets[-1]}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()) + "}"


def render_metrics(snap: Snapshot) -> str:
    e = Exposition()
    _agent_metrics(e, snap)
    _process_metrics(e)
    business.METRICS.render(e.lines, fmt)
    return e.text()


def _agent_metrics(e: Exposition, snap: Snapshot) -> None:
    m = e.metric
    inputs, outs = snap.inputs, snap.outputs
    m("ccf_agent_build_info", "gauge", "Always 1; the agent's version as a label.", [({"version": snap.version}, 1)])
    m("ccf_agent_records_read_total", "counter", "Records read from files.", [({}, snap.records_in)])
    m("ccf_agent_records_malformed_total", "counter",
      "Lines shipped tagged because they were not valid JSON objects or UTF-8.",
      [({"input": i.id}, i.malformed) for i in inputs])
    m("ccf_agent_bytes_read_total", "counter", "Bytes read from files.", [({"input": i.id}, i.bytes_read) for i in inputs])
    m("ccf_agent_bytes_read_ahead_total", "counter",
      "Bytes of those read and scanned ahead by the input's second thread (agent.read_ahead).",
      [({"input": i.id}, i.bytes_read_ahead) for i in inputs])
    m("ccf_agent_open_files", "gauge", "Files held open.", [({"input": i.id}, i.open_files) for i in inputs])
    m("ccf_agent_lag_bytes", "gauge", "Bytes written to files but not yet acknowledged by every output.",
      [({"input": i.id}, i.lag_bytes) for i in inputs])
    m("ccf_agent_inflight_bytes", "gauge", "Bytes read and not yet acknowledged.", [({}, snap.inflight_bytes)])
    if snap.endpoint is not None:
        m("ccf_agent_status_connections_total", "counter",
          "Connections to this endpoint not served: refused (over the cap or descriptors short), cut (no "
          "complete request or answer within its deadline), malformed (answered 400).",
          [({"outcome": "refused"}, snap.endpoint.refused), ({"outcome": "cut"}, snap.endpoint.cut),
           ({"outcome": "malformed"}, snap.endpoint.malformed)])
    m("ccf_agent_tap_clients", "gauge", "`ccf-agent tap` clients attached.", [({}, snap.tap.clients)])
    m("ccf_agent_tap_events_total", "counter",
      "Events offered to tap clients: sent, or dropped because the client's buffer was full (the outputs lose "
      "nothing either way).", [({"outcome": "sent"}, snap.tap.sent), ({"outcome": "dropped"}, snap.tap.dropped)])
    counters = [(i.id, k, v) for i in inputs for k, v in i.counters.items()]
    m("ccf_agent_redactions_total", "counter", "Values masked or removed before leaving the host.",
      [({"input": i, "kind": k.split(":", 1)[1]}, v) for i, k, v in counters if k.startswith("redacted:")])
    m("ccf_agent_records_redacted_total", "counter", "Records changed by redaction.",
      [({"input": i.id}, i.counters.get("records_redacted", 0)) for i in inputs])
    m("ccf_agent_pipeline_errors_total", "counter",
      "Lines shipped without their content (tagged pipeline_error) because a pipeline stage failed on them.",
      [({"input": i.id}, i.counters.get("pipeline_errors", 0)) for i in inputs])
    m("ccf_agent_records_dropped_total", "counter", "Records dropped or sampled out by processors.",
      [({"input": i, "reason": k.split(":", 1)[0], "rule": k.split(":", 1)[1]}, v)
       for i, k, v in counters if k.startswith(("dropped:", "sampled_out:"))])
    m("ccf_agent_route_records_total", "counter", "Records assigned by each route (default last).",
      [({"route": name}, n) for name, n in snap.routes])
    m("ccf_agent_backpressure_pauses_total", "counter", "Times reading paused for bytes in flight.",
      [({}, snap.backpressure_pauses)])
    m("ccf_agent_lost_bytes_total", "counter",
      "Unread bytes of files given up: deleted (deleted_max_wait/bytes), or gone before read to their end.",
      [({"input": i.id}, i.lost_bytes) for i in inputs])
    m("ccf_agent_lost_files_total", "counter",
      "Files gone (rotated past logrotate's rotate N) or undecompressable before they were read to their end.",
      [({"input": i.id}, i.lost_files) for i in inputs])
    for name, attr, help_ in (
            ("shipped", "docs_acked", "Records acknowledged by the output."),
            ("retried", "docs_retried", "Records retried after a transient failure."),
            ("dead_lettered", "docs_dead", "Records that failed for good and went to the dead-letter file."),
            ("duplicates", "duplicates", "Records the destination already had.")):
        m(f"ccf_agent_records_{name}_total", "counter", help_, [({"output": o.name}, getattr(o, attr)) for o in outs])
    m("ccf_agent_output_topic_records_total", "counter", "Records acknowledged per Kafka topic.",
      [({"output": o.name, "topic": t}, n) for o in outs for t, n in o.details.get("topics", {}).items()])
    m("ccf_agent_output_requests_total", "counter", "Requests made by the output.",
      [({"output": o.name}, o.requests) for o in outs])
    m("ccf_agent_output_request_errors_total", "counter", "Requests that failed as a whole (connection, 5xx).",
      [({"output": o.name}, o.request_errors) for o in outs])
    m("ccf_agent_output_queued_records", "gauge", "Records queued per output (queue depth).",
      [({"output": o.name}, o.queued_docs) for o in outs])
    m("ccf_agent_output_queued_bytes", "gauge", "Bytes queued per output.",
      [({"output": o.name}, o.queued_bytes) for o in outs])
    m("ccf_agent_output_healthy", "gauge", "1 when the output's last request succeeded.",
      [({"output": o.name}, 1 if o.healthy else 0) for o in outs])
    m("ccf_agent_output_last_success_timestamp_seconds", "gauge", "When the output last delivered (Unix time).",
      [({"output": o.name}, o.last_ok_at) for o in outs if o.last_ok_at is not None])
    e.histogram("ccf_agent_bulk_latency_seconds", "Latency of output requests.",
                [({"output": o.name}, list(o.latency_buckets), o.latency_sum) for o in outs], LATENCY_BUCKETS)
    m("ccf_agent_registry_healthy", "gauge", "1 when the last save of the offsets registry succeeded.",
      [({}, 0 if snap.registry_error else 1)])


def _process_metrics(e: Exposition) -> None:
    """The standard process_* family (as Prometheus client libraries export it), from /proc/self."""
    m = e.metric
    ru = resource.getrusage(resource.RUSAGE_SELF)
    m("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
      [({}, ru.ru_utime + ru.ru_stime)])
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        vsize, rss_pages, start_ticks = int(fields[20]), int(fields[21]), int(fields[19])
        m("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", [({}, vsize)])
        m("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", [({}, rss_pages * _PAGE)])
        m("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
          [({}, _boot_time() + start_ticks / _TICKS)])
    except (OSError, IndexError, ValueError):
        pass
    try:
        m("process_open_fds", "gauge", "Number of open file descriptors.", [({}, len(os.listdir("/proc/self/fd")))])
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    m("process_max_fds", "gauge", "Maximum number of open file descriptors.", [({}, soft)])
    vmax, _ = resource.getrlimit(resource.RLIMIT_AS)
    if vmax != resource.RLIM_INFINITY:
        m("process_virtual_memory_max_bytes", "gauge", "Maximum amount of virtual memory available in bytes.",
          [({}, vmax)])
    limit = memory_limit()
    if limit is not None:
        m("ccf_agent_memory_limit_bytes", "gauge", "The memory limit of the agent's cgroup (systemd MemoryMax=).",
          [({}, limit)])


_boot: float | None = None


def _boot_time() -> float:
    global _boot
    if _boot is None:
        # Wall clock minus time since boot: /proc/stat's btime needs more than ProcSubset=pid allows.
        _boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return _boot


def memory_limit() -> int | None:
    """cgroup v2 `memory.max` of this process's cgroup, when it is a number."""
    try:
        with open("/proc/self/cgroup") as f:
            rel = next((line.split("::", 1)[1].strip() for line in f if line.startswith("0::")), None)
        if rel is None:
            return None
        with open(f"/sys/fs/cgroup{rel}/memory.max") as f:
            raw = f.read().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def resident_memory() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
