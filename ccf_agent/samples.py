"""Winston records of the shapes the Click Clack Cash Flow app writes (see the seed guide)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

SERVICE = {"service": "click-clack-cashflow", "version": "1.0.0"}


def record(seq: int, rng: random.Random, second: int = 0) -> dict[str, object]:
    ts = f"2024-01-15 {10 + second // 3600 % 10:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
    kind = rng.random()
    if kind < 0.15:
        rec = {"level": "info", "message": "Payout processed", "payoutId": f"payout_{seq}", "userId": f"user_{seq % 97}",
               "amount": rng.randint(100, 50000), "currency": "usd", "status": "completed",
               "processingTime": rng.randint(200, 9000), "paymentMethodId": "pm_abc123",
               "stripePayoutId": f"po_stripe{seq}"}
    elif kind < 0.2:
        rec = {"level": "error", "message": "Payout failed", "payoutId": f"payout_{seq}", "userId": f"user_{seq % 97}",
               "amount": rng.randint(100, 50000), "error": "insufficient_funds",
               "errorMessage": "Insufficient funds in connected account", "retryCount": 2,
               "nextRetryAt": "2024-01-15T10:30:00Z"}
    elif kind < 0.25:
        rec = {"level": "info", "message": "Payout job run finished", "service": "payout-job", "processed": 12}
    elif kind < 0.3:
        rec = {"level": "warn", "message": "Authentication failed", "userId": f"user_{seq % 97}", "ip": "10.0.0.7"}
    elif kind < 0.35:
        rec = {"level": "error", "message": "Unhandled error in /api/balance",
               "stack": "Error: boom\n    at handler (/app/routes/balance.js:42:11)\n    at next (/app/node_modules/express/lib/router/route.js:144:13)"}
    else:
        rec = {"level": "info", "message": "HTTP request", "method": "GET", "path": "/api/balance",
               "statusCode": 200, "durationMs": rng.randint(1, 400)}
    out: dict[str, object] = {**SERVICE, **rec}
    out["seq"] = seq
    out["timestamp"] = ts
    return out


def lines(n: int, start: int = 0, seed: int = 7) -> Iterator[str]:
    rng = random.Random(seed + start)
    for i in range(start, start + n):
        yield json.dumps(record(i, rng, second=i // 1000))


def is_payout(rec: dict[str, object]) -> bool:
    """The example config's payout route: 'payout' anywhere in the message, any case, or the payout job."""
    return "payout" in str(rec.get("message", "")).lower() or rec.get("service") == "payout-job"
