"""CPU per record of each in-process stage of the default scenario's hot path, without HTTP.

    python bench/workload.py bulk --out /tmp/floor.log -n 300000
    python bench/stage_cost.py /tmp/floor.log [--records 200000] [--chunk 131072] [--rounds 3]
    python bench/stage_cost.py /tmp/floor.log --extra bench/scenarios/redact-alerts.yaml

Reads the file into memory, then, chunk by chunk as the tail reader hands them over (the
chunk's complete lines as one bytes object), runs the default scenario's pipeline (JSON,
redaction defaults, the projection the agent computes), business metrics, alert rules (with
`--extra` YAML that has some), the payout route and both Elasticsearch outputs' `encode`,
timing each stage with process_time. Best of
`--rounds`. Not a test: what the agent adds on top (event loop, HTTP, acknowledgements,
startup) shows as the gap to `python bench/run.py --scenario default`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # noqa: E402 - the repo, not an install

from bench.run import deep_merge  # noqa: E402
from ccf_agent.agent import Agent  # noqa: E402
from ccf_agent.batch import Batch  # noqa: E402
from ccf_agent.config import parse_config  # noqa: E402
from ccf_agent.ops import business  # noqa: E402
from ccf_agent.pipeline.process import Pipeline  # noqa: E402
from ccf_agent.registry import Entry  # noqa: E402

# bench/run.py's default scenario, with outputs that are never contacted
CONFIG = """
state_dir: {state}
inputs: [{{id: app, paths: [/var/log/ccf/*.log], format: json}}]
outputs:
  logs: {{type: elasticsearch, hosts: ["http://127.0.0.1:9"], index: ccf-logs}}
  payouts: {{type: elasticsearch, hosts: ["http://127.0.0.1:9"], index: ccf-payouts}}
routes:
- name: payouts
  output: payouts
  when: {{any: [{{field: message, icontains: payout}}, {{field: service, equals: payout-job}}]}}
"""
STAGES = ("split", "pipeline", "business", "alerts", "route", "encode")


async def measure(data: bytes, chunk: int, state: Path, extra: dict) -> dict[str, float]:
    cfg = parse_config(yaml.safe_dump(deep_merge(yaml.safe_load(CONFIG.format(state=state)), extra)))
    agent = Agent(cfg)  # (needs a running loop for its events; nothing is started)
    alerts = agent.alerts if cfg.alerts is not None else None
    pipeline = Pipeline(cfg.inputs[0], hostname="web-1", processors=cfg.processors)
    pipeline.project(agent._projection())
    entry = Entry("s" * 16, "fp", "app", "/var/log/ccf/combined.log", 1, 2)
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.process_time
    partial = b""
    for at in range(0, len(data), chunk):
        piece = data[at:at + chunk]
        t0 = clock()
        nl = piece.rfind(b"\n")
        block = b"".join((partial, memoryview(piece)[:nl + 1]))
        partial = piece[nl + 1:]
        t1 = clock()
        batch = Batch(entry, entry.path, at, at + len(block), data=block)
        events = pipeline.process(batch)
        t2 = clock()
        business.observe(events.records, events.times, batch.path)
        t3 = clock()
        if alerts is not None:
            alerts.observe(events.records, events.times, events.docs if pipeline.projected else None)
        t4 = clock()
        buckets = agent.router.assign(events.records)
        t5 = clock()
        for k, indices in enumerate(buckets):
            for out in agent._targets[k] if indices else ():
                out.encode(events, indices)
        t6 = clock()
        for stage, d in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            spent[stage] += d
    return spent


def first_lines(path: str, records: int) -> bytes:
    """The file's first `records` lines, joined."""
    lines: list[bytes] = []
    with open(path, "rb") as f:
        for line in f:
            lines.append(line)
            if len(lines) == records:
                break
    return b"".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=1 << 17)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--extra", type=Path, help="YAML merged into the config, as bench/run.py's scenarios do")
    args = ap.parse_args()
    extra = yaml.safe_load(args.extra.read_text()) if args.extra else {}
    data = first_lines(args.file, args.records)
    n = data.count(b"\n")
    best: dict[str, float] | None = None
    with tempfile.TemporaryDirectory(prefix="ccf-stage-cost-") as state:
        for _ in range(args.rounds):
            spent = asyncio.run(measure(data, args.chunk, Path(state), extra))
            if best is None or sum(spent.values()) < sum(best.values()):
                best = spent
    assert best is not None
    total = sum(best.values())
    for stage in STAGES:
        print(f"{stage:9s} {best[stage] / n * 1e6:6.3f} µs/record  {best[stage] / total * 100:5.1f}%")
    print(f"{'total':9s} {total / n * 1e6:6.3f} µs/record  {n / total:,.0f} records per CPU-second ({n:,} records)")


if __name__ == "__main__":
    main()
