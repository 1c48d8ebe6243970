"""A generated day of the app's logs, and the report's figures counted from it independently.

Records have the guide's shapes (its 'Structured Logging Format' section): processed payouts
with `processingTime`, failed payouts with `error` (some over $100: `amount > 10000` cents, some
exactly 10000, which is not over), payout requests and payout-job runs that are not attempts,
errors (one message carrying a card number, one a Stripe key: the report must show neither),
authentication failures, rate-limit warnings and HTTP requests. Each record is stamped in
Winston's local 'YYYY-MM-DD HH:mm:ss' in the input's time zone; a few fall on the days before
and after, which the report must leave out.

The expected figures are counted here from what each record *is* (the generator's own labels),
not by the report's rules, and are what a correct report must say.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

TZ = "Europe/Berlin"
DAY = date(2024, 3, 31)  # Berlin springs forward: a day of 23 hours
BASE = {"service": "click-clack-cashflow", "version": "1.0.0"}
CARD = "4242 4242 4242 4242"
STRIPE_KEY = "sk_live_51HxYzAbCdEfGhIjKlMnOp"
REASONS = ("insufficient_funds", "account_closed", "invalid_account_number", "debit_not_authorized")
ERRORS = ("Unhandled error in /api/balance", "Database connection lost", "Stripe webhook signature invalid")


@dataclass
class Labelled:
    rec: dict[str, Any]
    t: float  # epoch seconds (Winston's stamp has whole seconds)
    kind: str  # processed, failed, error, auth, rate, other
    shown_error: str | None = None  # an error's message as the report must show it (redacted)


@dataclass
class Day:
    day: date
    tz: str
    start: float
    end: float
    records: list[Labelled] = field(default_factory=list)  # every record written, in time order

    def inside(self) -> list[Labelled]:
        return [r for r in self.records if self.start <= r.t < self.end]

    def hours(self) -> list[float]:
        return [self.start + 3600 * i for i in range(round((self.end - self.start) / 3600))]


def _stamp(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def generate(n: int = 6000, day: date = DAY, tz: str = TZ, seed: int = 21) -> Day:
    rng = random.Random(seed)
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp()
    times = sorted(float(rng.randrange(int(start), int(end))) for _ in range(n))
    # Around midnight on both sides: outside the day, and its first and last second inside it.
    times = [start - 1800, start - 1, start, *times, end - 1, end, end + 1800]
    out = Day(day, tz, start, end)
    for seq, t in enumerate(times):
        out.records.append(_record(seq, t, rng, tz))
    return out


def _record(seq: int, t: float, rng: random.Random, tz: str) -> Labelled:
    k = rng.random()
    user = f"user_{seq % 89}"
    if k < 0.30:
        rec = {"level": "info", "message": "Payout processed", "payoutId": f"payout_{seq}", "userId": user,
               "amount": rng.randint(100, 50000), "currency": "usd", "status": "completed",
               "processingTime": rng.choice([rng.randint(150, 9000), rng.randint(150, 9000), 2340]),
               "paymentMethodId": f"pm_{seq:08d}", "stripePayoutId": f"po_stripe{seq}"}
        kind = "processed"
    elif k < 0.40:
        amount = rng.choice([rng.randint(100, 50000), 10000, 10001, rng.randint(100, 9999)])
        rec = {"level": "error", "message": "Payout failed", "payoutId": f"payout_{seq}", "userId": user,
               "amount": amount, "error": rng.choice(REASONS),
               "errorMessage": "Insufficient funds in connected account", "retryCount": rng.randint(0, 3),
               "nextRetryAt": "2024-01-15T10:30:00Z"}
        kind = "failed"
    elif k < 0.43:
        rec = {"level": "info", "message": "Payout requested", "payoutId": f"payout_{seq}", "amount": 500}
        kind = "other"
    elif k < 0.46:
        rec = {"level": "info", "message": "Payout job run finished", "service": "payout-job", "processed": 7}
        kind = "other"
    elif k < 0.56:
        which = rng.random()
        if which < 0.1:
            rec = {"level": "error", "message": f"Card {CARD} declined at checkout"}
            shown = "Card [REDACTED] declined at checkout"
        elif which < 0.2:
            rec = {"level": "error", "message": f"Stripe call failed with key {STRIPE_KEY}"}
            shown = "Stripe call failed with key [REDACTED]"
        else:
            shown = rng.choice(ERRORS)
            rec = {"level": "error", "message": shown, "stack": "Error: boom\n    at handler (/app/x.js:1:1)"}
        return Labelled({**BASE, **rec, "timestamp": _stamp(t, tz)}, t, "error", shown)
    elif k < 0.62:
        rec = {"level": "warn", "message": rng.choice(["Authentication failed", "Login rejected: invalid password"]),
               "userId": user, "ip": "10.0.0.7"}
        kind = "auth"
    elif k < 0.65:
        rec = {"level": "warn", "message": rng.choice(["Rate limit exceeded", "API rate-limit hit for client"]),
               "ip": "10.0.0.9"}
        kind = "rate"
    elif k < 0.67:
        rec = {"level": "info", "message": "Authentication failed probe ignored"}  # info: not a failure
        kind = "other"
    else:
        rec = {"level": "info", "message": "HTTP request", "method": "GET", "path": "/api/balance",
               "statusCode": 200, "durationMs": rng.randint(1, 400)}
        kind = "other"
    return Labelled({**BASE, **rec, "timestamp": _stamp(t, tz)}, t,
                    kind, "Payout failed" if kind == "failed" else None)


# ---------------------------------------------------------------------------------- files


def write_logs(day: Day, logs: Path, rotated: bool) -> None:
    """combined.log (with its rotations when `rotated`: .2.gz, .1 and the current one, as logrotate
    with compress and delaycompress leaves them), error.log and payouts.log as Winston writes them."""
    logs.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r.rec) + "\n" for r in day.records]
    if rotated:
        a, b = len(lines) // 3, 2 * len(lines) // 3
        with gzip.open(logs / "combined.log.2.gz", "wt") as f:
            f.writelines(lines[:a])
        (logs / "combined.log.1").write_text("".join(lines[a:b]))
        (logs / "combined.log").write_text("".join(lines[b:]))
    else:
        (logs / "combined.log").write_text("".join(lines))
    (logs / "error.log").write_text("".join(line for r, line in zip(day.records, lines, strict=True)
                                            if r.rec["level"] == "error"))
    (logs / "payouts.log").write_text("".join(line for r, line in zip(day.records, lines, strict=True)
                                              if "payout" in r.rec["message"].lower()
                                              or r.rec.get("service") == "payout-job"))


# ---------------------------------------------------------------------------------- expected figures


def _top(counter: Counter[str], n: int = 5) -> list[dict[str, Any]]:
    return [{"k": k, "count": c} for k, c in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _rank(values: list[int], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return float(s[max(1, math.ceil(p / 100 * len(s))) - 1])


def expected(day: Day, list_max: int = 20) -> dict[str, Any]:
    inside = day.inside()
    processed = [r for r in inside if r.kind == "processed"]
    failed = [r for r in inside if r.kind == "failed"]
    errors = [r for r in inside if r.rec["level"] == "error"]
    high = sorted((r for r in failed if r.rec["amount"] > 10000),
                  key=lambda r: (-r.rec["amount"], r.t, r.rec["payoutId"]))
    times = [r.rec["processingTime"] for r in processed]

    def hourly(kind: str) -> list[int]:
        c = Counter(int((r.t - day.start) // 3600) for r in inside if r.kind == kind)
        return [c.get(i, 0) for i in range(len(day.hours()))]

    return {
        "records": len(inside),
        "errors": len(errors),
        "processed": len(processed),
        "failed": len(failed),
        "failure_rate": len(failed) / (len(processed) + len(failed)),
        "top_errors": [{"message": d["k"], "count": d["count"]} for d in _top(Counter(r.shown_error for r in errors))],
        "failure_reasons": [{"error": d["k"], "count": d["count"]}
                            for d in _top(Counter(r.rec["error"] for r in failed))],
        "high_value_count": len(high),
        "high_value": [{"payoutId": r.rec["payoutId"], "userId": r.rec["userId"], "amount": float(r.rec["amount"]),
                        "error": r.rec["error"], "at": r.t} for r in high[:list_max]],
        "hourly": {"processed": hourly("processed"), "failed": hourly("failed"),
                   "auth_failures": hourly("auth"), "rate_limited": hourly("rate")},
        "processing_ms": {"count": len(times), "p50": _rank(times, 50), "p95": _rank(times, 95),
                          "approximate": False},
    }


def figures_part(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a `--format json` report that `expected` predicts."""
    return {k: report[k] for k in ("records", "errors", "processed", "failed", "failure_rate", "top_errors",
                                   "failure_reasons", "high_value_count", "high_value", "hourly", "processing_ms")}
