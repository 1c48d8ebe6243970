"""TLS and credentials end to end: a TLS-terminating FaultProxy in front of the real node, with a
CA generated here; credentials taken from the environment and files, sent as configured, never shown."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from ccf_agent.samples import lines
from tests.faults import FaultProxy
from tests.harness import AgentProcess, Engine, agent_config, wait_until, write_lines
from tests.pki import Pki, server_context

pytestmark = pytest.mark.engine


@pytest.fixture
def tls_proxy(tls_node: FaultProxy) -> FaultProxy:
    return tls_node


def shipping_config(tmp_path: Path, engine: Engine, proxy: FaultProxy, tls: dict[str, Any],
                    **output: Any) -> dict[str, Any]:
    (tmp_path / "logs").mkdir(exist_ok=True)
    write_lines(tmp_path / "logs" / "combined.log", lines(1_000))
    cfg = agent_config(engine, [str(tmp_path / "logs" / "*.log")], tls=tls, backoff_max="1s", **output)
    for out in cfg["outputs"].values():
        out["hosts"] = [proxy.url]
    return cfg


def output_status(agent: AgentProcess) -> dict[str, Any]:
    return next(o for o in (agent.status() or {})["outputs"] if o["name"] == "logs")


def test_a_server_signed_by_the_configured_ca_is_trusted_and_basic_auth_is_sent(
        tmp_path: Path, engine: Engine, pki: Pki, tls_proxy: FaultProxy, agents: list[AgentProcess]) -> None:
    cfg = shipping_config(tmp_path, engine, tls_proxy, {"ca_file": str(pki.ca)},
                          username="ccf_agent", password="${ES_PASSWORD}")
    agent = AgentProcess(tmp_path, cfg, env={"ES_PASSWORD": "pa55-w0rd-from-env"}).start()
    agents.append(agent)
    agent.wait_caught_up()

    assert engine.tally(1_000)["distinct"] == 1_000
    expected = "Basic " + base64.b64encode(b"ccf_agent:pa55-w0rd-from-env").decode()
    bulks = [r for r in tls_proxy.requests() if "_bulk" in r.path]
    assert bulks and all(r.headers.get("Authorization") == expected for r in bulks)
    assert "pa55-w0rd" not in agent.log_path.read_text() and "pa55-w0rd" not in str(agent.status())


def test_an_api_key_from_a_file_is_sent_as_configured(tmp_path: Path, engine: Engine, pki: Pki,
                                                      tls_proxy: FaultProxy, agents: list[AgentProcess]) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("Y2NmOmFwaS1rZXktc2VjcmV0\n")
    cfg = shipping_config(tmp_path, engine, tls_proxy, {"ca_file": str(pki.ca)}, api_key=f"${{file:{key_file}}}")
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    agent.wait_caught_up()

    bulks = [r for r in tls_proxy.requests() if "_bulk" in r.path]
    assert bulks and {r.headers.get("Authorization") for r in bulks} == {"ApiKey Y2NmOmFwaS1rZXktc2VjcmV0"}
    assert "Y2NmOmFwaS1rZXktc2VjcmV0" not in agent.log_path.read_text()


def test_a_certificate_from_an_unknown_ca_is_refused_with_an_actionable_status(
        tmp_path: Path, engine: Engine, pki: Pki, tls_proxy: FaultProxy, agents: list[AgentProcess]) -> None:
    cfg = shipping_config(tmp_path, engine, tls_proxy, {"ca_file": str(pki.other_ca)})
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    wait_until(lambda: output_status(agent)["problem"] == "tls", 60, "a TLS problem in the status")

    message = output_status(agent)["last_error"]
    assert message.startswith(f"TLS certificate of {tls_proxy.url} is not trusted")
    assert "set tls.ca_file" in message
    assert engine.count() == 0
    assert "TLS certificate of" in agent.log()


def test_the_system_store_is_used_without_a_ca_file(tmp_path: Path, engine: Engine, tls_proxy: FaultProxy,
                                                    agents: list[AgentProcess]) -> None:
    cfg = shipping_config(tmp_path, engine, tls_proxy, {})
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    wait_until(lambda: output_status(agent)["problem"] == "tls", 60, "a TLS problem in the status")
    assert "is not trusted (unable to get local issuer certificate)" in output_status(agent)["last_error"]


def test_verify_false_ships_with_a_loud_warning(tmp_path: Path, engine: Engine, tls_proxy: FaultProxy,
                                                agents: list[AgentProcess]) -> None:
    cfg = shipping_config(tmp_path, engine, tls_proxy, {"verify": False})
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    agent.wait_caught_up()
    assert engine.tally(1_000)["distinct"] == 1_000
    assert "TLS CERTIFICATE VERIFICATION IS OFF" in agent.log()
    assert output_status(agent)["tls_verify"] is False


def test_a_client_certificate_is_presented_when_configured(tmp_path: Path, engine: Engine, pki: Pki,
                                                            es_url: str, agents: list[AgentProcess]) -> None:
    with FaultProxy(es_url, ssl_context=server_context(pki, client_certs=True), host="localhost") as proxy:
        cfg = shipping_config(tmp_path, engine, proxy, {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                                                        "key_file": str(pki.client_key)})
        agent = AgentProcess(tmp_path, cfg).start()
        agents.append(agent)
        agent.wait_caught_up()
        assert engine.tally(1_000)["distinct"] == 1_000
        agent.kill()


def test_a_server_demanding_a_client_certificate_gets_a_hint_in_the_status(
        tmp_path: Path, engine: Engine, pki: Pki, es_url: str, agents: list[AgentProcess]) -> None:
    with FaultProxy(es_url, ssl_context=server_context(pki, client_certs=True), host="localhost") as proxy:
        cfg = shipping_config(tmp_path, engine, proxy, {"ca_file": str(pki.ca)})
        agent = AgentProcess(tmp_path, cfg).start()
        agents.append(agent)
        wait_until(lambda: output_status(agent)["problem"] is not None, 60, "a problem in the status")
        assert "requires a client certificate hangs up like this: check tls.cert_file and tls.key_file" in \
            output_status(agent)["last_error"]
        agent.kill()


def test_refused_credentials_are_reported_as_such(tmp_path: Path, engine: Engine, pki: Pki,
                                                  tls_proxy: FaultProxy, agents: list[AgentProcess]) -> None:
    tls_proxy.set("reject", status=401, paths="all")
    cfg = shipping_config(tmp_path, engine, tls_proxy, {"ca_file": str(pki.ca)},
                          username="ccf_agent", password="${ES_PASSWORD}")
    agent = AgentProcess(tmp_path, cfg, env={"ES_PASSWORD": "wrong-pa55"}).start()
    agents.append(agent)
    wait_until(lambda: output_status(agent)["problem"] == "auth", 60, "an auth problem in the status")

    status = output_status(agent)
    assert status["last_error"].startswith(f"authentication failed (401 from {tls_proxy.url})")
    assert "wrong-pa55" not in str(agent.status()) and "wrong-pa55" not in agent.log_path.read_text()
