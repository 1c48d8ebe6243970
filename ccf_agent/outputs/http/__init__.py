"""The plain HTTP output: records POSTed as NDJSON or a JSON array to any collector that takes JSON.

    config   its own keys (format, headers) and checks
    output   the protocol: what each answer means for the records of a request

This package's `__init__` imports nothing: config loading reads `config` alone (outputs.registry).
"""
