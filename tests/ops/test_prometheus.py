"""A real Prometheus (the Debian package) scraping the agent, and the alert rules on what it produced."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import ROOT, AgentProcess, free_port, wait_until
from tests.ops.helpers import (
    AppLogs,
    get,
    samples,
    scrape,
    shipped_app_logs,
)

RULES = ROOT / "packaging" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "packaging" / "grafana" / "ccf-agent.json"
RULE_TESTS = [ROOT / "packaging" / "prometheus" / "tests" / "alerts_test.yml",
              Path(__file__).parent / "fixtures" / "seed_alerts_test.yml"]

needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                      reason="prometheus / promtool (Debian package prometheus) not installed")
pytestmark = needs_prometheus


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentProcess, AppLogs]]:
    yield from shipped_app_logs(tmp_path_factory.mktemp("prom-agent"))


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(RULES)],
                  "scrape_configs": [{"job_name": "ccf-agent", "static_configs": [{"targets": [target]}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=self.log)

    def api(self, path: str, **params: str) -> Any:
        status, body, _ = get(f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        doc = json.loads(body) if status else None
        assert doc is not None and doc["status"] == "success", (status, body[:300])
        return doc["data"]

    def query(self, expr: str) -> dict[frozenset[tuple[str, str]], float]:
        try:
            result = self.api("query", query=expr)["result"]
        except (OSError, AssertionError, ValueError):
            return {}
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in result}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory,
               shipped: tuple[AgentProcess, AppLogs]) -> Iterator[Prometheus]:
    """Prometheus scraping the agent every second, with the packaged alert rules loaded."""
    agent, _ = shipped
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{agent.port}")
    try:
        wait_until(lambda: bool(prom.query('up{job="ccf-agent"} == 1')), 60, "Prometheus to scrape the agent")
        yield prom
    finally:
        prom.stop()


def test_prometheus_scraping_the_agent_sees_each_payout_once_by_status_and_method(
        prometheus: Prometheus, shipped: tuple[AgentProcess, AppLogs]) -> None:
    agent, expected = shipped
    want = {frozenset({("__name__", "ccf_payouts_total"), ("job", "ccf-agent"),
                       ("instance", f"127.0.0.1:{agent.port}"), ("status", s), ("method", m)}): float(n)
            for (s, m), n in expected.payouts.items()}
    wait_until(lambda: {k: v for k, v in prometheus.query("ccf_payouts_total").items() if v} == want, 60,
               "Prometheus to show ccf_payouts_total as the logs say")
    (failed_share,) = prometheus.query('sum(ccf_payouts_total{status="failed"}) / sum(ccf_payouts_total)').values()
    assert failed_share == pytest.approx(4 / 12)


def test_prometheus_loads_the_packaged_rules_and_evaluates_them_without_errors(prometheus: Prometheus) -> None:
    def evaluated() -> dict[str, str]:
        return {r["name"]: r["health"] for g in prometheus.api("rules")["groups"] for r in g["rules"]}
    wait_until(lambda: "unknown" not in evaluated().values(), 30, "a rule evaluation")
    rules = evaluated()
    assert set(rules) >= {"HighPayoutFailureRate", "PayoutJobNotRunning", "CcfAgentDown"}
    assert set(rules.values()) == {"ok"}


def test_every_dashboard_query_is_valid_promql_and_the_agents_panels_have_data(prometheus: Prometheus) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboard["panels"]}
    for queries in exprs.values():
        for expr in queries:
            expr = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
            prometheus.api("query", query=expr)  # raises on a PromQL error
    for title in ("Agents up", "Lag (bytes not yet acknowledged)", "Output health", "Agent memory"):
        assert prometheus.query(exprs[title][0].replace("$instance", ".*")), title


def test_the_adapted_rules_fire_on_the_series_the_agent_produced(
        tmp_path: Path, shipped: tuple[AgentProcess, AppLogs]) -> None:
    """The agent's real series, replayed in promtool's clock: counters grow by their scraped totals each
    minute (the logs' failure share), the job gauge keeps its scraped age, the health gauges their values."""
    agent, expected = shipped
    text = scrape(agent)
    scraped_at = time.time()
    target = {"job": "ccf-agent", "instance": f"127.0.0.1:{agent.port}"}
    series: list[dict[str, str]] = []
    for labels, value in samples(text, "ccf_payouts_total").items():
        series.append({"series": _series("ccf_payouts_total", {**target, **dict(labels)}),
                       "values": f"0+{value:g}x20"})
    ((_, last_job),) = samples(text, "ccf_last_payout_job_timestamp").items()
    replay_now = 600.0  # the scrape, in promtool's clock
    job_at = round(replay_now - (scraped_at - last_job))
    series.append({"series": _series("ccf_last_payout_job_timestamp", target), "values": f"{job_at}x90"})
    for name in ("ccf_agent_output_healthy", "ccf_agent_registry_healthy"):
        for labels, value in samples(text, name).items():
            series.append({"series": _series(name, {**target, **dict(labels)}), "values": f"{value:g}x20"})

    failed = sum(n for (s, _), n in expected.payouts.items() if s == "failed")
    share = failed / sum(expected.payouts.values())
    fires_after = 3600 + job_at  # time() - gauge > 3600 ...
    pending_from = 60 * (math.floor(fires_after / 60) + 1)
    tests = [
        {"eval_time": "5m", "alertname": "HighPayoutFailureRate",
         "exp_alerts": [{"exp_labels": {"severity": "critical"},
                         "exp_annotations": {"summary": "High payout failure rate detected",
                                             "description": f"Payout failure rate is {100 * share:.4g}% "
                                                            "over the last 5 minutes"}}]},
        {"eval_time": f"{pending_from + 240:.0f}s", "alertname": "PayoutJobNotRunning", "exp_alerts": []},
        {"eval_time": f"{pending_from + 300:.0f}s", "alertname": "PayoutJobNotRunning",  # ... for 5m
         "exp_alerts": [{"exp_labels": {"severity": "critical", **target},
                         "exp_annotations": {"summary": "Payout job hasn't run in over an hour"}}]},
        {"eval_time": "10m", "alertname": "CcfAgentOutputUnhealthy", "exp_alerts": []},
        {"eval_time": "10m", "alertname": "CcfAgentRegistryNotSaved", "exp_alerts": []},
    ]
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}]}
    (tmp_path / "agent_series_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(tmp_path / "agent_series_test.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 0.1 < share  # the logs' mix is one that must fire


@pytest.mark.parametrize("rule_test", RULE_TESTS, ids=lambda p: p.name)
def test_rule_fixtures_pass_promtool(rule_test: Path) -> None:
    result = subprocess.run(["promtool", "test", "rules", str(rule_test)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_file_is_valid_for_prometheus() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
