"""ccf-agent: a log-shipping daemon that loses nothing and stores nothing twice."""

__version__ = "0.1.0"
AGENT_NAME = "ccf-agent"
