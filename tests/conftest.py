"""Shared fixtures: the OpenSearch node (once per session) and the agent as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import AgentProcess, Engine


@pytest.fixture(scope="session")
def es_url() -> str:
    """A real OpenSearch node started once per test session, or CCF_TEST_ES_URL when set."""
    from tests.opensearch.launcher import ensure_node

    return ensure_node()


@pytest.fixture
def engine(es_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    eng = Engine(es_url, request.node.name)
    yield eng
    eng.cleanup()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Agents a test started; each is stopped (and its log shown on failure) at the end."""
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()
