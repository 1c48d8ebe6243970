"""CPU cost per record of business.observe on the hot path, beside the pipeline stage it follows.

    python -m tests.ops.bench_business [--records 20000] [--batch 2000] [--rounds 7]

Not a test: prints one table. Records are the benchmark workload's mix (bench/workload.py: 23%
payout outcomes, 10% payout-job records) if present, else ccf_agent.samples; batches go through
the real Pipeline first, so observe sees the dicts orjson made, as in the daemon. Cost = CPU time
(process_time) per record, best of --rounds, configurations interleaved so a busy machine skews
them alike. The agent's target is >= 200k records per CPU-second: 5 us per record in all.

Figures on the shared 2-core test machine under load (load average ~6, so every number is
inflated several times; the ratios are the point), batches of 2000, best of 9:

    workload mix (23% payouts, 10% payout-job)  from combined.log  process 9680 ns  observe 1037 ns  (10.7%)
    workload mix                                from error.log     process 9481 ns  observe    7 ns  ( 0.1%)
    no payout records                           from combined.log  process 9019 ns  observe  483 ns  ( 5.4%)

A record that is neither a payout nor the job's costs two dict lookups in one comprehension;
the first version (two C-level `map` passes) cost ~30% more because it touched every record
twice, after the pipeline's batch had left the cache.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import orjson

from ccf_agent.batch import Batch
from ccf_agent.config import InputConfig
from ccf_agent.ops.business import BusinessMetrics
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.registry import Entry
from ccf_agent.samples import lines as sample_lines

ROOT = Path(__file__).resolve().parents[2]
COMBINED, ERRORS = "/var/log/click-clack-cashflow/combined.log", "/var/log/click-clack-cashflow/error.log"


def workload(n: int) -> tuple[str, list[bytes]]:
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        import workload as wl  # type: ignore[import-not-found]
    except ImportError:
        return "ccf_agent.samples", [line.encode() for line in sample_lines(n)]
    finally:
        sys.path.pop(0)
    rng = random.Random(1)
    return "bench/workload.py", [orjson.dumps(wl.make_record(rng, i, "2024-01-15 10:00:00")) for i in range(n)]


def batches(lines: list[bytes], size: int) -> list[Batch]:
    entry = Entry("s" * 16, "fp", "app", COMBINED, 1, 2)
    out, offset = [], 0
    for i in range(0, len(lines), size):
        chunk = lines[i:i + size]
        end = offset + sum(len(x) + 1 for x in chunk)
        out.append(Batch(entry, COMBINED, offset, end, chunk))
        offset = end
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    source, lines = workload(args.records)
    plain = [x for x in lines if b'"payoutId"' not in x and b'"payout-job"' not in x]
    pipeline = Pipeline(InputConfig(id="app", paths=(COMBINED,)), hostname="web-1")
    clock = time.process_time

    def run(bs: list[Batch], path: str) -> tuple[float, float]:
        """As the daemon's dispatch: process a batch, then observe its records while they are hot.
        CPU seconds in process() and in observe(), each clocked around its own calls."""
        m = BusinessMetrics()
        in_process = in_observe = 0.0
        for b in bs:
            t0 = clock()
            e = pipeline.process(b)
            t1 = clock()
            m.observe(e.records, e.times, path)
            in_observe += clock() - t1
            in_process += t1 - t0
        return in_process, in_observe

    sets = {"workload mix": batches(lines, args.batch), "no payout records": batches(plain, args.batch)}
    paths = {"combined.log": COMBINED, "error.log": ERRORS}
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(args.rounds):  # interleaved, so a busy machine skews every case alike
        for name, bs in sets.items():
            for label, path in paths.items():
                p, o = run(bs, path)
                old = best.get((name, label), (float("inf"), float("inf")))
                best[name, label] = (min(old[0], p), min(old[1], o))
    print(f"{len(lines)} records from {source}, batches of {args.batch}; CPU ns per record, best of {args.rounds}")
    for (name, label), (p, o) in best.items():
        n = sum(len(b.lines) for b in sets[name])
        print(f"  {name:18s} from {label:13s} process {p / n * 1e9:6.0f}  observe {o / n * 1e9:5.0f}"
              f"  ({o / p:5.1%} of process, {o / n * 1e9 / 5000:5.1%} of the 5 us/record budget)")


if __name__ == "__main__":
    main()
