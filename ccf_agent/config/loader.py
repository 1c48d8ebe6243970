"""YAML in, a typed, validated, immutable `Config` out.

Every error names the file, the line and the key, so `ccf-agent check` can point an operator at
the exact spot. Secrets come from `${ENV_VAR}` or `${file:/path}` only.

The document (`Document`) holds the data and the line of every key path; each section is parsed
by a function of its own module from a `Reader` over its mapping, and every problem becomes an
error through the document's `error`. Sections do not depend on each other's success except
where a name crosses sections (routes and report name outputs; report names notifiers), which
is what makes reporting every problem of a file in one run a matter of collecting per section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ccf_agent.config.alerts import AlertsConfig, parse_alerts
from ccf_agent.config.document import Document
from ccf_agent.config.inputs import parse_inputs
from ccf_agent.config.model import Config, RouteConfig
from ccf_agent.config.outputs import OutputConfig, _outputs
from ccf_agent.config.processors import parse_processors
from ccf_agent.config.reader import Reader
from ccf_agent.config.report import parse_report
from ccf_agent.config.values import LISTEN_OFF, ConfigError, split_listen


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(file, None, "", f"cannot read config: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(file, None, "", "config is not valid UTF-8") from e
    return parse_config(text, file, os.environ if env is None else env)


def parse_config(text: str, file: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    doc = Document(file, text, os.environ if env is None else env)
    root = Reader(doc.error, (), doc.data)
    state_dir = root.get("state_dir", str, required=True)
    status = root.sub("status")
    listen = status.get("listen", str, "127.0.0.1:5066")
    if listen not in LISTEN_OFF and split_listen(listen) is None:
        raise status.error("listen", f"must be host:port with a port from 1 to 65535 (like 127.0.0.1:5066), "
                           f"or off, not '{listen}'")
    status.done()
    inputs = parse_inputs(root)
    outputs = _outputs(doc, root)
    routes = _routes(root, outputs)
    agent = root.sub("agent")
    hostname = agent.get("hostname", str)
    flush = agent.duration("registry_flush_interval", 1.0, minimum=0.01)
    shutdown_timeout = agent.duration("shutdown_timeout", 10.0)
    max_inflight = agent.size("max_inflight_bytes", 4 << 20)
    read_ahead = agent.get("read_ahead", (bool, str), "auto")
    if read_ahead == "auto":
        read_ahead = None
    elif not isinstance(read_ahead, bool):
        raise agent.error("read_ahead", f"must be true, false or auto, not '{read_ahead}'")
    agent.done()
    root.used.update(("processors", "alerts", "report"))
    processors = parse_processors(root.value.get("processors"), doc.within("processors"))
    alerts_raw = root.value.get("alerts")
    alerts: AlertsConfig | None = None
    if alerts_raw is not None:
        alerts = parse_alerts(root.get("alerts", dict), doc.within("alerts"))
    report = parse_report(root.get("report", dict), doc.within("report"))
    report.check(outputs, alerts)  # names outputs and notifiers of other sections
    root.done()
    default = "default" if "default" in outputs else next(iter(outputs))
    return Config(file, state_dir, inputs, outputs, routes, default, listen, flush, shutdown_timeout,
                  max_inflight, hostname, processors, alerts, read_ahead, report, doc.error)


def _routes(root: Reader, outputs: Mapping[str, OutputConfig]) -> tuple[RouteConfig, ...]:
    out = []
    for i, r in enumerate(root.each("routes")):
        name = r.get("name", str, f"route-{i}")
        when = r.condition("when", required=True)
        targets = r.strings("output", required=True)
        for t in targets:
            if t not in outputs:
                raise r.error("output", f"no output named '{t}' (outputs: {', '.join(outputs)})")
        r.done()
        out.append(RouteConfig(name, when, targets))
    return tuple(out)
