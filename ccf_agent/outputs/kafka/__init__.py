"""The Kafka output: messages keyed by the record's deterministic id, through aiokafka.

    config   its own keys (brokers, topic, key, compression, acks, sasl)
    topic    a topic from the record's fields, sanitised to a legal name (pure)
    output   the producer, per-record settlement, faults and their health

This package's `__init__` imports nothing: config loading reads `config` alone (outputs.registry).
"""
