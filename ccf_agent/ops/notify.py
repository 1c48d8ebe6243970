"""systemd's notify protocol (sd_notify(3)) on $NOTIFY_SOCKET, without libsystemd.

The supervisor starts `notify_loop(snapshot)` (`snapshot` builds its current Snapshot) once its
inputs and outputs are up (or earlier, with an `up` event it sets then): it sends READY=1 with a STATUS= line, then WATCHDOG=1 every half of $WATCHDOG_USEC and a fresh
STATUS= line every `status_every` seconds, until it is cancelled (last, after the outputs
drained). Shutdown and reload are one-off states the supervisor sends with `stopping()`
and `reloading()` / `ready()`.

Under `Type=notify` with `WatchdogSec=`, a blocked event loop stops the pings and systemd
restarts the service: the pings come from the same loop as the hot path on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from ccf_agent.ops.snapshot import Snapshot

log = logging.getLogger("ccf_agent.ops.notify")

STATUS_EVERY = 10.0


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]  # abstract namespace
    if addr.startswith("/"):
        return addr
    return None  # unset, or a vsock: address this daemon never runs under


def notify(state: str) -> bool:
    """Send one datagram of newline-separated KEY=value assignments; False when not under systemd.

    Non-blocking: a full receive queue drops the message instead of stalling the event loop.
    """
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as s:
            s.sendto(state.encode(), addr)
    except OSError as e:
        log.debug("sd_notify %r to %s failed: %s", state[:40], addr, e)
        return False
    return True


def watchdog_period() -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, if the watchdog is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        if pid and int(pid) != os.getpid():
            return None  # set for another process (our parent): sd_watchdog_enabled(3) ignores it too
        us = int(usec)
    except ValueError:
        return None
    return us / 2e6 if us > 0 else None


def ready(status: str | None = None) -> bool:
    return notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def stopping(status: str = "stopping: delivering what is in flight, saving offsets") -> bool:
    return notify(f"STOPPING=1\nSTATUS={_one_line(status)}")


def reloading(status: str = "reloading configuration") -> bool:
    """RELOADING=1 with the CLOCK_MONOTONIC stamp systemd >= 253 wants; send `ready()` when done."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={_one_line(status)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


def summary(snap: Snapshot, records_per_second: float) -> str:
    """One STATUS= line: files, throughput, lag, outputs (what `systemctl status` shows)."""
    files = snap.files
    reading = sum(1 for f in files if f.state == "reading")
    lag_text = f"lag {_size(sum(f.lag_bytes for f in files))}"
    if files:
        lag_text += f" / {max(f.lag_seconds for f in files):.0f}s"
    healthy = sum(1 for o in snap.outputs if o.healthy)
    text = (f"{len(files)} files ({reading} reading), {records_per_second:.0f} records/s, {lag_text}; "
            f"outputs {healthy}/{len(snap.outputs)} healthy")
    if snap.dead_letters:
        text += f"; {snap.dead_letters} dead-lettered"
    return _one_line(text)


class Throughput:
    """Records per second between two readings of a monotonically growing counter."""

    def __init__(self, count: int, now: float) -> None:
        self.count, self.at = count, now

    def rate(self, count: int, now: float) -> float:
        elapsed = now - self.at
        value = (count - self.count) / elapsed if elapsed > 0 else 0.0
        self.count, self.at = count, now
        return max(0.0, value)


async def notify_loop(snapshot: Callable[[], Snapshot], status_every: float = STATUS_EVERY,
                      up: asyncio.Event | None = None) -> None:
    """READY=1 once inputs and outputs are up (now, or when `up` is set), then watchdog pings and
    STATUS lines until cancelled. systemd arms the watchdog only after READY=1."""
    if _address() is None:
        return  # not under systemd: nothing will ever listen
    if up is not None:
        await up.wait()
    loop = asyncio.get_running_loop()
    throughput = Throughput(snapshot().records_in, loop.time())
    ready(summary(snapshot(), 0.0))
    period = watchdog_period()
    tick = min(period, status_every) if period else status_every
    next_status = loop.time() + status_every
    while True:
        await asyncio.sleep(tick)
        now = loop.time()
        parts = ["WATCHDOG=1"] if period else []
        if now >= next_status:
            next_status = now + status_every
            try:
                snap = snapshot()
                parts.append("STATUS=" + summary(snap, throughput.rate(snap.records_in, now)))
            except Exception as e:  # a status bug must not stop the watchdog pings
                log.warning("STATUS summary failed: %s", e)
        if parts:
            notify("\n".join(parts))
