"""Routes: the first matching route names the outputs a record goes to.

Records matching no route go to the output named `default`, else the first output. A
route may name several outputs (fan-out); each output then acknowledges its own copy.
A condition that fails on a record (no record the pipeline makes should do that) does not
hold for it: the batch is routed again a record at a time, and the failure logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ccf_agent.conditions import program
from ccf_agent.config import RouteConfig
from ccf_agent.pipeline.native import fast as _fast  # assign's loop in C, or None

log = logging.getLogger("ccf_agent.router")


class Router:
    def __init__(self, routes: Sequence[RouteConfig], default_output: str) -> None:
        self.targets: list[tuple[str, ...]] = [r.outputs for r in routes] + [(default_output,)]
        self.names = [r.name for r in routes] + ["default"]
        self._tests = [r.when.test for r in routes]
        self._programs = tuple(program(r.when.spec) for r in routes) if _fast is not None and routes else None
        self.matched = [0] * len(self.targets)

    def assign(self, records: Sequence[dict[str, Any]]) -> list[list[int]]:
        """For each target set (route order, default last), the indices of its records."""
        try:
            return self._assign(records)
        except Exception as e:  # a record no test foresaw: it must not stop its file, or the others
            return self._assign_each(records, e)

    def _assign(self, records: Sequence[dict[str, Any]]) -> list[list[int]]:
        if self._programs is not None and _fast is not None and type(records) is list:
            buckets: list[list[int]] = _fast.assign(records, self._programs)
            for k, b in enumerate(buckets):
                self.matched[k] += len(b)
            return buckets
        buckets = [[] for _ in self.targets]
        tests = self._tests
        default = buckets[-1]
        if not tests:
            default.extend(range(len(records)))
        elif len(tests) == 1:
            test, first = tests[0], buckets[0]
            for i, rec in enumerate(records):
                (first if test(rec) else default).append(i)
        else:
            for i, rec in enumerate(records):
                for k, test in enumerate(tests):
                    if test(rec):
                        buckets[k].append(i)
                        break
                else:
                    default.append(i)
        for k, b in enumerate(buckets):
            self.matched[k] += len(b)
        return buckets

    def _assign_each(self, records: Sequence[dict[str, Any]], error: Exception) -> list[list[int]]:
        """assign a record and a condition at a time: a condition that fails does not hold."""
        buckets: list[list[int]] = [[] for _ in self.targets]
        failed: list[str] = []
        for i, rec in enumerate(records):
            for k, test in enumerate(self._tests):
                try:
                    if test(rec):
                        break
                except Exception as e:
                    failed.append(f"route {self.names[k]}: {type(e).__name__}")
            else:
                k = len(self._tests)
            buckets[k].append(i)
        for k, b in enumerate(buckets):
            self.matched[k] += len(b)
        log.error("routing failed on %d of a batch's %d records (%s); their failing routes were passed over",
                  len(failed), len(records), ", ".join(sorted(set(failed))) or type(error).__name__)
        return buckets
