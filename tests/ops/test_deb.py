"""The Debian package, built with packaging/build.sh and installed on this machine.

Slow (builds a virtualenv from PyPI) and root-only; it refuses to touch a machine where
ccf-agent is already installed, and purges what it installed (and the user it created).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccf_agent import __version__
from tests.harness import ROOT, free_port, wait_until
from tests.ops.helpers import get

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a .deb needs root"),
    pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("dpkg-buildpackage") is None,
                       reason="dpkg / dpkg-dev not available"),
]


AS_SERVICE_USER: dict[str, Any] = {"user": "ccf-agent", "group": "ccf-agent", "extra_groups": ["adm"]}


def dpkg(*args: str) -> subprocess.CompletedProcess[str]:
    """dpkg, waiting for its lock if someone else on this machine holds it."""
    deadline = time.monotonic() + 300
    while True:
        r = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if "lock" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(2)


def package_state() -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "ccf-agent"], capture_output=True,
                       text=True)
    return r.stdout.strip() if r.returncode == 0 else "not-installed"


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if package_state() not in ("not-installed", "un"):
        pytest.skip("a ccf-agent package is already installed here: not touching it")
    r = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--worktree"], capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (path,) = [Path(line) for line in r.stdout.splitlines() if line.endswith(".deb")]
    wheels = [line for line in r.stdout.splitlines() if line.endswith(".whl")]
    # A platform wheel: it carries the pipeline's C loop (ccf_agent/_native/).
    assert wheels and Path(wheels[0]).name == f"ccf_agent-{__version__}-cp311-cp311-linux_x86_64.whl"
    return path


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Path]:
    user_existed = _user_exists()
    r = dpkg("-i", str(deb))
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        yield deb
    finally:
        if package_state() not in ("not-installed", "un", "pn"):
            dpkg("--purge", "ccf-agent")
        if not user_existed and _user_exists():  # leave the machine as we found it
            subprocess.run(["deluser", "--quiet", "--system", "ccf-agent"], capture_output=True)


def _user_exists() -> bool:
    try:
        pwd.getpwnam("ccf-agent")
        return True
    except KeyError:
        return False


def test_ccf_agent_version_runs_from_usr_bin(installed: Path) -> None:
    r = subprocess.run(["/usr/bin/ccf-agent", "--version"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, f"ccf-agent {__version__}")
    assert os.path.realpath("/usr/bin/ccf-agent") == "/opt/ccf-agent/bin/ccf-agent"


def test_the_virtualenv_is_self_contained_under_opt(installed: Path) -> None:
    r = subprocess.run(["/opt/ccf-agent/bin/python", "-I", "-c",
                        "import sys, aiohttp, uvloop, orjson, yaml, ccf_agent, ccf_agent._native._fast; "
                        "print(sys.prefix, ccf_agent.__file__, aiohttp.__file__)"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    prefix, *files = r.stdout.split()
    assert prefix == "/opt/ccf-agent" and all(f.startswith("/opt/ccf-agent/lib/python3.11/") for f in files)
    assert not Path("/opt/ccf-agent/bin/pip").exists()


def test_the_service_user_is_in_group_adm_and_owns_only_the_state_dir(installed: Path) -> None:
    user = pwd.getpwnam("ccf-agent")
    assert user.pw_shell == "/usr/sbin/nologin" and user.pw_uid < 1000
    assert "ccf-agent" in grp.getgrnam("adm").gr_mem
    st = os.stat("/var/lib/ccf-agent")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, 0o750)
    env = os.stat("/etc/ccf-agent/environment")
    assert (env.st_uid, stat.S_IMODE(env.st_mode)) == (0, 0o600)


def test_the_config_is_a_conffile_from_the_example(installed: Path) -> None:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "ccf-agent"], capture_output=True, text=True)
    assert "/etc/ccf-agent/config.yaml" in r.stdout
    assert Path("/etc/ccf-agent/config.yaml").read_text() == (ROOT / "config.example.yaml").read_text()


def test_the_installed_config_validates_once_credentials_are_set(installed: Path) -> None:
    r = subprocess.run(["/usr/bin/ccf-agent", "check", "-c", "/etc/ccf-agent/config.yaml"], **AS_SERVICE_USER,
                       capture_output=True, text=True, timeout=60, env={**os.environ, "ES_PASSWORD": "secret"})
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_installed_unit(installed: Path) -> None:
    r = subprocess.run(["systemd-analyze", "verify", "/lib/systemd/system/ccf-agent.service"], capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_the_daily_report_timer_is_installed_but_not_enabled(installed: Path) -> None:
    for unit in ("ccf-agent-report.service", "ccf-agent-report.timer"):
        assert (Path("/lib/systemd/system") / unit).read_text() == (ROOT / "systemd" / unit).read_text()
    assert not Path("/etc/systemd/system/timers.target.wants/ccf-agent-report.timer").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_installed_report_units(installed: Path) -> None:
    r = subprocess.run(["systemd-analyze", "verify", "/lib/systemd/system/ccf-agent-report.timer",
                        "/lib/systemd/system/ccf-agent-report.service"], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A scratch directory the service user can reach (pytest's tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="ccf-agent-deb-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_packaged_daemon_runs_as_its_user_and_stops_cleanly(installed: Path, shared_dir: Path) -> None:
    tmp_path = shared_dir
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    shutil.chown(out, "ccf-agent")
    (logs / "combined.log").write_text('{"level":"info","message":"hello","timestamp":"2024-01-15 10:00:00"}\n')
    port = free_port()
    config = {"state_dir": "/var/lib/ccf-agent", "status": {"listen": f"127.0.0.1:{port}"},
              "inputs": [{"id": "app", "paths": [str(logs / "*.log")]}],
              "outputs": {"logs": {"type": "file", "path": str(out / "logs.ndjson")}}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(["/usr/bin/ccf-agent", "run", "-c", str(tmp_path / "agent.yaml")], **AS_SERVICE_USER,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (out / "logs.ndjson").exists() and (out / "logs.ndjson").read_text().count("\n") == 1,
                   60, "the packaged agent to ship the line")
        status, body, _ = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"ccf_agent_records_shipped_total" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stdout.read().decode() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_packaged_report_counts_the_logs_as_the_service_user(installed: Path, shared_dir: Path) -> None:
    logs = shared_dir / "logs"
    logs.mkdir()
    (logs / "combined.log").write_text(
        '{"level":"error","message":"Payout failed","payoutId":"p1","amount":25000,"timestamp":"2024-01-15 10:00:00"}\n')
    config = {"state_dir": "/var/lib/ccf-agent", "inputs": [{"id": "app", "paths": [str(logs / "*.log")]}],
              "outputs": {"logs": {"type": "file", "path": str(shared_dir / "out.ndjson")}}}
    (shared_dir / "agent.yaml").write_text(yaml.safe_dump(config))
    r = subprocess.run(["/usr/bin/ccf-agent", "report", "-c", str(shared_dir / "agent.yaml"), "--date", "2024-01-15"],
                       **AS_SERVICE_USER, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:4] == ["Total Errors: 1", "Successful Payouts: 0", "Failed Payouts: 1"]


def test_remove_keeps_config_and_state_and_purge_deletes_them(installed: Path) -> None:
    Path("/var/lib/ccf-agent/registry.json").write_text("{}")  # as if it had run
    r = dpkg("--remove", "ccf-agent")
    assert r.returncode == 0, r.stderr
    assert package_state() == "rc"  # removed, config-files remain
    assert not Path("/opt/ccf-agent").exists() and not Path("/usr/bin/ccf-agent").exists()
    assert Path("/etc/ccf-agent/config.yaml").exists() and Path("/etc/ccf-agent/environment").exists()
    assert Path("/var/lib/ccf-agent/registry.json").exists()

    r = dpkg("--purge", "ccf-agent")
    assert r.returncode == 0, r.stderr
    assert package_state() in ("not-installed", "un", "pn")
    assert not Path("/etc/ccf-agent").exists() and not Path("/var/lib/ccf-agent").exists()
