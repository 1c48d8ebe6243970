"""Shared fixtures: the OpenSearch node and the Kafka broker (each started once per session, on
first use) and the agent as a subprocess."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from tests.faults import FaultProxy
    from tests.kafka.launcher import Broker
    from tests.pki import Pki


@pytest.fixture(scope="session")
def es_url() -> str:
    """A real OpenSearch node started once per test session, or CCF_TEST_ES_URL when set."""
    from tests.opensearch.launcher import ensure_node

    return ensure_node()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of a real Kafka broker's PLAINTEXT listener, started once per test session on first
    use, or CCF_TEST_KAFKA when set."""
    from tests.kafka.launcher import ensure_bootstrap

    return ensure_bootstrap()


@pytest.fixture(scope="session")
def kafka_broker() -> Broker:
    """The session's own broker with all its listeners (SCRAM, TLS): skipped with CCF_TEST_KAFKA,
    whose SASL and TLS settings the suite does not know. Never stop it: use start_kafka for that."""
    from tests.kafka.launcher import ENV_BOOTSTRAP, ensure_broker

    if os.environ.get(ENV_BOOTSTRAP):
        pytest.skip(f"needs the suite's own Kafka broker ({ENV_BOOTSTRAP} is set)")
    return ensure_broker()


@pytest.fixture
def start_kafka() -> Iterator[Callable[..., Broker]]:
    """start_kafka(settings=..., join=...) -> a broker of the test's own, which it may stop, kill and
    start again; closed at teardown (its log tail printed, which pytest shows on failure)."""
    from tests.kafka import launcher

    started: list[Broker] = []

    def start(**kwargs: Any) -> Broker:
        broker = launcher.start(**kwargs)
        started.append(broker)
        return broker

    yield start
    for broker in reversed(started):
        print(f"----- kafka node {broker.node_id} log ({broker.log_path}) -----\n{broker.log_tail()}")
        broker.close()


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest) -> str:
    """A topic name of the test's own (the topic itself is made by the broker or the test)."""
    from tests.kafka.client import topic_name

    return topic_name(request.node.name)


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long variants (marked `long`: minutes each) are left out unless the run asks for them with
    `-m long`: deselected, not skipped, so a run that did not ask for them has nothing missing."""
    if "long" in (config.option.markexpr or ""):
        return
    keep = [item for item in items if item.get_closest_marker("long") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("long")])
        items[:] = keep


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and certificates made with openssl (tests/pki.py): good, expired, for another host."""
    from tests.pki import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_node(es_url: str, pki: Pki) -> Iterator[FaultProxy]:
    """The real node behind a TLS endpoint on 127.0.0.1 with a certificate for localhost from the test CA."""
    from tests.faults import FaultProxy
    from tests.pki import server_context

    p = FaultProxy(es_url, ssl_context=server_context(pki), host="localhost")
    p.start()
    yield p
    p.stop()
