"""A skip is a test that did not run: the run fails when one skips that is not known here.

A missing tool (dpkg-dev, systemd-analyze, prometheus, ...) or a broken fixture would otherwise
turn tests into skips and leave the run green. tests/run.sh installs what the tests need, so on
a machine it set up only the skips listed in EXPECTED happen; any other is named at the end of
the run and makes pytest exit 1. conftest.py hooks this module into every run, whatever the
command line.
"""

from __future__ import annotations

import os

import pytest

# test id -> the words its skip reason must contain. Each entry says why it cannot run here.
EXPECTED: dict[str, str] = {
    # The test node is assembled from Maven Central jars, and the ISM plugin is not among them.
    "tests/outputs_es/test_setup.py::test_setup_run_twice_leaves_the_same_ism_policy_where_ism_exists":
        "no ISM plugin on this node",
}
if os.environ.get("CCF_TEST_ES_URL"):  # an existing cluster may have ISM: then its counterpart skips
    EXPECTED["tests/outputs_es/test_setup.py::test_setup_says_clearly_that_the_node_has_no_ism_and_fails"] = (
        "this cluster has the ISM plugin")

_skipped: dict[str, str] = {}  # test (or module) id -> skip reason


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def expected(nodeid: str, reason: str) -> bool:
    words = EXPECTED.get(nodeid)
    return words is not None and words in reason


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped[report.nodeid] = skip_reason(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped at import (pytest.importorskip, allow_module_level)
        _skipped[report.nodeid] = skip_reason(report)


def unexpected() -> dict[str, str]:
    return {k: v for k, v in _skipped.items() if not expected(k, v)}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if unexpected() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    bad = unexpected()
    known = {k: v for k, v in _skipped.items() if k not in bad}
    title = f"{len(_skipped)} skipped: {len(known)} expected, {len(bad)} unexpected"
    terminalreporter.write_sep("=", title, red=bool(bad), green=not bad)
    for nodeid, reason in known.items():
        terminalreporter.write_line(f"expected skip: {nodeid}: {reason}")
    for nodeid, reason in bad.items():
        terminalreporter.write_line(f"UNEXPECTED SKIP: {nodeid}: {reason}", red=True)
    if bad:
        terminalreporter.write_line("A skip not listed in tests/skip_guard.py EXPECTED fails the run: install what "
                                    "the test needs (tests/run.sh does), or fix what made it skip.", red=True)
