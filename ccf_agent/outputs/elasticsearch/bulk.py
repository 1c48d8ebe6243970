"""What a bulk response says: a verdict per item, or why the whole request failed, with the
message an operator reads. Pure functions over statuses and bodies.

Per item: 2xx and 409 (already stored: creates carry deterministic ids) are delivered; 429, 5xx
and conditions an operator fixes (write blocks, a missing index or ingest pipeline, missing
privileges) are retried; any other rejection (mapping conflicts, 400s) is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

# Enough of each failed item to dead-letter it with its cause, and no more: a clean
# response shrinks to one small object per item.
FILTER = ("filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason,"
          "items.*.error.caused_by.type,items.*.error.caused_by.reason")


@dataclass
class Settled:
    """What one bulk response says about each item sent."""

    retry: list[int] = field(default_factory=list)  # positions to send again
    dead: list[tuple[int, int, Any]] = field(default_factory=list)  # (position, status, error)
    duplicates: int = 0
    throttled: int = 0  # items answered 429
    problem: tuple[str, str] | None = None  # (kind, detail) of an operator-fixable item failure


def _operator_fixable(status: int, error: Any) -> tuple[str, str] | None:
    """Item failures no record is to blame for: retried, never dead-lettered."""
    if not isinstance(error, dict):
        return None
    kind, reason = str(error.get("type", "")), str(error.get("reason", ""))
    if kind == "cluster_block_exception":
        return "blocked", reason
    if kind == "index_not_found_exception" or status == 404:
        return "index_missing", reason
    if "pipeline with id" in reason and "does not exist" in reason:
        return "pipeline_missing", reason
    if status in (401, 403) or kind == "security_exception":
        return "forbidden", reason
    return None


def settle_items(items: Sequence[Any]) -> Settled:
    out = Settled()
    for pos, item in enumerate(items):
        result: Any = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
        status = result.get("status", 0) if isinstance(result, dict) else 0
        status = status if isinstance(status, int) else 0
        error = result.get("error") if isinstance(result, dict) else None
        if 200 <= status < 300:
            continue
        if status == 409:
            out.duplicates += 1
            continue
        fixable = _operator_fixable(status, error) if status else ("protocol", "an item without a status")
        if status == 429 or status >= 500 or fixable:
            out.retry.append(pos)
            if status == 429 and not fixable:
                out.throttled += 1
            if fixable and out.problem is None:
                out.problem = fixable
            continue
        out.dead.append((pos, status, error))
    return out


class RequestFailed(Exception):
    """A whole bulk request failed; `kind` says why, the message what to do."""

    def __init__(self, kind: str, message: str, status: int = 0, retry_after: float | None = None,
                 error: Any = None, maybe_received: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.error = error
        self.maybe_received = maybe_received


def reason_of(raw: bytes) -> tuple[str, str, Any]:
    """(type, reason, error object) of an error response body."""
    try:
        err = orjson.loads(raw).get("error", {})
    except (ValueError, AttributeError):
        return "", raw[:200].decode("utf-8", "replace").strip(), None
    if isinstance(err, dict):
        return str(err.get("type", "")), str(err.get("reason", "")), err
    return "", str(err), err


def request_failed(status: int, raw: bytes, url: str, name: str, path: str,
                   retry_after: float | None) -> RequestFailed:
    """Why a request to `url` (`path` on it) answered `status` failed as a whole."""
    kind, reason, error = reason_of(raw)
    if kind == "cluster_block_exception":
        return RequestFailed("blocked", block_message(reason), status, retry_after)
    if status in (401, 403):
        return RequestFailed("auth" if status == 401 else "forbidden", auth_message(status, url, name), status,
                             retry_after)
    if status == 429:
        return RequestFailed("throttled", f"{url} rejected the bulk request with 429 ({kind or reason}): "
                             "the cluster is overloaded; backing off", status, retry_after)
    if status >= 500:
        return RequestFailed("server", f"{url} answered {status} to a bulk request ({kind}: {reason})",
                             status, retry_after)
    if status == 404:
        return RequestFailed("not_found", f"{url} answered 404 to {path} ({kind}: {reason}): is this URL an "
                             "Elasticsearch/OpenSearch node?", status, retry_after)
    if status in (400, 413) and "unrecognized parameter" not in reason:
        return RequestFailed("rejected", f"{url} rejected a bulk request with {status} ({kind}: {reason})",
                             status, retry_after, error)
    return RequestFailed("config", f"{url} refused the bulk request with {status} ({kind}: {reason}): "
                         "an engine or proxy this output cannot talk to as configured", status, retry_after)


def auth_message(status: int, url: str, name: str) -> str:
    if status == 401:
        return (f"authentication failed (401 from {url}): the username/password, api_key or bearer_token "
                f"of output '{name}' was refused; fix the credential (env var or file) and restart")
    return (f"not authorised (403 from {url}): the credentials of output '{name}' lack a privilege "
            "(create_doc on the target indices, monitor on the cluster)")


def block_message(reason: str) -> str:
    if "flood-stage" in reason or "read-only-allow-delete" in reason or "read_only_allow_delete" in reason:
        return (f"index blocked read-only ({reason.strip()}): the cluster's disk passed the flood-stage "
                "watermark; free disk space, then clear the block with PUT <index>/_settings "
                '{"index.blocks.read_only_allow_delete": null}; records wait and are retried')
    return (f"index blocked for writes ({reason.strip()}): clear index.blocks.write / index.blocks.read_only "
            "on the index (PUT <index>/_settings); records wait and are retried")


def item_problem_message(kind: str, reason: str, name: str) -> str:
    if kind == "blocked":
        return block_message(reason)
    if kind == "index_missing":
        return (f"target index or data stream missing ({reason}) and not created automatically: run "
                "`ccf-agent setup` or allow auto-creation; records wait and are retried")
    if kind == "protocol":
        return f"the bulk response made no sense ({reason}): is the URL an Elasticsearch/OpenSearch node?"
    if kind == "pipeline_missing":
        return f"ingest pipeline missing ({reason}): create it or remove `pipeline` from output '{name}'"
    return (f"not authorised for some items ({reason}): the credentials of output '{name}' lack "
            "create_doc on the target indices; records wait and are retried")
