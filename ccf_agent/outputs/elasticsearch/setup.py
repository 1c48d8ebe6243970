"""`ccf-agent setup -c FILE`: install what the Elasticsearch/OpenSearch outputs need, idempotently.

Per cluster, a component template `ccf-agent-mappings` maps the app's fields (payout
`amount` in cents as long, `currency` and `status` keyword, `processingTime` long,
`@timestamp` date, `message` text). Per output, a composable index template over its
indices (a data-stream template when `data_stream: true`), one for its dead-letter index if
it has one, and a retention policy deleting indices `retention` (30 days) after creation,
as the app's logrotate keeps 30 days: ILM on Elasticsearch, ISM on OpenSearch. The engine
is told apart by `GET /` (`version.distribution`), never by the version number alone.

Every object carries a digest of its body: a run compares digests and writes only what is
missing or different, so running setup twice changes nothing the second time. Templates
and policies apply to indices created afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import orjson

from ccf_agent.config import Config, OutputConfig
from ccf_agent.outputs.elasticsearch.client import Cluster, SetupError, error_text
from ccf_agent.outputs.elasticsearch.config import options_of
from ccf_agent.outputs.elasticsearch.indices import index_pattern

COMPONENT = "ccf-agent-mappings"
MANAGED_BY = "ccf-agent"

_KW = {"type": "keyword"}
_TEXT = {"type": "text"}
_LONG = {"type": "long"}
_DATE = {"type": "date"}

# The fields of the app's Winston records (see its operations guide) and of the agent's enrichment.
# Anything else keeps dynamic mapping.
MAPPINGS: dict[str, Any] = {"properties": {
    "@timestamp": _DATE,
    "message": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
    "level": _KW, "service": _KW, "version": _KW, "environment": _KW, "tags": _KW,
    "timestamp": _KW,  # Winston's local 'YYYY-MM-DD HH:mm:ss', kept as written; @timestamp is the date
    # payouts
    "payoutId": _KW, "userId": _KW, "paymentMethodId": _KW, "stripePayoutId": _KW,
    "amount": _LONG,  # cents
    "currency": _KW, "status": _KW,
    "processingTime": _LONG,  # milliseconds
    "error": _KW, "errorMessage": _TEXT, "retryCount": {"type": "integer"}, "nextRetryAt": _DATE,
    "stack": _TEXT,
    # HTTP requests
    "method": _KW, "path": _KW, "statusCode": {"type": "integer"}, "durationMs": _LONG, "ip": _KW,
    # added by the agent
    "host": {"properties": {"name": _KW}},
    "agent": {"properties": {"name": _KW, "version": _KW}},
    "log": {"properties": {"file": {"properties": {"path": _KW}}, "offset": _LONG}},
}}

DEAD_LETTER_MAPPINGS: dict[str, Any] = {"properties": {
    "@timestamp": _DATE, "output": _KW, "index": _KW, "status": {"type": "integer"},
    "error": {"dynamic": False, "properties": {"type": _KW, "reason": _TEXT}},
    "document": {"type": "text", "index": False},  # the record as shipped, kept whole
}}


# ---------------------------------------------------------------------------------- bodies (pure)


def digest(body: Any) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _meta(body: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {**body, "_meta": {"managed_by": MANAGED_BY, **extra, "digest": digest(body)}}


def duration(seconds: float) -> str:
    """Whole days or hours, as ILM and ISM write ages."""
    return f"{int(seconds // 86400)}d" if seconds % 86400 == 0 else f"{int(seconds // 3600)}h"


def _priority(pattern: str, base: int) -> int:
    # A longer literal prefix is a more specific pattern: it must win where two outputs overlap
    # (ccf-logs-* and ccf-logs-payouts-*), and equal priorities on overlapping patterns are refused.
    return base + len(pattern.split("*", 1)[0])


def component_template() -> dict[str, Any]:
    return _meta({"template": {"mappings": MAPPINGS}})


def index_template(cfg: OutputConfig, engine: str, policy: str | None) -> dict[str, Any]:
    opts = options_of(cfg)
    pattern = index_pattern(cfg.index)
    body: dict[str, Any] = {"index_patterns": [pattern], "priority": _priority(pattern, 200),
                            "composed_of": [COMPONENT]}
    if policy and engine == "elasticsearch":
        body["template"] = {"settings": {"index.lifecycle.name": policy}}
    if opts.data_stream:
        body["data_stream"] = {}
    return _meta(body, output=cfg.name)


def dead_letter_template(cfg: OutputConfig, engine: str, policy: str | None) -> dict[str, Any]:
    index = options_of(cfg).dead_letter_index
    assert index is not None
    template: dict[str, Any] = {"mappings": DEAD_LETTER_MAPPINGS}
    if policy and engine == "elasticsearch":
        template["settings"] = {"index.lifecycle.name": policy}
    return _meta({"index_patterns": [index], "priority": _priority(index, 200), "template": template},
                 output=cfg.name)


def ilm_policy(cfg: OutputConfig, retention: float) -> dict[str, Any]:
    """Elasticsearch: delete `retention` after creation (after rollover, for a data stream)."""
    phases: dict[str, Any] = {"hot": {"actions": {}}}
    if options_of(cfg).data_stream:
        phases["hot"]["actions"]["rollover"] = {"max_age": "1d", "max_primary_shard_size": "50gb"}
    phases["delete"] = {"min_age": duration(retention), "actions": {"delete": {}}}
    body = {"phases": phases}
    return {"policy": _meta(body, output=cfg.name)}


def ism_policy(cfg: OutputConfig, retention: float) -> dict[str, Any]:
    """OpenSearch: the same, as ISM states; `ism_template` attaches it to new indices."""
    opts = options_of(cfg)
    patterns = [index_pattern(cfg.index)] + ([opts.dead_letter_index] if opts.dead_letter_index else [])
    hot_actions: list[dict[str, Any]] = [{"rollover": {"min_index_age": "1d"}}] if opts.data_stream else []
    body = {
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": hot_actions,
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": duration(retention)}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": patterns, "priority": _priority(patterns[0], 100)}],
    }
    # ISM policies have no _meta: the digest rides in the description.
    body["description"] = (f"ccf-agent output {cfg.name}: delete indices {duration(retention)} after creation "
                           f"(managed by ccf-agent setup; digest {digest(body)})")
    return {"policy": body}


def ism_digest(policy: dict[str, Any]) -> str | None:
    m = re.search(r"digest ([0-9a-f]{16})\)", str(policy.get("description", "")))
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------- steps


@dataclass
class Outcome:
    ok: bool
    line: str


async def _ensure(cluster: Cluster, kind: str, name: str, path: str, body: dict[str, Any],
                  current_digest: Callable[[Any], Any]) -> Outcome:
    """Create or update one object unless an identical one (same digest) is there."""
    status, answer = await cluster.call("GET", path)
    want = (body.get("_meta") or body.get("policy", {}).get("_meta") or {}).get("digest")
    if status == 200:
        if current_digest(answer) == want:
            return Outcome(True, f"{kind} {name}: unchanged")
        await cluster.put(path, body, f"{kind} {name}")
        return Outcome(True, f"{kind} {name}: updated")
    if status != 404:
        raise SetupError(f"{kind} {name}: reading it failed: {status} {error_text(answer)}")
    await cluster.put(path, body, f"{kind} {name}")
    return Outcome(True, f"{kind} {name}: created")


def _component_digest(answer: Any) -> Any:
    items = answer.get("component_templates") or [{}]
    return ((items[0].get("component_template") or {}).get("_meta") or {}).get("digest")


def _index_digest(answer: Any) -> Any:
    items = answer.get("index_templates") or [{}]
    return ((items[0].get("index_template") or {}).get("_meta") or {}).get("digest")


def _ilm_digest(policy: str) -> Callable[[Any], Any]:
    def digest(answer: Any) -> Any:
        return (((answer.get(policy) or {}).get("policy") or {}).get("_meta") or {}).get("digest")
    return digest


async def _ism(cluster: Cluster, name: str, body: dict[str, Any]) -> Outcome:
    path = f"/_plugins/_ism/policies/{quote(name)}"
    status, answer = await cluster.call("GET", path)
    if status in (400, 405) and "no handler found" in str(answer):
        return Outcome(False, (
            f"ISM policy {name}: NOT INSTALLED: this OpenSearch cluster has no Index State Management plugin "
            "(no _plugins/_ism API), so nothing deletes old indices after the retention period. Install the "
            "opensearch-index-management plugin and run setup again, or set `retention: off` on the output "
            "and delete old indices another way"))
    want = ism_digest(body["policy"])
    if status == 200 and ism_digest((answer or {}).get("policy") or {}) == want:
        return Outcome(True, f"ISM policy {name}: unchanged")
    if status == 200:
        q = f"?if_seq_no={answer['_seq_no']}&if_primary_term={answer['_primary_term']}"
        await cluster.put(path + q, body, f"ISM policy {name}")
        return Outcome(True, f"ISM policy {name}: updated")
    if status != 404:
        raise SetupError(f"ISM policy {name}: reading it failed: {status} {error_text(answer)}")
    await cluster.put(path, body, f"ISM policy {name}")
    return Outcome(True, f"ISM policy {name}: created")


async def setup_output(cfg: OutputConfig, out: TextIO) -> bool:
    opts = options_of(cfg)
    cluster = Cluster(cfg)
    ok = True
    try:
        try:
            await cluster.connect()
        except SetupError as e:
            print(f"output {cfg.name}: cannot reach the cluster: {e}", file=out)
            return False
        print(f"output {cfg.name}: {cluster.url} ({cluster.engine} {cluster.version})", file=out)
        if cluster.engine == "elasticsearch" and _older(cluster.version, (7, 8)):
            print(f"  composable index templates need Elasticsearch 7.8 or later, not {cluster.version}", file=out)
            return False
        name = opts.template or f"ccf-agent-{cfg.name}"
        policy = name if opts.retention else None
        steps: list[Outcome] = []
        try:
            steps.append(await _ensure(cluster, "component template", COMPONENT,
                                       f"/_component_template/{COMPONENT}", component_template(), _component_digest))
            steps.append(await _ensure(cluster, "index template", f"{name} ({index_pattern(cfg.index)}"
                                       f"{', data stream' if opts.data_stream else ''})",
                                       f"/_index_template/{quote(name)}",
                                       index_template(cfg, cluster.engine, policy), _index_digest))
            if opts.dead_letter_index:
                dl = f"{name}-dead-letters"
                steps.append(await _ensure(cluster, "index template", f"{dl} ({opts.dead_letter_index})",
                                           f"/_index_template/{quote(dl)}",
                                           dead_letter_template(cfg, cluster.engine, policy), _index_digest))
            if policy and opts.retention:
                if cluster.engine == "elasticsearch":
                    steps.append(await _ensure(
                        cluster, "ILM policy", f"{policy} (delete after {duration(opts.retention)})",
                        f"/_ilm/policy/{quote(policy)}", ilm_policy(cfg, opts.retention),
                        _ilm_digest(policy)))
                else:
                    steps.append(await _ism(cluster, policy, ism_policy(cfg, opts.retention)))
            else:
                steps.append(Outcome(True, "retention policy: none (retention: off)"))
            if opts.pipeline:
                status, _ = await cluster.call("GET", f"/_ingest/pipeline/{quote(opts.pipeline)}")
                steps.append(Outcome(status == 200, f"ingest pipeline {opts.pipeline}: " + (
                    "present" if status == 200 else
                    "MISSING: create it (setup does not), or bulk items wait until it exists")))
        except SetupError as e:
            steps.append(Outcome(False, f"FAILED: {e}"))
        for s in steps:
            print(f"  {s.line}", file=out)
            ok = ok and s.ok
        return ok
    finally:
        await cluster.close()


def _older(version: str, than: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) < than


async def _setup_all(outputs: Sequence[OutputConfig], out: TextIO) -> int:
    results = [await setup_output(cfg, out) for cfg in outputs]
    if all(results):
        print("setup complete: templates apply to indices created from now on", file=out)
        return 0
    print("setup incomplete: see the lines above", file=out)
    return 1


def run_setup(config: Config, out: TextIO | None = None) -> int:
    """Install templates and retention policies for every Elasticsearch output: 0 when all is in place."""
    stream = out or sys.stdout
    outputs = [o for o in config.outputs.values() if o.type == "elasticsearch"]
    if not outputs:
        print("no elasticsearch outputs in the config: nothing to set up", file=stream)
        return 0
    return asyncio.run(_setup_all(outputs, stream))
