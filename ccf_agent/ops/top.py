"""`ccf-agent top`: a live view of the running daemon, from its `/status` once a second.

Rates are differences between two readings (`view`, a pure function of them): a file's read rate,
an output's documents per second, retries and errors since the last reading, and the mean time
its requests took to answer in between. On a terminal the view is drawn with `rich` (redrawn in
place, plain ANSI that works over SSH); otherwise each reading is printed as plain lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ccf_agent.config import Config
from ccf_agent.ops.status_cli import EXIT_NOT_RUNNING, fetch_status

Status = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str
    state: str
    read_per_second: float | None  # bytes; None on the first reading of a file (or a new stream)
    lag_bytes: int
    lag_seconds: float


@dataclass(frozen=True, slots=True)
class OutputRow:
    name: str
    type: str
    healthy: bool
    docs_per_second: float | None
    in_flight: int
    queued: int
    retries: int  # documents retried since start
    retries_per_second: float | None
    errors: int  # failed requests since start
    errors_per_second: float | None
    latency_ms: float | None  # mean time to answer of the requests between the two readings
    last_error: str | None


@dataclass(frozen=True, slots=True)
class AlertRow:
    name: str
    severity: str
    since: float | None


@dataclass(frozen=True, slots=True)
class View:
    header: str
    seconds: float  # between the two readings (0 on the first)
    files: tuple[FileRow, ...]
    outputs: tuple[OutputRow, ...]
    firing: tuple[AlertRow, ...]
    dead_letters: int
    tap_clients: int


def _per_second(now: float, before: float | None, seconds: float) -> float | None:
    if before is None or seconds <= 0 or now < before:  # a counter that went back: a reload or new stream
        return None
    return (now - before) / seconds


def view(prev: Status | None, cur: Status) -> View:
    """What `top` shows of `cur`, with rates since `prev` (None: the first reading, no rates)."""
    seconds = float(cur.get("time", 0) - prev.get("time", 0)) if prev is not None else 0.0
    if prev is not None and seconds <= 0:  # a daemon without `time` in /status
        seconds = float(cur["uptime_seconds"] - prev["uptime_seconds"])
    before_files = {(f["stream"], f["path"]): f for f in prev["files"]} if prev is not None else {}
    before_outputs = {o["name"]: o for o in prev["outputs"]} if prev is not None else {}
    files = []
    for f in cur["files"]:
        b = before_files.get((f["stream"], f["path"]))
        files.append(FileRow(f["path"], f["state"], _per_second(f["read_offset"], b and b["read_offset"], seconds),
                             int(f["lag_bytes"]), float(f.get("lag_seconds") or 0.0)))
    outputs = []
    for o in cur["outputs"]:
        b = before_outputs.get(o["name"])
        requests = o.get("latency_count", 0) - (b.get("latency_count", 0) if b else 0)
        spent = o.get("latency_seconds_sum", 0.0) - (b.get("latency_seconds_sum", 0.0) if b else 0.0)
        outputs.append(OutputRow(
            o["name"], o["type"], bool(o["healthy"]),
            _per_second(o["docs_acked"], b and b["docs_acked"], seconds), int(o["in_flight"]), int(o["queued_docs"]),
            int(o["docs_retried"]), _per_second(o["docs_retried"], b and b["docs_retried"], seconds),
            int(o["request_errors"]), _per_second(o["request_errors"], b and b["request_errors"], seconds),
            1000 * spent / requests if b and requests > 0 else None, o.get("last_error")))
    alerts = cur.get("alerts") or {}
    firing = tuple(AlertRow(r["name"], r["severity"], r.get("since"))
                   for r in alerts.get("rules", ()) if r["state"] == "firing")
    header = (f"ccf-agent {cur['version']}  pid {cur['pid']}  up {_duration(cur['uptime_seconds'])}  "
              f"records {cur['records_in']}  config {cur['config']}")
    return View(header, seconds, tuple(files), tuple(outputs), firing, int(cur["dead_letters"]),
                int((cur.get("tap") or {}).get("clients", 0)))


# ------------------------------------------------------------------ rendering


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def rate(v: float | None, unit: str = "/s", bytes_: bool = False) -> str:
    if v is None:
        return "-"
    return f"{size(v)}{unit}" if bytes_ else f"{v:,.1f}{unit}"


def _duration(sec: float) -> str:
    sec = int(sec)
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


FILE_COLUMNS = ("file", "state", "read", "lag", "lag s")
OUTPUT_COLUMNS = ("output", "health", "docs/s", "in flight", "queued", "retries", "errors", "latency")
FIXED_WIDTH = 42  # what a file row needs besides its path (80 columns leave the path 38)


def short_path(path: str, width: int) -> str:
    """The path's end (the file's name, its directory) when the whole does not fit."""
    return path if len(path) <= width else "…" + path[-(width - 1):]


def file_cells(f: FileRow, path_width: int = 4096) -> tuple[str, ...]:
    return (short_path(f.path, path_width), f.state, rate(f.read_per_second, bytes_=True), size(f.lag_bytes),
            f"{f.lag_seconds:.1f}")


def output_cells(o: OutputRow) -> tuple[str, ...]:
    """Retries and errors: totals since start, then how many since the last reading when there were."""
    return (o.name, "ok" if o.healthy else "DOWN", rate(o.docs_per_second, ""), str(o.in_flight), str(o.queued),
            _total(o.retries, o.retries_per_second), _total(o.errors, o.errors_per_second),
            "-" if o.latency_ms is None else f"{o.latency_ms:.1f} ms")


def _total(total: int, per_second: float | None) -> str:
    return f"{total} (+{per_second:.0f}/s)" if per_second else str(total)


def footer(v: View) -> list[str]:
    lines = ["Alerts firing: " + (", ".join(f"{a.name} ({a.severity})" for a in v.firing) or "none")]
    lines.append(f"Dead letters: {v.dead_letters}" + (f"   taps attached: {v.tap_clients}" if v.tap_clients else ""))
    return lines


def plain_lines(v: View, when: float) -> list[str]:
    """One reading as plain lines (stdout not a terminal: a pipe, a file, a log)."""
    lines = [f"{time.strftime('%H:%M:%S', time.localtime(when))}  {v.header}"]
    for f in v.files:
        path, state, read, lag, lag_s = file_cells(f)
        lines.append(f"  file {path}  {state}  read {read}  lag {lag} ({lag_s}s)")
    if not v.files:
        lines.append("  (no files open)")
    for o in v.outputs:
        name, health, docs, in_flight, queued, retries, errors, latency = output_cells(o)
        lines.append(f"  output {name} ({o.type})  {'healthy' if o.healthy else 'UNHEALTHY'}  {docs} docs/s  in flight {in_flight}  queued {queued}  "
                     f"retries {retries}  errors {errors}  latency {latency}")
    lines += ["  " + line for line in footer(v)]
    return lines


def rich_view(v: View, width: int = 80) -> RenderableType:
    """One reading as rich renderables for a terminal `width` wide (80 is enough): a header, the
    files' table, the outputs' table, a footer."""
    files = Table(*FILE_COLUMNS, title="Files", title_justify="left", box=box.SIMPLE_HEAD)
    for col in files.columns[2:]:
        col.justify = "right"
    for f in v.files:
        files.add_row(*file_cells(f, max(20, width - FIXED_WIDTH)), style=None if f.lag_bytes == 0 else "yellow")
    outputs = Table(*OUTPUT_COLUMNS, title="Outputs", title_justify="left", box=box.SIMPLE_HEAD)
    for col in outputs.columns[2:]:
        col.justify = "right"
    for o in v.outputs:
        outputs.add_row(*output_cells(o), style=None if o.healthy else "bold red")
    alerts = Text(footer(v)[0], style="bold red" if v.firing else "")
    return Group(Text(v.header, style="bold", no_wrap=True, overflow="ellipsis"), files, outputs, alerts, Text(footer(v)[1]),
                 Text("refreshed every second; Ctrl-C quits", style="dim"))


# ------------------------------------------------------------------ the loop


def readings(fetch: Callable[[], Status | None], interval: float,
             sleep: Callable[[float], None] = time.sleep) -> Iterator[tuple[View | None, float]]:
    """(view, time) once per `interval`: None while the daemon does not answer."""
    prev = None
    while True:
        cur = fetch()
        now = time.time()
        yield (view(prev, cur) if cur is not None else None), now
        prev = cur
        sleep(interval)


def top(config: Config, interval: float = 1.0, iterations: int | None = None, out: IO[str] = sys.stdout) -> int:
    def fetch() -> Status | None:
        return fetch_status(config, timeout=max(interval, 1.0))

    if fetch() is None:
        print(f"ccf-agent top: no daemon answers on {config.status_listen or 'off'}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    frames = readings(fetch, interval)
    next(frames)  # the first reading has no rates: start from the second
    try:
        if out.isatty():
            _live(frames, iterations, out)
        else:
            for n, (v, when) in enumerate(frames, 1):
                out.write("\n".join(plain_lines(v, when) if v else [f"{when:.0f}  (no answer from the daemon)"])
                          + "\n\n")
                out.flush()
                if iterations is not None and n >= iterations:
                    break
    except KeyboardInterrupt:
        pass
    return 0


def _live(frames: Iterator[tuple[View | None, float]], iterations: int | None, out: IO[str]) -> None:
    console = Console(file=out)
    with Live(console=console, auto_refresh=False, screen=True) as live:
        for n, (v, _) in enumerate(frames, 1):
            live.update(rich_view(v, console.width) if v else Text("no answer from the daemon; retrying", style="bold red"),
                        refresh=True)
            if iterations is not None and n >= iterations:
                break

