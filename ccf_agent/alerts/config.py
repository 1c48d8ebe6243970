"""The `alerts:` section of the agent's YAML, parsed into frozen dataclasses.

The main config loader hands us the raw mapping (secrets already substituted) and a
`where(key_path, message) -> Exception` that turns a path relative to `alerts:` into a
file:line error, so every problem here is reported at the exact key.

    alerts:
      backlog_max_age: 5m
      notifiers:
        slack: {type: slack, url: "${SLACK_WEBHOOK_URL:-}"}     # empty url = notifier off
      rules:
        - name: HighPayoutFailureRate
          kind: ratio                   # ratio | count | absence | match
          when: {field: status, equals: failed}
          of: {field: message, icontains: payout}
          window: 5m
          threshold: 0.1
          min_count: 10
          for: 2m
          severity: critical
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ccf_agent.alerts.template import Template, TemplateError, compile_template
from ccf_agent.conditions import Condition, ConditionError, compile_condition
from ccf_agent.config import format_duration, header_problem, parse_duration
from ccf_agent.proxies import KEY as PROXY_KEY
from ccf_agent.proxies import Proxy, parse_proxy

Where = Callable[[tuple, str], Exception]

KINDS = ("ratio", "count", "absence", "match")
# The seed's alert levels; they pick Slack/Teams/Discord colours.
SEVERITIES = ("info", "warning", "error", "critical")
NOTIFIER_TYPES = ("slack", "teams", "discord", "webhook", "alertmanager")
_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NotifierConfig:
    name: str
    type: str
    # repr=False: a Slack/Teams/Discord webhook URL is itself the credential.
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0
    # Re-post a firing alert this often (Alertmanager forgets alerts not refreshed); None = use
    # the rule's repeat_interval.
    resend_interval: float | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_outbox: int = 1000
    proxy: Proxy = field(default_factory=Proxy)  # proxy_url, else the environment's (ccf_agent.proxies)


@dataclass(frozen=True)
class RuleConfig:
    name: str
    kind: str
    when: Condition
    of: Condition | None = None  # ratio denominator
    window: float = 300.0
    threshold: float = 1.0
    min_count: int = 0
    for_: float = 0.0
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Template] = field(default_factory=dict)
    repeat_interval: float = 4 * 3600.0
    group_wait: float = 0.0
    notifiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertsConfig:
    rules: tuple[RuleConfig, ...] = ()
    notifiers: Mapping[str, NotifierConfig] = field(default_factory=dict)
    backlog_max_age: float = 300.0
    service: str = "click-clack-cashflow"
    environment: str = "production"
    labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = "http://localhost:5066/status"
    state_flush_interval: float = 2.0
    notifiers_off: frozenset[str] = frozenset()  # named, but switched off by an empty url


class _Section:
    """One mapping of the section: typed getters that raise `where(path, msg)`."""

    def __init__(self, where: Where, path: tuple, value: Any) -> None:
        if not isinstance(value, dict):
            raise where(path, "must be a mapping")
        self.where, self.path, self.value = where, path, value
        self.used: set[str] = set()

    def err(self, key: str | None, message: str) -> Exception:
        return self.where((*self.path, key) if key else self.path, message)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        v = self.value.get(key)
        if v is None:
            if required:
                raise self.err(None, f"missing required key '{key}'")
            return default
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, float)):
            raise self.err(key, f"must be {_kind(kind)}, not {_kind(type(v))}")
        if isinstance(v, float) and not math.isfinite(v):  # YAML's .nan passes every comparison's else branch
            raise self.err(key, f"must be a finite number, not {v}")
        return v

    def duration(self, key: str, default: float | None, required: bool = False, minimum: float = 0.0) -> Any:
        self.used.add(key)
        raw = self.value.get(key)
        if raw is None:
            if required:
                raise self.err(None, f"missing required key '{key}'")
            return default
        v = parse_duration(raw)
        if v is None or v < 0:
            raise self.err(key, f"must be a duration like 250ms, 5s, 2m or 1h, not {raw!r}")
        if v < minimum:
            raise self.err(key, f"must be at least {format_duration(minimum)}, not {raw!r}")
        return v

    def strmap(self, key: str) -> dict[str, str]:
        raw = self.get(key, dict, {})
        out = {}
        for k, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise self.err(key, f"'{k}' must be a string")
            out[str(k)] = str(v)
        return out

    def condition(self, key: str, required: bool) -> Condition | None:
        raw = self.get(key, dict, None, required)
        if raw is None:
            return None
        try:
            return compile_condition(raw)
        except ConditionError as e:
            raise self.where((*self.path, key, *e.path), e.message) from e

    def done(self) -> None:
        for key in self.value:
            if key not in self.used:
                raise self.err(key, f"unknown key (known keys here: {', '.join(sorted(self.used))})")


_KIND_NAMES = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true or false", type(None): "empty"}


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def parse_alerts(raw: dict | None, where: Where) -> AlertsConfig:
    """Parse the `alerts:` mapping; raises `where(path_relative_to_alerts, message)`."""
    if raw is None:
        return AlertsConfig()
    top = _Section(where, (), raw)
    notifiers = _notifiers(top)
    # A repeat or resend interval of 0 would notify on every tick (4 a second) while an alert fires.
    repeat = top.duration("repeat_interval", 4 * 3600.0, minimum=1.0)
    labels = _labels(top, "labels")
    rules_raw = top.get("rules", list, [])
    rules = []
    seen: set[str] = set()
    for i, item in enumerate(rules_raw):
        rule = _rule(_Section(where, ("rules", i), item), notifiers, repeat)
        if rule.name in seen:
            raise where(("rules", i, "name"), f"duplicate rule name '{rule.name}'")
        seen.add(rule.name)
        rules.append(rule)
    cfg = AlertsConfig(
        rules=tuple(rules),
        notifiers={n: c for n, c in notifiers.items() if c.url},  # an empty url switches a notifier off
        backlog_max_age=top.duration("backlog_max_age", 300.0),
        service=top.get("service", str, "click-clack-cashflow"),
        environment=top.get("environment", str, "production"),
        labels=labels,
        external_url=top.get("external_url", str, "http://localhost:5066/status"),
        state_flush_interval=top.duration("state_flush_interval", 2.0),
        notifiers_off=frozenset(n for n, c in notifiers.items() if not c.url),
    )
    top.done()
    return cfg


def _labels(s: _Section, key: str) -> dict[str, str]:
    labels = s.strmap(key)
    for k in labels:
        if not _LABEL_RE.match(k):
            raise s.err(key, f"label name '{k}' must match [A-Za-z_][A-Za-z0-9_]*")
    return labels


def _proxy(s: _Section) -> Proxy:
    s.used.add(PROXY_KEY)
    return parse_proxy(s.value, lambda path, message: s.where((*s.path, *path), message))


def _notifiers(top: _Section) -> dict[str, NotifierConfig]:
    raw = top.get("notifiers", dict, {})
    out = {}
    for name, item in raw.items():
        s = _Section(top.where, ("notifiers", name), item)
        kind = s.get("type", str, required=True)
        if kind not in NOTIFIER_TYPES:
            raise s.err("type", f"unknown notifier type '{kind}' (known: {', '.join(NOTIFIER_TYPES)})")
        url = s.get("url", str, required=True).strip()
        if url and not re.match(r"^https?://[^/\s]+", url):
            # Never echo the value: a webhook URL is a secret.
            raise s.err("url", "must be an http:// or https:// URL (write it as ${ENV_VAR} or ${file:/path})")
        headers = s.strmap("headers")
        for hname, value in headers.items():
            problem = header_problem(hname, value)
            if problem:
                raise s.where((*s.path, "headers", hname), problem)
        token = s.get("bearer_token", str)
        if token:
            problem = header_problem("Authorization", token)
            if problem:
                raise s.err("bearer_token", problem)
            headers["Authorization"] = f"Bearer {token}"
        if "@" in url.partition("://")[2].partition("/")[0] and any(k.lower() == "authorization" for k in headers):
            # aiohttp refuses such a request: every notice would fail. Never echo the URL.
            raise s.err("url", "carries user:password@ while bearer_token or an Authorization header is set too: "
                        "give the credentials one way only")
        default_resend = 60.0 if kind == "alertmanager" else None
        cfg = NotifierConfig(
            name=name, type=kind, url=url, headers=headers,
            timeout=s.duration("timeout", 10.0),
            resend_interval=s.duration("resend_interval", default_resend, minimum=1.0),
            backoff_initial=s.duration("backoff_initial", 0.5),
            backoff_max=s.duration("backoff_max", 30.0),
            max_outbox=s.get("max_outbox", int, 1000),
            proxy=_proxy(s),
        )
        if cfg.timeout <= 0 or cfg.backoff_initial <= 0 or cfg.backoff_max < cfg.backoff_initial:
            raise s.err(None, "timeout and backoff_initial must be > 0, backoff_max >= backoff_initial")
        if cfg.max_outbox < 1:
            raise s.err("max_outbox", "must be at least 1")
        s.done()
        out[name] = cfg
    return out


def _rule(s: _Section, notifiers: Mapping[str, NotifierConfig], repeat: float) -> RuleConfig:
    name = s.get("name", str, required=True)
    if not name.strip():
        raise s.err("name", "must not be empty")
    kind = s.get("kind", str, required=True)
    if kind not in KINDS:
        raise s.err("kind", f"unknown rule kind '{kind}' (known: {', '.join(KINDS)})")
    when = s.condition("when", required=True)
    of = s.condition("of", required=kind == "ratio")
    if of is not None and kind != "ratio":
        raise s.err("of", "only a ratio rule has a denominator ('of')")
    # A match rule's window is how long after the last match the alert stays firing.
    window = s.duration("window", 300.0 if kind == "match" else None, required=kind != "match")
    if window < 1:
        raise s.err("window", "must be at least 1s (windows count per second)")
    default_threshold = None if kind in ("ratio", "count") else 1.0
    threshold = s.get("threshold", float, default_threshold, required=default_threshold is None)
    if kind == "ratio" and not 0 <= threshold < 1:
        raise s.err("threshold", "a ratio threshold is a fraction: at least 0 and below 1 (0.1 = 10%)")
    if kind == "count" and threshold <= 0:
        raise s.err("threshold", "must be greater than 0")
    if kind in ("absence", "match") and s.value.get("threshold") is not None:
        raise s.err("threshold", f"a {kind} rule has no threshold")
    min_count = s.get("min_count", int, 10 if kind == "ratio" else 0)
    if kind != "ratio" and s.value.get("min_count") is not None:
        raise s.err("min_count", "only a ratio rule has a minimum count")
    severity = s.get("severity", str, "warning")
    if severity not in SEVERITIES:
        raise s.err("severity", f"must be one of {', '.join(SEVERITIES)}, not '{severity}'")
    annotations = {}
    for key, text in s.strmap("annotations").items():
        try:
            annotations[key] = compile_template(text)
        except TemplateError as e:
            raise s.where((*s.path, "annotations", key), str(e)) from e
    wanted = tuple(s.get("notifiers", list, list(notifiers)))
    for j, n in enumerate(wanted):
        if not isinstance(n, str) or n not in notifiers:
            raise s.where((*s.path, "notifiers", j), f"no notifier named '{n}' (notifiers: {', '.join(notifiers)})")
    rule = RuleConfig(
        name=name, kind=kind, when=when, of=of,  # type: ignore[arg-type]
        window=window, threshold=threshold, min_count=min_count,
        for_=s.duration("for", 0.0),
        severity=severity, labels=_labels(s, "labels"), annotations=annotations,
        repeat_interval=s.duration("repeat_interval", repeat, minimum=1.0),
        group_wait=s.duration("group_wait", 0.0),
        notifiers=tuple(n for n in wanted if notifiers[n].url),
    )
    s.done()
    return rule
