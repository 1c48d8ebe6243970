"""send_batch throughput against the go-lumber test server.

python -m tests.lumber.bench [--events 100000] [--batch 2048] [--levels 0,3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import orjson

from ccf_agent.outputs.logstash.lumberjack import LumberjackConnection, beats_event
from tests.lumber import server as lumber


def make_events(n: int) -> list[bytes]:
    """~350-byte access-log-like events; random ids and latencies keep zlib honest."""
    rnd = random.Random(42)
    paths = ["/api/v1/payments", "/api/v1/refunds", "/healthz", "/api/v1/customers/search"]
    out = []
    for i in range(n):
        doc = {
            "@timestamp": f"2026-11-27T04:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z",
            "host": {"name": f"pay-{rnd.randrange(12):02d}"},
            "log": {"file": {"path": "/var/log/ccf/gateway-access.log"}, "offset": i * 350},
            "service": {"name": "gateway"},
            "message": (
                f"{rnd.choice(['GET', 'POST'])} {rnd.choice(paths)} {rnd.choice([200, 200, 201, 404, 502])} "
                f"{rnd.random() * 300:.3f}ms req={rnd.getrandbits(64):016x} merchant=m{rnd.randrange(10**6)}"
            ),
            "trace": {"id": f"{rnd.getrandbits(128):032x}"},
        }
        out.append(beats_event(orjson.dumps(doc)))
    return out


async def run(port: int, events: list[bytes], batch: int, level: int) -> tuple[float, float]:
    """(wall seconds, client CPU seconds incl. compression threads)"""
    async with LumberjackConnection(compression_level=level, timeout=30) as conn:
        await conn.connect("127.0.0.1", port)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(events), batch):
            await conn.send_batch(events[i : i + batch])
        return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--levels", default="0,3")
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per level; best and median are shown")
    args = ap.parse_args()
    events = make_events(args.events)
    avg = sum(map(len, events)) / len(events)
    print(
        f"{len(events)} events, avg {avg:.0f} B, batch {args.batch}, loop {'uvloop' if args.uvloop else 'asyncio'}"
    )
    runner = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    for level in map(int, args.levels.split(",")):
        rates, cpu = [], []
        for _ in range(args.repeat):
            with lumber.start() as srv:
                secs, cpu_secs = runner(run(srv.port, events, args.batch, level))
                assert len(srv.events()) == len(events)
            rates.append(len(events) / secs)
            cpu.append(cpu_secs / len(events) * 1e6)
        rates.sort()
        print(
            f"level {level}: best {rates[-1]:,.0f} events/s ({rates[-1] * avg / 1e6:.1f} MB/s), "
            f"median {rates[len(rates) // 2]:,.0f} events/s over {len(rates)} runs; "
            f"client CPU {min(cpu):.1f} us/event"
        )


if __name__ == "__main__":
    main()
