"""End to end with the real daemon and a real OpenSearch node: secrets written to the app's logs
never reach the engine, while every record still arrives once and is routed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ccf_agent.samples import SERVICE, is_payout, lines
from tests.harness import AgentProcess, Engine, agent_config, write_lines

pytestmark = pytest.mark.engine

CARD = "4242424242424242"  # Luhn-valid (Stripe's test Visa)
CARD_SPACED = "4242 4242 4242 4242"
KEY = "sk_live_51HxYzAbCdEfGhIjKlMnOpQrStUv"
TS = "2024-01-15 10:30:00"


def winston(seq: int, **fields: Any) -> str:
    return json.dumps({**SERVICE, **fields, "seq": seq, "timestamp": TS})


SECRET_LINES = [
    winston(100_000, level="warn", message=f"Card {CARD_SPACED} declined: insufficient funds"),
    winston(100_001, level="error", message="Payout failed", card={"number": CARD}, error="card_declined"),
    winston(100_002, level="info", message="Stripe client ready", config={"apiKey": KEY, "apiVersion": "2023-10-16"}),
    winston(100_003, level="warn", message=f"payout retried with {KEY}"),
    # A \uXXXX escape inside the key: only the decoded text reads sk_live_.
    winston(100_004, level="warn", message=KEY).replace("sk_live_", "sk\\u005flive_"),
    # Not JSON at all (a line the app's console transport leaked into the file).
    f"charge failed for card {CARD} using {KEY}",
]


def all_sources(engine: Engine) -> list[str]:
    engine.refresh()
    r = engine.request("POST", f"/{engine.prefix}-*/_search", {"size": 10_000, "query": {"match_all": {}}})
    return [json.dumps(h["_source"]) for h in r["hits"]["hits"]]


def hits_for(engine: Engine, text: str) -> int:
    r = engine.request("POST", f"/{engine.prefix}-*/_search",
                       {"size": 0, "query": {"query_string": {"query": f'"{text}"', "fields": ["*"]}}})
    return int(r["hits"]["total"]["value"])


def test_a_card_number_and_a_stripe_key_never_reach_the_engine(tmp_path: Path, engine: Engine,
                                                               agents: list[AgentProcess]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    normal = list(lines(2_000))
    write_lines(logs / "combined.log", [*normal[:1_000], *SECRET_LINES, *normal[1_000:]])
    write_lines(logs / "error.log", SECRET_LINES[1:2])
    agent = AgentProcess(tmp_path, agent_config(engine, [str(logs / "*.log")])).start()
    agents.append(agent)
    agent.wait_caught_up()

    written = 2_000 + len(SECRET_LINES) + 1
    assert engine.count() == written  # nothing lost to redaction
    sources = all_sources(engine)
    assert len(sources) == written
    leaks = [s for s in sources if CARD in s or CARD_SPACED in s or KEY in s or "51HxYzAbCdEf" in s]
    assert leaks == []
    for secret in (CARD, KEY):
        assert hits_for(engine, secret) == 0
    # ...while the records that held them arrived, masked, and routed as before.
    docs = [json.loads(s) for s in sources]
    secret_docs = [d for d in docs if d.get("seq", 0) >= 100_000 or d["message"].startswith("charge failed")]
    assert len(secret_docs) == len(SECRET_LINES) + 1
    assert all("[REDACTED]" in json.dumps(d) for d in secret_docs)
    assert hits_for(engine, "Card [REDACTED] declined") == 1
    assert all(d["paymentMethodId"] == "[REDACTED]" for d in docs if "paymentMethodId" in d)
    payouts = sum(1 for line in normal if is_payout(json.loads(line)))
    payouts += sum(1 for line in SECRET_LINES if line.startswith("{") and "ayout" in line) + 1  # + error.log's copy
    assert engine.count("payouts") == payouts
    assert agent.stop() == 0
