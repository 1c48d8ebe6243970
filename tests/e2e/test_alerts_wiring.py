"""The daemon evaluates alert rules on the records it ships and notifies a webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from tests.harness import AgentProcess, wait_until


class Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def test_a_high_value_failed_payout_is_notified_and_shown_in_status(tmp_path: Path) -> None:
    receiver = Receiver()
    logs = tmp_path / "logs"
    logs.mkdir()
    config = {
        "inputs": [{"id": "app", "paths": [str(logs / "*.log")]}],
        "outputs": {"archive": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
        "alerts": {
            "notifiers": {"custom": {"type": "webhook", "url": receiver.url}},
            "rules": [{"name": "HighValuePayoutFailed", "kind": "match", "severity": "error",
                       "when": {"all": [{"field": "message", "icontains": "payout failed"},
                                        {"field": "amount", "gt": 10000}]},
                       "annotations": {"summary": "Payout of {{ amount }} cents failed"}}],
        },
    }
    agent = AgentProcess(tmp_path, config).start()
    try:
        now = __import__("datetime").datetime.now(__import__("datetime").UTC).strftime("%Y-%m-%d %H:%M:%S")
        with open(logs / "payouts.log", "a") as f:
            f.write(json.dumps({"level": "error", "message": "Payout failed", "amount": 999, "timestamp": now}) + "\n")
            f.write(json.dumps({"level": "error", "message": "Payout failed", "amount": 25000,
                                "payoutId": "payout_9", "timestamp": now}) + "\n")
        wait_until(lambda: bool(receiver.posts), 15, "the webhook notification")
        alert = receiver.posts[0]
        assert alert["service"] == "click-clack-cashflow"
        assert "25000" in json.dumps(alert)
        status = agent.status()
        assert status is not None
        rules = {r["name"]: r for r in status["alerts"]["rules"]}
        assert rules["HighValuePayoutFailed"]["state"] == "firing"
        assert agent.stop() == 0
    finally:
        agent.kill()
        receiver.stop()


def test_a_notice_renders_fields_no_condition_reads_and_masks_secrets(tmp_path: Path) -> None:
    # Records are projected to the fields routes, metrics and conditions read; the notice's
    # sample is the whole shipped document, redacted like it.
    receiver = Receiver()
    logs = tmp_path / "logs"
    logs.mkdir()
    config = {
        "inputs": [{"id": "app", "paths": [str(logs / "*.log")], "format": "json"}],
        "outputs": {"archive": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
        "alerts": {
            "notifiers": {"custom": {"type": "webhook", "url": receiver.url}},
            "rules": [{"name": "PayoutFailed", "kind": "match", "severity": "error",
                       "when": {"field": "message", "icontains": "payout failed"},
                       "annotations": {"summary": "{{ userId }} via {{ paymentMethodId }} on {{ host.name }}"}}],
        },
    }
    agent = AgentProcess(tmp_path, config).start()
    try:
        now = __import__("datetime").datetime.now(__import__("datetime").UTC).strftime("%Y-%m-%d %H:%M:%S")
        with open(logs / "payouts.log", "a") as f:
            f.write(json.dumps({"level": "error", "message": "Payout failed", "userId": "user_77",
                                "paymentMethodId": "pm_1OabcSECRET", "timestamp": now},
                               separators=(",", ":")) + "\n")  # compact, as Winston writes: projected
        wait_until(lambda: bool(receiver.posts), 15, "the webhook notification")
        text = json.dumps(receiver.posts[0])
        assert "user_77 via [REDACTED] on " in text
        assert "pm_1OabcSECRET" not in text
        assert agent.stop() == 0
    finally:
        agent.kill()
        receiver.stop()
