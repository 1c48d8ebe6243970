"""Throughput of the logstash output beside the elasticsearch output, on the same records.

Both outputs run in this process, on uvloop, fed the same pre-built records (sample Winston lines
through the real pipeline, built once before any timing) the way the daemon feeds them: submit()
(which runs the output's encode on the hot path) in read-batch-sized fragments, honouring
wait_for_room(), with run() delivering until everything is acknowledged. Receivers are real and
local: Elastic's go-lumber server (tests/lumber, Beats protocol) for logstash, the Go bulk sink
(bench/sink, `_bulk` API) for elasticsearch; each is checked to have every record at the end.

    python bench/outputs_compare.py                   # 100,000 records, 3 runs per variant
    python bench/outputs_compare.py --records 20000 --repeat 1 --json out.json

Figures per variant (median of the runs):
  ev/CPU-s   records / CPU seconds of this process (all threads: zlib runs off the event loop)
             from the first submit until drained; imports and record building excluded
  ev/s       records / wall seconds over the same span
  encode     CPU seconds of encode() alone over all records (a separate pass), per 100k records
  rx CPU-s   CPU seconds the receiver process used meanwhile (it shares the machine's cores)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ccf_agent.batch import Events  # noqa: E402
from ccf_agent.config import OutputConfig  # noqa: E402
from ccf_agent.outputs.base import Output  # noqa: E402
from ccf_agent.outputs.deadletter import DeadLetters  # noqa: E402
from ccf_agent.outputs.elasticsearch.output import ElasticsearchOutput  # noqa: E402
from ccf_agent.outputs.logstash.config import LogstashOptions  # noqa: E402
from ccf_agent.outputs.logstash.output import LogstashOutput  # noqa: E402
from tests.lumber import server as lumber  # noqa: E402
from tests.outputs.helpers import sample_events  # noqa: E402

SINK_DIR = ROOT / "bench" / "sink"
SINK_BIN = SINK_DIR / "bin" / "sink"
READ_BATCH = 2500  # records per fragment: about what one 1 MiB read of these lines yields


def build_records(n: int) -> list[Events]:
    return sample_events(n, per_batch=READ_BATCH, path="/var/log/click-clack-cashflow/combined.log")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Receiver:
    """A receiver subprocess printing `<READY_WORD> <port>` once listening."""

    def __init__(self, argv: list[str], ready: str) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(ready):
                self.port = int(line.split()[1])
                break
        else:
            raise RuntimeError(f"{argv[0]} exited before {ready}")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # go-lumber exits on EOF; the sink on SIGTERM
        self.proc.terminate()
        self.proc.wait(10)


class LumberReceiver(Receiver):
    def __init__(self, workdir: Path) -> None:
        self.out = workdir / f"lumber-{time.monotonic_ns()}.jsonl"
        super().__init__([str(lumber.build()), "-port", "0", "-out", str(self.out), "-quiet"], "LUMBER_READY")

    def received(self) -> int:
        with open(self.out, "rb") as f:
            return sum(1 for _ in f)


class SinkReceiver(Receiver):
    def __init__(self, workdir: Path) -> None:
        if not SINK_BIN.exists():
            subprocess.run(["go", "build", "-o", str(SINK_BIN), "."], cwd=SINK_DIR, check=True)
        super().__init__([str(SINK_BIN), "-port", "0", "-quiet"], "SINK_READY")

    def received(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_ccf/stats", timeout=10) as r:  # noqa: S310
            return int(json.loads(r.read())["docs_total"])


@dataclass
class Variant:
    name: str
    receiver: Callable[[Path], Receiver]
    output: Callable[[int, Path], Output]


def logstash(level: int) -> Callable[[int, Path], Output]:
    def make(port: int, workdir: Path) -> Output:
        cfg = OutputConfig(name="beats", type="logstash", hosts=(f"127.0.0.1:{port}",))
        return LogstashOutput(cfg, LogstashOptions(compression_level=level))
    return make


def es(compression: str) -> Callable[[int, Path], Output]:
    def make(port: int, workdir: Path) -> Output:
        cfg = OutputConfig(name="es", type="elasticsearch", hosts=(f"http://127.0.0.1:{port}",),
                           index="ccf-logs", compression=compression)
        return ElasticsearchOutput(cfg, DeadLetters(workdir))
    return make


VARIANTS = [
    Variant("logstash (zlib level 3, default)", LumberReceiver, logstash(3)),
    Variant("logstash (compression_level 0)", LumberReceiver, logstash(0)),
    Variant("elasticsearch (no compression, default)", SinkReceiver, es("none")),
    Variant("elasticsearch (gzip)", SinkReceiver, es("gzip")),
]


async def deliver(out: Output, records: list[Events]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) from the first submit until everything is acknowledged."""
    task = asyncio.create_task(out.run())
    await asyncio.sleep(0.2)  # let it connect (and the elasticsearch output detect its engine)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for events in records:
        await out.wait_for_room()
        out.submit(events, range(len(events)), None)
    loop = asyncio.get_running_loop()
    if not await out.drain(loop.time() + 300):
        raise RuntimeError(f"{out.name} did not drain: {out.status()}")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return cpu, wall


def encode_cpu(out: Output, records: list[Events]) -> float:
    t0 = time.process_time()
    for events in records:
        out.encode(events, range(len(events)))
    return time.process_time() - t0


def run_variant(v: Variant, records: list[Events], n: int, repeat: int, workdir: Path) -> dict[str, Any]:
    import uvloop

    runs = []
    for _ in range(repeat):
        rx = v.receiver(workdir)
        try:
            out = v.output(rx.port, workdir)
            enc = encode_cpu(out, records)
            rx_cpu0 = rx.cpu()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                cpu, wall = runner.run(deliver(out, records))
            rx_cpu = rx.cpu() - rx_cpu0
            got = rx.received()
            if got != n:
                raise RuntimeError(f"{v.name}: the receiver has {got} records, expected {n}")
            runs.append({"cpu_s": cpu, "wall_s": wall, "encode_cpu_s": enc, "receiver_cpu_s": rx_cpu,
                         "requests": out.stats.requests, "duplicates": out.stats.duplicates})
        finally:
            rx.stop()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"variant": v.name, "records": n, "runs": runs,
            "events_per_cpu_s": round(n / med["cpu_s"]), "events_per_s": round(n / med["wall_s"]),
            "encode_cpu_s_per_100k": round(med["encode_cpu_s"] * 100_000 / n, 3),
            "receiver_cpu_s": round(med["receiver_cpu_s"], 2), "requests": int(med["requests"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    records = build_records(args.records)
    results = []
    with tempfile.TemporaryDirectory(prefix="outputs-compare-") as tmp:
        for v in VARIANTS:
            results.append(run_variant(v, records, args.records, args.repeat, Path(tmp)))
    print(f"{args.records:,} records, median of {args.repeat} run(s), {os.cpu_count()} CPUs")
    print(f"{'variant':42} {'ev/CPU-s':>10} {'ev/s':>10} {'encode/100k':>12} {'rx CPU-s':>9} {'requests':>9}")
    for r in results:
        print(f"{r['variant']:42} {r['events_per_cpu_s']:>10,} {r['events_per_s']:>10,} "
              f"{r['encode_cpu_s_per_100k']:>11.3f}s {r['receiver_cpu_s']:>9.2f} {r['requests']:>9}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
