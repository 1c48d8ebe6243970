"""The Elasticsearch output alone: pre-built records to the local bulk sink (bench/sink).

    python bench/es_output.py                 # 1,000,000 records, gzip off and on
    python bench/es_output.py --quick         # 200,000
    python bench/es_output.py --docs 500000 --in-flight 4 --batch-docs 5000

Records are made once, before timing, by the real pipeline from bench/workload.py's Winston
records (mean ~345 bytes), then submitted in read-sized batches the way the agent's dispatcher
does (waiting for room when the output's queue is full) until `--docs` were acknowledged.
A pool of 100k records is cycled, so memory measures the output, not the corpus.

Each configuration runs in a fresh process (so peak RSS is its own) on uvloop, like the agent:
- events per CPU-second = records acknowledged / CPU seconds of this process (all threads:
  the gzip worker thread counts) from the first submit until everything was acknowledged;
- encode alone: CPU per record of `encode` over the same batches (the hot-path part);
- peak RSS = VmHWM of the process; `rss_before_mb` is the RSS once the records were built;
- the sink's own CPU is reported apart (it shares the machine's cores).
gzip uses ISA-L (`isal`) when installed, else stdlib zlib; `--stdlib-zlib` measures the latter.
The sink must have received exactly `--docs` documents, else the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import workload  # noqa: E402

from ccf_agent.batch import Batch, Events  # noqa: E402
from ccf_agent.config import InputConfig, OutputConfig  # noqa: E402
from ccf_agent.outputs.deadletter import DeadLetters  # noqa: E402
from ccf_agent.outputs.elasticsearch.output import ElasticsearchOutput  # noqa: E402
from ccf_agent.pipeline.process import Pipeline  # noqa: E402
from ccf_agent.registry import Entry  # noqa: E402

SINK_BIN = BENCH / "sink" / "bin" / "sink"
POOL = 100_000
BATCH_BYTES = 1 << 20  # the tailer reads 1 MiB chunks


def build_events(n: int, seed: int = 1) -> list[Events]:
    rng = random.Random(seed)
    pipeline = Pipeline(InputConfig(id="app", paths=("/var/log/ccf/*.log",)), "bench-host")
    entry = Entry("bench", "fp", "app", "/var/log/ccf/combined.log", 1, 1)
    out: list[Events] = []
    lines: list[bytes] = []
    size = offset = 0
    for seq in range(n):
        rec = workload.make_record(rng, seq, workload._ts(workload.BASE_EPOCH + seq * workload.APP_MS_PER_RECORD // 1000))
        line = json.dumps(rec, separators=(",", ":")).encode()
        lines.append(line)
        size += len(line) + 1
        if size >= BATCH_BYTES or seq == n - 1:
            ev = pipeline.process(Batch(entry, entry.path, offset, offset + size, lines))
            ev.records = []  # outputs never read the parsed records; keep the pool small
            out.append(ev)
            offset += size
            lines, size = [], 0
    return out


class Acks:
    """Stands in for the agent's ack tokens: counts what the output acknowledged."""

    def __init__(self) -> None:
        self.done_count = 0

    def hold(self) -> None:
        pass

    def done(self) -> None:
        self.done_count += 1


def _rss_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def encode_cost(out: ElasticsearchOutput, pool: list[Events], rounds: int = 3) -> float:
    """Best-of-`rounds` CPU seconds per record of encode() over the pool."""
    best = float("inf")
    n = sum(len(e) for e in pool)
    for _ in range(rounds):
        t = time.process_time()
        for ev in pool:
            out.encode(ev, range(len(ev)))
        best = min(best, (time.process_time() - t) / n)
    return best


async def ship(args: argparse.Namespace, sink_url: str, pool: list[Events]) -> dict[str, Any]:
    cfg = OutputConfig(name="bench", type="elasticsearch", hosts=(sink_url,), index="ccf-bench-%{+yyyy.MM.dd}",
                       compression=args.compression, max_in_flight=args.in_flight,
                       batch_max_docs=args.batch_docs, batch_max_bytes=args.batch_bytes)
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"ccf-es-bench-{os.getpid()}"
    out = ElasticsearchOutput(cfg, DeadLetters(state))
    per_record_encode = encode_cost(out, pool)
    acks = Acks()
    task = asyncio.create_task(out.run())
    loop = asyncio.get_running_loop()
    submitted = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    k = 0
    while submitted < args.docs:
        ev = pool[k % len(pool)]
        k += 1
        take = min(len(ev), args.docs - submitted)
        await out.wait_for_room()
        out.submit(ev, range(take) if take < len(ev) else range(len(ev)), acks)  # type: ignore[arg-type]
        submitted += take
        if k % 8 == 0:
            await asyncio.sleep(0)  # the tailer yields between reads
    drained = await out.drain(loop.time() + 600)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if not drained or acks.done_count != k:
        raise SystemExit(f"not everything was acknowledged: {out.status()}")
    s = out.stats
    return {"docs": submitted, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "events_per_cpu_s": round(submitted / cpu), "wall_events_per_s": round(submitted / wall),
            "encode_us_per_event": round(per_record_encode * 1e6, 3),
            "encode_events_per_cpu_s": round(1 / per_record_encode),
            "requests": s.requests, "docs_per_request": round(submitted / max(1, s.requests)),
            "request_errors": s.request_errors}


def one(args: argparse.Namespace) -> None:
    """A single configuration, in this (fresh) process; prints one JSON line."""
    import uvloop

    from ccf_agent.outputs.elasticsearch import encoding

    if args.stdlib_zlib:  # what an install without isal gets
        encoding._zlib, encoding._GZIP_OFF_LOOP = zlib, True  # type: ignore[assignment]
    pool = build_events(min(POOL, args.docs))
    rss_before = _rss_mb("VmRSS")
    result = uvloop.run(ship(args, args.sink_url, pool))
    codec = "" if args.compression == "none" else ("+zlib" if encoding._zlib is zlib else "+isal")
    result.update(compression=args.compression + codec, peak_rss_mb=round(_rss_mb("VmHWM"), 1),
                  rss_before_mb=round(rss_before, 1),
                  ru_maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    print(json.dumps(result))


class Sink:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([str(SINK_BIN), "-port", "0", "-quiet"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("SINK_READY "):
            self.proc.kill()
            raise SystemExit(f"sink did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.url + "/_ccf/stats", timeout=10) as r:  # noqa: S310
            return json.load(r)

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(self.url + "/_ccf/reset", method="POST"), timeout=10).close()  # noqa: S310

    def close(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="200,000 records")
    p.add_argument("--in-flight", type=int, default=2)
    p.add_argument("--batch-docs", type=int, default=5000)
    p.add_argument("--batch-bytes", type=int, default=5 << 20)
    p.add_argument("--compression", choices=("none", "gzip", "both"), default="both")
    p.add_argument("--stdlib-zlib", action="store_true", help="gzip with stdlib zlib even when isal is installed")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (best and all are kept)")
    p.add_argument("--no-build", action="store_true", help="use bench/sink/bin/sink as it is")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sink-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.docs = 200_000
    if args.one:
        one(args)
        return 0
    if not args.no_build or not SINK_BIN.exists():
        subprocess.run(["go", "build", "-o", str(SINK_BIN), "."], cwd=BENCH / "sink", check=True)
    sink = Sink()
    results: list[dict[str, Any]] = []
    try:
        for comp in (("none", "gzip") if args.compression == "both" else (args.compression,)):
            for _ in range(args.repeat):
                sink.reset()
                sink_cpu0 = _proc_cpu(sink.proc.pid)
                cmd = [sys.executable, __file__, "--one", "--sink-url", sink.url, "--docs", str(args.docs),
                       "--compression", comp, "--in-flight", str(args.in_flight),
                       "--batch-docs", str(args.batch_docs), "--batch-bytes", str(args.batch_bytes),
                       *(["--stdlib-zlib"] if args.stdlib_zlib else [])]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(done.stdout, done.stderr, file=sys.stderr)
                    return 1
                r = json.loads(done.stdout.strip().splitlines()[-1])
                st = sink.stats()
                r["sink_cpu_s"] = round(_proc_cpu(sink.proc.pid) - sink_cpu0, 2)
                r["sink_docs"] = st.get("docs_total")
                r["sink_gzip_requests"] = st.get("gzip_requests")
                if r["sink_docs"] != args.docs:
                    print(f"!! sink received {r['sink_docs']} documents, not {args.docs}", file=sys.stderr)
                    return 1
                results.append(r)
                print(f"{r['compression']:10s}  {r['events_per_cpu_s']:>9,} ev/CPU-s  {r['wall_events_per_s']:>9,} ev/s wall  "
                      f"encode {r['encode_events_per_cpu_s']:>10,} ev/CPU-s ({r['encode_us_per_event']} us)  "
                      f"peak RSS {r['peak_rss_mb']} MB (records built: {r['rss_before_mb']} MB)  "
                      f"{r['docs_per_request']} docs/request  sink CPU {r['sink_cpu_s']} s", flush=True)
    finally:
        sink.close()
    out_dir = BENCH / "out"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"es-output-{time.strftime('%Y-%m-%dT%H%M%S')}.json"
    path.write_text(json.dumps({"args": vars(args), "results": results, "machine": {
        "python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()}}, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
