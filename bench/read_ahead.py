"""Wall time of the input side with both cores free: the tail reader, the pipeline, business
metrics, the payout route and `encode`, in-process, with and without the read-ahead thread.

    python bench/workload.py bulk --out /tmp/floor.log -n 1000000
    python bench/read_ahead.py /tmp/floor.log [--rounds 5]

The file is read through `FileReader` as the agent reads it (128 KiB chunks; the page cache
warmed by a first pass), in rounds alternating the two modes. No HTTP and no sink: what the
end-to-end benchmark's sink takes from the second core is not taken here. Per mode, the
median round: records per second of wall time, records per CPU-second of the process (both
threads), and the cores used (CPU time over wall time). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # noqa: E402 - the repo, not an install

from bench.stage_cost import CONFIG  # noqa: E402
from ccf_agent.acks import Flow, Ledger  # noqa: E402
from ccf_agent.agent import Agent  # noqa: E402
from ccf_agent.config import parse_config  # noqa: E402
from ccf_agent.ops import business  # noqa: E402
from ccf_agent.pipeline.native import fast, read_ahead  # noqa: E402
from ccf_agent.pipeline.process import Pipeline  # noqa: E402
from ccf_agent.registry import Entry, Registry  # noqa: E402
from ccf_agent.tail.reader import FileReader  # noqa: E402


async def one_round(path: str, state: Path, ahead: bool) -> tuple[int, float, float]:
    """(records, wall seconds, CPU seconds) of reading and processing the whole file once."""
    cfg = parse_config(yaml.safe_dump(yaml.safe_load(CONFIG.format(state=state))))
    agent = Agent(cfg)  # (needs a running loop for its events; nothing is started)
    pipeline = Pipeline(cfg.inputs[0], hostname="web-1", processors=cfg.processors)
    pipeline.project(agent._projection())
    entry = Entry("s" * 16, "fp", "app", path, 1, 2)
    ledger = Ledger(entry, Registry(state), Flow(1 << 40))
    reader = FileReader(os.open(path, os.O_RDONLY), path, entry, ledger, 0, 1 << 20)
    reader.ahead = read_ahead(pipeline.scan_spec()) if ahead else None
    if ahead and reader.ahead is None:
        raise SystemExit("no read-ahead for this pipeline (is the C extension built?)")
    records = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while batches := reader.read():
        for batch in batches:
            events = pipeline.process(batch)
            business.observe(events.records, events.times, batch.path)
            buckets = agent.router.assign(events.records)
            for k, indices in enumerate(buckets):
                for out in agent._targets[k] if indices else ():
                    out.encode(events, indices)
            records += len(events)
            assert batch.token is not None
            batch.token.done()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    reader.close()
    if reader.ahead is not None:
        reader.ahead.close()
    return records, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if fast is not None:
        fast.keep_memory()  # as `ccf-agent run` does
    with open(args.file, "rb") as f:  # into the page cache, as the end-to-end benchmark has it
        while f.read(1 << 24):
            pass
    got: dict[bool, list[tuple[int, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="ccf-read-ahead-") as state:
        for r in range(args.rounds * 2):
            ahead = r % 2 == 1
            got[ahead].append(asyncio.run(one_round(args.file, Path(state), ahead)))
    print(f"{'mode':14s} {'records':>10s} {'wall rec/s':>12s} {'rec/CPU-s':>12s} {'cores':>6s}   rounds (wall rec/s)")
    for ahead in (False, True):
        rounds = got[ahead]
        n = rounds[0][0]
        walls = [n / w for _, w, _ in rounds]
        cpus = [n / c for _, _, c in rounds]
        cores = [c / w for _, w, c in rounds]
        print(f"{'read-ahead' if ahead else 'one thread':14s} {n:10,d} {statistics.median(walls):12,.0f} "
              f"{statistics.median(cpus):12,.0f} {statistics.median(cores):6.2f}   "
              + " ".join(f"{w:,.0f}" for w in walls))


if __name__ == "__main__":
    main()
