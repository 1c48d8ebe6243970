"""The Logstash output: the Beats (Lumberjack v2) protocol, as Filebeat speaks it to a `beats` input.

    config       its own keys (loadbalance, pipelining, ttl, ...)
    lumberjack   the wire protocol: frames, a connection, the window sizer (no agent concepts)
    output       connections, pipelined batches and their ACKs, failover

This package's `__init__` imports nothing: config loading reads `config` alone (outputs.registry).
"""
