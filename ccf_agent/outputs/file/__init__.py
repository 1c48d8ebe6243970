"""The file output: records appended to a local NDJSON file (trying the agent, archives).

    config   its checks (the path names a file)
    output   writing, fsync, and what a failed write leaves behind

This package's `__init__` imports nothing: config loading reads `config` alone (outputs.registry).
"""
