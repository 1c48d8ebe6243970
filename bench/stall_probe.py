"""Is a pause the process's own, or the machine's? A sleeper that asks for 5 ms and records every
wake-up that came late, with what the kernel says happened meanwhile.

    python bench/stall_probe.py --seconds 300 [--threshold-ms 50] [--json out.json] [--follow 'ccf_agent run']

Run it beside the agent (for example during `bench/run.py --scenario latency`): a stall the agent
shows while this process, which allocates nothing and holds no lock, overslept at the same
moment, is the machine's (a vCPU not scheduled by the host shows as steal time in /proc/stat; a
run queue longer than the cores as CPU pressure), not the agent's garbage collector or I/O.

With --follow, it also samples, every tick, the main thread of the newest process whose command
line holds that text: its state, where the kernel has it sleep (wchan), and the scheduler's
cumulative nanoseconds on a CPU and waiting for one (/proc/PID/task/PID/schedstat). Over an agent's
stall these tell the three causes apart: its time on CPU grew (it was computing), its run-queue
wait grew (it was runnable and not run: the machine), or neither (it slept: I/O, a lock, a timer).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import asdict, dataclass

USER_HZ = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Kernel:
    """Cumulative counters: steal and iowait in ms, pressure stall totals in µs."""

    steal_ms: float
    iowait_ms: float
    cpu_some_us: int
    io_full_us: int
    mem_full_us: int


@dataclass(frozen=True)
class Late:
    at: float  # seconds since the probe started
    wall: float  # time.time() at the wake-up: to line it up with the sink's slow requests
    overslept_ms: float
    steal_ms: float
    iowait_ms: float
    cpu_some_ms: float
    io_full_ms: float
    mem_full_ms: float


def _pressure(kind: str, line: str) -> int:
    try:
        with open(f"/proc/pressure/{kind}") as f:
            for row in f:
                if row.startswith(line):
                    return int(row.rsplit("total=", 1)[1])
    except OSError:
        pass
    return 0


def parse_stat(text: str) -> tuple[float, float]:
    """(steal, iowait) in ms from /proc/stat's first line."""
    fields = text.split("\n", 1)[0].split()
    per_ms = 1000 / USER_HZ
    return int(fields[8]) * per_ms, int(fields[5]) * per_ms


def kernel() -> Kernel:
    with open("/proc/stat") as f:
        steal, iowait = parse_stat(f.read(4096))
    return Kernel(steal, iowait, _pressure("cpu", "some"), _pressure("io", "full"), _pressure("memory", "full"))


def between(a: Kernel, b: Kernel, at: float, overslept: float) -> Late:
    return Late(round(at, 3), round(time.time(), 3), round(overslept * 1000, 1), round(b.steal_ms - a.steal_ms, 1),
                round(b.iowait_ms - a.iowait_ms, 1), round((b.cpu_some_us - a.cpu_some_us) / 1000, 1),
                round((b.io_full_us - a.io_full_us) / 1000, 1), round((b.mem_full_us - a.mem_full_us) / 1000, 1))


@dataclass(frozen=True)
class Sample:
    """One tick of the followed process: per thread (tid, state, wchan, cpu ns, run-queue wait ns)."""

    wall: float
    pid: int
    threads: list[tuple[int, str, str, int, int]]


class Follower:
    """The threads of the newest process whose command line holds `text`, sampled per tick: the
    main thread's numbers say whether the event loop computed, waited for a CPU or slept; the
    others', which thread held what it slept on (the interpreter's lock is a futex too)."""

    def __init__(self, text: str) -> None:
        self.text = text.encode()
        self.pid = 0
        self.samples: list[Sample] = []
        self.names: dict[int, str] = {}  # tid -> its comm, once
        self._looked = 0.0

    def _find(self) -> int:
        newest = (0, 0.0)
        me = os.getpid()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")
                started = entry.stat().st_mtime
            except OSError:
                continue
            if self.text in cmd and started >= newest[1]:
                newest = (int(entry.name), started)
        return newest[0]

    def _thread(self, tid: int) -> tuple[int, str, str, int, int]:
        base = f"/proc/{self.pid}/task/{tid}"
        with open(f"{base}/schedstat") as f:
            cpu, wait, _ = f.read().split()
        with open(f"{base}/stat") as f:
            head, tail = f.read().rsplit(")", 1)
        if tid not in self.names:
            self.names[tid] = head.split("(", 1)[1]
        with open(f"{base}/wchan") as f:
            wchan = f.read()
        return tid, tail.split()[0], wchan, int(cpu), int(wait)

    def sample(self) -> None:
        # Looked for again each second, not only when it ends: a process that merely names the
        # text (a harness given the agent's command line) is older than the agent it starts.
        if time.monotonic() - self._looked > (0.2 if not self.pid else 1.0):
            self._looked = time.monotonic()
            self.pid = self._find() or self.pid
        if not self.pid:
            return
        try:
            main = self._thread(self.pid)
        except (OSError, ValueError):
            self.pid = 0  # it ended: look for the next one
            return
        threads = [main]
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{self.pid}/task") if int(t) != self.pid]
        except OSError:
            tids = []
        for tid in tids:
            try:
                threads.append(self._thread(tid))
            except (OSError, ValueError):
                pass  # it ended between the listing and the read
        self.samples.append(Sample(round(time.time(), 4), self.pid, threads))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--threshold-ms", type=float, default=50)
    ap.add_argument("--json", help="write every late wake-up here")
    ap.add_argument("--follow", metavar="TEXT", help="also sample the main thread of the newest process whose "
                    "command line holds TEXT (for example 'ccf_agent run')")
    args = ap.parse_args()
    tick, limit = 0.005, args.threshold_ms / 1000
    start = time.monotonic()
    first = before = kernel()
    late: list[Late] = []
    # once a second, what the kernel counted meanwhile: a stall the agent shows and this process
    # slept through can still be lined up with the host's steal at that second
    seconds: list[tuple[float, float, float]] = []  # (wall, steal ms, cpu pressure ms)
    mark, at_mark = start, first
    follower = Follower(args.follow) if args.follow else None
    stop: list[int] = []  # SIGTERM/SIGINT end the run early, with the summary and --json written
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    while (now := time.monotonic()) - start < args.seconds and not stop:
        time.sleep(tick)
        woke = time.monotonic()
        after = kernel()
        if follower is not None:
            follower.sample()
        if woke - now - tick > limit:
            late.append(between(before, after, woke - start, woke - now - tick))
            print(json.dumps(asdict(late[-1])), flush=True)
        before = after
        if woke - mark >= 1.0:
            seconds.append((round(time.time(), 3), round(after.steal_ms - at_mark.steal_ms, 1),
                            round((after.cpu_some_us - at_mark.cpu_some_us) / 1000, 1)))
            mark, at_mark = woke, after
    total = between(first, kernel(), time.monotonic() - start, 0)
    summary = {"seconds": round(time.monotonic() - start, 1), "late_wakeups": len(late),
               "worst_ms": max((x.overslept_ms for x in late), default=0.0),
               "steal_ms": total.steal_ms, "cpu_some_ms": total.cpu_some_ms, "io_full_ms": total.io_full_ms}
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "late": [asdict(x) for x in late], "seconds": seconds,
                       "followed": [asdict(x) for x in follower.samples] if follower else [],
                       "thread_names": follower.names if follower else {}}, f)


if __name__ == "__main__":
    main()
