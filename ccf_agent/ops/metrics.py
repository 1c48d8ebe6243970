"""Prometheus text exposition of the agent's own counters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccf_agent.outputs.base import LATENCY_BUCKETS

if TYPE_CHECKING:
    from ccf_agent.agent import Agent


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(agent: Agent) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lbl = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lbl}}} {value:g}" if lbl else f"{name} {value:g}")

    metric("ccf_agent_records_read_total", "counter", "Records read from files.", [({}, agent.records_in)])
    metric("ccf_agent_bytes_read_total", "counter", "Bytes read from files.",
           [({"input": i.cfg.id}, i.bytes_read) for i in agent.inputs])
    metric("ccf_agent_open_files", "gauge", "Files held open.",
           [({"input": i.cfg.id}, len(i.readers)) for i in agent.inputs])
    files = [f for i in agent.inputs for f in i.status()]
    metric("ccf_agent_lag_bytes", "gauge", "Bytes written to files but not yet acknowledged.",
           [({}, sum(int(f["lag_bytes"]) for f in files))])  # type: ignore[call-overload]
    metric("ccf_agent_inflight_bytes", "gauge", "Bytes read and not yet acknowledged.", [({}, agent.flow.inflight)])
    outs = list(agent.outputs.values())
    for name, attr, help_ in (("shipped", "docs_acked", "Records acknowledged by the output."),
                              ("retried", "docs_retried", "Records retried after a transient failure."),
                              ("dead_lettered", "docs_dead", "Records rejected for good and dead-lettered."),
                              ("duplicates", "duplicates", "Records the destination already had.")):
        metric(f"ccf_agent_records_{name}_total", "counter", help_,
               [({"output": o.name}, getattr(o.stats, attr)) for o in outs])
    metric("ccf_agent_output_queued_records", "gauge", "Records queued per output.",
           [({"output": o.name}, o.queued_docs) for o in outs])
    metric("ccf_agent_output_healthy", "gauge", "1 when the output's last request succeeded.",
           [({"output": o.name}, 1.0 if o.healthy else 0.0) for o in outs])
    out.append("# HELP ccf_agent_bulk_latency_seconds Latency of output requests.")
    out.append("# TYPE ccf_agent_bulk_latency_seconds histogram")
    for o in outs:
        s = o.stats
        for b, n in zip(LATENCY_BUCKETS, s.latency_buckets, strict=True):
            le = "+Inf" if b == float("inf") else f"{b:g}"
            out.append(f'ccf_agent_bulk_latency_seconds_bucket{{output="{_esc(o.name)}",le="{le}"}} {n}')
        out.append(f'ccf_agent_bulk_latency_seconds_sum{{output="{_esc(o.name)}"}} {s.latency_sum:g}')
        out.append(f'ccf_agent_bulk_latency_seconds_count{{output="{_esc(o.name)}"}} {s.latency_buckets[-1]}')
    return "\n".join(out) + "\n"
