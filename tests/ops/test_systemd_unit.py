"""systemd/ccf-agent.service agrees with the daemon it runs, and is hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ccf_agent import cli
from ccf_agent.config import Config
from tests.harness import ROOT

UNIT = ROOT / "systemd" / "ccf-agent.service"


def directives(path: Path = UNIT) -> dict[str, list[str]]:
    """Key -> values in order (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_it_is_a_notify_service_with_a_watchdog() -> None:
    d = directives()
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert seconds(d["WatchdogSec"][0]) >= 10  # pings every half of it from the event loop


def test_reload_validates_the_config_then_sends_sighup() -> None:
    assert directives()["ExecReload"] == ["/usr/bin/ccf-agent check -c /etc/ccf-agent/config.yaml",
                                          "/bin/kill -HUP $MAINPID"]


def test_a_config_error_is_not_restarted_in_a_loop() -> None:
    d = directives()
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == [str(cli.EXIT_CONFIG)]


def test_stopping_leaves_time_for_the_agent_to_drain() -> None:
    default_drain = Config.__dataclass_fields__["shutdown_timeout"].default
    assert seconds(directives()["TimeoutStopSec"][0]) > default_drain + 10  # type: ignore[operator]


def test_it_runs_as_its_own_user_in_group_adm_writing_only_its_state_directory() -> None:
    d = directives()
    assert (d["User"], d["SupplementaryGroups"], d["StateDirectory"]) == (["ccf-agent"], ["adm"], ["ccf-agent"])
    assert d["ProtectSystem"] == ["strict"] and "ReadWritePaths" not in d
    assert d["CapabilityBoundingSet"] == [""] and d["NoNewPrivileges"] == ["yes"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_security_rates_the_exposure_ok() -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True,
                            text=True, timeout=60)
    m = re.search(r"Overall exposure level for ccf-agent\.service: ([\d.]+) (\w+)", result.stdout)
    assert m, result.stdout[-500:] + result.stderr
    assert float(m.group(1)) <= 2.0 and m.group(2) == "OK"


REPORT_SERVICE = ROOT / "systemd" / "ccf-agent-report.service"
REPORT_TIMER = ROOT / "systemd" / "ccf-agent-report.timer"
# What a daemon's unit has and a one-shot command's has not.
DAEMON_ONLY = {"Type", "NotifyAccess", "ExecStart", "ExecReload", "Restart", "RestartSec", "RestartPreventExitStatus",
               "TimeoutStartSec", "WatchdogSec", "TimeoutStopSec", "Description", "Documentation", "Wants", "After",
               "WantedBy"}


def test_the_report_timer_runs_the_report_daily_and_catches_up_after_downtime() -> None:
    d = directives(REPORT_TIMER)
    assert d["OnCalendar"] == ["*-*-* 00:15:00"] and d["Persistent"] == ["true"] and d["WantedBy"] == ["timers.target"]
    assert directives(REPORT_SERVICE)["Type"] == ["oneshot"]


def test_the_report_service_is_hardened_exactly_like_the_daemon() -> None:
    daemon, report = directives(), directives(REPORT_SERVICE)
    hardening = {k: v for k, v in daemon.items() if k not in DAEMON_ONLY}
    # The read-ahead thread's sched_setscheduler exception is the daemon's alone.
    hardening["SystemCallFilter"] = [f for f in hardening["SystemCallFilter"] if f != "sched_setscheduler"]
    assert {k: report.get(k) for k in hardening} == hardening


def test_the_report_services_command_writes_yesterdays_page_and_sends(tmp_path: Path) -> None:
    import sys

    import yaml

    [command] = directives(REPORT_SERVICE)["ExecStart"]
    argv = command.split()
    assert argv[:4] == ["/usr/bin/ccf-agent", "report", "-c", "/etc/ccf-agent/config.yaml"]
    out = argv[argv.index("--out") + 1]
    assert out == "/var/lib/ccf-agent/reports/{date}.html" and "--send" in argv
    (tmp_path / "logs").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"),
                                      "inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
                                      "outputs": {"logs": {"type": "file", "path": str(tmp_path / "out.ndjson")}}}))
    argv = [sys.executable, "-m", "ccf_agent", *argv[1:]]
    argv[argv.index("/etc/ccf-agent/config.yaml")] = str(config)
    argv[argv.index(out)] = str(tmp_path / "reports" / "{date}.html")
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    [page] = (tmp_path / "reports").iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d\.html", page.name) and page.read_text().startswith("<!DOCTYPE html>")
    # Enabled with nowhere to send to: a failed run systemctl shows, not a silent one.
    assert r.returncode == 1 and "--send: the config names no notifier" in r.stderr
