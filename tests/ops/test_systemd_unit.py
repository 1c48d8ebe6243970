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
