"""Shared fixtures: the OpenSearch node (once per session) and the agent as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import AgentProcess, Engine
from tests.skip_guard import (  # noqa: F401 - hooks, found here by name
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

# No wall-clock limit on an example: a 2-core machine shared with the OpenSearch node and other
# tests runs some examples well past hypothesis's default 200 ms deadline, which would fail the
# run for being slow, not wrong. Loaded here, before any test module builds its settings.
settings.register_profile("ccf", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ccf")


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
