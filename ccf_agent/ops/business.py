"""The app's business metrics, derived from its own log records, under the seed guide's names.

    ccf_payouts_total{status,method}   counter: payout attempts by outcome
    ccf_payout_duration_seconds        histogram of `processingTime` (ms), buckets 0.1 .. 30 s
    ccf_last_payout_job_timestamp      gauge: event time of the newest record of the payout job

so the seed's `alerts.yml` evaluates against ccf-agent's `/metrics` as it would against the app.

What counts:
- A payout attempt is a record with a `payoutId` whose message is one of the app's outcome lines
  ("Payout processed", "Payout failed", any case). `status` comes from the record for a processed
  payout (one of STATUSES, else "other"), and is "failed" for a failed one; `method` is the
  record's `method` when it is a Stripe payout method (standard, instant), "unknown" when absent
  and "other" otherwise, so label values never come unbounded from the logs.
- The payout job ran at the event time of any record with `service: payout-job`. That value is
  kept in `state_dir/business.json`, so an agent restart does not reset the gauge to "never" and
  fire PayoutJobNotRunning (counters restart at 0 like any process's; `rate()` handles that).
- Only records read from the files that hold every record once count: Winston writes a record to
  combined.log and again to error.log or payouts.log, so counting every file would count a failed
  payout three times. SOURCES matches combined.log and its rotated generations.

Cost: `observe` runs per batch on the hot path: the conditions' evaluator (in C) picks the payout
and payout-job records; a batch's payouts are then counted per (message, status, method)
combination (`_payouts`: the extension's `tally` and `column` read the fields, Python does the
arithmetic once per combination), not a Python call per record. Measured with
`python -m tests.ops.bench_business` (CPU time around each call, right after the pipeline made
the batch): see the figures in that file's docstring.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from functools import reduce
from itertools import compress, repeat
from operator import add, is_not, ne, truediv
from pathlib import Path
from types import NoneType
from typing import Any

import orjson

from ccf_agent.conditions import P_EQUALS, P_HAS
from ccf_agent.config.report import SOURCES
from ccf_agent.fsutil import SnapshotOrder, atomic_write, read_plain
from ccf_agent.pipeline.native import fast as _fast  # conditions' evaluator in C, or None

log = logging.getLogger("ccf_agent.ops.business")

PAYOUT_KEY = "payoutId"
JOB_SERVICE = "payout-job"
# Every record field `observe` reads: a pipeline's projection keeps at least these.
FIELDS = ("payoutId", "service", "message", "status", "method", "processingTime")
OUTCOMES = {"payout processed": "completed", "payout failed": "failed"}
_EXACT = {"Payout processed": "completed", "Payout failed": "failed"}  # as the app writes them: no lower()
STATUSES = frozenset({"completed", "failed", "pending", "paid", "in_transit", "canceled"})
METHODS = frozenset({"standard", "instant"})
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # the seed's, in seconds
STATE_FILE = "business.json"
# With the C extension (conditions' programs): a payout's records (payoutId present, even null), the
# payout job's.
_PAYOUTS = (P_HAS, (PAYOUT_KEY,), True)
_JOBS = (P_EQUALS, ("service",), JOB_SERVICE)


_NUMBERS = frozenset({int, float})
_LABEL_FIELDS = ("message", "status", "method")  # what a payout's labels depend on
_LABELS_MAX = 1024  # (message, status, method) combinations remembered; the app writes a handful


def _label(message: Any, status: Any, method: Any) -> tuple[str, str] | None:
    """A payout record's (status, method) labels, or None when it is not an attempt."""
    if type(message) is not str:
        return None
    outcome = _EXACT.get(message) or OUTCOMES.get(message.strip().lower())
    if outcome is None:
        return None
    if outcome == "completed" and status is not None:
        outcome = status if type(status) is str and status in STATUSES else "other"
    return outcome, "unknown" if method is None else (method if type(method) is str and method in METHODS else "other")


def _tally(records: list[dict[str, Any]], indices: list[int], fields: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
    """How many of the records at `indices` hold each combination of the fields' values."""
    if _fast is not None:  # the same count without a Python tuple hashed twice per record
        return _fast.tally(records, indices, fields)
    picked = list(map(records.__getitem__, indices))
    return Counter(zip(*(map(dict.get, picked, repeat(f)) for f in fields), strict=True))


def _column(records: list[dict[str, Any]], indices: list[int], field: str) -> list[Any]:
    if _fast is not None:
        return _fast.column(records, indices, field)
    return list(map(dict.get, map(records.__getitem__, indices), repeat(field)))


class BusinessMetrics:
    def __init__(self, sources: Sequence[str] | None = SOURCES) -> None:
        self.sources = tuple(sources) if sources is not None else None  # None: every file counts
        self._counts_path: dict[str, bool] = {}
        self.payouts: dict[tuple[str, str], int] = {}
        self.duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)  # per bound, not cumulative; last: above 30 s
        self.duration_count = 0
        self.duration_sum = 0.0
        self.last_job: float | None = None
        self.dirty = False
        self._order = SnapshotOrder()
        self._labels: dict[tuple[Any, Any, Any], tuple[str, str] | None] = {}

    # ------------------------------------------------------------------ the hot path

    def counts(self, path: str) -> bool:
        """Whether records of this file count (cached: a handful of paths, looked up per batch)."""
        known = self._counts_path.get(path)
        if known is None:
            if len(self._counts_path) > 4096:
                self._counts_path.clear()  # rotated names accumulate over months
            name = os.path.basename(path)
            known = self.sources is None or any(fnmatch.fnmatchcase(name, p) for p in self.sources)
            self._counts_path[path] = known
        return known

    def observe(self, records: list[dict[str, Any]], times: list[float], path: str) -> None:
        if not records or not self.counts(path):
            return
        if _fast is not None:  # the conditions' evaluator in C (the router's) picks the few that count
            payouts, jobs = _fast.select(records, (_PAYOUTS, _JOBS))
        else:  # the keys are literals for speed: PAYOUT_KEY and JOB_SERVICE
            payouts = [i for i, r in enumerate(records) if "payoutId" in r]
            jobs = [i for i, r in enumerate(records) if r.get("service") == "payout-job"]
        if payouts:
            self._payouts(records, payouts)
        if jobs:
            newest = max(map(times.__getitem__, jobs))
            if self.last_job is None or newest > self.last_job:
                self.last_job = newest
                self.dirty = True

    def _payouts(self, records: list[dict[str, Any]], indices: list[int]) -> None:
        """`_payout` for the batch's payout records (at `indices`): a batch holds a handful of
        (message, status, method) combinations, so they are counted first (`_tally`) and each
        one's labels worked out once, not per record. The arithmetic is Python's: its C twin went
        in issue 18 (8.9%, 15.6% and 7.9% of the pipeline's CPU by bench/piece_cost.py, under the
        ~10% that pays for two copies held equal)."""
        try:
            tally = _tally(records, indices, _LABEL_FIELDS)
        except TypeError:  # a list or an object as a value: unhashable
            for i in indices:
                self._payout(records[i])
            return
        labels, attempts, outcomes = self._labels, 0, set()
        for combination, n in tally.items():
            label = labels.get(combination)
            if label is None and combination not in labels:
                if len(labels) >= _LABELS_MAX:
                    labels.clear()
                label = labels[combination] = _label(*combination)
            if label is not None:
                self._add(label, n)
                attempts += n
                outcomes.add(combination[0])
        if not attempts:
            return
        if attempts != len(indices):  # a payout's other lines ("Payout requested", ...) have no duration
            indices = list(compress(indices, map(outcomes.__contains__, _column(records, indices, "message"))))
        self._durations(_column(records, indices, "processingTime"))

    def _durations(self, values: list[Any]) -> None:
        """`processingTime`s (ms) into the histogram; None for a failed payout's, which has none."""
        kinds = set(map(type, values))
        if NoneType in kinds:
            kinds.discard(NoneType)
            values = list(compress(values, map(is_not, values, repeat(None))))
            if not values:
                return
        if not kinds <= _NUMBERS or (float in kinds and any(map(ne, values, values))) or not (
                0 <= min(values) and max(values) < math.inf):  # ne: NaN is the one value unequal to itself
            values = [ms for ms in values if (type(ms) is int or type(ms) is float) and 0 <= ms < math.inf]
            if not values:
                return
        seconds = list(map(truediv, values, repeat(1000.0)))
        self.duration_count += len(seconds)
        self.duration_sum = reduce(add, seconds, self.duration_sum)  # in order, as `+=` per record adds
        ranked, buckets, below = sorted(seconds), self.duration_buckets, 0
        for i, bound in enumerate(DURATION_BUCKETS):  # bucket i: bounds[i-1] < seconds <= bounds[i]
            upto = bisect_right(ranked, bound)
            buckets[i] += upto - below
            below = upto
        buckets[-1] += len(ranked) - below

    def _add(self, key: tuple[str, str], n: int) -> None:
        if key not in self.payouts:
            # Both outcomes of a new method start at 0, so the first failure is an increase rate() sees.
            for s0 in ("completed", "failed"):
                self.payouts.setdefault((s0, key[1]), 0)
            self.payouts.setdefault(key, 0)
        self.payouts[key] += n

    def _payout(self, rec: dict[str, Any]) -> None:
        """One payout record, as `_payouts` counts a batch of them: the reference the tests hold it to."""
        label = _label(rec.get("message"), rec.get("status"), rec.get("method"))
        if label is None:
            return  # a payout's other lines ("Payout requested", ...) are not attempts
        self._add(label, 1)
        ms = rec.get("processingTime")
        if (type(ms) is int or type(ms) is float) and 0 <= ms < math.inf:
            seconds = ms / 1000.0
            self.duration_count += 1
            self.duration_sum += seconds
            self.duration_buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1  # le: first bound >= seconds

    # ------------------------------------------------------------------ exposition

    def render(self, out: list[str], fmt: Any) -> None:
        """Append the three families in Prometheus text format; `fmt` formats a sample value."""
        out.append("# HELP ccf_payouts_total Total number of payouts processed")
        out.append("# TYPE ccf_payouts_total counter")
        for (status, method), n in sorted(self.payouts.items()):
            out.append(f'ccf_payouts_total{{status="{status}",method="{method}"}} {n}')
        out.append("# HELP ccf_payout_duration_seconds Time taken to process payouts")
        out.append("# TYPE ccf_payout_duration_seconds histogram")
        cumulative = 0
        for bound, n in zip(DURATION_BUCKETS, self.duration_buckets[:-1], strict=True):
            cumulative += n
            out.append(f'ccf_payout_duration_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        out.append(f'ccf_payout_duration_seconds_bucket{{le="+Inf"}} {self.duration_count}')
        out.append(f"ccf_payout_duration_seconds_sum {fmt(self.duration_sum)}")
        out.append(f"ccf_payout_duration_seconds_count {self.duration_count}")
        out.append("# HELP ccf_last_payout_job_timestamp Event time (Unix seconds) of the payout job's newest "
                   "log record")
        out.append("# TYPE ccf_last_payout_job_timestamp gauge")
        if self.last_job is not None:  # absent until known: 0 would claim the job never ran
            out.append(f"ccf_last_payout_job_timestamp {fmt(self.last_job)}")

    # ------------------------------------------------------------------ persistence (off the hot path)

    def load(self, state_dir: str | os.PathLike[str]) -> None:
        path = Path(state_dir) / STATE_FILE
        try:
            doc = orjson.loads(read_plain(path))
            value = doc["last_payout_job_timestamp"]
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as e:
            log.warning("ignoring %s: %s", path, e)
            return
        if isinstance(value, int | float) and (self.last_job is None or value > self.last_job):
            self.last_job = float(value)

    def save_if_dirty(self, state_dir: str | os.PathLike[str]) -> bool:
        """Atomic write (temp file, fsync, rename, directory fsync); False on an I/O error, retried later."""
        return self.write(state_dir, self.snapshot()) if self.dirty else True

    def snapshot(self) -> tuple[int, bytes]:
        """The state to write now (clears `dirty`); `write` may then run in another thread."""
        self.dirty = False
        return self._order.take(), orjson.dumps({"version": 1, "last_payout_job_timestamp": self.last_job})

    def write(self, state_dir: str | os.PathLike[str], snapshot: tuple[int, bytes]) -> bool:
        """Write a snapshot (see SnapshotOrder); False, and dirty again, on an I/O error."""
        seq, body = snapshot
        path = Path(state_dir) / STATE_FILE
        try:
            self._order.write(seq, lambda: atomic_write(path, body, 0o640))
        except OSError as e:
            log.warning("cannot write %s: %s", path, e.strerror)
            self.dirty = True
            return False
        return True


METRICS = BusinessMetrics()
_failed = False


def observe(records: list[dict[str, Any]], times: list[float], path: str) -> None:
    """Per batch, from the supervisor's dispatch: `observe(events.records, events.times, batch.path)`.

    Never raises into shipping: a metrics bug costs a metric, not the records.
    """
    global _failed
    try:
        METRICS.observe(records, times, path)
    except Exception as e:
        if not _failed:  # once: a bug that fails every batch must not flood the log
            log.error("business metrics: %s (this batch is not counted)", e, exc_info=True)
        _failed = True
