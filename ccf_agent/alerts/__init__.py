"""Inline threshold alerts: the seed's Prometheus rules evaluated on the record stream.

Wiring (see engine.py for the time model):
    cfg = parse_alerts(raw_yaml["alerts"], where)        # at config load
    engine = AlertEngine(cfg, state_dir, redact, log)    # once per config generation
    engine.observe(records, times)                       # inline, per processed batch
    engine.tick(time.time())                             # every ~250 ms
    tg.create_task(engine.run())                         # delivery + persistence; cancel on shutdown
    engine.close()                                       # after run() is cancelled
"""

from ccf_agent.alerts.config import AlertsConfig, NotifierConfig, RuleConfig, parse_alerts
from ccf_agent.alerts.engine import AlertEngine, format_status

__all__ = ["AlertEngine", "AlertsConfig", "NotifierConfig", "RuleConfig", "format_status", "parse_alerts"]
