"""Inline threshold alerts: the seed's Prometheus rules evaluated on the record stream.

Wiring (see engine.py for the time model; the `alerts:` section is parsed by config/alerts.py):
    engine = AlertEngine(cfg, state_dir, redact, log)    # once per config generation
    engine.observe(records, times)                       # inline, per processed batch
    engine.tick(time.time())                             # every ~250 ms
    tg.create_task(engine.run())                         # delivery + persistence; cancel on shutdown
    engine.close()                                       # after run() is cancelled
"""
