"""`GET /health` in the shape of the app's own health check (the seed guide's healthCheck):

    {"timestamp", "status": healthy|degraded|unhealthy, "version", "uptime", "environment",
     "checks": {"output:<name>": {...}, "disk": {...}, "memory": {...}, "errorRate": {...}}}

Every check carries a `status`; one "unhealthy" check makes the whole "degraded" (HTTP 503),
and a failure to compute the checks makes it "unhealthy" with an `error` (HTTP 503).
"""

from __future__ import annotations

import logging
import resource
import shutil
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ccf_agent import __version__
from ccf_agent.ops.metrics import memory_limit, resident_memory
from ccf_agent.ops.snapshot import Snapshot

log = logging.getLogger("ccf_agent.ops")

MIN_FREE_BYTES = 100 << 20  # the registry and dead letters must always fit
MEMORY_UNHEALTHY = 0.9  # of the cgroup's memory.max
ERROR_WINDOW = 300.0  # "recent" error rate: the last 5 minutes, as in the seed
DEAD_LETTER_UNHEALTHY = 0.01  # of the records read in the window


def _mb(n: int) -> str:
    return f"{round(n / (1 << 20))}MB"


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class ErrorWindow:
    """Counter readings taken at each health request; the rate is over the oldest one within the window."""

    def __init__(self, window: float = ERROR_WINDOW) -> None:
        self.window = window
        self.samples: deque[tuple[float, int, int, int]] = deque()

    def rate(self, now: float, started: float, records: int, malformed: int, dead: int) -> dict[str, Any]:
        self.samples.append((now, records, malformed, dead))
        while len(self.samples) > 1 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()  # keep exactly one reading at or beyond the window's start
        t0, r0, m0, d0 = self.samples[0]
        if now - started <= self.window or t0 >= now:  # young process, or the first request: since start
            t0, r0, m0, d0 = started, 0, 0, 0
        n, bad, dl = records - r0, malformed - m0, dead - d0
        span = now - t0
        return {
            "status": "unhealthy" if n and dl / n > DEAD_LETTER_UNHEALTHY else "healthy",
            "errorRate": f"{100 * (bad + dl) / n if n else 0:.2f}%",
            "timeWindow": f"{round(span / 60)}m" if span >= 60 else f"{round(span)}s",
            "records": n, "malformed": bad, "deadLettered": dl,
        }


def health(snapshot: Callable[[], Snapshot], errors: ErrorWindow) -> tuple[dict[str, Any], bool]:
    """The body and whether it is healthy (HTTP 200) or not (503). `snapshot` takes the agent's
    Snapshot; `errors` keeps the readings the error rate is computed over, from one request to
    the next (the status endpoint holds it)."""
    body: dict[str, Any] = {
        "timestamp": _iso(time.time()), "status": "healthy", "version": __version__,
        "uptime": None, "environment": None, "checks": {},
    }
    try:
        snap = snapshot()
        body["uptime"], body["environment"] = round(snap.uptime, 1), snap.environment
        body["checks"] = checks(snap, errors)
    except Exception as e:  # the seed's catch: report it, never crash the endpoint
        log.error("health check failed: %s", e, exc_info=True)
        body["status"], body["error"] = "unhealthy", str(e)
        return body, False
    if any(c.get("status") == "unhealthy" for c in body["checks"].values()):
        body["status"] = "degraded"
    return body, body["status"] == "healthy"


def checks(snap: Snapshot, errors: ErrorWindow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in snap.outputs:
        out[f"output:{o.name}"] = {
            "status": "healthy" if o.healthy else "unhealthy", "type": o.type,
            "lastError": o.last_error, "lastErrorAt": _iso(o.last_error_at),
            "lastSuccessAt": _iso(o.last_ok_at), "queued": o.queued_docs, "inFlight": o.in_flight,
        }
    try:
        du = shutil.disk_usage(snap.state_dir)
        disk_ok = du.free >= MIN_FREE_BYTES and snap.registry_error is None
        out["disk"] = {"status": "healthy" if disk_ok else "unhealthy", "path": snap.state_dir,
                       "free": _mb(du.free), "total": _mb(du.total), "registryError": snap.registry_error}
    except OSError as e:
        out["disk"] = {"status": "unhealthy", "path": snap.state_dir, "error": e.strerror}
    rss = resident_memory()
    limit = memory_limit()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["memory"] = {
        "status": "unhealthy" if rss is not None and limit and rss > MEMORY_UNHEALTHY * limit else "healthy",
        "rss": _mb(rss) if rss is not None else None, "maxRss": _mb(max_rss),
        "limit": _mb(limit) if limit else None, "inflight": _mb(snap.inflight_bytes),
    }
    malformed = sum(i.malformed for i in snap.inputs)
    dead = sum(o.docs_dead for o in snap.outputs)
    out["errorRate"] = errors.rate(snap.taken_at, snap.started, snap.records_in, malformed, dead)
    return out
