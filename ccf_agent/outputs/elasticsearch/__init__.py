"""The Elasticsearch / OpenSearch output: the `_bulk` API, spoken directly over the HTTP layer
rather than through the official client, which refuses OpenSearch.

    config     the output's own keys (dead_letter_index, discovery, data_stream, ...) and checks
    indices    index names from each record's event time (`ccf-logs-%{+yyyy.MM.dd}`)
    encoding   the bulk body (the hot path: one call into C per fragment), gzip, request bodies
    bulk       what a bulk response says: per-item verdicts, whole-request failures, messages
    client     the cluster over the HTTP layer: hosts in rotation, probes, discovery, admin calls
    output     the protocol: batches, requests, settlement, dead letters
    setup      `ccf-agent setup`: templates and retention policies

This package's `__init__` imports nothing: config loading reads `config` alone (outputs.registry).
"""
