"""Where each stall of a latency run went: the sink's slow requests (bench/run.py's results) lined
up with what `bench/stall_probe.py --follow 'ccf_agent run' --json PROBE` sampled meanwhile.

    python bench/stall_report.py PROBE.json bench/out/results-*.json [--over-ms 100]

For each request that held a record older than --over-ms, per thread of the agent over the time
that record waited: milliseconds on a CPU, milliseconds runnable in the run queue, and its states
(R runnable/running; S asleep, with the kernel function it sleeps in: futex_do_wait is a lock or
a condition, do_epoll_wait an idle event loop). Threads that neither ran, waited nor woke are left
out. Stalls less than 0.5 s apart are one.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any


def stalls(results: list[Path], over_ms: float) -> list[tuple[float, float, str]]:
    """(arrival s, oldest ms, results file) of each slow request, the worst of each 0.5 s first."""
    found = []
    for path in results:
        for sc in json.loads(path.read_text())["scenarios"].values():
            for req in (sc.get("sink") or {}).get("slow_requests") or []:
                if req["oldest_ms"] > over_ms:
                    found.append((req["arrival_unix_ns"] / 1e9, req["oldest_ms"], path.name))
    kept: list[tuple[float, float, str]] = []
    for stall in sorted(found, key=lambda s: -s[1]):
        if all(abs(stall[0] - k[0]) >= 0.5 for k in kept):
            kept.append(stall)
    return sorted(kept)


def threads_over(samples: list[dict[str, Any]], names: dict[str, str], start: float, end: float) -> list[str]:
    within = [s for s in samples if start <= s["wall"] <= end]
    if len(within) < 2:
        return ["  (no samples of the agent then)"]
    first = {t[0]: t for t in within[0]["threads"]}
    rows = []
    for tid, _, _, cpu, wait in within[-1]["threads"]:
        if tid not in first:
            continue
        seen = Counter((t[1], t[2]) for s in within for t in s["threads"] if t[0] == tid)
        cpu_ms, wait_ms = (cpu - first[tid][3]) / 1e6, (wait - first[tid][4]) / 1e6
        if cpu_ms < 0.5 and wait_ms < 0.5 and all(st == "S" for st, _ in seen):
            continue
        main = " (event loop)" if tid == within[0]["pid"] else ""
        states = ", ".join(f"{st} {wchan or '-'} ×{n}" for (st, wchan), n in seen.most_common(3))
        rows.append(f"  {names.get(str(tid), '?')}{main}: cpu {cpu_ms:.1f} ms, run queue {wait_ms:.1f} ms; {states}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", type=Path)
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--over-ms", type=float, default=100.0)
    args = ap.parse_args()
    probe = json.loads(args.probe.read_text())
    samples, names = probe.get("followed", []), probe.get("thread_names", {})
    late = probe.get("late", [])
    for at, oldest, name in stalls(args.results, args.over_ms):
        own = [x for x in late if at - oldest / 1000 - 0.1 <= x["wall"] <= at + 0.1]
        print(f"{name}: a record waited {oldest:.0f} ms (5 ms samples: {int(oldest / 5)}); "
              f"the probe's own process {'overslept' if own else 'ran on time'}")
        print("\n".join(threads_over(samples, names, at - oldest / 1000, at)))


if __name__ == "__main__":
    main()
