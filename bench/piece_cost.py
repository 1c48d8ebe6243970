"""What each C piece saves: the default scenario's in-process hot path (bench/stage_cost.py's
stages) with every C piece on, then with one piece at a time switched to its Python twin,
alternating in one process so the machine's noise falls on all alike.

    python bench/workload.py bulk --out /tmp/floor.log -n 300000
    python bench/piece_cost.py /tmp/floor.log [--records 100000] [--rounds 5] [--extra bench/scenarios/redact-alerts.yaml]

Prints, per piece, the median CPU per record with it off, the spread (min-max), and how much of
the scenario's CPU it saves (events per CPU-second with it, against without). A piece that
saves less than ~10% of a scenario is a candidate to leave C (issue 18).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # noqa: E402 - the repo, not an install

from bench.stage_cost import first_lines, measure  # noqa: E402
from ccf_agent import router  # noqa: E402
from ccf_agent.alerts import select  # noqa: E402
from ccf_agent.ops import business  # noqa: E402
from ccf_agent.pipeline import process, redact  # noqa: E402


@contextmanager
def without(module: object, name: str = "_fast", value: object = None) -> Iterator[None]:
    with patch.object(module, name, value):
        yield


@contextmanager
def no_prefilter() -> Iterator[None]:
    """The redaction prefilter in Python (the C loop then takes the Python scan's hits)."""
    real = redact.Redactor.__init__

    def init(self: redact.Redactor, *a: object, **kw: object) -> None:
        real(self, *a, **kw)
        self._native = False

    with patch.object(redact.Redactor, "__init__", init):
        yield


@contextmanager
def no_loop() -> Iterator[None]:
    """The per-line loop (and with it the projection's scan) in Python."""
    with without(process, "_fast"):
        yield


PIECES: dict[str, Callable[[], object]] = {
    "loop (Loop, projection)": no_loop,
    "redaction prefilter": no_prefilter,
    "route programs (assign)": lambda: without(router),
    "payout selection (select)": lambda: without(business),
    "alert conditions (select)": lambda: without(select),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=1 << 17)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--extra", type=Path)
    args = ap.parse_args()
    extra = yaml.safe_load(args.extra.read_text()) if args.extra else {}
    data = first_lines(args.file, args.records)
    n = data.count(b"\n")
    runs: dict[str, list[float]] = {"all C": [], **{k: [] for k in PIECES}}
    with tempfile.TemporaryDirectory(prefix="ccf-piece-cost-") as state:
        for _ in range(args.rounds):
            for name in runs:
                ctx = PIECES[name]() if name in PIECES else None
                if ctx is None:
                    spent = asyncio.run(measure(data, args.chunk, Path(state), extra))
                else:
                    with ctx:  # type: ignore[attr-defined]
                        spent = asyncio.run(measure(data, args.chunk, Path(state), extra))
                runs[name].append(sum(spent.values()) / n * 1e6)
    base = statistics.median(runs["all C"])
    print(f"{'piece switched to Python':34s} {'µs/rec':>7s} {'spread':>13s} {'saves':>6s}")
    for name, us in runs.items():
        med = statistics.median(us)
        saves = (med - base) / med * 100  # of the CPU the scenario spends without the piece
        print(f"{name:34s} {med:7.3f} {min(us):6.3f}-{max(us):6.3f} {saves:5.1f}%")
    print(f"({n:,} records, {args.rounds} rounds, medians; 'saves': CPU the piece takes off the scenario)")


if __name__ == "__main__":
    main()
