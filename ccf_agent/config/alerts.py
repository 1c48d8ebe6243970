"""The `alerts:` section: rules evaluated inline on the records, and where notices go.

The loader hands it the raw mapping (secrets already substituted) and a `where` that names a
path relative to `alerts:` at its file:line.

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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ccf_agent.alerts.template import Template, TemplateError, compile_template
from ccf_agent.conditions import Condition
from ccf_agent.config.reader import Reader
from ccf_agent.config.values import Where, attempt, every, header_problem
from ccf_agent.proxies import KEY as PROXY_KEY
from ccf_agent.proxies import Proxy, parse_proxy

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


def parse_alerts(raw: dict[str, Any] | None, where: Where) -> AlertsConfig:
    """Parse the `alerts:` mapping; raises `where(path_relative_to_alerts, message)`."""
    if raw is None:
        return AlertsConfig()
    top = Reader(where, (), raw)
    notifiers = _notifiers(top)
    # A repeat or resend interval of 0 would notify on every tick (4 a second) while an alert fires.
    repeat = top.duration("repeat_interval", 4 * 3600.0, minimum=1.0)
    labels = _labels(top, "labels")
    seen: set[str] = set()
    rules = every([attempt(partial(_unique_rule, s, notifiers, repeat, seen)) for s in top.each("rules")])
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


def _unique_rule(s: Reader, notifiers: Mapping[str, NotifierConfig], repeat: float, seen: set[str]) -> RuleConfig:
    rule = _rule(s, notifiers, repeat)
    if rule.name in seen:
        raise s.error("name", f"duplicate rule name '{rule.name}'")
    seen.add(rule.name)
    return rule


def _labels(s: Reader, key: str) -> dict[str, str]:
    labels = s.strmap(key)
    for k in labels:
        if not _LABEL_RE.match(k):
            raise s.error(key, f"label name '{k}' must match [A-Za-z_][A-Za-z0-9_]*")
    return labels


def _proxy(s: Reader) -> Proxy:
    s.used.add(PROXY_KEY)
    return parse_proxy(s.value, lambda path, message: s.where((*s.path, *path), message))


def _notifiers(top: Reader) -> dict[str, NotifierConfig]:
    raw = top.get("notifiers", dict, {})
    out = {}
    for name, item in raw.items():
        s = Reader(top.where, ("notifiers", name), item)
        kind = s.get("type", str, required=True)
        if kind not in NOTIFIER_TYPES:
            raise s.error("type", f"unknown notifier type '{kind}' (known: {', '.join(NOTIFIER_TYPES)})")
        url = s.get("url", str, required=True).strip()
        if url and not re.match(r"^https?://[^/\s]+", url):
            # Never echo the value: a webhook URL is a secret.
            raise s.error("url", "must be an http:// or https:// URL (write it as ${ENV_VAR} or ${file:/path})")
        headers = s.strmap("headers")
        for hname, value in headers.items():
            problem = header_problem(hname, value)
            if problem:
                raise s.error(("headers", hname), problem)
        token = s.get("bearer_token", str)
        if token:
            problem = header_problem("Authorization", token)
            if problem:
                raise s.error("bearer_token", problem)
            headers["Authorization"] = f"Bearer {token}"
        if "@" in url.partition("://")[2].partition("/")[0] and any(k.lower() == "authorization" for k in headers):
            # aiohttp refuses such a request: every notice would fail. Never echo the URL.
            raise s.error("url", "carries user:password@ while bearer_token or an Authorization header is set too: "
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
            raise s.error(None, "timeout and backoff_initial must be > 0, backoff_max >= backoff_initial")
        if cfg.max_outbox < 1:
            raise s.error("max_outbox", "must be at least 1")
        s.done()
        out[name] = cfg
    return out


def _rule(s: Reader, notifiers: Mapping[str, NotifierConfig], repeat: float) -> RuleConfig:
    name = s.get("name", str, required=True)
    if not name.strip():
        raise s.error("name", "must not be empty")
    kind = s.get("kind", str, required=True)
    if kind not in KINDS:
        raise s.error("kind", f"unknown rule kind '{kind}' (known: {', '.join(KINDS)})")
    when = s.condition("when", required=True)
    of = s.condition("of", required=kind == "ratio")
    if of is not None and kind != "ratio":
        raise s.error("of", "only a ratio rule has a denominator ('of')")
    # A match rule's window is how long after the last match the alert stays firing.
    window = s.duration("window", 300.0) if kind == "match" else s.duration("window", None, required=True)
    if window < 1:
        raise s.error("window", "must be at least 1s (windows count per second)")
    default_threshold = None if kind in ("ratio", "count") else 1.0
    threshold = s.get("threshold", float, default_threshold, required=default_threshold is None)
    if kind == "ratio" and not 0 <= threshold < 1:
        raise s.error("threshold", "a ratio threshold is a fraction: at least 0 and below 1 (0.1 = 10%)")
    if kind == "count" and threshold <= 0:
        raise s.error("threshold", "must be greater than 0")
    if kind in ("absence", "match") and s.value.get("threshold") is not None:
        raise s.error("threshold", f"a {kind} rule has no threshold")
    min_count = s.get("min_count", int, 10 if kind == "ratio" else 0)
    if kind != "ratio" and s.value.get("min_count") is not None:
        raise s.error("min_count", "only a ratio rule has a minimum count")
    severity = s.get("severity", str, "warning")
    if severity not in SEVERITIES:
        raise s.error("severity", f"must be one of {', '.join(SEVERITIES)}, not '{severity}'")
    annotations = {}
    for key, text in s.strmap("annotations").items():
        try:
            annotations[key] = compile_template(text)
        except TemplateError as e:
            raise s.error(("annotations", key), str(e)) from e
    wanted = tuple(s.get("notifiers", list, list(notifiers)))
    for j, n in enumerate(wanted):
        if not isinstance(n, str) or n not in notifiers:
            raise s.error(("notifiers", j), f"no notifier named '{n}' (notifiers: {', '.join(notifiers)})")
    rule = RuleConfig(
        name=name, kind=kind, when=when, of=of,
        window=window, threshold=threshold, min_count=min_count,
        for_=s.duration("for", 0.0),
        severity=severity, labels=_labels(s, "labels"), annotations=annotations,
        repeat_interval=s.duration("repeat_interval", repeat, minimum=1.0),
        group_wait=s.duration("group_wait", 0.0),
        notifiers=tuple(n for n in wanted if notifiers[n].url),
    )
    s.done()
    return rule
