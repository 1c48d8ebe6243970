"""Fixtures for the output tests: go-lumber servers, a throwaway PKI, sample logs, agent configs."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import AgentProcess
from tests.lumber import server as lumber

StartLumber = Callable[..., lumber.LumberServer]


@pytest.fixture(scope="session")
def lumber_binary() -> Path:
    if shutil.which("go") is None and not lumber.BINARY.exists():
        pytest.skip("Go toolchain needed to build tests/lumber")
    return lumber.build()


@pytest.fixture
def start_lumber(lumber_binary: Path) -> Iterator[StartLumber]:
    """start_lumber(mode=..., tls=..., keepalive=...) -> a go-lumber server, stopped at teardown."""
    started: list[lumber.LumberServer] = []

    def start(**kwargs: Any) -> lumber.LumberServer:
        srv = lumber.start(**kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA made here with the openssl CLI, a server certificate for localhost/127.0.0.1 and a
    client certificate, both signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI needed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=ccf outputs test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    for name, ext in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)
    return d


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Agents a test started: killed at the end, their log tails printed (pytest shows them only
    when the test failed)."""
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()
        print(f"----- agent log ({a.log_path}) -----\n{a.log()}")


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d

