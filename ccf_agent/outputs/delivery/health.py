"""An output's health: delivering, or not and why. One recovery rule for every output: the first
delivery after any trouble clears it (and says so), whatever the trouble was."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

# A problem that lasts is logged again at most this often (its text in /status stays current).
RELOG_SECONDS = 60.0


class ErrorRecord(Protocol):
    """Where the latest error is kept for /status, /health and /metrics (an output's stats)."""

    last_error: str | None
    last_error_at: float | None


class Health:
    def __init__(self, name: str, log: logging.Logger, scrub: Callable[[str], str], record: ErrorRecord) -> None:
        self.name = name
        self.log = log
        self.scrub = scrub  # hides the output's credentials: messages reach the log, /status and /health
        self.record = record
        self.healthy = True
        self.problem: str | None = None  # kind of the current trouble (auth, tls, throttled, ...)
        self._logged: tuple[str, float] = ("", 0.0)

    def note(self, message: str) -> str:
        """Remember an error without calling the output unhealthy; returns it as it may be shown."""
        message = self.scrub(message)
        self.record.last_error = message
        self.record.last_error_at = time.time()
        return message

    def report(self, kind: str, message: str, level: int = logging.WARNING) -> str:
        """Not delivering because of `kind`: logged when it starts or changes, then once a minute."""
        message = self.note(message)
        self.healthy = False
        self.problem = kind
        now = time.monotonic()
        if message != self._logged[0] or now - self._logged[1] > RELOG_SECONDS:
            self.log.log(level, "output %s: %s", self.name, message)
            self._logged = (message, now)
        return message

    def delivered(self) -> None:
        """Records got through: whatever the trouble was, it is over."""
        if not self.healthy or self.problem:
            self.log.info("output %s: delivering again", self.name)
        self.healthy = True
        self.problem = None
        self._logged = ("", 0.0)
