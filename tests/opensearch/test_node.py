"""Smoke test of the engine the suite runs against: a real OpenSearch 2.19 (or $CCF_TEST_ES_URL)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid

import pytest

from tests.opensearch.launcher import ENV_URL, ensure_node

pytestmark = pytest.mark.engine


def _request(
    method: str, url: str, body: bytes | None = None, content_type: str = "application/json"
) -> dict:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:  # show the engine's error body, not just the status
        raise AssertionError(f"{method} {url} -> {e.code}: {e.read()[:2000]!r}") from e


@pytest.fixture(scope="module")
def url() -> str:
    return ensure_node()


def test_root_is_opensearch_2_19(url: str) -> None:
    info = _request("GET", f"{url}/")
    assert info["version"]["distribution"] == "opensearch"
    if not os.environ.get(ENV_URL):  # an external engine may be any version
        assert info["version"]["number"].startswith("2.19.")


def test_bulk_create_refresh_count_and_conflict(url: str) -> None:
    index = f"ccf-smoke-{uuid.uuid4().hex[:8]}"
    lines = []
    for i in (1, 2):
        lines.append(json.dumps({"create": {"_index": index, "_id": f"doc-{i}"}}))
        lines.append(json.dumps({"message": f"hello {i}", "@timestamp": "2024-01-01T00:00:00Z"}))
    bulk = ("\n".join(lines) + "\n").encode()  # _bulk needs the trailing newline

    first = _request("POST", f"{url}/_bulk", bulk, "application/x-ndjson")
    assert first["errors"] is False, first
    assert [item["create"]["status"] for item in first["items"]] == [201, 201]

    _request("POST", f"{url}/{index}/_refresh")
    assert _request("GET", f"{url}/{index}/_count")["count"] == 2

    # create never overwrites: the same ids again are per-item conflicts, not a request failure.
    again = _request("POST", f"{url}/_bulk", bulk, "application/x-ndjson")
    assert again["errors"] is True
    assert [item["create"]["status"] for item in again["items"]] == [409, 409]
    assert {item["create"]["error"]["type"] for item in again["items"]} == {
        "version_conflict_engine_exception"
    }

    _request("DELETE", f"{url}/{index}")
