"""Fault injection for tests against a real node: `FaultProxy(upstream_url).start() -> url`."""

from tests.faults.proxy import MODES, FaultProxy, SeenRequest

__all__ = ["MODES", "FaultProxy", "SeenRequest"]
