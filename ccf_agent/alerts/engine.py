"""The alert engine: rules fed inline from the pipeline, notices delivered by a separate task.

Time. Rules run on event time (the records' `@timestamp`). The engine's clock is the newest
event time seen (clamped to the wall clock plus a little skew, so one record stamped next year
cannot end every window); `tick(now)` lets it follow the wall clock while the stream is live
(its clock within `backlog_max_age` of the wall) or idle (no batch for IDLE_AFTER seconds),
so windows slide, absences are noticed and alerts resolve when nothing is written.

Backlog. When the clock is older than `backlog_max_age`, the agent is catching up a backlog:
rules still move through their states, but nothing pages. An alert that is still firing when
the stream catches up pages then; a resolve of an alert that did page is always sent (closing
an incident is not a page).

Threads. `observe` and `tick` must be called on the event loop's thread (they set asyncio
events); they do no I/O. Files are written by `run()`'s persister (in a worker thread) and by
`close()`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from ccf_agent.alerts.notifiers import DeliveryError, deliver, iso
from ccf_agent.alerts.outbox import Notice, Outbox
from ccf_agent.alerts.rules import FIRING, Rule, make_rule
from ccf_agent.alerts.select import Selector
from ccf_agent.config.alerts import AlertsConfig, NotifierConfig
from ccf_agent.fsutil import atomic_write, ensure_dir, read_plain
from ccf_agent.httpclient import HttpClient

FUTURE_SKEW = 5.0   # seconds an event may be stamped ahead of the wall clock and still move it
IDLE_AFTER = 10.0   # seconds without a batch before a lagging clock follows the wall clock
STATE_VERSION = 1
LOG_EVERY = 60.0    # a failing notifier is logged on its first failure, then at most this often
# Fired alerts kept for `ccf-agent report` (alerts fired that day): enough for a month of a noisy day.
HISTORY_MAX = 2000
HISTORY_AGE = 35 * 86400.0


class AlertEngine:
    def __init__(self, cfg: AlertsConfig, state_dir: Path | str, redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 log: logging.Logger | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.log = log or logging.getLogger("ccf_agent.alerts")
        self._redact = redact
        self._clock = clock
        self._dir = Path(state_dir) / "alerts"
        self._path = self._dir / "state.json"
        self._rules: list[Rule] = [make_rule(r) for r in cfg.rules]
        self._by_name = {r.cfg.name: r for r in self._rules}
        # Conditions are evaluated once per record, shared between rules (see select.py).
        self._selector = Selector()
        self._plan = [(r, self._selector.add(r.cfg.when), self._selector.add(r.cfg.of) if r.cfg.of else None)
                      for r in self._rules]
        self._outbox = Outbox(cfg.notifiers, {n: c.max_outbox for n, c in cfg.notifiers.items()})
        self._nstatus: dict[str, dict[str, Any]] = {
            n: {"type": c.type, "last_attempt": None, "last_ok": None, "ok": None, "error": None,
                "failures": 0} for n, c in cfg.notifiers.items()}
        self._now: float | None = None      # the engine clock (event time)
        # Firing episodes, oldest first: {rule, severity, at, wall, value, paged, resolved_at}.
        self.history: list[dict[str, Any]] = []
        self._last_observe = clock()         # so a restart waits for the backlog before going idle
        self._dirty = False
        self._errors, self._last_error_log = 0, 0.0
        self._urgent = asyncio.Event()
        self._write_lock = threading.Lock()
        self._load()

    # ---------------------------------------------------------------- hot path

    def observe(self, records: list[dict[str, Any]], times: list[float], docs: list[bytes] | None = None) -> None:
        """Feed one processed batch (parallel lists). Synchronous, no I/O, cheap; never raises.

        With `docs` (the records hold only the fields conditions read), a notice's sample is the
        matching record's document, decoded only when a notice is written."""
        if not records or not self._rules:
            return
        try:
            self._observe(records, times, docs)
        except Exception:
            # Alerting must never take shipping down with it: log (rarely) and carry on.
            self._internal_error("observe")

    def _internal_error(self, where: str) -> None:
        self._errors += 1
        wall = self._clock()
        if wall - self._last_error_log >= LOG_EVERY:
            self._last_error_log = wall
            self.log.exception("alerts: %s failed (%d errors so far); shipping continues", where, self._errors)

    def _observe(self, records: list[dict[str, Any]], times: list[float], docs: list[bytes] | None) -> None:
        wall = self._clock()
        newest = max(times)
        if newest > wall + FUTURE_SKEW:
            newest = wall + FUTURE_SKEW
        if self._now is None or newest > self._now:
            self._now = newest
        now = self._now
        self._last_observe = wall
        matches = self._selector.select(records)
        at = times.__getitem__
        samples = records if docs is None else docs
        for rule, when, of in self._plan:
            hits = matches[when]
            if hits:
                rule.sample = samples[hits[-1]]
            of_hits = matches[of] if of is not None else None
            if hits or of_hits:
                rule.feed(list(map(at, hits)) if hits else [], list(map(at, of_hits)) if of_hits else None, now)
        self._dirty = True
        self._evaluate(now, wall)

    def tick(self, now: float) -> None:
        """Advance timers; `now` is the wall clock (epoch seconds). Call every ~250 ms."""
        if not self._rules:
            return
        try:
            self._tick(now)
        except Exception:
            self._internal_error("tick")

    def _tick(self, now: float) -> None:
        clock = self._now
        live = clock is None or now - clock <= self.cfg.backlog_max_age
        if (live or now - self._last_observe >= IDLE_AFTER) and (clock is None or now > clock):
            self._now = now
        assert self._now is not None
        self._evaluate(self._now, now)

    # ---------------------------------------------------------------- lifecycle -> notices

    def _evaluate(self, now: float, wall: float) -> None:
        live = now >= wall - self.cfg.backlog_max_age
        for rule in self._rules:
            before = rule.state
            edge = rule.evaluate(now)
            if rule.state != before:
                self._dirty = True
            if edge == FIRING:
                self._fired(rule, now, wall, live)
                rule.notified = False
                rule.notify_due = wall + rule.cfg.group_wait
                self.log.info("alert %s firing (value %.4g)%s", rule.cfg.name, rule.value,
                              "" if live else " in backlog: not paging")
            elif edge == "resolved":
                self.log.info("alert %s resolved (value %.4g)", rule.cfg.name, rule.value)
                self._resolved(rule, now)
                if rule.notified:
                    self._enqueue(rule, "resolved", rule.cfg.notifiers, wall, now)
                rule.notified, rule.notify_due, rule.last_sent = False, None, {}
            if rule.state != FIRING:
                continue
            if not rule.notified:
                if live and wall >= (rule.notify_due or 0.0):
                    self._enqueue(rule, "firing", rule.cfg.notifiers, wall, now)
                    rule.notified = True
                continue
            due = []
            for n in rule.cfg.notifiers:
                ncfg = self.cfg.notifiers[n]
                # A refresh for Alertmanager keeps the alert alive there and is not a page, so it
                # goes even during a backlog; a human reminder (repeat_interval) only when live.
                interval = ncfg.resend_interval or rule.cfg.repeat_interval
                if (live or ncfg.resend_interval) and wall - rule.last_sent.get(n, 0.0) >= interval:
                    due.append(n)
            if due:
                self._enqueue(rule, "firing", due, wall, now, repeat=True)

    def _fired(self, rule: Rule, now: float, wall: float, live: bool) -> None:
        """One firing episode for the history (`at`: event time, as the report's day is)."""
        self.history.append({"rule": rule.cfg.name, "severity": rule.cfg.severity, "at": now, "wall": wall,
                             "value": rule.value, "paged": live, "resolved_at": None})
        if len(self.history) > HISTORY_MAX or self.history[0]["wall"] < wall - HISTORY_AGE:
            self.history = [h for h in self.history[-HISTORY_MAX:] if h["wall"] >= wall - HISTORY_AGE]

    def _resolved(self, rule: Rule, now: float) -> None:
        for h in reversed(self.history):
            if h["rule"] == rule.cfg.name:
                if h["resolved_at"] is None:
                    h["resolved_at"] = now
                return

    def _enqueue(self, rule: Rule, status: str, notifiers: tuple[str, ...] | list[str], wall: float,
                 now: float, repeat: bool = False) -> None:
        sample = rule.sample
        if isinstance(sample, bytes):
            try:
                sample = orjson.loads(sample)
            except orjson.JSONDecodeError:
                sample = None
            sample = sample if isinstance(sample, dict) else None
        if sample is not None and self._redact is not None:
            sample = self._redact(dict(sample))
        variables = rule.variables()
        annotations = {k: t.render(variables, sample) for k, t in rule.cfg.annotations.items()}
        labels = {**self.cfg.labels, **rule.cfg.labels, "alertname": rule.cfg.name, "severity": rule.cfg.severity}
        base = {
            "rule": rule.cfg.name, "status": status, "repeat": repeat, "created": wall,
            "severity": rule.cfg.severity, "labels": labels, "annotations": annotations,
            "value": rule.value, "count": rule.count,
            "starts_at": rule.active_at if rule.active_at is not None else now,
            "ends_at": now if status == "resolved" else None,
            "service": self.cfg.service, "environment": self.cfg.environment,
            "generator_url": f"{self.cfg.external_url}#alert={rule.cfg.name}",
        }
        for n in notifiers:
            dropped = self._outbox.put({**base, "id": uuid.uuid4().hex, "notifier": n})
            if dropped is not None:
                self.log.error("alerts outbox for %s is full: dropped the %s notice of %s from %s",
                               n, dropped["status"], dropped["rule"], iso(dropped["created"]))
            rule.last_sent[n] = wall
        self._dirty = True
        self._urgent.set()

    # ---------------------------------------------------------------- delivery task

    async def run(self) -> None:
        """Deliver the outbox and persist state until cancelled (run it in the supervisor's TaskGroup)."""
        try:
            async with HttpClient() as client, asyncio.TaskGroup() as tg:
                tg.create_task(self._persist_loop())
                for ncfg in self.cfg.notifiers.values():
                    tg.create_task(self._deliver_loop(client, ncfg))
        finally:
            self.save()

    async def _persist_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.cfg.state_flush_interval):
                    await self._urgent.wait()
            except TimeoutError:
                pass
            self._urgent.clear()
            if self._dirty:
                self._dirty = False
                data = self._snapshot()
                try:
                    await asyncio.to_thread(self._write, data)
                except OSError as e:
                    self._dirty = True
                    self.log.error("cannot save alert state to %s: %s", self._path, e.strerror)

    async def _deliver_loop(self, client: HttpClient, ncfg: NotifierConfig) -> None:
        name, st = ncfg.name, self._nstatus[ncfg.name]
        wakeup = self._outbox.wakeups[name]
        failures, last_log = 0, 0.0
        while True:
            notice = self._outbox.peek(name)
            if notice is None:
                wakeup.clear()
                await wakeup.wait()
                continue
            t = self._clock()
            st["last_attempt"] = t
            try:
                await deliver(client, ncfg, notice, t)
            except DeliveryError as e:
                st.update(ok=False, error=str(e))
                if e.permanent:
                    self.log.error("notifier %s (%s) refused the %s notice of %s for good: %s; dropped it",
                                   name, ncfg.type, notice["status"], notice["rule"], e)
                    self._finish(name, notice, t, str(e))
                    continue
                failures += 1
                st["failures"] = failures
                delay = min(ncfg.backoff_max, ncfg.backoff_initial * 2 ** min(failures - 1, 30))
                delay *= random.uniform(0.5, 1.0)  # jitter: many agents must not retry in step
                if failures == 1 or t - last_log >= LOG_EVERY:
                    last_log = t
                    self.log.warning("notifier %s (%s) is failing: %s; %d notice(s) waiting, retrying in %.1fs",
                                     name, ncfg.type, e, self._outbox.depth(name), delay)
                await asyncio.sleep(delay)
                continue
            if failures:
                self.log.info("notifier %s (%s) delivered again after %d failed attempt(s)",
                              name, ncfg.type, failures)
            failures = 0
            st.update(ok=True, error=None, last_ok=t, failures=0)
            self._finish(name, notice, t, None)

    def _finish(self, name: str, notice: Notice, t: float, error: str | None) -> None:
        self._outbox.done(name, notice["id"])
        rule = self._by_name.get(notice["rule"])
        if rule is not None:
            rule.delivered[name] = {"status": notice["status"], "repeat": notice["repeat"], "time": t,
                                    "ok": error is None, "error": error}
        self._dirty = True
        self._urgent.set()

    # ---------------------------------------------------------------- status and persistence

    def status(self) -> dict[str, Any]:
        wall = self._clock()
        return {
            "clock": self._now,
            "backlog": self._now is not None and self._now < wall - self.cfg.backlog_max_age,
            "outbox_depth": self._outbox.depth(),
            "errors": self._errors,
            "rules": [{
                "name": r.cfg.name, "kind": r.cfg.kind, "severity": r.cfg.severity, "state": r.state,
                "value": r.value, "since": r.since, "active_at": r.active_at, "count": r.count,
                "notified": r.notified, "last_notification": dict(r.delivered),
            } for r in self._rules],
            "notifiers": {n: {**st, "outbox": self._outbox.depth(n), "dropped": self._outbox.dropped[n]}
                          for n, st in self._nstatus.items()},
        }

    def queued(self, notifier: str | None = None) -> list[Notice]:
        """Notices waiting for delivery (oldest first), for one notifier or all."""
        names = [notifier] if notifier is not None else list(self._outbox.queues)
        return [n for name in names for n in self._outbox.queues.get(name, ())]

    def close(self) -> None:
        """Persist state and outbox now (call after cancelling `run()`, and before a reload builds
        a new engine on the same state_dir)."""
        self.save()

    def save(self) -> None:
        try:
            self._write(self._snapshot())
            self._dirty = False
        except OSError as e:
            self.log.error("cannot save alert state to %s: %s", self._path, e.strerror)

    def _snapshot(self) -> bytes:
        return orjson.dumps({
            "version": STATE_VERSION, "clock": self._now,
            "rules": {r.cfg.name: r.to_json() for r in self._rules},
            "outbox": self._outbox.to_json(),
            "notifiers": self._nstatus,
            "history": self.history,
        })

    def _write(self, data: bytes) -> None:
        with self._write_lock:  # the persister's thread and close() must not share a tmp file
            ensure_dir(self._dir)
            atomic_write(self._path, data)

    def _load(self) -> None:
        try:
            data = orjson.loads(read_plain(self._path))
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError("unknown state version")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            bad = self._path.with_name("state.json.corrupt")
            self.log.error("alert state %s unreadable (%s): starting fresh, kept it as %s", self._path, e, bad.name)
            try:
                self._path.replace(bad)
            except OSError:
                pass
            return
        self._now = data.get("clock")
        for name, rd in data.get("rules", {}).items():
            if name in self._by_name:
                self._by_name[name].load(rd)
        history = data.get("history")
        if isinstance(history, list):
            self.history = [h for h in history if isinstance(h, dict)]
        orphans = self._outbox.load(data.get("outbox", {}))
        if orphans:
            self.log.warning("dropped %d queued alert notice(s) for notifiers no longer configured", len(orphans))
        for n, st in data.get("notifiers", {}).items():
            if n in self._nstatus and isinstance(st, Mapping):
                self._nstatus[n].update({k: v for k, v in st.items() if k in self._nstatus[n] and k != "type"})


def read_history(state_dir: Path | str) -> list[dict[str, Any]]:
    """The fired alerts an engine saved under `state_dir` (oldest first; [] when none or unreadable),
    read without an engine: for `ccf-agent report`, beside a running agent."""
    try:
        data = orjson.loads((Path(state_dir) / "alerts" / "state.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    history = data.get("history") if isinstance(data, dict) else None
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def format_status(st: Mapping[str, Any]) -> str:
    """The alerts part of `ccf-agent status`, as text."""
    def when(t: float | None) -> str:
        return iso(t) if t else "-"

    lines = [f"alerts: clock {when(st['clock'])}{' (catching up a backlog)' if st['backlog'] else ''}, "
             f"outbox {st['outbox_depth']}" + (f", {st['errors']} internal errors" if st.get("errors") else "")]
    for r in st["rules"]:
        lines.append(f"  {r['name']:<32} {r['kind']:<8} {r['state']:<8} value {r['value']:.4g} "
                     f"since {when(r['since'])}")
        for n, d in sorted(r["last_notification"].items()):
            outcome = "ok" if d["ok"] else f"error: {d['error']}"
            lines.append(f"    -> {n}: {d['status']}{' (repeat)' if d['repeat'] else ''} at {when(d['time'])} {outcome}")
    for n, s in st["notifiers"].items():
        health = "ok" if s["ok"] else ("never used" if s["ok"] is None else f"FAILING ({s['error']})")
        lines.append(f"  notifier {n} ({s['type']}): {health}, last ok {when(s['last_ok'])}, "
                     f"outbox {s['outbox']}, dropped {s['dropped']}")
    return "\n".join(lines)
