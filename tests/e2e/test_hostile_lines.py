"""End to end (issue 19): hostile lines beside the app's own, through the real daemon to the real
OpenSearch node, a file and an alert webhook. The daemon stays up, both files ship completely
and once (each line stored or dead-lettered, never both, never twice), and no secret of the
hostile lines reaches an output, a dead letter, a notice or the agent's log."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ccf_agent.samples import lines
from tests.e2e.test_alerts_wiring import Receiver
from tests.harness import AgentProcess, Engine, wait_until

pytestmark = pytest.mark.engine

CARD, CARD2, CUT_CARD = "4111111111111111", "4277700000000003", "5555 5555 5555 4444"
KEY = "sk_live_51HostileKey0123456789abcd"
BEARER = "hostileBearerTok123"
BASIC = base64.b64encode(b"ops:hunter2-hostile").decode()
PW, QS, FORM, PM = "s3cret-hostile-pw", "qsTokenHostile99", "formPwHostile77", "pm_1HostilePayment"
SECRETS = [CARD, CARD2, KEY, BEARER, BASIC, PW, QS, FORM, PM, CUT_CARD[:9]]
MAX_LINE = 8192


def nested(depth: int, inner: str) -> str:
    return '{"x":' + '{"a":' * depth + inner + "}" * depth + "}"


HOSTILE: list[bytes] = [line.encode() if isinstance(line, str) else line for line in [
    nested(300, f'"{CARD}"'),  # the line
    nested(300, f'{{"password":"{PW}"}}'),
    nested(1100, f'"{KEY}"'),  # past what orjson reads
    nested(50, f'{{"card":"{CARD}","n":1}}'),  # a record, deeper than the index's mapping allows
    f'{{"service":"dup","level":"info","x":{{"y":1}},"message":"card {CARD2}","message":"ok"}}',
    f'{{"service":"dup","a":{{"card":"{CARD}"}},"a":{{}}}}',
    f'{{"service":"dup","x":{{"password":"{PW}"}},"x":{{}}}}',
    f'{{"service":"dup","x":{{"y":1}},"auth":"Bearer {BEARER}","auth":"none"}}',
    f'{{"service":"dup","x":{{"y":1}},"message":"{KEY}","message":"ok"}}',
    '{"service":"dup","message":"a","message":"b"}',  # nothing to hide: shipped as written
    f'{{"service":"creds","message":"Authorization: Basic {BASIC}"}}',
    f'{{"service":"creds","url":"/oauth/cb?access_token={QS}&state=1"}}',
    f'{{"service":"creds","body":"user=bob&password={FORM}"}}',
    f'{{"service":"creds","payment_method_id":"{PM}","payment_method":"{PM}"}}',
    f'[{{"password":"{PW}"}}]',
    f'{{"password":"{PW}", broken',
    '{"message":"card 4\\u0031\\u0031\\u0031111111111111", broken',
    b'{"message":"raw \x00 byte and \xff"}',
    '{"message":"lone \\ud800 surrogate"}',
    '{"amount":123456789012345678901234567890,"processingTime":1e308,"status":["x"],"payoutId":"p1",'
    '"message":"Payout processed"}',
    '{"@timestamp":{"a":1},"host":"evil","log":[1],"agent":null,"timestamp":[1,2],"message":"collide"}',
    f'{{"{CARD}":"a card as a key"}}',
    "x" * (MAX_LINE - 22) + f" card {CUT_CARD}",  # cut at max_line_bytes inside the card
]]
SUMMARY = "{{ message }} | {{ x }} | {{ a }} | {{ auth }} | {{ url }} | {{ body }} | {{ payment_method_id }}"
RULES = {"TooDeep": {"field": "tags", "contains": "too_deep"},
         "NotARecord": {"field": "tags", "contains": "invalid_json"},
         "DuplicateKeys": {"field": "service", "equals": "dup"},
         "Credentials": {"field": "service", "equals": "creds"}}
JOINED = re.compile(r"(?<=[0-9])[ -](?=[0-9])")


def strings_of(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v, JOINED.sub("", v)]
    if isinstance(v, dict):
        return [s for k, x in v.items() for s in (k, *strings_of(x))]
    if isinstance(v, list):
        return [s for x in v for s in strings_of(x)]
    return []


def leaks(text: str, parsed: list[Any]) -> list[str]:
    """The secrets in some output: as written, or in any JSON string it holds once decoded."""
    strings = [s for v in parsed for s in strings_of(v)]
    return [s for s in SECRETS if s in text or any(s in x for x in strings)]


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(errors="replace").splitlines() if x.strip()] if path.exists() else []


def test_hostile_lines_neither_stop_the_daemon_nor_hold_back_a_file_nor_leak_a_secret(
        tmp_path: Path, engine: Engine, agents: list[AgentProcess]) -> None:
    receiver = Receiver()
    logs = tmp_path / "logs"
    logs.mkdir()
    normal = list(lines(2_000))
    (logs / "hostile.log").write_bytes(b"".join(x + b"\n" for x in HOSTILE))
    config = {
        "inputs": [{"id": "app", "paths": [str(logs / "*.log")], "max_line_bytes": MAX_LINE}],
        "outputs": {"search": {"type": "elasticsearch", "hosts": [engine.url], "index": engine.index("logs")},
                    "archive": {"type": "file", "path": str(tmp_path / "archive.ndjson")}},
        "routes": [{"name": "everything", "output": ["search", "archive"],
                    "when": {"not": {"field": "never_there", "exists": True}}}],
        "alerts": {"notifiers": {"hook": {"type": "webhook", "url": receiver.url}},
                   "rules": [{"name": name, "kind": "match", "when": when, "annotations": {"summary": SUMMARY}}
                             for name, when in RULES.items()]},
        "agent": {"registry_flush_interval": "200ms"},
    }
    agent = AgentProcess(tmp_path, config)
    agents.append(agent)
    try:
        agent.start()
        agent.wait_caught_up()
        # The hostile lines are indexed first, so their types are the ones the index's dynamic
        # mapping takes: the app's lines that follow must still be stored.
        (logs / "combined.log").write_text("".join(x + "\n" for x in normal))
        wait_until(lambda: any(f["path"] == str(logs / "combined.log") for f in agent.status()["files"]), 30,
                   "the app's file to be found")
        agent.wait_caught_up()
        wait_until(lambda: {p["details"]["alert"] for p in receiver.posts} >= set(RULES), 30, "a notice of every rule")
        assert agent.alive

        # Each line of each file once: stored or dead-lettered, never both, never twice.
        expected = {str(logs / "hostile.log"): len(HOSTILE), str(logs / "combined.log"): len(normal)}
        archived = ndjson(tmp_path / "archive.ndjson")
        places = [(d["doc"]["log"]["file"]["path"], d["doc"]["log"]["offset"]) for d in archived]
        assert len(places) == len(set(places)) == sum(expected.values())
        assert {p: sum(1 for q, _ in places if q == p) for p in expected} == expected
        stored = engine.docs("logs", ("log", "seq", "tags"))
        dead = ndjson(tmp_path / "state" / "dead_letter" / "search.ndjson")
        dead_docs = [json.loads(d["document"]) for d in dead]
        in_engine = [(d["log"]["file"]["path"], d["log"]["offset"]) for d in stored]
        dead_letters = [(d["log"]["file"]["path"], d["log"]["offset"]) for d in dead_docs]
        assert sorted(in_engine + dead_letters) == sorted(places)
        assert sorted(d["seq"] for d in stored if "seq" in d) == list(range(len(normal)))  # the app's lines all stored
        assert any(d.get("tags") == ["too_deep"] for d in stored)
        assert dead_letters and all(p == str(logs / "hostile.log") for p, _ in dead_letters)

        # No secret anywhere it could go.
        everything = engine.docs("logs", ("*",))
        assert leaks(json.dumps(everything), everything) == []
        assert leaks((tmp_path / "archive.ndjson").read_text(errors="replace"), archived) == []
        assert leaks(json.dumps(dead), [*dead, *dead_docs]) == []
        assert leaks(json.dumps(receiver.posts), receiver.posts) == []
        log = agent.log_path.read_text(errors="replace")
        assert leaks(log, []) == []
        assert "Traceback" not in log and "fatal" not in log and "pipeline failed" not in log
        assert agent.stop() == 0
    finally:
        agent.kill()
        receiver.stop()
