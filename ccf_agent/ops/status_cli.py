"""`ccf-agent status`: ask the running daemon, or read its registry when it is not running."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from ccf_agent.alerts.engine import format_status
from ccf_agent.config import LISTEN_OFF, Config, split_listen
from ccf_agent.registry import read_registry

EXIT_RUNNING, EXIT_NOT_RUNNING = 0, 3


def fetch_status(config: Config, timeout: float = 3.0) -> dict[str, Any] | None:
    address = None if config.status_listen in LISTEN_OFF else split_listen(config.status_listen)
    if address is None:
        return None
    host, port = address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=timeout) as resp:  # noqa: S310
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except (OSError, urllib.error.URLError, ValueError):
        return None


def lock_holder(state_dir: str) -> int | None:
    """The pid holding `state_dir/lock` (a running agent), read from /proc/locks: trying the lock
    ourselves could make an agent starting at that moment believe another one runs."""
    try:
        st = os.stat(os.path.join(state_dir, "lock"), follow_symlinks=False)
        with open("/proc/locks") as f:
            locks = f.read().splitlines()
    except OSError:
        return None
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in locks:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == where and parts[4].isdigit():
            return int(parts[4])
    return None


def status(config: Config, as_json: bool = False) -> int:
    live = fetch_status(config)
    if live is None:
        # No answer: stopped, or running with its endpoint off, busy or blocked (a local client
        # can hold its connections): the state_dir lock tells which.
        pid = lock_holder(config.state_dir)
        entries = [e.to_json() for e in read_registry(config.state_dir)]
        if as_json:
            print(json.dumps({"running": pid is not None, "pid": pid, "live": False, "state_dir": config.state_dir,
                              "registry": entries}, indent=2))
        else:
            if pid is None:
                print(f"ccf-agent is not running (no answer on {config.status_listen}); "
                      f"last saved offsets from {config.state_dir}:")
            else:
                why = "is off" if config.status_listen in LISTEN_OFF else "did not answer (busy or blocked?)"
                print(f"ccf-agent is running (pid {pid}) but its status endpoint {config.status_listen or 'off'} "
                      f"{why}; last saved offsets from {config.state_dir}:")
            for e in entries:
                print(f"  {e['path']}  offset {_size(int(str(e['offset'])))}  ({e['state']}, stream {e['stream_id']})")
            if not entries:
                print("  (no files recorded yet)")
        return EXIT_NOT_RUNNING if pid is None else EXIT_RUNNING
    if as_json:
        print(json.dumps({"running": True, **live}, indent=2))
        return EXIT_RUNNING
    print(render(live))
    return EXIT_RUNNING


def render(s: dict[str, Any]) -> str:
    lines = [f"ccf-agent {s['version']} running (pid {s['pid']}, up {_duration(s['uptime_seconds'])}), "
             f"config {s['config']}", "", "Files:"]
    for f in s["files"]:
        size, off = int(f["size"]), int(f["offset"])
        lag = f"lag {_size(int(f['lag_bytes']))}" + (f" ({f['lag_seconds']:g}s)" if f.get("lag_seconds") else "")
        lines.append(f"  {f['path']}  {f['state']}  {_size(off)} / {_size(size)}  {lag}  {_bar(off, size)}")
    if not s["files"]:
        lines.append("  (none open)")
    lines += ["", "Outputs:"]
    for o in s["outputs"]:
        health = "healthy" if o["healthy"] else "UNHEALTHY"
        kind = o["type"] + (f", {o['engine']}" if o.get("engine") else "")
        if "tls" in o:  # outputs whose hosts carry no scheme say whether they encrypt
            kind += ", tls" if o["tls"] else ", PLAINTEXT"
        lines.append(f"  {o['name']} ({kind})  {health}  "
                     f"acked {o['docs_acked']}  queued {o['queued_docs']}  in flight {o['in_flight']}  "
                     f"retried {o['docs_retried']}  {o['docs_per_second_1m']} docs/s (1m)")
        if o.get("topics"):  # kafka: records acknowledged per topic
            lines.append("      topics: " + ", ".join(f"{t} {n}" for t, n in sorted(o["topics"].items())))
        if o.get("last_error"):
            when = time.strftime("%H:%M:%S", time.localtime(o["last_error_at"])) if o.get("last_error_at") else ""
            lines.append(f"      last error {when}: {o['last_error']}")
    if s.get("alerts"):
        lines += ["", format_status(s["alerts"])]
    lines += ["", f"Dead letters: {s['dead_letters']}"]
    if s.get("registry_error"):
        lines.append(f"Registry: {s['registry_error']}")
    return "\n".join(lines)


def _bar(done: int, total: int, width: int = 20) -> str:
    if total <= 0:
        return ""
    filled = min(width, int(width * done / total))
    return "[" + "#" * filled + "-" * (width - filled) + f"] {100 * done // total}%"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _duration(sec: float) -> str:
    sec = int(sec)
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
