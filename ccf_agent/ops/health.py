"""`GET /health` in the shape of the app's own health check: status, version, uptime, checks."""

from __future__ import annotations

import resource
import shutil
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ccf_agent import __version__

if TYPE_CHECKING:
    from ccf_agent.agent import Agent

MIN_FREE_BYTES = 100 << 20


def health(agent: Agent) -> tuple[dict[str, Any], bool]:
    checks: dict[str, Any] = {}
    for o in agent.outputs.values():
        checks[f"output:{o.name}"] = {"status": "healthy" if o.healthy else "unhealthy",
                                      "lastError": o.stats.last_error, "queued": o.queued_docs}
    try:
        du = shutil.disk_usage(agent.state_dir)
        disk_ok = du.free >= MIN_FREE_BYTES and agent.registry.last_error is None
        checks["disk"] = {"status": "healthy" if disk_ok else "unhealthy", "path": str(agent.state_dir),
                          "free": f"{du.free // (1 << 20)}MB", "registryError": agent.registry.last_error}
    except OSError as e:
        checks["disk"] = {"status": "unhealthy", "error": e.strerror}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    checks["memory"] = {"status": "healthy", "maxRss": f"{rss}MB", "inflight": f"{agent.flow.inflight // 1024}KB"}
    total = max(1, agent.records_in)
    malformed = sum(p.malformed for p in agent.pipelines.values())
    checks["errorRate"] = {"status": "healthy", "errorRate": f"{100 * malformed / total:.2f}%",
                           "deadLetters": agent.dead.count}
    ok = all(c.get("status") == "healthy" for c in checks.values())
    return {
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "status": "healthy" if ok else "degraded", "version": __version__,
        "uptime": round(time.time() - agent.started, 1), "checks": checks,
    }, ok
